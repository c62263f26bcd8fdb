"""The seam every experiment goes through, in this process (the Ray path: test_loso,
test_runner): fold jobs from one module, run by one function; what a fold is sent by the driver
instead of deciding itself, what it checks, and what it records."""

import hashlib
import warnings

import pytest
import torch

from mer_ray.config import ExperimentConfig, token_fields
from mer_ray.protocols.loso import plan_loso
from mer_ray.protocols.summary import summarise_run
from mer_ray.train.jobs import loso_jobs
from mer_ray.train.runner import run_jobs
from tests.helpers.shardfolder import write_shards
from tests.helpers.tiny import TINY

EXP = ExperimentConfig().with_overrides(TINY + ["train.max_epochs=2", "train.patience=2"])


@pytest.fixture
def shards(tmp_path):
    return write_shards(tmp_path / "shards")


def plan(shards, tmp_path, exp=EXP, folds=1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-init warning
        return plan_loso(shards, exp, tmp_path / "runs", name="r", max_folds=folds)


def test_the_driver_decides_where_the_backbone_comes_from(shards, tmp_path, monkeypatch):
    """The hub and its cache are probed once, when the run is planned; the folds build what
    they are sent (a fold that probed by itself could build another trunk than its driver)."""
    from mer_ray.model import encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    exp = EXP.with_values({"model.pretrained": True})  # asks the hub: there is none here
    run = plan(shards, tmp_path, exp)
    assert run.backbone == encoder.RANDOM

    def probe(*args, **kwargs):
        raise AssertionError("a fold probed for backbone weights by itself")

    monkeypatch.setattr(encoder, "_hub_reachable", probe)
    monkeypatch.setattr(encoder, "_cached_hub_file", probe)
    jobs = loso_jobs(run.plan(), run.folds)
    assert all(j.backbone == encoder.RANDOM for j in jobs)
    [record] = run_jobs(jobs, exp.train, local=True, title=None)
    assert record.pretrained is False and record.weights_source == "random init"


def test_here_trains_with_a_slots_thread_count(shards, tmp_path):
    """In this process a fold trains with train.cpus_per_fold threads, as a Ray slot does
    (with all cores instead, the same fold can end with other predictions)."""
    run = plan(shards, tmp_path)
    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        [record] = run_jobs(loso_jobs(run.plan(), run.folds), EXP.train, local=True,
                            title=None, report=lambda job, row, last: seen.append(
                                torch.get_num_threads()))
        assert seen == [1, 1] and record.threads == 1
        assert torch.get_num_threads() == 2  # this process's own setting comes back
    finally:
        torch.set_num_threads(before)


def test_fold_records_its_process_and_weights(shards, tmp_path):
    """A fold records the library versions of the process that trained it and the sha256 of
    the backbone weights file; the summary keeps both beside the driver's."""
    import timm

    from mer_ray.provenance import libraries

    src = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=28,
                            num_classes=0)
    weights = tmp_path / "w.pt"
    torch.save(src.state_dict(), weights)
    exp = EXP.with_values({"model.backbone_weights": str(weights)})
    run = plan(shards, tmp_path, exp)
    [record] = run_jobs(loso_jobs(run.plan(), run.folds), exp.train, local=True, title=None)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record.weights_sha256 == sha and record.pretrained
    assert record.libraries == libraries() and record.libraries["torch"]
    summary = summarise_run(run.view())
    prov = summary["provenance"]
    assert prov["backbone_weights"] == {"source": str(weights), "sha256": sha}
    assert prov["fold_workers"] == [libraries()] and prov["torch"] == libraries()["torch"]


