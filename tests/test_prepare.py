"""Shards through Ray Data: round trip, rejections with reasons, layouts, fold disjointness."""

import json
import shutil

import cv2
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from mer_ray.cli import main as cli
from mer_ray.data.folds import FoldSplit, LeakageError, loso_splits
from mer_ray.data.frames import index_frames
from mer_ray.data.labels import class_names
from mer_ray.data.manifest import build_manifest, included
from mer_ray.data.prepare import PrepareConfig, prepare_clip, prepare_shards
from mer_ray.data.shards import SubjectReader, clips_root, shard_subjects, subject_labels
from mer_ray.data.synth import generate

pytestmark = pytest.mark.ray
CFG = PrepareConfig(frames=4, size=56)


@pytest.fixture(scope="module")
def shards(synth_samm, ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    m = build_manifest("samm", synth_samm, "3class")
    res = prepare_shards(m, out, CFG, class_names=class_names("samm", "3class"), workers=2)
    return out, m, res


def test_shards_round_trip(shards):
    out, manifest, res = shards
    assert res.clips == 9 and res.rejected.height == 0
    assert shard_subjects(out) == ["006", "007", "008"]
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["class_names"] == ["negative", "positive", "surprise"]
    assert meta["config"]["frames"] == 4 and meta["code_version"]
    table = pq.read_table(out / "clips" / "subject=007")
    assert table.num_rows == 3  # one file per subject, not one per clip
    assert len(list((out / "clips" / "subject=007").iterdir())) == 1
    row = manifest.filter((pl.col("subject") == "007") & (pl.col("label") == "positive")).row(
        0, named=True)
    stored = [r for r in table.to_pylist() if r["clip"] == row["clip"]][0]
    direct = prepare_clip(row, CFG)
    frames = table.column("frames").combine_chunks().to_numpy_ndarray()
    pos = table.column("clip").to_pylist().index(row["clip"])
    assert frames.shape == (3, 4, 56, 56, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[pos], direct["frames"])
    assert list(stored["frame_numbers"]) == list(direct["frame_numbers"])
    assert stored["frame_numbers"][0] == row["onset"] and stored["frame_numbers"][-1] == \
        row["offset"]
    assert stored["label_id"] == 1 and all(stored["face_found"])


def test_fold_reader_disjoint_and_pruned(shards):
    """Each split's reader returns the clips of its own subjects only. The check goes by the
    clips' names as the files hold them, matched to their subject through the manifest (the
    reader's ``subject`` column is written from the partition it opened, so it alone could not
    show a reader that opened the wrong partition)."""
    out, manifest, _ = shards
    owner = dict(zip(manifest["clip"].to_list(), manifest["subject"].to_list()))
    labels = subject_labels(out)
    folds = loso_splits(labels, n_val=1, seed=0)
    assert [f.test for f in folds] == ["006", "007", "008"]
    assert folds == loso_splits(labels, n_val=1, seed=0)  # seeded
    for split in folds:
        # each split reads its own subjects' partitions only
        readers = {name: SubjectReader(clips_root(out), subjects, ["subject", "clip"])
                   for name, subjects in (("train", split.train), ("val", split.val),
                                          ("test", (split.test,)))}
        seen = {name: {owner[c] for c in r.columns["clip"]} for name, r in readers.items()}
        assert seen == {"train": set(split.train), "val": set(split.val), "test": {split.test}}
        want = {name: sorted(c for c, s in owner.items() if s in subjects)
                for name, subjects in (("train", split.train), ("val", split.val),
                                       ("test", (split.test,)))}
        assert {name: sorted(r.columns["clip"]) for name, r in readers.items()} == want
        assert len(readers["test"]) == 3
        with pytest.raises(FileNotFoundError, match="nobody"):
            SubjectReader(clips_root(out), ("nobody",))


def test_overlapping_subjects_refused():
    with pytest.raises(LeakageError, match="006"):
        FoldSplit(test="006", val=("007",), train=("006", "008"))
    with pytest.raises(LeakageError):
        FoldSplit(test="006", val=("007",), train=("007", "008"))


def test_validation_draw_is_stratified():
    labels = {"a": {0}, "b": {0}, "c": {1}, "d": {2}, "e": {0, 1, 2}, "f": {0}}
    for f in loso_splits(labels, n_val=2, seed=5):
        train_cls = set().union(*(labels[s] for s in f.train))
        assert train_cls == set().union(*(labels[s] for s in labels if s != f.test))
        assert f.test not in f.val + f.train and len(f.val) == 2


def test_existing_shards_are_not_overwritten(shards, synth_samm):
    out, manifest, _ = shards
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_shards(manifest, out, CFG, class_names=class_names("samm", "3class"))


def test_a_prepare_that_dies_leaves_no_shard_folder(shards, tmp_path, monkeypatch):
    """``prepare --overwrite`` removes ``prepare.json`` before the old clips: a prepare killed
    half-way leaves clips that no reader takes for shards, old or new."""
    import mer_ray.data.prepare as prepare
    from mer_ray.data.shards import Shards, is_shard_folder

    out, manifest, _ = shards
    copy = tmp_path / "shards"
    shutil.copytree(out, copy)
    assert is_shard_folder(copy)

    def dies(*args, **kwargs):
        raise RuntimeError("killed while aligning")

    monkeypatch.setattr(prepare, "_align_all", dies)
    with pytest.raises(RuntimeError, match="killed"):
        prepare_shards(manifest, copy, CFG, class_names=class_names("samm", "3class"),
                       overwrite=True)
    assert not is_shard_folder(copy)
    with pytest.raises(FileNotFoundError, match="not a shard folder"):
        Shards.open(copy)


def test_bad_clips_rejected_with_reasons(synth_samm, ray_session, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synth_samm, root)
    m = build_manifest("samm", root, "3class")
    rows = included(m).sort("clip").to_dicts()
    # 1: a corrupt image among the sampled frames
    corrupt = index_frames(rows[0]["source"]).files
    first = [f for f in corrupt if f.endswith(f"{rows[0]['onset']:05d}.jpg")][0]
    with open(first, "wb") as fh:
        fh.write(b"\xff\xd8 broken")
    # 2: no face anywhere in the clip
    for f in index_frames(rows[1]["source"]).files:
        cv2.imwrite(f, np.full((64, 64), 127, np.uint8))
    # 3: frames deleted after the manifest was made
    shutil.rmtree(rows[2]["source"])
    out = tmp_path / "shards"
    res = prepare_shards(m, out, CFG, class_names=class_names("samm", "3class"))
    assert res.clips == 6
    rej = pl.read_parquet(out / "rejected.parquet")
    reasons = {r["clip"]: r for r in rej.iter_rows(named=True)}
    assert reasons[rows[0]["clip"]]["reason"] == "unreadable frames"
    assert first in reasons[rows[0]["clip"]]["notes"]
    assert reasons[rows[1]["clip"]]["reason"] == "no face found"
    assert reasons[rows[2]["clip"]]["reason"] == "frames missing on disk"
    assert set(rej["stage"]) == {"prepare"}
    # a manifest-stage exclusion shows up too, and --strict fails the command
    rc = cli(["prepare", "--dataset", "samm", "--root", str(root), "--protocol", "5class",
              "--out", str(tmp_path / "s2"), "--frames", "4", "--size", "56", "--strict"])
    assert rc == 3
    rej2 = pl.read_parquet(tmp_path / "s2" / "rejected.parquet")
    assert set(rej2["stage"]) == {"manifest", "prepare"}


def test_short_clip_repeats_frames_and_video_source(synth_samm, tmp_path):
    m = build_manifest("samm", synth_samm, "3class")
    row = included(m).row(0, named=True)
    idx = index_frames(row["source"])
    span = idx.span(row["onset"], row["offset"])
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (256, 256))
    for p in span[:3]:
        w.write(cv2.imread(idx.files[p]))
    w.release()
    video_row = dict(row, source=str(path), onset=0, offset=2)
    out = prepare_clip(video_row, PrepareConfig(frames=8, size=56))
    assert out["rejected_reason"] == ""
    assert out["frame_numbers"].tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
    assert out["frames"].shape == (8, 56, 56, 3)


@pytest.mark.parametrize("layout", ["casme2", "smic"])
def test_prepare_each_layout(layout, ray_session, tmp_path):
    generate(tmp_path / "d", layout, subjects=2, clips_per_class=1, seed=2, progress=False)
    rc = cli(["prepare", "--dataset", layout, "--root", str(tmp_path / "d"), "--protocol",
              "3class", "--out", str(tmp_path / "s"), "--frames", "4", "--size", "56"])
    assert rc == 0
    assert len(shard_subjects(tmp_path / "s")) == 2
    meta = json.loads((tmp_path / "s" / "prepare.json").read_text())
    assert meta["clips"] == 6 and meta["synthetic"] is True
