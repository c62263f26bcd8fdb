"""A fold worker killed mid-training, with results stored through a pyarrow filesystem URI
(file://) instead of a plain folder. (A driver killed mid-experiment: test_zz_job_submit.py.)

The run is compared with an undisturbed in-process run of the same configuration (the
multi-node test shows in-process and Ray training give the same predictions)."""

import json
import os
import threading
import time

import pytest

from mer_ray.config import ExperimentConfig
from mer_ray.protocols.loso import plan_loso, train_folds
from tests.helpers.resume import (
    committed_epoch,
    hold,
    no_partial_files,
    reference,
    same_predictions,
    train_workers,
    wait_for,
)
from tests.helpers.tiny import FAULT, TINY

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_killed_fold_worker_resumes_from_its_checkpoint(tiny_shards, ray_session, tmp_path):
    exp = ExperimentConfig().with_overrides(TINY + FAULT)
    runs = tmp_path / "runs"
    runs.mkdir()
    uri = runs.as_uri()  # file:///...: storage through pyarrow's filesystem layer
    assert uri.startswith("file://")
    setup = plan_loso(tiny_shards, exp, uri, name="fault", max_folds=1)
    gate = hold(runs / "fault" / "train" / "fold-006")
    outcome = {}

    def drive():
        try:
            outcome["trained"] = [r.test_subject for r in train_folds(setup)]
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=drive)
    thread.start()

    # this session's Ray was started by this process
    worker = wait_for(lambda: train_workers(os.getpid()), "the fold's Ray Train worker",
                      poll=0.2)[0]
    wait_for(lambda: committed_epoch(runs / "fault" / "train" / "fold-006"),
             "the first committed epoch checkpoint")
    worker.kill()  # SIGKILL, while it is held at its first checkpoint: the fold is unfinished
    killed_at = time.time()
    gate.unlink()  # the restarted worker goes on
    thread.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["trained"] == ["006"]

    fold = json.loads((runs / "fault" / "folds" / "006" / "fold.json").read_text())
    attempts = fold["attempts"]
    assert len(attempts) == 2, attempts  # the kill happened before the fold finished
    assert attempts[1]["start_epoch"] >= 1  # continued from a checkpoint, not from scratch
    assert attempts[1]["started_at"] > killed_at
    assert fold["epochs_run"] == 3 and len(fold["history"]) == 3
    got = json.loads((runs / "fault" / "folds" / "006" / "predictions.json").read_text())
    same_predictions(got, reference(tiny_shards, exp, tmp_path / "ref", 1)["006"])
    no_partial_files(runs)


def test_ctrl_c_says_what_is_kept_at_once_and_exits_130(tiny_shards, ray_session, tmp_path):
    """Ctrl+C on a driver training on Ray: the first thing it prints says what is kept, then
    Ray's stop is announced, and it exits 130; the held fold's checkpoint stays for a resume.
    (How soon the line comes is a figure of benchmarks/stress_resume.py, not a timed test.)"""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers.tiny import write_config

    repo = Path(__file__).resolve().parent.parent
    config = write_config(tmp_path / "fault.yaml", tuple(FAULT))
    runs = tmp_path / "runs"
    hold(runs / "sig" / "train" / "fold-006")
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    log = tmp_path / "driver.log"
    with open(log, "w") as sink:
        driver = subprocess.Popen(
            [sys.executable, "-m", "mer_ray", "train", "--shards", str(tiny_shards.root),
             "--config", str(config), "--storage-path", str(runs), "--name", "sig",
             "--max-folds", "1"], cwd=repo, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)
    def alive():
        assert driver.poll() is None, log.read_text()[-3000:]

    wait_for(lambda: committed_epoch(runs / "sig" / "train" / "fold-006"),
             "the first committed epoch checkpoint", alive=alive)
    before = log.read_text()
    os.killpg(driver.pid, signal.SIGINT)
    assert driver.wait(timeout=120) == 130, log.read_text()[-3000:]
    after = log.read_text()[len(before):].splitlines()
    assert after[0].startswith("mer-ray train: interrupted: finished folds are stored"), after
    assert any("stopping Ray's workers" in line for line in after[1:]), after
    assert committed_epoch(runs / "sig" / "train" / "fold-006")