def test_the_records_say_what_training_did(shards, tmp_path, monkeypatch):
    """A fold's record and its run's summary say what the training clips went through, and
    that is what happened: the augmentation runs exactly when they say it does (with the
    trunk cache and no cached views, never)."""
    from mer_ray.methods.mer import inputs as fold_inputs

    calls = []
    real = fold_inputs.augment_clips
    monkeypatch.setattr(fold_inputs, "augment_clips",
                        lambda *a: (calls.append(1), real(*a))[1])
    for values, said in (({"train.augment": True}, "flip + affine"),
                         ({"train.augment": False}, "none"),
                         ({"train.cache_trunk": True}, "none: trained from cached")):
        calls.clear()
        exp = EXP.with_values(values)
        run = plan(shards, tmp_path / said.replace(" ", "_"), exp)
        [record] = run_jobs(loso_jobs(run.plan(), run.folds), exp.train, local=True, title=None)
        summary = summarise_run(run.view())
        assert bool(calls) == record.augmented == (said == "flip + affine"), said
        assert record.cache_trunk == exp.train.cache_trunk
        assert summary["augmentation"].startswith(said)


def test_a_search_over_the_views_reads_clips():
    """A search space that changes the tokens a fold reads (the trunk, the frames, the cached
    views or the augmentation they are drawn with) cannot share the base configuration's token
    folder."""
    from mer_ray.protocols.nested_search import shares_tokens

    for key in ("train.cached_views", "train.flip_p", "train.rotate_deg", "train.translate",
                "train.scale_min", "train.augment", "train.seed", "model.backbone",
                "model.lora_blocks", "data.size"):
        assert key in token_fields()
        assert not shares_tokens({key: {}})
    assert shares_tokens({"loss.lambda1": {}, "model.lora_rank": {}, "train.lr": {}})


def test_one_device_rule(monkeypatch):
    from mer_ray.fitting import device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.use_gpus("auto") is False and device.use_gpus(False) is False
    with pytest.raises(device.DeviceError, match="train.use_gpu is true"):
        device.use_gpus(True)
    assert device.fold_device(False) == torch.device("cpu")
    monkeypatch.delenv(device.LOGICAL_GPUS, raising=False)
    with pytest.raises(device.DeviceError, match="sees no CUDA device"):
        device.fold_device(True)
    monkeypatch.setenv(device.LOGICAL_GPUS, "1")  # a simulated cluster's GPUs
    assert device.fold_device(True) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device.use_gpus("auto") is True


def test_tokens_a_process_computed_never_serve_other_clips(tmp_path):
    """Two shard folders whose clips have the same names (two synthetic sets, say): a fold on
    the second, trained after a fold on the first in the same process, predicts what it
    predicts trained alone (its tokens are its own clips', not the first folder's)."""
    from mer_ray.train import attempt as fold_run

    exp = EXP.with_values({"train.cache_trunk": True})
    a = write_shards(tmp_path / "a", seed=0)
    b = write_shards(tmp_path / "b", seed=1)

    def run(shards, where):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            planned = plan_loso(shards, exp, tmp_path / where, name="r", max_folds=1)
        [job] = loso_jobs(planned.plan(), planned.folds)
        from mer_ray.train.attempt import run_job

        return run_job(job, torch.device("cpu")).predictions

    fold_run._TOKENS.clear()
    alone = run(b, "alone")
    fold_run._TOKENS.clear()
    run(a, "first")
    after = run(b, "after")
    assert after.keys == alone.keys and after.probs == alone.probs


def test_a_clip_written_twice_is_refused_not_read_twice(shards):
    """Two passes that wrote one folder at once would leave each clip twice (a test clip
    counted twice moves the metrics): the reader refuses the folder, naming it."""
    import shutil
    from pathlib import Path

    from mer_ray.data.shards import SubjectReader, subject_dir

    folder = Path(subject_dir(shards.clips, "s2"))
    [part] = folder.glob("*.parquet")
    assert len(SubjectReader(shards.clips, ["s1", "s2"])) == 6
    shutil.copy(part, folder / "part-1.parquet")
    with pytest.raises(ValueError, match=r"subject=s2: clip\(s\) .* more than one file"):
        SubjectReader(shards.clips, ["s1", "s2"])
    with pytest.raises(ValueError, match="more than one file"):
        shards.label_counts(["s2"])
