"""Nested LOSO end to end in tiny mode: each outer fold's search never sees its outer subject,
and scrambling an outer subject's labels leaves its search and its chosen configuration as
they were."""

import json
import runpy
import shutil
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from mer_ray.config import ExperimentConfig
from mer_ray.data.shards import Shards
from mer_ray.experiments.nested_search import plan_nested, run_nested
from mer_ray.experiments.search_space import read_space
from tests.helpers.resume import same_predictions
from tests.helpers.tiny import write_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
SPACE = """
loss.lambda1: {type: loguniform, low: 0.01, high: 1.0}
model.lora_rank: {type: choice, values: [2, 4]}
"""


@pytest.fixture(scope="module")
def nested_run(ray_session, tmp_path_factory):
    """experiments/sweep.py (nested is its default) on a 4-subject synthetic set: 2 outer folds,
    2 configurations each, scored on 1 inner fold."""
    tmp = tmp_path_factory.mktemp("nested")
    (tmp / "space.yaml").write_text(SPACE)
    write_config(tmp / "tiny.yaml", ("train.cache_trunk=true",))
    argv = ["sweep.py", "--config", str(tmp / "tiny.yaml"), "--workdir", str(tmp / "w"),
            "--storage-path", str(tmp / "runs"), "--frames", "4", "--name", "nested",
            "--synthetic-subjects", "4", "--synthetic-clips-per-class", "1", "--space",
            str(tmp / "space.yaml"), "--trials", "2", "--inner-folds", "1", "--max-folds", "2"]
    old = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(str(REPO / "experiments" / "sweep.py"), run_name="__main__")
    finally:
        sys.argv = old
    return tmp


def test_outer_folds_choose_without_their_subject(nested_run):
    run = nested_run / "runs" / "nested"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_folds"] == 2 and summary["search_informed"] is False
    outer = summary["nested"]["outer_folds"]
    assert sorted(outer) == ["006", "007"]
    for subject, rec in outer.items():
        assert subject not in rec["search_subjects"]  # never in its own search
        assert len(rec["search_subjects"]) == 2  # an inner fold: one training, one validation
        assert set(rec["chosen_params"]) == {"loss.lambda1", "model.lora_rank"}
        search = json.loads((run / "search" / f"{subject}.json").read_text())
        assert len(search["trials"]) == 2
        assert search["chosen_params"] == max(
            search["trials"], key=lambda t: (t["val_uf1"], -t["trial"]))["params"]
        fold = json.loads((run / "folds" / subject / "fold.json").read_text())
        assert fold["chosen_params"] == rec["chosen_params"]
        assert fold["test_subject"] == subject and subject not in fold["train_subjects"]
    preds = pl.read_parquet(run / "predictions.parquet")
    assert set(preds["subject"]) == {"006", "007"} and (preds["fold"] == preds["subject"]).all()
    lo, hi = summary["metrics"]["uf1_ci95"]
    assert 0 <= lo <= summary["metrics"]["uf1"] <= hi <= 1


def test_scrambled_outer_labels_change_nothing_in_its_search(nested_run, tmp_path):
    """Every clip of outer subject 006 relabelled class 0: its search (every trial's inner
    validation figures) and its chosen configuration are unchanged."""
    [shards] = (nested_run / "w").glob("shards-*")
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy, ignore=shutil.ignore_patterns("trunk"))
    for f in (copy / "clips" / "subject=006").glob("*.parquet"):
        t = pq.read_table(f)
        i = t.schema.get_field_index("label_id")
        pq.write_table(t.set_column(i, "label_id", pl.Series([0] * t.num_rows).to_arrow()), f)
    record = json.loads((nested_run / "runs" / "nested" / "experiment.json").read_text())
    exp = ExperimentConfig.from_dict(record["config"])
    space = read_space(nested_run / "space.yaml")
    plan = plan_nested(Shards.open(copy), exp, str(tmp_path / "runs"), "scrambled", space, 2,
                       1, max_folds=1)
    run_nested(plan)
    before = json.loads((nested_run / "runs" / "nested" / "search" / "006.json").read_text())
    after = json.loads((tmp_path / "runs" / "scrambled" / "search" / "006.json").read_text())
    assert after["chosen_params"] == before["chosen_params"]
    assert [t["inner_val_uf1"] for t in after["trials"]] == \
        [t["inner_val_uf1"] for t in before["trials"]]
    assert [t["params"] for t in after["trials"]] == [t["params"] for t in before["trials"]]


def test_an_outer_fold_cut_short_resumes_by_its_records(nested_run, tmp_path):
    """An outer fold stopped between its search's trials (its first inner evaluation stored,
    the second not, no choice, no fold): run again, it reuses the stored evaluation (not
    trained again), evaluates the other, and makes the same choice and predictions."""
    import os

    runs = tmp_path / "runs"
    shutil.copytree(nested_run / "runs" / "nested", runs / "nested")
    run = runs / "nested"
    kept = next((run / "search" / "006").glob("t000-*.json"))
    stamp = kept.stat().st_mtime_ns
    before = json.loads((run / "search" / "006.json").read_text())
    predictions = json.loads((run / "folds" / "006" / "predictions.json").read_text())
    for gone in (run / "search" / "006.json", *(run / "search" / "006").glob("t001-*.json")):
        gone.unlink()
    shutil.rmtree(run / "folds" / "006")
    [shards] = (nested_run / "w").glob("shards-*")
    record = json.loads((run / "experiment.json").read_text())
    plan = plan_nested(Shards.open(shards), ExperimentConfig.from_dict(record["config"]),
                       str(runs), "nested", read_space(nested_run / "space.yaml"), 2, 1,
                       max_folds=2)
    assert run_nested(plan, local=True) == ["006"]  # 007 was finished: not trained again
    assert kept.stat().st_mtime_ns == stamp and os.path.exists(kept)
    after = json.loads((run / "search" / "006.json").read_text())
    assert after["chosen_params"] == before["chosen_params"]
    assert [t["inner_val_uf1"] for t in after["trials"]] == \
        [t["inner_val_uf1"] for t in before["trials"]]
    again = json.loads((run / "folds" / "006" / "predictions.json").read_text())
    same_predictions(again, predictions)
