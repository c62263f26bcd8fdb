"""The hyper-parameter search: Optuna trials through Tune, scored on validation only."""

import json
import shutil

import polars as pl
import pyarrow.parquet as pq
import pytest

from mer_ray.config import ExperimentConfig
from mer_ray.data.shards import Shards
from mer_ray.protocols.flat_search import FlatSpec, run_sweep, sweep_folds
from mer_ray.protocols.loso import plan_loso
from mer_ray.protocols.search_space import load_space
from tests.helpers.tiny import TINY, write_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SPACE = """
loss.lambda1: {type: loguniform, low: 0.01, high: 1.0}
model.lora_rank: {type: choice, values: [2, 4]}
"""


def test_space_file_is_checked(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss.lambda9: {type: uniform, low: 0, high: 1}\n")
    with pytest.raises(ValueError, match="lambda9"):
        load_space(bad)
    bad.write_text("loss.lambda1: {type: gaussian}\n")
    with pytest.raises(ValueError, match="loss.lambda1"):
        load_space(bad)
    exp = ExperimentConfig().with_values({"model.lora_rank": 4, "loss.lambda1": 0.2})
    assert (exp.model.lora_rank, exp.loss.lambda1) == (4, 0.2)


def _scramble_test_labels(src, dst, subjects):
    """A copy of the shards where every clip of the given subjects is labelled class 0. (A
    rotation of the labels would leave UF1 unchanged for a model that predicts one class, and
    so could hide an objective that reads test labels.)"""
    shutil.copytree(src.root, dst)
    for s in subjects:
        for f in (dst / "clips" / f"subject={s}").glob("*.parquet"):
            t = pq.read_table(f)
            i = t.schema.get_field_index("label_id")
            labels = [0] * t.num_rows
            pq.write_table(t.set_column(i, "label_id", pl.Series(labels).to_arrow()), f)


def test_trials_keep_their_creation_order_when_tune_returns_them_in_another():
    """A resumed search's results come back in another order; the table and the pick's
    tie-break (the earliest trial) go by the order Tune created the trials in, which their
    folders' names carry."""
    from types import SimpleNamespace

    from mer_ray.protocols.flat_search import creation_index

    def result(trial_id, k):
        return SimpleNamespace(metrics={"trial_id": trial_id},
                               path=f"/r/sw/tune/trial_{trial_id}_{k}_loss_lambda1=0.1_2026")

    assert [creation_index(result(t, k), 9) for t, k in (("d237", 2), ("4625", 1))] == [1, 0]
    assert creation_index(SimpleNamespace(metrics={}, path=""), 3) == 3  # no name: as given


def test_sweep_reads_validation_only(tiny_shards, tmp_path):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(SPACE)
    exp = ExperimentConfig().with_overrides(TINY)
    setup = plan_loso(tiny_shards, exp, tmp_path / "a", name="sweep")
    [fold] = sweep_folds(setup, 1)
    best, table = run_sweep(setup, FlatSpec(load_space(space_file), num_samples=2, folds=1))
    assert table.height == 2 and table["folds_done"].to_list() == [1, 1]
    assert table["val_uf1"].is_between(0, 1).all()
    assert pl.read_parquet(tmp_path / "a" / "sweep" / "trials.parquet").equals(table)
    record = json.loads((tmp_path / "a" / "sweep" / "sweep.json").read_text())
    assert record["best_params"] == best and record["sweep_folds"] == [fold.test]
    assert fold.test not in record["search_subjects"]
    # the report shows the sweep: its pick, the subjects it saw, every trial, best first
    from mer_ray.report import write_report

    text = write_report([tmp_path / "a"], tmp_path / "report").read_text()
    section = text[text.index("### Sweep `sweep`"):]
    assert ", ".join(record["search_subjects"]) in section
    assert f"validation UF1 {record['best_val_uf1']:.3f}" in section
    order = table.sort(["val_uf1", "trial"], descending=[True, False])["trial_id"].to_list()
    assert [section.index(f"| {t} |") for t in order] == sorted(
        section.index(f"| {t} |") for t in order)

    # The sweep fold's test subject with every label changed, the same configurations tried:
    # the same objective values, the same pick.
    scrambled = tmp_path / "scrambled"
    _scramble_test_labels(tiny_shards, scrambled, [fold.test])
    setup2 = plan_loso(Shards.open(scrambled), exp, tmp_path / "b", name="sweep")
    params = ["loss.lambda1", "model.lora_rank"]
    best2, table2 = run_sweep(setup2, FlatSpec(load_space(space_file), num_samples=2, folds=1,
                                               points=table.select(params).to_dicts()))
    assert table2.drop("trial_id", "trial").sort(params).equals(
        table.drop("trial_id", "trial").sort(params))
    value = {tuple(r[k] for k in params): r["val_uf1"] for r in table.to_dicts()}
    # the pick: the best value either way (ties are broken by trial order, which may differ)
    assert value[tuple(best2[k] for k in params)] == value[tuple(best[k] for k in params)] \
        == max(value.values())

    # The state a Ctrl+C can leave: a trial cut short that Tune saved as TERMINATED (its last
    # result partial, no finished record). The same search run again runs it again, keeps the
    # other trial as it was, and ends complete (before: "1 of 2 trials finished", exit 130).
    run_dir = tmp_path / "a" / "sweep"
    cut, kept = table["trial_id"].to_list()
    state_file = sorted((run_dir / "tune").glob("experiment_state-*.json"))[-1]
    state = json.loads(state_file.read_text())
    for pair in state["trial_data"]:
        trial, meta = json.loads(pair[0]), json.loads(pair[1])
        if trial["trial_id"] == cut:
            assert trial["status"] == "TERMINATED"
            meta["last_result"] = {**meta["last_result"], "done": False, "folds_done": 0,
                                   "val_uf1": 0.0}
            pair[1] = json.dumps(meta)
    state_file.write_text(json.dumps(state))
    (run_dir / "finished" / f"{cut}.json").unlink()
    kept_result = next((run_dir / "tune").glob(f"*{kept}*/result.json")).read_text()
    again, table3 = run_sweep(setup, FlatSpec(load_space(space_file), num_samples=2, folds=1))
    assert table3.height == 2 and table3["folds_done"].to_list() == [1, 1]
    assert table3.filter(pl.col("trial_id") == cut)["val_uf1"].item() == \
        table.filter(pl.col("trial_id") == cut)["val_uf1"].item()  # trained again, the same
    assert next((run_dir / "tune").glob(f"*{kept}*/result.json")).read_text() == kept_result
    assert (run_dir / "finished" / f"{cut}.json").is_file()


def test_interrupted_sweep_resumes(ray_session, synth_samm, tiny_shards, tmp_path):
    """A sweep driver stopped (SIGINT) after its first trial while the second is held at its
    start (the run's start gate lets one fold through), so the stop always lands mid-search:
    exit 130, no pick. Run again (the gate gone, the final LOSO asked for this time): the
    finished trial is kept as it was, the rest run, the table has every trial, and the pick's
    LOSO is marked search-informed."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers.resume import wait_for

    repo = Path(__file__).resolve().parent.parent
    (tmp_path / "space.yaml").write_text(SPACE)
    # One trial at a time, each needing one CPU: a trial can always be scheduled on the
    # session's two CPUs, and the first finishes while the others wait.
    write_config(tmp_path / "tiny.yaml", ("train.max_concurrent_folds=1",))
    # The session's tiny set and its shards (reused, not aligned again).
    cmd = [sys.executable, "experiments/sweep.py", "--data-root", str(synth_samm),
           "--workdir", str(Path(tiny_shards.root).parent), "--storage-path", str(tmp_path / "runs"),
           "--name", "sw", "--flat", "--num-samples", "3", "--sweep-folds", "1",
           "--space", str(tmp_path / "space.yaml"),
           "--config", str(tmp_path / "tiny.yaml"), "--frames", "4"]
    gate = tmp_path / "runs" / "sw" / "gate"
    gate.mkdir(parents=True)
    (gate / "allow").write_text("1")  # the first trial's fold goes on, the next one waits
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    # The driver's log goes to a file: a pipe nobody reads fills up and blocks the driver.
    log = tmp_path / "first.log"
    with open(log, "w") as sink:
        first = subprocess.Popen([*cmd, "--no-final"], cwd=repo, env=env, stdout=sink,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
    tune_dir = tmp_path / "runs" / "sw" / "tune"

    def finished_and_next_held():
        assert first.poll() is None, log.read_text()[-3000:]
        done = [p for p in tune_dir.glob("*/result.json") if completed(p)]
        return done and len(list(gate.glob("start-*"))) == 2

    def completed(path):  # a trial that reported its (one) sweep fold
        return path.stat().st_size > 0 and any(
            json.loads(line).get("folds_done") == 1
            for line in path.read_text().splitlines() if line.strip())

    wait_for(finished_and_next_held, "the first trial, and the second held at the gate",
             timeout=300, poll=0.5)
    os.killpg(first.pid, signal.SIGINT)
    assert first.wait(timeout=120) == 130, log.read_text()[-3000:]
    assert not (tmp_path / "runs" / "sw" / "trials.parquet").exists()
    assert "best configuration" not in log.read_text()
    done_before = {p.parent.name: p.read_text() for p in tune_dir.glob("*/result.json")
                   if completed(p)}
    assert len(done_before) == 1  # exactly the trial the gate let through

    (gate / "allow").unlink()
    # the same search resumed, now with its final LOSO (of one fold, in this process: its
    # marking is what counts)
    again = subprocess.run([*cmd, "--max-folds", "1", "--local"], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming the sweep" in again.stdout
    table = pl.read_parquet(tmp_path / "runs" / "sw" / "trials.parquet")
    assert table.height == 3 and table["error"].is_null().all()
    assert (table["folds_done"] == 1).all()
    for trial_dir, text in done_before.items():  # the finished trial was not run again
        assert (tune_dir / trial_dir / "result.json").read_text() == text
    best = json.loads((tmp_path / "runs" / "sw-best" / "summary.json").read_text())
    sweep = json.loads((tmp_path / "runs" / "sw" / "sweep.json").read_text())
    assert best["search_informed"] is True and best["sweep"] == "sw"
    assert best["search_subjects"] == sweep["search_subjects"]
    assert best["best_params"] == sweep["best_params"]
    assert "SEARCH-INFORMED" in again.stdout
    # the console: a line per trial, rounded figures, none of Tune's own banner
    assert "View detailed results" not in again.stdout
    assert "Configuration for experiment" not in again.stdout
    assert "trial" in again.stdout and "validation UF1" in again.stdout


def test_asha_clock_is_epochs(tiny_shards, tmp_path):
    """With ASHA a trial reports after every epoch, on a clock of epochs trained."""
    space_file = tmp_path / "space.yaml"
    space_file.write_text(SPACE)
    exp = ExperimentConfig().with_overrides(TINY + ["train.max_epochs=3", "train.patience=3"])
    setup = plan_loso(tiny_shards, exp, tmp_path / "runs", name="asha")
    _, table = run_sweep(setup, FlatSpec(load_space(space_file), num_samples=2, folds=2,
                                         asha=True))
    finished = table.filter(pl.col("folds_done") == 2)
    assert finished.height >= 1 and (finished["epochs_done"] == 6).all()
    for result in (tmp_path / "runs" / "asha" / "tune").glob("*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        clock = [r["epochs_done"] for r in rows]
        assert clock == sorted(clock) and len(set(clock)) == len(clock)
        if rows[-1]["folds_done"] == 2:
            assert clock == [1, 2, 3, 4, 5, 6]  # a report per epoch, not per fold
