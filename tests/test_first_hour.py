"""A new user's first hour, without a cluster: Ray's known start-up race retried and any other
start failure reported in one line; every input check before Ray starts; long stages that say
they are still going; one name and one default per concept; partial runs that say so."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mer_ray import cli
from mer_ray.cli import main
from tests.helpers.shardfolder import write_shards

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_ray(monkeypatch):
    """Any attempt to start or join Ray fails the test: the checks must come first."""
    from mer_ray import cluster

    def forbidden(*args, **kwargs):
        raise AssertionError("Ray was started before the inputs were checked")

    monkeypatch.setattr(cluster, "ensure_ray", forbidden)


# -- 1: starting Ray ----------------------------------------------------------------------------

class FakeRay:
    """``ray.init`` failing ``failures`` times with ``message``, then starting."""

    def __init__(self, failures: int, message: str):
        self.failures, self.message, self.calls, self.kwargs = failures, message, 0, {}

    def init(self, **kwargs):
        self.calls += 1
        self.kwargs = kwargs
        if self.calls <= self.failures:
            raise Exception(self.message)


@pytest.fixture
def fake_ray(monkeypatch):
    import ray

    def make(failures, message):
        fake = FakeRay(failures, message)
        monkeypatch.setattr(ray, "is_initialized", lambda: False)
        monkeypatch.setattr(ray, "init", fake.init)
        monkeypatch.setattr(ray, "shutdown", lambda: None)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        return fake
    return make


RACE = ("The current node timed out during startup. This could happen because some of the "
        "raylet failed to startup or the GCS has become overloaded.")


def test_the_known_start_up_race_is_retried(fake_ray, capsys):
    from mer_ray.cluster import ensure_ray

    fake = fake_ray(2, RACE)
    ensure_ray()
    assert fake.calls == 3
    # a Ray of its own: never a cluster whose address a crashed earlier run left behind
    assert fake.kwargs["address"] == "local"
    out = capsys.readouterr().out
    assert out.count("a known start-up race") == 2 and "attempt 3 of 3" in out


def test_a_start_that_keeps_failing_is_one_line_and_exit_2(fake_ray, tmp_path, capsys):
    from mer_ray.cluster import RayStartError, ensure_ray

    fake = fake_ray(5, RACE)
    with pytest.raises(RayStartError, match="starting a local Ray failed: The current node"):
        ensure_ray()
    assert fake.calls == 3  # bounded
    other = fake_ray(1, "Failed to start GCS: port 6379 in use\nmore detail")
    log = tmp_path / "ray.log"
    with pytest.raises(RayStartError, match=f"port 6379 in use. Ray's messages: {log}"):
        ensure_ray(log_file=log)
    assert other.calls == 1  # another failure is not retried
    capsys.readouterr()
    fake_ray(5, "Failed to start GCS: port 6379 in use")
    rc = main(["train", "--storage-path", str(tmp_path / "runs"), "--workdir",
               str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert rc == 2 and "mer-ray train: error: starting a local Ray failed: Failed to start " \
        "GCS" in err
    assert "Traceback" not in err


# -- 3: checks before Ray -----------------------------------------------------------------------

def test_a_missing_data_root_is_refused_before_ray(no_ray, tmp_path, capsys):
    assert main(["train", "--data-root", str(tmp_path / "nope"), "--storage-path",
                 str(tmp_path / "runs")]) == 2
    assert "nope: data root not found (--data-root)" in capsys.readouterr().err


def test_a_run_name_clash_is_refused_before_ray(no_ray, tmp_path, capsys):
    shards = write_shards(tmp_path / "shards")
    runs = tmp_path / "runs"
    (runs / "taken").mkdir(parents=True)
    (runs / "taken" / "experiment.json").write_text(json.dumps(
        {"name": "taken", "identity": {"config_hash": "0" * 12, "shards": "/elsewhere"}}))
    assert main(["train", "--shards", str(shards.root), "--storage-path", str(runs),
                 "--name", "taken"]) == 2
    err = capsys.readouterr().err
    assert "holds another run" in err and "config_hash" in err and "another --name" in err


def test_a_finished_flat_sweep_run_again_is_not_refused(no_ray, tmp_path, capsys):
    """The ``-best`` run holds the search's pick, not the base configuration: the early check
    judges its data only (it refused every finished sweep whose pick was not the base
    configuration), and still refuses another data set's ``-best``."""
    from mer_ray.config import load_experiment

    shards = write_shards(tmp_path / "shards")
    runs = tmp_path / "runs"
    (tmp_path / "space.yaml").write_text("loss.lambda1: {type: choice, values: [0.1, 0.5]}\n")
    cmd = ["sweep", "--flat", "--shards", str(shards.root), "--storage-path", str(runs),
           "--name", "sw", "--space", str(tmp_path / "space.yaml")]
    picked = "f" * 12  # the pick's configuration: not the base one
    assert load_experiment(None, []).hash() != picked
    (runs / "sw-best").mkdir(parents=True)
    for shards_path in (str(shards.root), "/elsewhere"):
        (runs / "sw-best" / "experiment.json").write_text(json.dumps(
            {"name": "sw-best", "identity": {"config_hash": picked, "shards": shards_path,
                                             "shards_id": shards.meta.shards_id}}))
        if shards_path == "/elsewhere":
            assert main(cmd) == 2 and "sw-best holds another run" in capsys.readouterr().err
        else:  # past every check: on to starting Ray (which the fixture forbids)
            with pytest.raises(AssertionError, match="Ray was started"):
                main(cmd)


