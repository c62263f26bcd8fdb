"""LOSO through Ray: a tiny 2-fold run, leakage guards on its records, a rerun that retrains
nothing. (A run interrupted mid-way is in test_faults.py.)"""

import json
from pathlib import Path

import polars as pl
import polars.testing  # noqa: F401
import pytest

from mer_ray.config import ExperimentConfig
from mer_ray.data.shards import Shards
from mer_ray.protocols.loso import plan_loso, train_folds
from mer_ray.protocols.summary import summarise_run
from mer_ray.train.folder import ExperimentMismatch
from tests.helpers.tiny import TINY as BASE

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = BASE + ["train.max_epochs=2"]


def run(shards, storage, overrides, max_folds=2, name="tiny"):
    exp = ExperimentConfig().with_overrides(TINY + overrides)
    run = plan_loso(shards, exp, storage, name=name, max_folds=max_folds)
    trained = [r.test_subject for r in train_folds(run)]
    return run, sorted(trained), summarise_run(run.view())


@pytest.fixture(scope="module")
def two_folds(tiny_shards, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    return storage, run(tiny_shards, storage, [])


def test_two_fold_loso_records_everything(two_folds):
    storage, (setup, trained, summary) = two_folds
    assert trained == ["006", "007"]
    preds = pl.read_parquet(storage / "tiny" / "predictions.parquet")
    assert preds.height == 6 and set(preds["fold"]) == {"006", "007"}
    assert (preds["fold"] == preds["subject"]).all()  # a fold predicts its own subject only
    assert preds["probabilities"].list.len().unique().to_list() == [3]
    saved = json.loads((storage / "tiny" / "summary.json").read_text())
    assert saved["metrics"]["primary"].startswith("aggregate")
    for key in ("uf1", "uar", "per_fold_mean_uf1", "per_fold_mean_uar", "confusion_matrix",
                "per_class_recall"):
        assert key in saved["metrics"]
    assert saved["pretrained"] is False and saved["synthetic"] is True
    assert saved["seed"] == 0 and saved["config_hash"] == setup.exp.hash()
    assert saved["code_version"] and saved["config"]["train"]["max_epochs"] == 2
    assert all(f["worker_seconds"] > 0 and f["node_ip"] for f in saved["folds"])
    assert sum(sum(r) for r in saved["metrics"]["confusion_matrix"]) == 6


def test_fold_records_keep_subjects_apart(two_folds):
    storage, (run, _, _) = two_folds
    for f in run.folds:
        fold = json.loads((storage / "tiny" / "folds" / f.test / "fold.json").read_text())
        train, val = set(fold["train_subjects"]), set(fold["val_subjects"])
        assert fold["test_subject"] not in train | val and not train & val
        assert (storage / "tiny" / "folds" / f.test / "weights.pt").is_file()  # for checkpoints
        assert len(fold["history"]) == fold["epochs_run"] == 2
        assert all("val_uf1" in h for h in fold["history"])  # selection used validation only


def test_rerun_resumes_without_retraining(two_folds, tiny_shards):
    storage, (_, _, first) = two_folds
    before = pl.read_parquet(storage / "tiny" / "predictions.parquet")
    setup, trained, again = run(tiny_shards, storage, [])
    assert trained == [] and setup.todo() == []
    pl.testing.assert_frame_equal(before,
                                  pl.read_parquet(storage / "tiny" / "predictions.parquet"))
    assert again["metrics"]["uf1"] == first["metrics"]["uf1"]


def test_same_name_other_config_refused(two_folds, tiny_shards):
    storage, _ = two_folds
    exp = ExperimentConfig().with_overrides(TINY + ["train.lr=0.01"])
    with pytest.raises(ExperimentMismatch, match="another --name"):
        plan_loso(tiny_shards, exp, storage, name="tiny")


def test_run_on_shards_aligned_from_other_data_refused(tiny_shards, tmp_path):
    """Same folder, same config, but the clips were aligned again from other data: the run's
    finished folds would not belong to them, so it does not resume."""
    import shutil

    copy = tmp_path / "shards"
    shutil.copytree(Path(tiny_shards.root) / "clips", copy / "clips")
    shutil.copy(Path(tiny_shards.root) / "prepare.json", copy / "prepare.json")
    exp = ExperimentConfig().with_overrides(TINY)
    plan_loso(Shards.open(copy), exp, tmp_path / "runs", name="r")
    plan_loso(Shards.open(copy), exp, tmp_path / "runs", name="r")  # same data: resumes
    meta = json.loads((copy / "prepare.json").read_text())
    meta["shards_id"] = "0" * 16
    (copy / "prepare.json").write_text(json.dumps(meta))
    with pytest.raises(ExperimentMismatch, match="shards_id"):
        plan_loso(Shards.open(copy), exp, tmp_path / "runs", name="r")


def test_slots_start_before_their_jobs_and_end_when_none_come(tiny_shards, tmp_path):
    """A slot pool starts its Train runs first and takes jobs submitted later (the LOSO driver
    computes the trunk tokens meanwhile); a pool left without jobs ends its slots."""
    import time

    import ray

    from mer_ray.train.jobs import loso_jobs
    from mer_ray.train.slots import SlotPool

    run = plan_loso(tiny_shards, ExperimentConfig().with_overrides(TINY), tmp_path / "runs",
                    name="pool", max_folds=1)
    folder = run.folder
    with SlotPool(run.exp.train, 1, folder.ray_dir, folder.logs_dir, use_gpu=False) as pool:
        deadline = time.monotonic() + 300  # a generous bound on a Train run's start
        while ray.get(pool.queue.idle_slots.remote()) != [0]:
            assert time.monotonic() < deadline, "the slot never asked for a job"
            time.sleep(0.2)
        pool.submit(loso_jobs(run.plan(), run.folds))
        assert [r.test_subject for r in pool.wait()] == ["006"]
    assert run.todo() == []

    with SlotPool(run.exp.train, 1, folder.ray_dir, None, use_gpu=False) as idle:
        pass
    assert idle.wait() == [] and not any(t.is_alive() for t in idle.threads)
