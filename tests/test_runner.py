"""The fold runner without a cluster: slot arithmetic, epoch checkpoints that resume to the same
predictions and load with weights_only=True, failures kept to their fold, and progress lines."""

import io
import json
from dataclasses import replace

import pytest
import torch

from mer_ray.config import ExperimentConfig, TrainConfig
from mer_ray.fitting.job import SplitSource
from mer_ray.protocols.loso import plan_loso
from mer_ray.records import PAUSE, STATE, FoldRecord, Predictions
from mer_ray.storage import open_storage
from mer_ray.train.attempt import run_job
from mer_ray.train.jobs import loso_jobs
from mer_ray.train.runner import run_jobs
from mer_ray.train.slots import FoldFailed, fold_resources, slots_for
from tests.helpers.tiny import TINY

EXP = ExperimentConfig().with_overrides(TINY + ["train.max_epochs=3", "train.patience=3"])


@pytest.mark.parametrize("resources,cluster,cap,slots", [
    ({"CPU": 1}, {"CPU": 2}, 0, 2),
    ({"CPU": 1, "GPU": 0.25}, {"CPU": 16, "GPU": 1}, 0, 4),  # four folds share one GPU
    ({"CPU": 1, "GPU": 0.25}, {"CPU": 16, "GPU": 2}, 0, 8),
    ({"CPU": 1, "GPU": 0.5}, {"CPU": 3, "GPU": 4}, 0, 3),  # the CPUs run out first
    ({"CPU": 1, "GPU": 1}, {"CPU": 16, "GPU": 2}, 0, 2),
    ({"CPU": 2, "GPU": 0.1}, {"CPU": 64, "GPU": 1}, 0, 10),  # 1 / 0.1 is 9.999... in floats
    ({"CPU": 1, "fold_slot": 1}, {"CPU": 8, "fold_slot": 3}, 0, 3),
    ({"CPU": 1, "GPU": 0.25}, {"CPU": 16, "GPU": 1}, 2, 2),  # max_concurrent_folds
    ({"CPU": 4}, {"CPU": 2}, 0, 1),  # at least one, even when nothing fits
])
def test_slot_arithmetic(resources, cluster, cap, slots):
    assert slots_for(resources, cluster, cap) == slots


def test_fold_resources_from_config():
    tc = TrainConfig(cpus_per_fold=2, gpus_per_fold=0.25, fold_resources={"fold_slot": 1})
    assert fold_resources(tc, use_gpu=True) == {"CPU": 2, "GPU": 0.25, "fold_slot": 1}
    assert fold_resources(tc, use_gpu=False) == {"CPU": 2, "fold_slot": 1}
    with pytest.raises(ValueError, match="gpus_per_fold"):
        TrainConfig(gpus_per_fold=1.5)


class Killed(Exception):
    """Stands for a worker killed after its epoch checkpoint was written."""


def first_job(shards, storage, exp=EXP, folds=1, index=0):
    run = plan_loso(shards, exp, storage, name="r", max_folds=folds)
    return loso_jobs(run.plan(), run.folds)[index]


def test_interrupted_fold_resumes_to_the_same_predictions(tiny_shards, tmp_path):
    job = first_job(tiny_shards, tmp_path / "runs")
    reference = run_job(first_job(tiny_shards, tmp_path / "ref"), torch.device("cpu"))

    def die_in_second_epoch(job, row, last):  # after the first epoch's checkpoint
        if row["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        run_job(job, torch.device("cpu"), report=die_in_second_epoch)
    storage = open_storage(job.storage)
    blob = storage.read_bytes(job.checkpoint_dir, STATE)
    # the checkpoint is tensors and plain values only: loadable without running any code
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    assert state["fold"]["epoch"] == 1 and set(state) == {"model", "optimizer", "fold"}
    assert not storage.exists(job.record_dir, "fold.json")

    resumed = run_job(job, torch.device("cpu"))
    attempts = resumed.record.attempts
    assert [a["start_epoch"] for a in attempts] == [0, 1]
    assert resumed.record.epochs_run == 3 and len(resumed.record.history) == 3
    assert resumed.predictions.keys == reference.predictions.keys
    for p, q in zip(resumed.predictions.probs, reference.predictions.probs):
        assert p == pytest.approx(q, abs=1e-5)
    # stored: the records, and no checkpoint left behind
    rec = FoldRecord.from_json(storage.read_bytes(job.record_dir, "fold.json"))
    assert rec.attempts == attempts and rec.test_subject == job.key
    assert Predictions.from_json(storage.read_bytes(job.record_dir, "predictions.json")) \
        == resumed.predictions
    assert not storage.exists(job.checkpoint_dir, STATE)
    blob = torch.load(io.BytesIO(storage.read_bytes(job.record_dir, "weights.pt")),
                      weights_only=True)
    assert set(blob) == {"state", "frozen_fingerprint"}


def test_pause_file_holds_a_fold_at_its_committed_checkpoint(tiny_shards, tmp_path):
    """While ``pause`` exists beside a fold's checkpoint the fold goes no further than the
    checkpoint it has just committed; deleting the file lets it finish."""
    import threading

    from tests.helpers.resume import hold, wait_for

    job = first_job(tiny_shards, tmp_path / "runs")
    storage = open_storage(job.storage)
    gate = hold(tmp_path / "runs" / "r" / "train" / f"fold-{job.key}")
    paused = []  # whether the pause file existed as each epoch ended (before its checkpoint)
    out = {}

    def report(job, row, last):
        paused.append(storage.exists(job.checkpoint_dir, PAUSE))

    thread = threading.Thread(target=lambda: out.update(r=run_job(job, torch.device("cpu"),
                                                                   report=report)))
    thread.start()
    wait_for(lambda: storage.exists(job.checkpoint_dir, STATE), "the first checkpoint")
    gate.unlink()
    thread.join(timeout=300)
    # the first epoch ended while paused; no later epoch ran before the file was gone
    assert paused == [True, False, False]
    assert out["r"].record.epochs_run == 3 and len(out["r"].record.attempts) == 1


def test_failed_fold_does_not_stop_the_others(tiny_shards, tmp_path, capsys):
    exp = EXP.with_values({"train.max_epochs": 1})
    good = first_job(tiny_shards, tmp_path / "runs", exp, folds=2, index=1)
    bad = first_job(tiny_shards, tmp_path / "runs", exp, folds=2, index=0)
    # its test subject's clips are not there
    bad = replace(bad, sources={**bad.sources,
                                "test": SplitSource(bad.sources["test"].root, ("nobody",))})
    with pytest.raises(FoldFailed, match=r"(?s)1 fold\(s\) failed \(006\).*nobody"):
        run_jobs([bad, good], exp.train, local=True, title="r")
    out = capsys.readouterr().out
    assert "fold 006: FAILED" in out and "[2/2] fold 007: test UF1" in out
    storage = open_storage(good.storage)
    assert storage.exists(good.record_dir, "fold.json")
    assert not storage.exists(bad.record_dir, "fold.json")
    assert json.loads(storage.read_bytes(good.record_dir, "fold.json"))["test_subject"] == "007"