def test_shards_bring_their_frame_settings(no_ray, tmp_path, capsys, monkeypatch):
    """``train --shards`` takes the shards' T, S and alignment; a setting the user makes that
    contradicts them is refused before Ray starts."""
    shards = write_shards(tmp_path / "shards", frames=4, size=28)
    seen = {}
    monkeypatch.setattr(cli, "_start_ray", lambda args, command: (_ for _ in ()).throw(
        RuntimeError("stop here")))

    from mer_ray.protocols.loso import settle as real

    def settled(data, exp, user_set):
        seen["exp"] = real(data, exp, user_set)
        return seen["exp"]

    monkeypatch.setattr("mer_ray.protocols.loso.settle", settled)
    base = ["train", "--shards", str(shards.root), "--storage-path", str(tmp_path / "runs")]
    assert main(base) == 2 and "stop here" in capsys.readouterr().err  # got as far as Ray
    assert (seen["exp"].data.frames, seen["exp"].data.size) == (4, 28)
    assert main([*base, "--frames", "8"]) == 2
    assert "prepared with T=4, S=28" in capsys.readouterr().err


# -- 4: long stages say they are still going ---------------------------------------------------

def test_a_long_stage_prints_while_it_runs():
    import io

    from mer_ray.console import Ticker

    out = io.StringIO()
    with Ticker("aligning 9 clips", every=0.05, out=out) as tick:
        tick.update("3/9 clips")
        deadline = time.monotonic() + 60
        while "so far" not in out.getvalue():  # no fixed sleep: wait for the ticker's line
            assert time.monotonic() < deadline
            time.sleep(0.01)
    lines = out.getvalue().splitlines()
    assert lines[0] == "aligning 9 clips ..."
    assert re.match(r"  \.\.\. aligning 9 clips: 3/9 clips, \d+ s so far", lines[1])
    assert lines[-1].startswith("aligning 9 clips: done in")


# -- 5: names -----------------------------------------------------------------------------------

def _options(*command) -> dict[str, str]:
    """option -> default, from a command's --help."""
    parser = cli.build_parser().commands[command[0]]
    return {a.option_strings[-1] if a.option_strings[0] == "--root" else a.option_strings[0]:
            a.default for a in parser._actions if a.option_strings}


def test_one_name_and_one_default_per_concept():
    synth, train = _options("synth"), _options("train")
    for option in ("--subjects", "--clips-per-class", "--seed", "--intensity",
                   "--no-distractors"):
        assert synth[option] == train[f"--synthetic-{option[2:]}"], option
    for command in ("train", "grid", "sweep"):
        assert _options(command)["--dataset"] == "samm"
    for command in ("manifest", "prepare"):
        assert "--workdir" not in _options(command)


def test_help_shows_defaults_and_version(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "(default: samm)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.match(r"mer-ray \d+\.\d+", capsys.readouterr().out)


def test_debug_anywhere_on_the_line(no_ray, tmp_path):
    with pytest.raises(FileNotFoundError, match="data root not found"):
        main(["train", "--data-root", str(tmp_path / "nope"), "--debug"])


def test_default_names_carry_the_data_and_a_partial_run_says_so(tmp_path):
    from mer_ray.config import ExperimentConfig
    from mer_ray.data.choice import DataChoice
    from mer_ray.protocols.names import run_name

    exp = ExperimentConfig()
    a = run_name(DataChoice(root=tmp_path / "a" / "SAMM"), exp)
    b = run_name(DataChoice(root=tmp_path / "b" / "SAMM"), exp)
    assert a != b and "SAMM" in a and a.startswith("samm-3class-")
    synth = run_name(DataChoice(workdir=tmp_path), exp)
    assert "synthetic_samm_3class" in synth and synth != a
    assert run_name(DataChoice(root=tmp_path / "a" / "SAMM"), exp, 2).endswith("-first2")


def test_a_partial_run_says_so_in_its_summary(tmp_path, capsys):
    from mer_ray.protocols.summary import print_summary

    summary = {"name": "x", "n_folds": 2, "n_clips": 6, "synthetic": False, "pretrained": True,
               "control_shuffled_labels": False, "partial": {"folds": 2, "of": 8},
               "folds": [], "metrics": {"uf1": 0.5, "uar": 0.5, "per_fold_mean_uf1": 0.5,
                                        "per_fold_mean_uar": 0.5, "classes_absent": []}}
    print_summary(summary, str(tmp_path))
    out = capsys.readouterr().out
    assert "LOSO, 2 of 8 folds" in out and "PARTIAL: 2 of 8 folds" in out


def test_scripts_name_themselves_and_refuse_contradictions():
    run = subprocess.run([sys.executable, "experiments/loso_samm.py", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.startswith("usage: loso_samm.py") and "Table 2" in run.stdout
    bad = subprocess.run([sys.executable, "experiments/loso_samm.py", "--dataset", "casme2"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "loso_samm.py runs --dataset samm" in bad.stderr and "Traceback" not in bad.stderr


# -- 7: smaller things ------------------------------------------------------------------------

def test_the_random_backbone_warning_names_the_option(monkeypatch, tmp_path):
    from mer_ray.config import ModelConfig
    from mer_ray.model import encoder

    monkeypatch.setattr(encoder, "_WARNED", set())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.warns(UserWarning, match=r"--set model\.backbone_weights=PATH"):
        encoder.resolve_backbone(ModelConfig())


def test_a_bad_checkpoint_does_not_suggest_running_its_code(tmp_path, capsys):
    import pickle

    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps(object()))  # not tensors and plain values
    assert main(["predict", str(tmp_path), "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a mer-ray model checkpoint" in err and "weights_only" not in err
    pt2 = tmp_path / "model.pt2"
    pt2.write_bytes(b"x")
    assert main(["predict", str(tmp_path), "--checkpoint", str(pt2)]) == 2
    assert "trust" in capsys.readouterr().err
