"""Methods on the same folds: the registry, each method's shapes and stated parameter count, a
tiny LOSO of each through the fold runner, a toy method added through the registry, the leaky
selection marked everywhere, and the comparison's paired differences."""

import inspect
import json
import re
import time
import warnings

import numpy as np
import pytest
import torch

from mer_ray import methods
from mer_ray.config import ExperimentConfig, load_experiment, parse_override
from mer_ray.methods import METHODS, Method, load_with_recipe, method_named, register
from mer_ray.protocols.loso import plan_loso, train_folds
from mer_ray.protocols.summary import print_summary, summarise_run
from tests.helpers.shardfolder import write_shards
from tests.helpers.tiny import TINY

EXP = ExperimentConfig().with_overrides(TINY + ["train.max_epochs=3", "train.patience=3",
                                                "data.flow=tvl1"])


def stated_parameters(module) -> int:
    """The trainable parameter count a method's docstring states (for 3 classes)."""
    text = " ".join(inspect.getdoc(module).split())
    return int(re.search(r"([\d,]+) trainable parameters", text).group(1).replace(",", ""))


def linear(i: int, o: int) -> int:
    return i * o + o


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def mer_parameters(exp: ExperimentConfig, classes: int) -> int:
    """The paper's model's trainable parameters, from docs/method.md, sections 2-5 (LoRA on Q and V
    of the last blocks; SFA: two FEMs and two expert mixtures; DGAT: input projection, graph
    attention, LSTM; the dynamic-convolution fusion; the classifier)."""
    m = exp.model
    embed = 384  # ViT-S/14
    d = embed * {"cls_mean": 2, "grid": m.frame_grid ** 2}.get(m.frame_feature, 1)
    lora = m.lora_blocks * 2 * (2 * m.lora_rank * embed)  # Q and V: A (r x D) + B (D x r)
    fem = 2 * d + conv(1, 2, 3)  # LayerNorm over D, 3 x 3 conv to Z1, Z2
    experts = 2 * conv(1, m.sfa_experts, 3) + m.sfa_experts  # E1, E2 and the gate's theta
    sfa = 2 * (fem + experts) + linear(d, m.sfa_dim)
    t = m.dgat_dim
    lstm = 4 * (t * t + t * t + 2 * t)
    dgat = linear(d, t) + 4 * linear(t, t) + 2 * t + 1 + lstm  # in, q k v o, LayerNorm, lambda
    z = m.sfa_dim + m.dgat_dim
    cons = 0 if m.sfa_dim == m.dgat_dim else linear(m.sfa_dim, min(m.sfa_dim, m.dgat_dim)) + \
        linear(m.dgat_dim, min(m.sfa_dim, m.dgat_dim))
    fusion = linear(z, m.fusion_kernels) + m.fusion_kernels * (z * m.fusion_dim + m.fusion_dim)
    return lora + sfa + dgat + cons + fusion + linear(m.fusion_dim, classes)


# Each method's trainable parameters, written from its paper's (or the authors' code's) layer
# list, not read from the module. A method registered without a formula here fails the test.
FORMULAS = {
    "mer": mer_parameters,
    # 5 x 5 blocks x 3 planes x 59 uniform-LBP bins, one linear SVM per class (with bias)
    "lbptop_svm": lambda exp, c: c * (5 * 5 * 3 * 59 + 1),
    # three 3 x 3 convolutions on 3 channels (3, 5, 8 filters), their batch norms, 400 -> c
    "ststnet": lambda exp, c: sum(conv(3, w, 3) + 2 * w for w in (3, 5, 8)) + linear(400, c),
    # two streams of 5 x 5 convolutions (1 -> 6 -> 16), 1568 -> 1024 -> 1024 -> c
    "offapexnet": lambda exp, c: 2 * (conv(1, 6, 5) + conv(6, 16, 5)) + linear(1568, 1024)
    + linear(1024, 1024) + linear(1024, c),
}

# What each method must show on the tiny shards (each class moves its own patch of flow and
# lights its own square: learnable in a few epochs), so that a broken method fails: above
# chance (UF1 0.33) for the baselines with their recipes; for the paper's model, whose random
# backbone needs the demo's set and minutes, a training loss that falls.
LEARNS = {"mer": "loss falls", "lbptop_svm": "above chance", "ststnet": "above chance",
          "offapexnet": "above chance"}


