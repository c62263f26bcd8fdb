"""Faults: a fold worker killed mid-training, a driver killed mid-experiment; and results stored
through a pyarrow filesystem URI (file://) instead of a plain folder.

Both runs are compared with an undisturbed in-process run of the same configuration (the
multi-node test shows in-process and Ray training give the same predictions with the trunk
cache on)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from tiny import TINY, write_config

from mer_ray.train.config import ExperimentConfig
from mer_ray.train.local import run_folds_local
from mer_ray.train.loso import plan_loso, run_folds

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
# Many short epochs with the trunk cache: a checkpoint per epoch and time to kill in between.
FAULT = ["train.max_epochs=6", "train.patience=6", "train.cache_trunk=true"]


def reference(shards, exp, where: Path, folds: int) -> dict:
    setup = plan_loso(shards, exp, where, name="ref", max_folds=folds)
    run_folds_local(setup, threads=1)
    return {f.test: json.loads((where / "ref" / "folds" / f.test / "predictions.json")
                               .read_text()) for f in setup.folds}


def same_predictions(a: dict, b: dict) -> None:
    assert a["keys"] == b["keys"] and a["labels"] == b["labels"]
    for p, q in zip(a["probs"], b["probs"]):
        assert p == pytest.approx(q, abs=1e-4)


def wait_for(cond, what: str, timeout: float = 240, poll: float = 0.05, alive=None):
    deadline = time.time() + timeout
    while True:
        got = cond()
        if got:
            return got
        if alive is not None:
            alive()
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def committed_epoch(train_dir: Path) -> bool:
    """Whether Ray Train has registered an epoch checkpoint of this fold (not one still being
    written: a worker killed while writing leaves a directory that nothing will resume from)."""
    try:
        latest = json.loads((train_dir / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):
        return False
    latest = latest.get("latest_checkpoint_result")
    return bool(latest) and latest["metrics"].get("epoch") is not None


def no_partial_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*.tmp-*")]
    assert not leftovers, leftovers
    for p in root.rglob("fold.json"):
        json.loads(p.read_text())  # every record that exists is whole


def test_killed_fold_worker_resumes_from_its_checkpoint(tiny_shards, ray_session, tmp_path):
    exp = ExperimentConfig().with_overrides(TINY + FAULT)
    runs = tmp_path / "runs"
    runs.mkdir()
    uri = runs.as_uri()  # file:///...: storage through pyarrow's filesystem layer
    assert uri.startswith("file://")
    setup = plan_loso(tiny_shards, exp, uri, name="fault", max_folds=1)
    outcome = {}

    def drive():
        try:
            outcome["trained"] = run_folds(setup)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=drive)
    thread.start()

    def worker_pid():  # Ray names its actor processes "ray::<class>[.<method>]"
        for proc in psutil.process_iter(["cmdline"]):
            if any("ray::RayTrainWorker" in part for part in proc.info["cmdline"] or []):
                return proc.pid
        return None

    pid = wait_for(worker_pid, "the fold's Ray Train worker", poll=0.2)
    wait_for(lambda: committed_epoch(runs / "fault" / "train" / "fold-006"),
             "the first committed epoch checkpoint")
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    thread.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["trained"] == ["006"]

    fold = json.loads((runs / "fault" / "folds" / "006" / "fold.json").read_text())
    attempts = fold["attempts"]
    assert len(attempts) == 2, attempts  # the kill happened before the fold finished
    assert attempts[1]["start_epoch"] >= 1  # continued from a checkpoint, not from scratch
    assert attempts[1]["started_at"] > killed_at
    assert fold["epochs_run"] == 6 and len(fold["history"]) == 6
    got = json.loads((runs / "fault" / "folds" / "006" / "predictions.json").read_text())
    same_predictions(got, reference(tiny_shards, exp, tmp_path / "ref", 1)["006"])
    no_partial_files(runs)


def test_killed_driver_restarts_without_retraining_finished_folds(tiny_shards, synth_samm,
                                                                   ray_session, tmp_path):
    config = write_config(tmp_path / "fault.yaml",
                          tuple(FAULT + ["train.max_concurrent_folds=1"]))
    cmd = [sys.executable, "experiments/loso_samm.py", "--data-root", str(synth_samm),
           "--workdir", str(tiny_shards.parent), "--frames", "4", "--config", str(config),
           "--storage-path", str(tmp_path / "runs"), "--name", "crash", "--max-folds", "2"]
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    folds = tmp_path / "runs" / "crash" / "folds"

    def still_running():
        assert first.poll() is None, first.stderr.read()[-3000:]

    wait_for(lambda: (folds / "006" / "fold.json").exists(), "the first fold", timeout=300,
             poll=0.2, alive=still_running)
    wait_for(lambda: committed_epoch(tmp_path / "runs" / "crash" / "train" / "fold-007"),
             "an epoch checkpoint of the second fold", timeout=300, alive=still_running)
    os.killpg(first.pid, signal.SIGKILL)  # no clean-up handlers run
    first.wait(timeout=60)
    assert not (folds / "007" / "fold.json").exists()  # the second fold had not finished
    assert not (tmp_path / "runs" / "crash" / "summary.json").exists()
    finished = (folds / "006" / "fold.json").read_text()
    mtime = (folds / "006" / "fold.json").stat().st_mtime_ns
    no_partial_files(tmp_path / "runs")

    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 fold(s) already had results and were not retrained" in again.stdout
    assert (folds / "006" / "fold.json").read_text() == finished
    assert (folds / "006" / "fold.json").stat().st_mtime_ns == mtime
    attempts = json.loads((folds / "007" / "fold.json").read_text())["attempts"]
    assert len(attempts) == 2 and attempts[1]["start_epoch"] >= 1  # from its checkpoint
    exp = ExperimentConfig.from_dict(
        json.loads((tmp_path / "runs" / "crash" / "experiment.json").read_text())["config"])
    ref = reference(tiny_shards, exp, tmp_path / "ref", 2)
    for subject in ("006", "007"):
        got = json.loads((folds / subject / "predictions.json").read_text())
        same_predictions(got, ref[subject])
    summary = json.loads((tmp_path / "runs" / "crash" / "summary.json").read_text())
    assert summary["n_folds"] == 2
    no_partial_files(tmp_path / "runs")
