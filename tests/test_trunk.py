"""Shared frozen-trunk tokens: computed once by a Ray Data pass, equal to what a fold would
compute itself, reused, keyed by the trunk, and refused by a fold whose trunk differs."""

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from mer_ray.config import ExperimentConfig
from mer_ray.data.folds import FoldSplit
from mer_ray.data.prepare import PrepareConfig, prepare_shards
from mer_ray.data.shards import CLIP_COLUMNS, TOKEN_COLUMNS, Shards, SubjectReader
from mer_ray.fitting.job import FoldJob, SplitSource
from mer_ray.methods.mer.fit import fit_fold
from mer_ray.methods.mer.inputs import FoldInputs
from mer_ray.methods.mer.tokens import ensure_trunk_tokens
from mer_ray.model.build import TrunkMismatch, build_model
from mer_ray.model.encoder import RANDOM
from mer_ray.model.inputs import clips_to_tensor
from tests.helpers.tiny import TINY

pytestmark = [pytest.mark.ray, pytest.mark.slow]
EXP = ExperimentConfig().with_overrides(TINY + ["train.cache_trunk=true"])
CLASSES = ("negative", "positive", "surprise")


def ensure(shards, exp, **kw):
    """(token folder, fingerprint), or None: the trunk tokens of a random-init trunk."""
    shards = shards if isinstance(shards, Shards) else Shards.open(shards)
    got = ensure_trunk_tokens(shards, exp, RANDOM, **kw)
    return None if got is None else (Path(got.root), got.fingerprint)


def fold_job(exp, sources, split, tokens_root, fingerprint, counts=(1, 1, 1)):
    from mer_ray.fitting.job import TokenSource
    from mer_ray.methods import method_named

    return FoldJob("006", exp, CLASSES, split, sources, counts, RANDOM,
                   tokens=TokenSource(str(tokens_root), fingerprint, exp.train.views_id),
                   method=method_named("mer"))


@pytest.fixture(scope="module")
def tokens(tiny_shards, ray_session):
    return ensure(tiny_shards, EXP, where="ray")  # the Ray Data pass


def test_tokens_are_the_trunk_of_each_clip(tokens, tiny_shards):
    root, fingerprint = tokens
    marker = json.loads((root / "tokens.json").read_text())
    assert marker["fingerprint"] == fingerprint and marker["clips"] == 9
    subjects = ("006", "007", "008")
    shared = SubjectReader(root, subjects, TOKEN_COLUMNS)
    frames = SubjectReader(tiny_shards.clips, subjects, CLIP_COLUMNS)
    order = {k: i for i, k in enumerate(zip(frames.columns["subject"], frames.columns["clip"]))}
    idx = [order[k] for k in zip(shared.columns["subject"], shared.columns["clip"])]
    assert sorted(idx) == list(range(9))
    assert (shared.columns["label_id"] == frames.columns["label_id"][idx]).all()
    net = build_model(EXP, 3, RANDOM).eval()
    with torch.no_grad():
        own = net.trunk_tokens(clips_to_tensor(frames.columns["frames"][idx])).half().numpy()
    assert shared.columns["tokens"].dtype == np.float16
    assert shared.columns["tokens"].shape == own.shape  # (clips, T, 1 + patches, D)
    np.testing.assert_allclose(shared.columns["tokens"].astype(np.float32),
                               own.astype(np.float32), atol=2e-2, rtol=1e-2)


def test_pass_in_this_process_writes_the_same_tokens(tokens, tiny_shards, tmp_path):
    """A small pass runs in the driver ("auto"): the same folder layout and the same tokens as
    the Ray Data pass."""
    root, fingerprint = tokens
    copy = tmp_path / "shards"
    shutil.copytree(tiny_shards.root, copy, ignore=shutil.ignore_patterns("trunk"))
    here, same = ensure(copy, EXP)  # auto: tiny, so in this process
    assert same == fingerprint
    assert json.loads((here / "tokens.json").read_text())["computed"] == "here"
    subjects = ("006", "007", "008")
    a = SubjectReader(root, subjects, TOKEN_COLUMNS).columns
    b = SubjectReader(here, subjects, TOKEN_COLUMNS).columns
    assert list(a["clip"]) == list(b["clip"]) and (a["label_id"] == b["label_id"]).all()
    assert b["tokens"].dtype == np.float16 and b["tokens"].shape == a["tokens"].shape
    np.testing.assert_allclose(a["tokens"].astype(np.float32), b["tokens"].astype(np.float32),
                               atol=1e-2)


