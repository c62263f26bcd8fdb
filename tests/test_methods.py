"""Methods on the same folds: the registry, each method's shapes and stated parameter count, a
tiny LOSO of each through the fold runner, a toy method added through the registry, the leaky
selection marked everywhere, and the comparison's paired differences."""

import inspect
import re
import time
import warnings

import numpy as np
import pytest
import torch

from mer_ray import methods
from mer_ray.config import ExperimentConfig
from mer_ray.experiments.loso import plan_loso, train_folds
from mer_ray.experiments.summary import print_summary, summarise_run
from mer_ray.methods import METHODS, Method, method_named, register
from tests.helpers.shardfolder import write_shards
from tests.helpers.tiny import TINY

EXP = ExperimentConfig().with_overrides(TINY + ["train.max_epochs=3", "train.patience=3",
                                                "data.flow=tvl1"])


def stated_parameters(module) -> int:
    """The trainable parameter count a method's docstring states."""
    text = " ".join(inspect.getdoc(module).split())
    return int(re.search(r"([\d,]+) trainable parameters", text).group(1).replace(",", ""))


def test_the_registry():
    assert {"mer", "lbptop_svm", "ststnet", "offapexnet"} <= set(METHODS)
    assert method_named("ststnet").needs_flow and not method_named("lbptop_svm").needs_flow
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        method_named("nope")
    with pytest.raises(ValueError, match="data.flow"):
        methods.method_of(ExperimentConfig().with_values({"model.method": "ststnet"}))


def test_a_chosen_method_trains_with_its_recipe_wherever_it_is_chosen():
    """`train --set model.method=ststnet` gets STSTNet's recipe over the configuration file
    (as `compare` does), and the user's own --set still wins over the recipe."""
    from mer_ray.cli import build_parser, experiment_config
    from mer_ray.experiments.compare import method_config

    demo = "experiments/configs/demo.yaml"
    recipe = dict(o.split("=") for o in method_named("ststnet").recipe)
    args = build_parser().parse_args(["train", "--config", demo, "--flow", "tvl1",
                                      "--set", "model.method=ststnet"])
    exp, _ = experiment_config(args)
    assert exp.train.lr == float(recipe["train.lr"]) != 1e-3  # the recipe's, not demo.yaml's
    assert exp.train.max_epochs == int(recipe["train.max_epochs"])
    assert exp == method_config(demo, ["data.flow=tvl1"], "ststnet", None, False)
    args = build_parser().parse_args(["train", "--config", demo, "--flow", "tvl1", "--set",
                                      "model.method=ststnet", "--set", "train.lr=0.01"])
    assert experiment_config(args)[0].train.lr == 0.01
    mer, _ = experiment_config(build_parser().parse_args(["train", "--config", demo]))
    assert mer.train.lr == 1e-3  # the paper's model: the file as written


@pytest.mark.parametrize("name,module,shape", [
    ("ststnet", "mer_ray.methods.ststnet", (2, 3, 28, 28)),
    ("offapexnet", "mer_ray.methods.offapexnet", (2, 2, 28, 28))])
def test_flow_networks(name, module, shape):
    import importlib

    mod = importlib.import_module(module)
    net = {"ststnet": "STSTNet", "offapexnet": "OffApexNet"}[name]
    model = getattr(mod, net)(3)
    assert model(flow=torch.randn(*shape))["logits"].shape == (2, 3)
    assert method_named(name).parameters(EXP, 3) == stated_parameters(mod)


def test_lbptop_features():
    from mer_ray.methods import lbptop_svm as m

    assert int((m.UNIFORM < m.BINS - 1).sum()) == 58  # the uniform patterns of 8 bits
    frames = np.random.default_rng(0).integers(0, 255, (4, 28, 28, 3), dtype=np.uint8)
    feats = m.lbp_top(frames)
    assert feats.shape == (m.GRID ** 2 * 3 * m.BINS,) and feats.dtype == np.float32
    per_block = feats.reshape(3, m.GRID ** 2, m.BINS).sum(-1)
    assert np.allclose(per_block, 1.0)  # every block's histogram on every plane normalised
    flat = np.full((4, 28, 28, 3), 7, np.uint8)  # no texture: every code is "all >= centre"
    assert np.allclose(m.lbp_top(flat).reshape(3, m.GRID ** 2, m.BINS)[:, :, :].max(-1), 1.0)
    assert method_named("lbptop_svm").parameters(EXP, 3) == stated_parameters(m)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("methods"), per_class=2, flow="tvl1")


def run(shards, tmp_path, method, **values):
    exp = EXP.with_values({"model.method": method, **values})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loso = plan_loso(shards, exp, tmp_path / "runs", name=f"{method}-run")
    train_folds(loso, local=True)
    return summarise_run(loso.view())


@pytest.mark.parametrize("method", ["lbptop_svm", "ststnet", "offapexnet"])
def test_each_method_trains_a_tiny_loso(shards, tmp_path, method):
    summary = run(shards, tmp_path, method)
    assert summary["method"] == method and summary["n_folds"] == 4
    assert summary["n_clips"] == 24 and 0 <= summary["metrics"]["uf1"] <= 1
    assert summary["pretrained"] is None  # a method without a backbone
    for fold in summary["folds"]:
        assert fold["test_subject"] not in fold["val_subjects"]