def registered() -> list[str]:
    return sorted(METHODS)


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
    from mer_ray.protocols.compare import method_config

    demo = "experiments/configs/demo.yaml"
    recipe = method_named("ststnet").recipe
    args = build_parser().parse_args(["train", "--config", demo, "--flow", "tvl1",
                                      "--set", "model.method=ststnet"])
    exp, _ = experiment_config(args)
    assert exp.train.lr == recipe.lr != 1e-3  # the recipe's, not demo.yaml's
    assert exp.train.max_epochs == recipe.max_epochs
    # demo.yaml's bf16 is the paper model's; STSTNet trains in full precision, as its authors did
    assert exp.train.precision == recipe.precision == "fp32" != load_experiment(
        demo).train.precision
    assert exp == method_config(demo, {"data.flow": "tvl1"}, "ststnet", None, False)
    args = build_parser().parse_args(["train", "--config", demo, "--flow", "tvl1", "--set",
                                      "model.method=ststnet", "--set", "train.lr=0.01",
                                      "--set", "train.precision=bf16"])
    assert experiment_config(args)[0].train.lr == 0.01
    assert experiment_config(args)[0].train.precision == "bf16"
    mer, _ = experiment_config(build_parser().parse_args(["train", "--config", demo]))
    assert mer.train.lr == 1e-3  # the paper's model: the file as written


@pytest.mark.parametrize("name", registered())
def test_every_method_has_the_parameters_of_its_formula(name):
    assert name in FORMULAS, f"{name}: write its parameter formula in FORMULAS"
    other = EXP.with_values({"model.lora_rank": 4, "model.sfa_dim": 48})
    for exp, classes in ((EXP, 3), (other, 5)):
        assert method_named(name).parameters(exp, classes) == FORMULAS[name](exp, classes)
    module = inspect.getmodule(method_named(name).fit)
    if "trainable parameters" in (inspect.getdoc(module) or ""):  # the docstring's own figure
        assert stated_parameters(module) == FORMULAS[name](EXP, 3)


def test_the_flow_networks_are_the_published_ones():
    """STSTNet as its authors' code builds it: padding 2 (each stream 30 x 30 before its
    pooling) and dropout 0.5 after each stream's pooling; OFF-ApexNet as its paper describes
    it: two streams and two fully connected layers of 1,024 units."""
    from mer_ray.methods.offapexnet import OffApexNet
    from mer_ray.methods.ststnet import STSTNet

    net = STSTNet(3)
    for stream in net.streams:
        layers = list(stream)
        assert layers[0].padding == (2, 2) and layers[0].kernel_size == (3, 3)
        assert isinstance(layers[-1], torch.nn.Dropout) and layers[-1].p == 0.5
        assert isinstance(layers[-2], torch.nn.MaxPool2d)
        assert stream(torch.zeros(1, 3, 28, 28)).shape[-2:] == (10, 10)
    x = torch.randn(8, 3, 28, 28)
    net.train()
    assert not torch.equal(net(flow=x)["logits"], net(flow=x)["logits"])  # dropout draws
    net.eval()
    assert torch.equal(net(flow=x)["logits"], net(flow=x)["logits"])
    off = OffApexNet(3)
    hidden = [m for m in off.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in hidden] == [(1568, 1024), (1024, 1024),
                                                                 (1024, 3)]
    assert off(flow=torch.randn(2, 2, 28, 28))["logits"].shape == (2, 3)


def test_flow_inputs_are_normalised_per_clip_and_channel():
    from mer_ray.methods.flow_nets import minmax, resized

    maps = np.stack([np.full((56, 56), 3.0), np.linspace(-2, 6, 56 * 56).reshape(56, 56)])
    out = minmax(resized(maps, 28))
    assert out.shape == (2, 28, 28) and out.dtype == np.float32
    assert np.all(out[0] == 0)  # a constant map
    assert out[1].min() == 0 and np.isclose(out[1].max(), 1)


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


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("methods"), per_class=2, flow="tvl1")


def method_exp(method: str, **values) -> ExperimentConfig:
    """The tiny configuration with the method's recipe (the user's --set: TINY, a few
    epochs), as `mer-ray train --set model.method=...` resolves it."""
    exp = load_with_recipe(None, dict(parse_override(o) for o in [
        f"model.method={method}", *TINY, "data.flow=tvl1", "train.max_epochs=8",
        "train.patience=8"]))
    if method == "mer":  # seconds, not minutes: three epochs of the cached trunk
        exp = exp.with_values({"train.max_epochs": 3, "train.cache_trunk": True,
                               "train.lr": 1e-3})
    return exp.with_values(values) if values else exp


