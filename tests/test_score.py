"""``mer-ray score``: predictions made anywhere, refused when they cannot be scored honestly and
otherwise scored exactly as mer-ray scores its own runs."""

import json

import polars as pl
import pytest

from mer_ray.cli import main
from mer_ray.integrity import is_ranked
from tests.helpers.shardfolder import write_shards
from tests.helpers.tiny import TINY

SETS = [a for s in TINY for a in ("--set", s)]


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    """A real run (LBP-TOP + SVM, --local, with shuffled training labels so that its figures
    are neither 0 nor 1 and its intervals are wide) on a tiny shard folder."""
    root = tmp_path_factory.mktemp("score")
    write_shards(root / "shards", per_class=2)
    assert main(["train", "--shards", str(root / "shards"), "--local", "--storage-path",
                 str(root / "runs"), "--name", "svm", *SETS, "--set", "model.method=lbptop_svm",
                 "--set", "train.shuffle_labels=true"]) == 0
    run = root / "runs" / "svm"
    return root, json.loads((run / "summary.json").read_text()), \
        pl.read_parquet(run / "predictions.parquet")


def score(root, file, *extra):
    return main(["score", str(file), "--shards", str(root / "shards"), "--storage-path",
                 str(root / "runs"), *SETS, *extra])


def scored(root, name) -> dict:
    return json.loads((root / "runs" / name / "summary.json").read_text())


def test_a_runs_own_predictions_score_to_its_figures_exactly(stored_run, tmp_path, capsys):
    """The round trip: the run's predictions written as a user would (CSV, class names,
    subject and clip columns), scored, give every figure the run reported, to the last bit;
    its own predictions.parquet (class indices) does too, and so the same folds hash."""
    root, run, preds = stored_run
    m = run["metrics"]  # figures that a wrong scoring would move
    assert 0 < m["uf1"] < 1 and m["uf1_ci95"][0] < m["uf1_ci95"][1]
    csv = tmp_path / "mine.csv"
    preds.select("subject", "clip", pl.col("prediction_name").alias("prediction")) \
        .sample(fraction=1.0, shuffle=True, seed=3).write_csv(csv)
    assert score(root, csv, "--selection", "validation", "--name", "csv") == 0
    parquet = tmp_path / "mine.parquet"
    preds.write_parquet(parquet)
    assert score(root, parquet, "--selection", "validation", "--name", "parquet") == 0
    for name in ("csv", "parquet"):
        got = scored(root, name)
        assert got["metrics"] == run["metrics"]
        assert [(f["test_subject"], f["uf1"], f["uar"], f["n"]) for f in got["folds"]] == \
            [(f["test_subject"], f["uf1"], f["uar"], f["n"]) for f in run["folds"]]
        assert got["folds_hash"] == run["folds_hash"]
        assert json.loads((root / "runs" / name / "folds.json").read_text()) == \
            json.loads((root / "runs" / "svm" / "folds.json").read_text())
        assert (root / "runs" / name / f"submitted.{name}").read_bytes() == \
            (tmp_path / f"mine.{name}").read_bytes()
    out = capsys.readouterr().out
    assert f"{run['metrics']['uf1']:.4f}" in out and "SCORED FILE: selection declared" in out


def test_the_difference_from_a_stored_run(stored_run, tmp_path, capsys):
    """--against: the same predictions differ by exactly 0; a file that flips predictions to
    the truth is better, and the paired interval says so."""
    root, run, preds = stored_run
    same = tmp_path / "same.csv"
    preds.select("subject", "clip", "prediction_name").write_csv(same)
    assert score(root, same, "--against", "svm", "--name", "same") == 0
    d = scored(root, "same")["against"]
    assert d["uf1"]["difference"] == 0 and d["uf1"]["ci95"] == [0, 0] and d["same_folds"]
    better = tmp_path / "better.csv"
    preds.select("subject", "clip", pl.col("label").alias("prediction")).write_csv(better)
    assert score(root, better, "--against", "svm", "--name", "better") == 0
    d = scored(root, "better")["against"]
    assert d["uf1"]["difference"] == pytest.approx(1 - run["metrics"]["uf1"])
    assert d["uf1"]["ci95"][0] > 0 and d["uf1"]["excludes_zero"]
    assert "paired bootstrap over test subjects" in capsys.readouterr().out


def refused(root, tmp_path, capsys, frame: pl.DataFrame, *extra) -> str:
    file = tmp_path / "bad.csv"
    frame.write_csv(file)
    assert score(root, file, "--name", "bad", *extra) == 2
    assert not (root / "runs" / "bad").exists()  # nothing written
    return capsys.readouterr().err


def good(preds: pl.DataFrame) -> pl.DataFrame:
    return preds.select("subject", "clip", "fold", "label_name", "prediction_name")


