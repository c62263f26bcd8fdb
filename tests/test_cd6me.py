"""The cross-dataset action-unit protocol (CD6ME): the composite's manifest, leave-one-dataset-
out folds, the AU figures (checked against scikit-learn), the multi-label heads, and a
comparison with the constant predictor, leaky rows and shuffled-label controls end to end."""

import json

import numpy as np
import pytest

from mer_ray.au_metrics import au_interval, au_paired, au_scores, bits, constant_masks, decide
from mer_ray.data.aus import CD6ME_AUS, au_mask, mask_name
from mer_ray.data.folds import FoldSplit, LeakageError, dataset_splits, protocol_splits
from mer_ray.data.labels import class_names, is_multilabel

NAMES = class_names("cd6me", "cd6me")


def test_au_masks_and_names():
    assert NAMES == tuple(f"AU{a}" for a in CD6ME_AUS) and is_multilabel("cd6me")
    assert not is_multilabel("3class")
    m = au_mask([4, 10, 20, 1])  # AU20 is not one of the 12
    assert bits([m], 12)[0].tolist() == [1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert mask_name(m, NAMES) == "AU1+AU4+AU10" and mask_name(0, NAMES) == "none"
    assert decide(np.array([[0.9, 0.5, 0.51] + [0.0] * 9])) == [0b101]


def test_au_f1_matches_scikit_learn_and_the_constant_predictor():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 1 << 12, 200) & rng.integers(0, 1 << 12, 200)
    p = rng.integers(0, 1 << 12, 200)
    yb, pb = bits(y, 12), bits(p, 12)
    yb[:, 3] = 0  # an AU never present: F1 0 when predicted, 0 (undefined) when not
    pb[:, 3] = 0
    y = (yb << np.arange(12)).sum(1)
    p = (pb << np.arange(12)).sum(1)
    got = au_scores(y, p, NAMES)
    want = [f1_score(yb[:, i], pb[:, i], zero_division=0) for i in range(12)]
    assert list(got["per_au"].values()) == pytest.approx(want)
    assert got["mean_f1"] == pytest.approx(np.mean(want)) and got["absent"] == ["AU5"]
    # every AU predicted everywhere: F1 = 2q / (1 + q), q the AU's share of the clips
    const = au_scores(y, constant_masks(12, len(y)), NAMES)
    q = yb.mean(0)
    assert list(const["per_au"].values()) == pytest.approx((2 * q / (1 + q)).tolist())


def test_au_intervals_and_paired_differences():
    rng = np.random.default_rng(1)
    runs = {f"s{i}": (rng.integers(0, 4096, 8).tolist(), rng.integers(0, 4096, 8).tolist())
            for i in range(10)}
    pooled = au_scores([y for ys, _ in runs.values() for y in ys],
                       [p for _, ps in runs.values() for p in ps], NAMES)["mean_f1"]
    lo, hi = au_interval(runs, 12, 300, 0)["mean_f1"]
    assert lo <= pooled <= hi and lo < hi
    same = au_paired(runs, runs, 12, 300, 0)
    assert same["difference"] == 0 and same["ci95"] == [0, 0] and same["p"] == 1.0
    truth = {s: (y, y) for s, (y, _) in runs.items()}
    better = au_paired(truth, runs, 12, 300, 0)
    assert better["difference"] == pytest.approx(1 - pooled) and better["ci95"][0] > 0


def test_leave_one_dataset_out_folds():
    labels = {f"{d}_{i}": {i % 3} for d in ("casme", "samm", "mmew") for i in range(8)}
    labels |= {f"4dme_{i}": {1} for i in range(2)}
    folds = dataset_splits(labels, lambda s: s.split("_")[0], n_val=3, seed=0)
    assert [f.test for f in folds] == ["4dme", "casme", "mmew", "samm"]
    for f in folds:
        assert set(f.tested) == {s for s in labels if s.startswith(f.test + "_")}
        assert not set(f.tested) & (set(f.val) | set(f.train))
        by_part = {}
        for s in f.val:
            by_part.setdefault(s.split("_")[0], []).append(s)
        assert f.test not in by_part
        # n_val per training dataset, never more than a quarter of it (at least one)
        assert {p: len(v) for p, v in by_part.items()} == {
            p: (1 if p == "4dme" else 2) for p in ("casme", "samm", "mmew", "4dme")
            if p != f.test}
        assert set(f.val) | set(f.train) | set(f.tested) == set(labels)
    assert protocol_splits("cd6me", {"casme_1": {0}, "samm_1": {1}}, 2, 0)[0].test == "casme"
    with pytest.raises(ValueError, match="names no dataset"):
        dataset_splits({"x1": {0}, "y1": {0}}, lambda s: None)
    with pytest.raises(LeakageError):
        FoldSplit("samm", ("samm_1",), ("casme_1",), ("samm_1", "samm_2"))


