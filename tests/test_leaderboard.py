"""``mer-ray leaderboard``: the static site over stored runs, its ranking rules, the
critical-difference figures, and the pages as a real browser shows them."""

import json
import os
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mer_ray.report.critical import friedman_nemenyi
from tests.helpers.shardfolder import write_shards

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "benchmarks" / "results" / "methods"


def test_friedman_and_nemenyi_against_the_published_figures():
    """Four methods ranked alike on four blocks: chi-square = 12 N / (k (k+1)) * (sum R^2 -
    k (k+1)^2 / 4) = 2.4 * (30 - 25) = 12; Demsar's (2006) table of q_0.05 gives 2.343 for 3
    methods and 2.569 for 4 (CD = 2.569 * sqrt(20 / 24) = 2.345)."""
    scores = {f"b{i}": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6 + i / 100} for i in range(4)}
    res = friedman_nemenyi(scores)
    assert res["methods"] == ["a", "b", "c", "d"] and res["mean_ranks"] == [1, 2, 3, 4]
    assert res["friedman_chi2"] == pytest.approx(12.0)
    assert res["friedman_p"] == pytest.approx(0.00738, abs=1e-5)
    assert res["nemenyi_q"] == pytest.approx(2.569, abs=1e-3)
    assert res["critical_difference"] == pytest.approx(2.569 * np.sqrt(20 / 24), abs=1e-3)
    assert res["iman_davenport_f"] is None  # identical rankings: the F form is undefined
    assert res["groups"] == [(0, 2), (1, 3)]  # ranks 1-3 and 2-4 are within 2.35
    three = friedman_nemenyi({b: {m: v[m] for m in "abc"} for b, v in scores.items()})
    assert three["nemenyi_q"] == pytest.approx(2.343, abs=1e-3)


def test_ties_share_their_mean_rank():
    scores = {"b0": {"a": 0.5, "b": 0.5, "c": 0.1}, "b1": {"a": 0.9, "b": 0.2, "c": 0.1},
              "b2": {"a": 0.9, "b": 0.2, "c": 0.3}}
    res = friedman_nemenyi(scores)
    ranks = dict(zip(res["methods"], res["mean_ranks"]))
    assert ranks == pytest.approx({"a": (1.5 + 1 + 1) / 3, "b": (1.5 + 2 + 3) / 3,
                                   "c": (3 + 3 + 2) / 3})
    with pytest.raises(ValueError, match="3 or more methods over 3 or more blocks"):
        friedman_nemenyi({"b0": {"a": 1, "b": 2, "c": 3}})


def _scored_boards(tmp_path: Path) -> Path:
    """Three benchmarks (other subjects each), three methods scored on each with declared
    validation selection (noisier and noisier guesses of the truth), and on the first one a
    leaky and an undeclared file: no training needed."""
    import mer_ray as mr

    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    for b, subjects in enumerate((("a1", "a2", "a3"), ("b1", "b2", "b3"), ("c1", "c2", "c3"))):
        shards = write_shards(tmp_path / f"shards{b}", subjects=subjects, per_class=2)
        truth = pl.DataFrame([{"subject": s, "clip": k.split("/", 1)[1], "label": y}
                              for s in subjects for k, y in zip(*shards.clip_labels([s]))])
        for method, noise in (("good", 0.1), ("fair", 0.4), ("poor", 0.8)):
            wrong = rng.random(truth.height) < noise
            guess = np.where(wrong, rng.integers(0, 3, truth.height), truth["label"])
            frame = truth.select("subject", "clip").with_columns(prediction=pl.Series(guess))
            mr.score(frame, shards=shards.root, selection="validation", method=method,
                     storage=str(runs), name=f"{method}-{b}", val_subjects=1)
            if b == 0 and method == "poor":
                for selection in ("test", "unknown"):
                    mr.score(truth.select("subject", "clip", prediction="label"),
                             shards=shards.root, selection=selection, method=f"oracle-{selection}",
                             storage=str(runs), name=f"oracle-{selection}", val_subjects=1)
    return runs


def test_the_site_ranks_honest_rows_only_and_draws_the_critical_difference(tmp_path):
    from mer_ray.cli import main

    runs = _scored_boards(tmp_path)
    assert main(["leaderboard", str(runs), "--out", str(tmp_path / "site")]) == 0
    site = tmp_path / "site"
    boards = sorted((site / "boards").glob("*.html"))
    assert len(boards) == 3
    first = next(b.read_text() for b in boards if "oracle-test" in b.read_text())
    ranked, rest = first.split("<h2>Not ranked</h2>")
    assert "oracle" not in ranked and "oracle-test" in rest and "oracle-unknown" in rest
    assert "LEAKY" in rest and "SELECTION UNDECLARED" in rest
    assert ranked.index(">good<") < ranked.index(">fair<") < ranked.index(">poor<")
    res = json.loads((site / "critical_difference.json").read_text())
    assert res["n_blocks"] == 3 and res["methods"] == ["good", "fair", "poor"]
    assert (site / "critical_difference.svg").read_text().lstrip().startswith("<?xml")
    for run in (site / "runs").iterdir():  # every run's files travel with the site
        assert (run / "predictions.parquet").is_file() and (run / "folds.json").is_file()


def test_the_methods_benchmark_site_in_a_browser(tmp_path):
    """The site built from the methods benchmark's stored results (benchmarks/results/methods,
    the README's Methods table), opened in headless Chromium: every page loads all it refers
    to, the tables say what the README says, and screenshots are kept
    (MER_RAY_SCREENSHOTS=docs writes the README's)."""
    from tests.helpers.browser import browser, need_browser, screenshot, visit

    need_browser()
    from mer_ray.report.site import build_site

    site = tmp_path / "site"
    index = build_site([BENCHMARK], site)
    shots = Path(os.environ.get("MER_RAY_SCREENSHOTS") or tmp_path / "shots")
    readme = (REPO / "README.md").read_text()
    with browser() as driver:
        page = visit(driver, index)
        assert not page["errors"] and not page["broken"], page
        # the README's Methods table: the demo's set, mer 74.1 [64.0, 82.9]
        assert "| 0 (demo) | `mer` | 74.1 ± 3.7 [64.0, 82.9]" in readme
        assert re.search(r"synthetic_samm_3class_i1\.5\) yes 96 4 4 mer 74\.1 \[64\.0, 82\.9\]",
                         page["text"].replace("\n", " "))
        assert "Friedman test over 4 blocks and 4 methods" in page["text"]
        screenshot(driver, shots / "leaderboard-index.png")
        board = next(p for p in (site / "boards").glob("*.html")
                     if "(synthetic_samm_3class_i1.5)" in p.read_text())
        page = visit(driver, board)
        assert not page["errors"] and not page["broken"], page
        ranked, rest = page["text"].split("Not ranked", 1)
        assert "LEAKY" not in ranked and rest.count("LEAKY") >= 4
        assert re.search(r"1 mer 74\.1 ± 3\.7 \[64\.0, 82\.9\]", ranked.replace("\n", " "))
        screenshot(driver, shots / "leaderboard-benchmark.png")
        run = sorted((site / "runs").glob("set0-mer-samm*seed0/index.html"))[0]
        page = visit(driver, run)
        assert not page["errors"] and not page["broken"], page
        assert "Confusion matrix" in page["text"] and "Per test subject" in page["text"]
    assert (shots / "leaderboard-index.png").stat().st_size > 10_000