def run(shards, tmp_path, method, name=None, max_folds=None, **values):
    exp = method_exp(method, **values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loso = plan_loso(shards, exp, tmp_path / "runs", name=name or f"{method}-run",
                         max_folds=max_folds)
    train_folds(loso, local=True)
    return summarise_run(loso.view())


@pytest.mark.parametrize("name", registered())
def test_every_method_trains_a_tiny_loso(shards, tmp_path, name):
    """Every method on the same folds: each fold predicts exactly its test subject's clips
    once, with one probability per class summing to 1; it learns (``LEARNS``); its record
    says what it trained from; the same run again gives the same predictions."""
    import polars as pl

    assert name in LEARNS, f"{name}: say in LEARNS what it must show on the tiny shards"
    summary = run(shards, tmp_path, name)
    assert summary["method"] == name and summary["n_folds"] == 4 and summary["n_clips"] == 24
    preds = pl.read_parquet(tmp_path / "runs" / f"{name}-run" / "predictions.parquet")
    for (subject,), part in preds.group_by("fold"):
        keys = set(shards.clip_labels([subject])[0])
        assert set(part["subject"] + "/" + part["clip"]) == keys and part.height == len(keys)
    probs = np.array(preds["probabilities"].to_list())
    assert probs.shape == (24, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    for fold in summary["folds"]:
        assert fold["test_subject"] not in fold["val_subjects"]
    if LEARNS[name] == "above chance":
        assert summary["metrics"]["uf1"] > 0.6, summary["metrics"]["uf1"]
    else:
        for fold in summary["folds"]:
            rec = json.loads((tmp_path / "runs" / f"{name}-run" / "folds" / fold["test_subject"]
                              / "fold.json").read_text())
            losses = [h["train_total"] for h in rec["history"]]
            assert losses[-1] < losses[0], losses
    method = method_named(name)
    assert summary["augmentation"] == method.augmentation(method_exp(name))
    assert (summary["pretrained"] is None) == (not method.uses_backbone)
    run(shards, tmp_path, name, name=f"{name}-again", max_folds=1)  # the first fold again
    other = pl.read_parquet(tmp_path / "runs" / f"{name}-again" / "predictions.parquet")
    first = preds.filter(pl.col("fold") == other["fold"][0])
    assert other["clip"].to_list() == first["clip"].to_list()
    assert np.allclose(np.array(other["probabilities"].to_list()),
                       np.array(first["probabilities"].to_list()), atol=1e-6)


def test_methods_without_a_backbone_claim_no_trunk_cache(shards, tmp_path):
    """A configuration that caches the paper model's trunk with augmented views (demo.yaml's)
    does not make a baseline's record claim either: the flow CNNs and LBP-TOP train on what
    their own inputs are, without augmentation, and their records and summaries say so."""
    for name in (n for n in registered() if not method_named(n).uses_backbone):
        summary = run(shards, tmp_path, name, name=f"{name}-cached",
                      **{"train.cache_trunk": True, "train.cached_views": 2,
                         "train.max_epochs": 2})
        assert summary["augmentation"].startswith("none"), (name, summary["augmentation"])
        for fold in summary["folds"]:
            rec = json.loads((tmp_path / "runs" / f"{name}-cached" / "folds" /
                              fold["test_subject"] / "fold.json").read_text())
            assert rec["cache_trunk"] is False and rec["augmented"] is False, name


def test_a_toy_method_through_the_registry(shards, tmp_path):
    """A new method is a few lines: a fit that turns a fold job into a fold result."""
    from mer_ray.fitting.job import FoldResult
    from mer_ray.records import FoldRecord, Predictions

    class Toy(Method):
        name = "toy"
        summary = "the majority class"

        def fit(self, job, device, resume=None, on_epoch=None, cache=None, every_epoch=None):
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
            return FoldResult(job.key, rec, Predictions(keys, test["label_id"].tolist(), probs),
                              b"")

        def parameters(self, exp, classes):
            return 0

    register(Toy())
    try:
        summary = run(shards, tmp_path, "toy")
    finally:
        del METHODS["toy"]
    assert summary["method"] == "toy" and summary["n_clips"] == 24
    assert all(f["timing"]["setup_s"] >= 0.2 for f in summary["folds"])


@pytest.mark.parametrize("name", registered())
def test_every_method_marks_its_leaky_run(shards, tmp_path, capsys, name):
    """train.selection=test scores every epoch (or setting) on the test subject and keeps the
    best: the field's leaky protocol; its records, summary, printed table and report say
    LEAKY, and the report never ranks it."""
    summary = run(shards, tmp_path, name, **{"train.selection": "test",
                                             "train.max_epochs": 3})
    assert summary["selection"] == "test" and "test subject" in summary["leaky"]
    for fold in summary["folds"]:
        rec = json.loads((tmp_path / "runs" / f"{name}-run" / "folds" / fold["test_subject"] /
                          "fold.json").read_text())
        assert rec["selection"] == "test"
        test_uf1 = [h["test_uf1"] for h in rec["history"]]
        assert len(test_uf1) == rec["epochs_run"]  # every epoch (or C) scored, no early stop
        assert rec["best_epoch"] == int(np.argmax(test_uf1))
    print_summary(summary, str(tmp_path))
    assert "LEAKY" in capsys.readouterr().out
    from mer_ray.report import write_report

    text = write_report([tmp_path / "runs"], tmp_path / "report").read_text()
    row = next(line for line in text.splitlines() if f"`{name}-run` **LEAKY**" in line)
    assert "**" not in row.replace("**LEAKY**", "")  # nothing of it in bold: not ranked


def test_a_search_refuses_the_leaky_selection(shards, tmp_path):
    from mer_ray.protocols.nested_search import plan_nested

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


def compare_spec(shards, tmp_path, methods=("lbptop_svm", "ststnet"), **kw):
    from mer_ray.data.choice import DataChoice
    from mer_ray.protocols.compare import CompareSpec
    from tests.helpers.tiny import write_config

    tiny = write_config(tmp_path / "tiny.yaml", ("train.max_epochs=3", "train.patience=3"))
    return CompareSpec(methods=tuple(methods), data={"samm": DataChoice(shards=shards.root)},
                       base_file=tiny, settings={"train.max_epochs": 3},
                       user_set=frozenset({"data.frames", "data.size"}), name="cmp", **kw)


def compared(spec, storage: str, local: bool = True, max_folds=None):
    from mer_ray.protocols.compare import compare_rows, plan_entries, train_entries
    from mer_ray.protocols.loso import RunOptions
    from mer_ray.train.folder import RunFolder

    shards = {ds: choice.prepare(None) for ds, choice in spec.data.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entries = plan_entries(spec, storage, max_folds)
        opts = RunOptions(storage_path=storage, local=local, max_folds=max_folds)
        train_entries(entries, shards, opts, RunFolder.open(storage, spec.name))
    for e in entries:
        e.summary = summarise_run(e.run.view())
    return entries, compare_rows(entries)


def test_compare_on_the_same_folds(shards, tmp_path, capsys):
    """Every method on the same shards and folds, one table: the best honest method, each
    other's paired difference from it (Holm-adjusted), leaky rows beside their honest runs,
    never ranked; the folds' keys name their method."""
    spec = compare_spec(shards, tmp_path, with_leaky=True)
    entries, rows = compared(spec, str(tmp_path / "runs"))
    out = capsys.readouterr().out
    assert "fold lbptop_svm/s1" in out and "fold ststnet-leaky/s1" in out
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
    assert {"p", "p_holm", "differs"} <= set(other["difference"]["uf1"])
    assert rows[2]["versus"] == "lbptop_svm (honest)" and "p_holm" not in \
        rows[2]["difference"]["uf1"]  # the leak is not one of the comparisons with the best


def test_compare_over_seeds(shards, tmp_path):
    """--seeds 2: each method trained with two seeds on the same folds; each seed's figure,
    their mean and spread, and intervals over subjects and seeds."""
    spec = compare_spec(shards, tmp_path, seeds=2)
    entries, rows = compared(spec, str(tmp_path / "runs"))
    assert sorted(e.seed for e in entries) == [0, 0, 1, 1]
    assert len({e.name for e in entries}) == 4 and all("-seed" in e.name for e in entries)
    for r in rows:
        assert r["seeds"] == [0, 1] and len(r["uf1_per_seed"]) == 2
        assert np.isclose(r["uf1"], np.mean(r["uf1_per_seed"]))
        assert r["uf1_std"] is not None
    other = next(r for r in rows if not r["best"])
    assert other["difference"]["uf1"]["p_holm"] >= other["difference"]["uf1"]["p"]


def test_every_method_gives_the_same_predictions_on_ray_and_here(shards, tmp_path,
                                                                 ray_session):
    """Every registered method, two folds each, all as one comparison: on the Ray fold slots
    (one list of jobs, the keys naming each method) and in this process (``--local``), the
    same predictions."""
    import polars as pl

    methods = registered()
    spec = compare_spec(shards, tmp_path, methods=methods)
    got = {}
    for local in (True, False):
        entries, _ = compared(spec, str(tmp_path / f"runs-{local}"), local=local, max_folds=2)
        got[local] = {e.method: pl.read_parquet(tmp_path / f"runs-{local}" / e.name /
                                                "predictions.parquet") for e in entries}
    for method in methods:
        here, ray = got[True][method], got[False][method]
        assert here["clip"].to_list() == ray["clip"].to_list(), method
        assert np.allclose(np.array(here["probabilities"].to_list()),
                           np.array(ray["probabilities"].to_list()), atol=1e-6), method
    nodes = {f["node_ip"] for e in entries for f in e.summary["folds"]}
    assert "local" not in nodes  # the Ray run's folds trained on Ray's workers