def test_multilabel_heads():
    import torch

    from mer_ray.fitting.task import Task
    from mer_ray.methods.lbptop_svm import OneVsRest
    from mer_ray.model.losses import default_loss

    task = Task(NAMES, multilabel=True)
    t = task.targets(torch.tensor([0b101, 0]))
    assert t.dtype == torch.float32 and t[0, :3].tolist() == [1, 0, 1] and t[1].sum() == 0
    logits = torch.zeros(2, 12)
    assert default_loss(logits, t) == pytest.approx(np.log(2), rel=1e-5)  # BCE, not CE
    assert task.probabilities(logits).tolist()[0][0] == 0.5
    x = np.r_[np.zeros((10, 4)), np.ones((10, 4))] + np.random.default_rng(0).normal(0, .1,
                                                                                       (20, 4))
    masks = np.r_[[0b1] * 10, [0b11] * 10]  # AU1 always present, AU2 on the second half
    svm = OneVsRest(1.0, 0, 12).fit(x, masks)
    probs = svm.probabilities(x)
    assert task.predicted(probs) == masks.tolist()
    figure, uar = task.score(masks, probs)
    assert (figure, uar) == (pytest.approx(2 / 12), None)


def test_the_composite_reads_six_layouts_by_their_aus(tmp_path):
    """A synthetic CD6ME root: every clip in, its label its AU set (the emotion plays no part),
    subjects prefixed by dataset; a part missing is named."""
    from mer_ray.data.adapters.cd6me import part_of
    from mer_ray.data.manifest import build_manifest, included
    from mer_ray.data.synth import generate_cd6me

    parts = generate_cd6me(tmp_path / "cd6me", subjects=1, clips_per_class=1)
    m = build_manifest("cd6me", tmp_path / "cd6me", "cd6me")
    inc = included(m)
    assert inc.height == m.height == sum(len(p.clips) for p in parts) == 3 + 5 + 5 + 5 + 7 + 7
    assert set(inc["dataset"]) == {"casme", "casme2", "samm", "4dme", "mmew", "casme3"}
    for r in inc.to_dicts():
        assert part_of(r["subject"]) == r["dataset"]
        assert r["label_id"] == au_mask(r["aus"]) and r["label"] == mask_name(r["label_id"],
                                                                            NAMES)
    import shutil

    shutil.rmtree(tmp_path / "cd6me" / "mmew")
    with pytest.raises(Exception, match="missing mmew/"):
        build_manifest("cd6me", tmp_path / "cd6me", "cd6me")


def test_several_emotions_count_as_their_aus(tmp_path, monkeypatch):
    from mer_ray.data.adapters import cd6me
    from mer_ray.data.adapters.base import SEVERAL_EMOTIONS, RawClip

    class Part:
        def clips(self, root):
            yield RawClip("4dme", "S01", "c1", "Negative+Surprise", 1, 2, 3, str(root), "x:2",
                          reason=SEVERAL_EMOTIONS, action_units="AU4+AU1")

    monkeypatch.setattr(cd6me, "PARTS", {"4dme": (Part, ("4dme",))})
    (tmp_path / "4dme").mkdir()
    [c] = cd6me.Cd6meAdapter().clips(tmp_path)
    assert c.reason is None and c.subject == "4dme_S01" and "AU coding decides" in c.note


@pytest.fixture(scope="module")
def cd6me_shards(ray_session, tmp_path_factory):
    from mer_ray.config import DataConfig
    from mer_ray.data.choice import ensure_shards
    from mer_ray.data.synth import generate_cd6me

    root = tmp_path_factory.mktemp("cd6me") / "root"
    generate_cd6me(root, subjects=2, clips_per_class=1, seed=3)
    return ensure_shards("cd6me", root, "cd6me", DataConfig(frames=4, size=28),
                         workdir=tmp_path_factory.mktemp("cd6me_shards"), synthetic=True)