def test_tokens_reused_and_keyed_by_the_trunk(tokens, tiny_shards):
    root, fingerprint = tokens
    stamp = (root / "tokens.json").stat().st_mtime_ns
    assert ensure(tiny_shards, EXP, compute=False) == (root, fingerprint)
    assert ensure(tiny_shards, EXP) == (root, fingerprint)
    assert (root / "tokens.json").stat().st_mtime_ns == stamp  # not computed again
    # Another seed is another random trunk: other tokens, in another folder.
    other = EXP.with_values({"train.seed": 1})
    assert ensure(tiny_shards, other, compute=False) is None
    # Training settings outside the trunk share the tokens.
    same_trunk = EXP.with_values({"train.lr": 1e-2, "loss.lambda1": 0.3})
    assert ensure(tiny_shards, same_trunk, compute=False) == (root, fingerprint)


def test_fold_refuses_tokens_of_another_trunk(tokens, tiny_shards):
    root, fingerprint = tokens
    split = FoldSplit("006", ("007",), ("008",))
    sources = {"test": SplitSource(str(root), ("006",)), "val": SplitSource(str(root), ("007",)),
               "train": SplitSource(str(root), ("008",))}

    def job(exp):
        return fold_job(exp, sources, split, root, fingerprint)

    with pytest.raises(TrunkMismatch, match="006.*random init.*libraries"):
        fit_fold(job(EXP.with_values({"train.seed": 1})), torch.device("cpu"))
    result = fit_fold(job(EXP), torch.device("cpu"))
    assert result.record.trunk_tokens == fingerprint[:16] and len(result.predictions.keys) == 3


def test_fold_refuses_a_token_folder_without_its_views(tokens):
    """A configuration with cached views (say a search trial's cached_views=3) pointed at the
    folder of the plain tokens (or of other views) is refused, not trained on one view."""
    root, fingerprint = tokens
    split = FoldSplit("006", ("007",), ("008",))
    sources = {"test": SplitSource(str(root), ("006",)), "val": SplitSource(str(root), ("007",)),
               "train": SplitSource(str(root), ("008",))}
    with pytest.raises(TrunkMismatch, match="views v3-"):
        fit_fold(fold_job(VIEWS, sources, split, root, fingerprint), torch.device("cpu"))


def test_tokens_of_clips_aligned_again_are_not_reused(tokens, tiny_shards, tmp_path):
    """Shards aligned again from other data carry another shards_id: the old tokens are stale."""
    root, fingerprint = tokens
    copy = tmp_path / "shards"
    shutil.copytree(tiny_shards.root, copy)
    assert ensure(copy, EXP, compute=False) == (copy / root.relative_to(tiny_shards.root),
                                                fingerprint)
    meta = json.loads((copy / "prepare.json").read_text())
    assert meta["shards_id"]
    meta["shards_id"] = "0" * 16  # what aligning other data into this folder leaves behind
    (copy / "prepare.json").write_text(json.dumps(meta))
    assert ensure(copy, EXP, compute=False) is None
    # and aligning again removes what was derived from the old clips
    manifest = pl.read_parquet(copy / "manifest.parquet")
    prepare_shards(manifest.head(0), copy, PrepareConfig(frames=4, size=28),
                   class_names=("negative", "positive", "surprise"), overwrite=True)
    assert not (copy / "trunk").exists() and not (copy / "clips").exists()
    assert json.loads((copy / "prepare.json").read_text())["shards_id"] != meta["shards_id"]


VIEWS = EXP.with_values({"train.cached_views": 3})
SUBJECTS = ("006", "007", "008")


def _by_key(columns: dict) -> dict[str, int]:
    return {f"{s}/{c}": i for i, (s, c) in enumerate(zip(columns["subject"], columns["clip"]))}