def test_a_toy_method_through_the_registry(shards, tmp_path):
    """A new method is a few lines: a fit that turns a fold job into a fold result."""
    from mer_ray.records import FoldRecord, Predictions
    from mer_ray.train.job import FoldResult

    def fit(job, device, resume=None, on_epoch=None, cache=None, every_epoch=None):
        """Always the training split's most frequent class."""
        time.sleep(0.2)  # its set-up: counted in the fold's time from its start to training
        counts = np.bincount([int(y) for b in job.sources["train"].reader(job.columns)
                              .iter_batches(batch_size=64) for y in b["label_id"]],
                             minlength=len(job.class_names))
        test = job.sources["test"].reader(job.columns).columns
        keys = [f"{s}/{c}" for s, c in zip(test["subject"], test["clip"])]
        probs = [list(np.eye(len(counts))[counts.argmax()])] * len(keys)
        rec = FoldRecord(job.split.test, list(job.split.val), list(job.split.train), 0, -1,
                         -1.0, False, [], 0.0, "cpu", False, None, False, False, None, [],
                         False, method="toy")
        return FoldResult(job.key, rec, Predictions(keys, test["label_id"].tolist(), probs), b"")

    register(Method("toy", "the majority class", fit, lambda exp, classes: 0))
    try:
        summary = run(shards, tmp_path, "toy")
    finally:
        del METHODS["toy"]
    assert summary["method"] == "toy" and summary["n_clips"] == 24
    assert all(f["timing"]["setup_s"] >= 0.2 for f in summary["folds"])


def test_the_leaky_selection_is_marked(shards, tmp_path, capsys):
    """train.selection=test scores every epoch on the test subject and keeps the best: what
    the field's leaky protocol does; its summary, printed table and report say LEAKY."""
    summary = run(shards, tmp_path, "ststnet", **{"train.selection": "test"})
    assert summary["selection"] == "test" and "test subject" in summary["leaky"]
    import json

    for fold in summary["folds"]:
        rec = json.loads((tmp_path / "runs" / "ststnet-run" / "folds" / fold["test_subject"] /
                          "fold.json").read_text())
        test_uf1 = [h["test_uf1"] for h in rec["history"]]
        assert len(test_uf1) == 3  # every epoch, no early stopping
        assert rec["best_epoch"] == int(np.argmax(test_uf1))
        assert rec["selection"] == "test"
    print_summary(summary, str(tmp_path))
    assert "LEAKY" in capsys.readouterr().out
    from mer_ray.report import write_report

    assert "**LEAKY**" in write_report([tmp_path / "runs"], tmp_path / "report").read_text()


def test_a_search_refuses_the_leaky_selection(shards, tmp_path):
    from mer_ray.experiments.nested_search import plan_nested

    exp = EXP.with_values({"train.selection": "test"})
    with pytest.raises(ValueError, match="selection=test"):
        plan_nested(shards, exp, str(tmp_path), "n", {"loss.lambda1": {}}, 2, 1)


def test_paired_difference():
    from mer_ray.metrics import paired_difference

    rng = np.random.default_rng(0)
    truth = {f"s{i}": list(rng.integers(0, 3, 12)) for i in range(10)}
    right = {s: (y, y) for s, y in truth.items()}
    coin = {s: (y, list(rng.integers(0, 3, 12))) for s, y in truth.items()}
    same = paired_difference(right, right, range(3))
    assert same["uf1"]["difference"] == 0 and same["uf1"]["ci95"] == [0.0, 0.0]
    assert not same["uf1"]["excludes_zero"]
    better = paired_difference(right, coin, range(3))
    assert better["uf1"]["difference"] > 0.4 and better["uf1"]["excludes_zero"]
    with pytest.raises(ValueError, match="same test subjects"):
        paired_difference(right, {"s0": truth["s0"]}, range(3))


def test_compare_on_the_same_folds(shards, tmp_path, capsys):
    """Every method on the same shards and folds, one table: the best honest method, each
    other's paired difference from it, leaky rows beside their honest runs."""
    from mer_ray.experiments.compare import compare_rows, plan_entries, train_entries
    from mer_ray.experiments.data import DataChoice
    from mer_ray.experiments.loso import RunOptions
    from mer_ray.train.run_folder import RunFolder

    tiny = tmp_path / "tiny.yaml"
    from tests.helpers.tiny import write_config

    write_config(tiny, ("train.max_epochs=3", "train.patience=3"))
    data = {"samm": DataChoice(shards=shards.root)}
    storage = str(tmp_path / "runs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entries = plan_entries(["lbptop_svm", "ststnet"], data, tiny, ["train.max_epochs=3"],
                               {"data.frames", "data.size"}, storage, "cmp", True, None)
        opts = RunOptions(storage_path=storage, local=True)
        train_entries(entries, {"samm": shards}, opts, RunFolder.open(storage, "cmp"))
    for e in entries:
        e.summary = summarise_run(e.run.view())
    rows = compare_rows(entries)
    assert [(r["method"], r["leaky"]) for r in rows] == [
        ("lbptop_svm", False), ("ststnet", False), ("lbptop_svm", True), ("ststnet", True)]
    honest = rows[:2]
    assert sum(r["best"] for r in rows) == 1 and not any(r["best"] for r in rows[2:])
    folds = {tuple(f["test_subject"] for f in e.summary["folds"]) for e in entries}
    vals = {tuple(tuple(f["val_subjects"]) for f in e.summary["folds"]) for e in entries}
    assert len(folds) == 1 and len(vals) == 1  # the same folds and validation subjects
    other = next(r for r in honest if not r["best"])
    assert other["versus"] == next(r for r in honest if r["best"])["method"]
    assert set(other["difference"]) == {"uf1", "uar"}
    assert rows[2]["versus"] == "lbptop_svm (honest)"