def test_a_cd6me_comparison_end_to_end(cd6me_shards, tmp_path, capsys):
    """LBP-TOP + SVM, honest, leaky and shuffled-label control, on the synthetic six: the
    folds are the datasets, the constant predictor is in the table, the leaky row is against
    its honest run, the control against the constant; the report shows MEB's tables; the
    paper's model trains one fold with its sigmoid head."""
    from mer_ray.cli import main
    from tests.helpers.tiny import write_config

    tiny = str(write_config(tmp_path / "tiny.yaml"))
    shards = str(cd6me_shards.root)
    assert main(["folds", "--shards", shards, "--out", str(tmp_path / "folds.csv")]) == 0
    import polars as pl

    folds = pl.read_csv(tmp_path / "folds.csv")
    test = folds.filter(pl.col("role") == "test")
    assert sorted(set(test["fold"])) == ["4dme", "casme", "casme2", "casme3", "mmew", "samm"]
    assert all(s.startswith(f + "_") for f, s in zip(test["fold"], test["subject"]))
    assert set(test["label"]) <= {mask_name(m, NAMES) for m in range(4096)}

    store = tmp_path / "results"
    assert main(["compare", "--shards", shards, "--methods", "lbptop_svm", "--with-leaky",
                 "--with-controls", "--local", "--storage-path", str(store),
                 "--config", tiny, "--name", "cd6"]) == 0
    out = capsys.readouterr().out
    grid = json.loads((store / "cd6.json").read_text())
    assert grid["grid"] == "compare_aus"
    rows = {(r["method"], r["leaky"], r["control"]): r for r in grid["rows"]}
    honest = rows[("lbptop_svm", False, False)]
    const = rows[("constant (every AU)", False, False)]
    assert honest["best"] and not const["best"] and const["versus"] == "lbptop_svm"
    assert rows[("lbptop_svm", True, False)]["versus"] == "lbptop_svm (honest)"
    assert rows[("lbptop_svm", False, True)]["versus"] == "constant (every AU)"
    summary = json.loads((store / honest["run"] / "summary.json").read_text())
    m = summary["metrics"]
    assert set(m["per_dataset"]) == set(test["fold"]) and list(m["per_au_f1"]) == list(NAMES)
    assert honest["mean_au_f1"] == m["mean_au_f1"]
    assert m["per_fold_mean_au_f1"] == pytest.approx(
        np.mean([d["mean_au_f1"] for d in m["per_dataset"].values()]))
    preds = pl.read_parquet(store / honest["run"] / "predictions.parquet")
    check = au_scores(preds["label"].to_list(), preds["prediction"].to_list(), NAMES)
    assert check["mean_f1"] == m["mean_au_f1"]
    truth = preds["label"].to_list()
    assert const["mean_au_f1"] == au_scores(truth, constant_masks(12, len(truth)),
                                            NAMES)["mean_f1"]
    assert "per au" in out and "per dataset" in out and "constant (every AU)" in out

    # the same predictions made elsewhere, scored: as text, as 0/1 columns, as probabilities
    theirs = preds.select("subject", "clip", pl.col("prediction_name").alias("prediction"),
                          "fold")
    theirs.write_csv(tmp_path / "theirs.csv")
    assert main(["score", str(tmp_path / "theirs.csv"), "--shards", shards, "--storage-path",
                 str(store), "--selection", "validation", "--name", "theirs", "--config", tiny,
                 "--against", honest["run"]]) == 0
    scored = json.loads((store / "theirs" / "summary.json").read_text())
    assert scored["metrics"]["mean_au_f1"] == m["mean_au_f1"]
    assert scored["metrics"]["per_dataset"] == m["per_dataset"]
    assert scored["against"]["mean_au_f1"]["difference"] == 0
    from mer_ray.protocols.au_scoring import match_aus
    from mer_ray.protocols.scoring import ScoreRefused
    from mer_ray.protocols.truth import truth_from_shards

    truth = truth_from_shards(cd6me_shards, 1, 0)
    probs = pl.DataFrame([dict(zip([f"p_{a}" for a in NAMES], p))
                          for p in preds["probabilities"].to_list()])
    as_probs = pl.concat([preds.select("subject", "clip"), probs], how="horizontal")
    assert match_aus(as_probs, truth, "p.csv")["prediction"].to_list() == \
        preds["prediction"].to_list()
    as_bits = pl.concat([preds.select("subject", "clip"), pl.DataFrame(
        bits(preds["prediction"].to_list(), 12), schema=list(NAMES), orient="row")],
        how="horizontal")
    assert match_aus(as_bits, truth, "b.csv")["prediction"].to_list() == \
        preds["prediction"].to_list()
    wrong = theirs.with_columns(pl.lit("AU20+AU4").alias("prediction"),
                                pl.lit("samm").alias("fold")).head(len(theirs) - 1)
    with pytest.raises(ScoreRefused) as refused:
        match_aus(wrong, truth, "w.csv")
    text = str(refused.value)
    assert "outside the protocol's 12: AU20" in text and "have no prediction" in text
    assert "in a fold other than their own dataset's" in text

    report = tmp_path / "report"
    assert main(["report", str(store), "--out", str(report), "--format", "md,latex,csv"]) == 0
    text = (report / "report.md").read_text()
    assert "F1 per action unit" in text and "Mean AU F1 per held-out dataset" in text
    assert "Action-unit runs (CD6ME" in text and "LEAKY" in text and "CONTROL" in text
    assert (report / "tables" / "cd6_per_au.tex").is_file()
    assert (report / "tables" / "cd6_per_dataset.csv").is_file()

    assert main(["train", "--shards", shards, "--local", "--max-folds", "1", "--storage-path",
                 str(store), "--name", "mer1", "--config", tiny]) == 0
    fold = json.loads((store / "mer1" / "folds" / "4dme" / "predictions.json").read_text())
    assert len(fold["probs"][0]) == 12 and all(0 < p < 1 for p in fold["probs"][0])