def test_missing_clips_are_refused_with_their_names(stored_run, tmp_path, capsys):
    root, _, preds = stored_run
    frame = good(preds)
    err = refused(root, tmp_path, capsys, frame.slice(7))
    first = [f"{s}/{c}" for s, c in frame.head(7).select("subject", "clip").iter_rows()]
    assert "7 clip(s) of the protocol have no prediction" in err
    assert "and 2 more" in err and sorted(first)[0] in err
    assert len(err.strip().splitlines()) == 1


def test_clips_not_in_the_protocol_are_refused(stored_run, tmp_path, capsys):
    root, _, preds = stored_run
    extra = good(preds).head(1).with_columns(pl.lit("s9").alias("subject"),
                                             pl.lit("s9").alias("fold"))
    err = refused(root, tmp_path, capsys, pl.concat([good(preds), extra]))
    assert "1 clip(s) not in samm 3class" in err and "s9/" in err


def test_duplicates_are_refused(stored_run, tmp_path, capsys):
    root, _, preds = stored_run
    err = refused(root, tmp_path, capsys, pl.concat([good(preds), good(preds).slice(3, 2)]))
    assert "2 clip(s) predicted more than once" in err


def test_labels_outside_the_protocol_are_refused(stored_run, tmp_path, capsys):
    root, _, preds = stored_run
    frame = good(preds).with_columns(
        pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("happiness"))
        .otherwise(pl.col("prediction_name")).alias("prediction_name"))
    err = refused(root, tmp_path, capsys, frame)
    assert "2 prediction(s) outside the protocol's classes" in err and "happiness" in err
    numbers = good(preds).with_columns(pl.lit(7).alias("prediction_name"))
    assert "outside the protocol's classes" in refused(root, tmp_path, capsys, numbers)


def test_folds_that_contradict_the_subjects_are_refused(stored_run, tmp_path, capsys):
    """A clip predicted in another subject's fold; folds with other ids mixing subjects; and
    true labels other than the protocol's: each its own line."""
    root, _, preds = stored_run
    frame = good(preds).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("s2")).otherwise(pl.col("fold"))
        .alias("fold"))
    err = refused(root, tmp_path, capsys, frame)
    assert "1 clip(s) predicted in another subject's fold" in err
    numbered = good(preds).with_columns((pl.int_range(pl.len()) % 2).alias("fold"))
    err = refused(root, tmp_path, capsys, numbered)
    assert "2 fold(s) hold clips of several subjects" in err
    assert "tested in more than one fold" in err and len(err.strip().splitlines()) == 2
    relabelled = good(preds).with_columns(pl.lit("surprise").alias("label_name"))
    assert "whose label column differs" in refused(root, tmp_path, capsys, relabelled)


def test_a_declared_selection_is_shown_and_only_validation_is_ranked(stored_run, tmp_path):
    """Selection test is LEAKY, unknown is SELECTION UNDECLARED: neither is ranked with honest
    runs, in the summary's marks or in the report's runs table."""
    from mer_ray.report import write_report

    root, _, preds = stored_run
    file = tmp_path / "p.csv"
    preds.select("subject", "clip", "prediction").write_csv(file)
    for selection in ("validation", "test", "unknown"):
        assert score(root, file, "--selection", selection, "--name", f"sel-{selection}") == 0
    got = {s: scored(root, f"sel-{s}") for s in ("validation", "test", "unknown")}
    assert [is_ranked(got[s]) for s in ("validation", "test", "unknown")] == [True, False, False]
    assert got["test"]["leaky"] and got["unknown"]["selection_unknown"]
    report = write_report([root / "runs" / f"sel-{s}" for s in got], tmp_path / "r").read_text()
    assert "SELECTION UNDECLARED" in report and "LEAKY" in report


def test_scoring_against_a_dataset_root(synth_samm, tmp_path, capsys):
    """--data-root: the truth from the annotations (nothing aligned); clip ids without a
    subject column are matched when they are unique."""
    from mer_ray.data.manifest import build_manifest, included

    rows = included(build_manifest("samm", synth_samm, "3class"))
    file = tmp_path / "p.csv"
    rows.select("clip", pl.col("label").alias("prediction")).write_csv(file)
    assert main(["score", str(file), "--data-root", str(synth_samm), "--dataset", "samm",
                 "--protocol", "3class", "--storage-path", str(tmp_path / "runs"),
                 "--name", "root"]) == 0
    got = json.loads((tmp_path / "runs" / "root" / "summary.json").read_text())
    assert got["metrics"]["uf1"] == 1.0 and got["n_clips"] == rows.height
    assert got["n_folds"] == rows["subject"].n_unique()