def test_augmented_views_are_cached_with_the_tokens(tokens, tiny_shards, tmp_path):
    """train.cached_views: each clip's views are the trunk tokens of its augmentation draws,
    in a folder of their own, the same from the Ray Data pass and from this process."""
    from mer_ray.methods.mer.augment import clip_views

    root, fingerprint = tokens
    vroot, same = ensure(tiny_shards, VIEWS, where="ray")
    assert same == fingerprint and vroot != root
    assert ensure(tiny_shards, EXP, compute=False) == (root, fingerprint)
    assert json.loads((vroot / "tokens.json").read_text())["cached_views"] == 3
    got = SubjectReader(vroot, SUBJECTS, (*TOKEN_COLUMNS, "views")).columns
    plain = SubjectReader(root, SUBJECTS, TOKEN_COLUMNS).columns
    order = _by_key(plain)
    idx = [order[k] for k in _by_key(got)]
    np.testing.assert_allclose(got["tokens"].astype(np.float32),
                               plain["tokens"][idx].astype(np.float32), atol=2e-2)
    views = got["views"].astype(np.float32)
    assert views.shape == (9, 2, *plain["tokens"].shape[1:])

    frames = SubjectReader(tiny_shards.clips, SUBJECTS, CLIP_COLUMNS).columns
    at = _by_key(frames)
    keys = list(_by_key(got))
    net = build_model(VIEWS, 3, RANDOM).eval()
    clips = clips_to_tensor(frames["frames"][[at[k] for k in keys]])
    with torch.no_grad():
        own = net.trunk_tokens(clip_views(clips, keys, VIEWS.train).flatten(0, 1)).numpy()
    np.testing.assert_allclose(views, own.reshape(views.shape), atol=2e-2, rtol=1e-2)
    # two draws of the augmentation: unlike the clip and unlike each other
    tok = got["tokens"].astype(np.float32)
    assert np.abs(views[:, 0] - tok).mean() > 0.05 and np.abs(views[:, 0] - views[:, 1]).mean() > 0.05

    copy = tmp_path / "shards"
    shutil.copytree(tiny_shards.root, copy, ignore=shutil.ignore_patterns("trunk"))
    here, _ = ensure(copy, VIEWS)  # tiny: in this process
    assert json.loads((here / "tokens.json").read_text())["computed"] == "here"
    local = SubjectReader(here, SUBJECTS, (*TOKEN_COLUMNS, "views")).columns
    assert list(_by_key(local)) == keys
    np.testing.assert_allclose(local["views"].astype(np.float32), views, atol=1e-2)


def test_training_sees_views_and_validation_never(tokens, tiny_shards):
    """Each epoch shows every training clip through one of its views (the draw a function of
    seed and epoch); validation clips are read without views and seen as aligned."""
    from mer_ray.methods.mer.fit import _read_columns

    vroot, fingerprint = ensure(tiny_shards, VIEWS)
    split = FoldSplit("006", ("007",), ("008",))
    sources = {name: SplitSource(str(vroot), subjects) for name, subjects in
               (("train", ("007", "008")), ("val", ("006",)))}
    job = fold_job(VIEWS, sources, split, vroot, fingerprint, (2, 2, 2))
    assert _read_columns(job, "train")[-1] == "views" and "views" not in _read_columns(job, "val")
    readers = {name: src.reader(_read_columns(job, name)) for name, src in sources.items()}
    data = FoldInputs(build_model(VIEWS, 3, RANDOM), VIEWS, readers, torch.device("cpu"))
    keys, _, tok, views = data.cached["train"]
    assert views is not None and views.shape[1] == 2 and data.cached["val"][3] is None

    def shown(epoch):
        out = {}
        for inp, _, k in data.batches("train", epoch):
            for key, t in zip(k, inp["tokens"]):
                i = keys.index(key)
                choices = [tok[i], *views[i]]
                out[key] = next(v for v, c in enumerate(choices) if torch.equal(t, c))
        return out

    seen = [shown(e) for e in range(4)]
    assert seen[0] == shown(0)  # the same draw again
    assert any(v > 0 for s in seen for v in s.values())  # augmented views are shown
    assert any(v == 0 for s in seen for v in s.values())  # and the clip as aligned
    assert len({tuple(sorted(s.items())) for s in seen}) > 1  # another draw each epoch
    vkeys, _, vtok, _ = data.cached["val"]
    for inp, _, k in data.batches("val"):
        for key, t in zip(k, inp["tokens"]):
            assert torch.equal(t, vtok[vkeys.index(key)])

    result = fit_fold(job, torch.device("cpu"))
    assert result.record.augmented and result.record.cache_trunk
