"""Every run writes its folds beside its predictions, with a hash of their content that is the
same for the same data and seed wherever the run is made."""

import json

from mer_ray.config import ExperimentConfig
from mer_ray.data.folds import fold_file
from mer_ray.protocols.loso import plan_loso
from tests.helpers.shardfolder import write_shards
from tests.helpers.tiny import TINY

EXP = ExperimentConfig().with_overrides(TINY)


def folds_of(tmp_path, where: str, exp=EXP, name="run") -> dict:
    shards = write_shards(tmp_path / where / "shards", per_class=2)
    plan_loso(shards, exp, tmp_path / where / "runs", name=name)
    return json.loads((tmp_path / where / "runs" / name / "folds.json").read_text())


def test_a_run_writes_its_folds_with_every_clip_and_label(tmp_path):
    got = folds_of(tmp_path, "a")
    assert [f["test"] for f in got["folds"]] == ["s1", "s2", "s3", "s4"]
    for f in got["folds"]:
        assert len(f["val"]) == 1 and sorted([f["test"], *f["val"], *f["train"]]) == \
            ["s1", "s2", "s3", "s4"]
    assert sorted(got["clips"]) == ["s1", "s2", "s3", "s4"]
    # write_shards: two clips of each of the three classes per subject
    for clips in got["clips"].values():
        assert sorted(c["label"] for c in clips) == sorted(["negative", "positive",
                                                            "surprise"] * 2)
    assert got["dataset"] == "samm" and got["seed"] == 0 and len(got["hash"]) == 16


def test_the_same_data_and_seed_give_the_same_hash_anywhere(tmp_path):
    """Two folders (as two clones on two machines would have), other run names: one hash;
    another seed draws other validation subjects and gets another hash."""
    a, b = folds_of(tmp_path, "a"), folds_of(tmp_path, "b", name="other-name")
    assert a == b
    seeded = folds_of(tmp_path, "c", EXP.with_overrides(["train.seed=5"]))
    assert [f["val"] for f in seeded["folds"]] != [f["val"] for f in a["folds"]]
    assert seeded["hash"] != a["hash"]


def test_the_hash_covers_the_labels():
    fold = fold_file([], ["s1/c1", "s2/c1"], ["positive", "negative"], "samm", "3class", 0)
    other = fold_file([], ["s1/c1", "s2/c1"], ["negative", "negative"], "samm", "3class", 0)
    assert fold["hash"] != other["hash"]
    assert fold == fold_file([], ["s2/c1", "s1/c1"], ["negative", "positive"], "samm",
                             "3class", 0)  # the order clips are read in does not matter


def test_the_folds_command_writes_a_runs_folds_without_training(tmp_path, capsys):
    """``mer-ray folds`` on shards: the folds and hash a run on them stores, as JSON or as
    CSV (each clip once per fold, in its role there)."""
    import polars as pl

    from mer_ray.cli import main

    run = folds_of(tmp_path, "a")
    shards = tmp_path / "a" / "shards"
    args = ["folds", "--shards", str(shards), "--set", "train.val_subjects=1"]
    assert main([*args, "--out", str(tmp_path / "f.json")]) == 0
    assert run["hash"] in capsys.readouterr().out
    assert json.loads((tmp_path / "f.json").read_text()) == run
    assert main([*args, "--out", str(tmp_path / "f.csv")]) == 0
    rows = pl.read_csv(tmp_path / "f.csv")
    assert rows.height == 4 * 24 and set(rows["folds_hash"]) == {run["hash"]}
    for fold in run["folds"]:
        mine = rows.filter(pl.col("fold") == fold["test"])
        assert set(mine.filter(pl.col("role") == "test")["subject"]) == {fold["test"]}
        assert set(mine.filter(pl.col("role") == "val")["subject"]) == set(fold["val"])