def test_the_python_api_reads_scores_and_compares(stored_run, tmp_path):
    """``mr.load_run``, ``mr.score`` and ``mr.compare`` give what the commands give: the
    run's own figures, the same scoring, and a table whose best row is the honest one while an
    undeclared selection is shown but never ranked."""
    import mer_ray as mr

    root, run, preds = stored_run
    loaded = mr.load_run(root / "runs" / "svm")
    assert loaded.figures["uf1"] == run["metrics"]["uf1"] and loaded.marks == ["CONTROL"]
    assert loaded.predictions.equals(preds) and loaded.folds["hash"] == run["folds_hash"]
    assert loaded.config.model.method == "lbptop_svm"
    assert loaded.provenance["code_version"] == run["code_version"]
    assert "UF1 " in repr(loaded) and "CONTROL" in repr(loaded)
    mine = preds.select("subject", "clip", "prediction_name")
    again = mr.score(mine, shards=loaded.shards, val_subjects=1)  # in memory
    assert again.figures == loaded.figures and again.marks == ["SELECTION UNDECLARED"]
    truth = preds.select("subject", "clip", pl.col("label").alias("prediction"))
    perfect = mr.score(truth, shards=loaded.shards, selection="validation", method="oracle",
                       storage=str(root / "runs"), name="oracle")
    undeclared = mr.score(truth, shards=loaded.shards, method="undeclared",
                          storage=str(root / "runs"), name="undeclared")
    table = mr.compare([loaded, perfect, undeclared])
    by = {r["method"]: r for r in table.iter_rows(named=True)}
    assert by["oracle"]["best"] and by["oracle"]["uf1"] == 1.0
    assert by["lbptop_svm"]["uf1_difference"] == pytest.approx(run["metrics"]["uf1"] - 1)
    assert by["lbptop_svm"]["uf1_p_holm"] is not None
    assert by["undeclared"]["selection_unknown"] and not by["undeclared"]["best"]
    assert by["undeclared"]["uf1_difference"] is None  # never compared with the best
    with pytest.raises(FileNotFoundError, match="no run there"):
        mr.load_run(tmp_path)


def test_clip_ids_that_repeat_across_subjects_need_a_subject_column():
    """CASME II names clips EP02_01f in several subjects: without a subject column such an id
    cannot be told apart, and the file is refused naming it; with one it is scored."""
    from mer_ray.data.folds import loso_splits
    from mer_ray.protocols.scoring import ScoreRefused, match
    from mer_ray.protocols.truth import Truth

    keys = ("sub01/EP02_01f", "sub01/EP03_02", "sub02/EP02_01f", "sub03/EP04_01")
    folds = tuple(loso_splits({"sub01": {0}, "sub02": {1}, "sub03": {2}}, 1, 0))
    truth = Truth("casme2", "3class", ("negative", "positive", "surprise"), keys, (0, 1, 1, 2),
                  folds, {"hash": "x"}, "fixture")
    frame = pl.DataFrame({"clip": ["EP02_01f", "EP03_02", "EP02_01f", "EP04_01"],
                          "prediction": ["negative", "positive", "positive", "surprise"]})
    with pytest.raises(ScoreRefused, match=r"1 clip id\(s\) name clips of several subjects: "
                                           r"EP02_01f; add a subject column"):
        match(frame, truth, "theirs.csv")
    scored = match(frame.with_columns(subject=pl.Series(["sub01", "sub01", "sub02", "sub03"])),
                   truth, "theirs.csv")
    assert scored["prediction"].to_list() == [0, 1, 1, 2] == scored["label"].to_list()


def test_a_row_without_a_clip_id_is_refused_for_classes_and_for_action_units():
    """A row whose clip cannot be named (no clip id, or no subject where the file has a subject
    column) is refused with the same line whether the file predicts classes or AU sets."""
    from mer_ray.protocols.au_scoring import match_aus
    from mer_ray.protocols.scoring import ScoreRefused, match
    from mer_ray.protocols.truth import Truth

    frame = pl.DataFrame({"subject": ["sub01", "sub02", None], "clip": ["c1", "c2", "c3"],
                          "prediction": ["negative", "positive", "negative"]})
    truth = Truth("casme2", "3class", ("negative", "positive", "surprise"),
                  ("sub01/c1", "sub02/c2"), (0, 1), (), {"hash": "x"}, "fixture")
    with pytest.raises(ScoreRefused, match=r"theirs.csv: refused: 1 row\(s\) have no clip id"):
        match(frame, truth, "theirs.csv")
    aus = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU14", "AU15",
           "AU17")
    au_truth = Truth("cd6me", "cd6me", aus, ("casme2_sub01/c1", "samm_sub02/c2"), (1, 4), (),
                     {"hash": "x"}, "fixture")
    au_frame = frame.with_columns(pl.Series("subject", ["casme2_sub01", "samm_sub02", None]),
                                  pl.Series("prediction", ["AU1", "AU4", "AU1"]))
    with pytest.raises(ScoreRefused, match=r"theirs.csv: refused: 1 row\(s\) have no clip id"):
        match_aus(au_frame, au_truth, "theirs.csv")
