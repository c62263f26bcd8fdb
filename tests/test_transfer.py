"""Cross-dataset transfer (Table 5): the script end to end, target labels kept out of training,
and the Ray path training what the in-process path trains."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mer_ray.config import ExperimentConfig
from mer_ray.data.shards import Shards
from mer_ray.methods.mer.fit import fit_fold
from mer_ray.protocols.transfer import condition_jobs, plan_transfer, run_transfer
from tests.helpers.tiny import write_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cross(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cross")
    write_config(tmp / "tiny.yaml", ("train.cache_trunk=true", "train.max_epochs=2"))
    argv = ["cross_dataset.py", "--config", str(tmp / "tiny.yaml"), "--workdir", str(tmp / "w"),
            "--storage-path", str(tmp / "runs"), "--frames", "4", "--synthetic-subjects", "3",
            "--synthetic-clips-per-class", "1", "--local"]
    old = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(str(REPO / "experiments" / "cross_dataset.py"), run_name="__main__")
    finally:
        sys.argv = old
    return tmp


def test_script_writes_table_5(cross):
    grid = json.loads((cross / "runs" / "cross.json").read_text())
    got = [(r["source"], r["target"], r["adaptation"]) for r in grid["rows"]]
    assert got == [("samm", "casme2", False), ("samm", "casme2", True),
                   ("samm", "smic", False), ("samm", "smic", True)]
    for r in grid["rows"]:
        assert r["synthetic"] and not r["pretrained"] and r["n_target_clips"] == 9
        run = cross / "runs" / r["run"]
        summary = json.loads((run / "summary.json").read_text())
        t = summary["transfer"]
        assert (t["source"], t["target"], t["adaptation"]) == ("samm", r["target"],
                                                               r["adaptation"])
        # early stopping reads source subjects only; the target is only ever tested
        assert set(t["val_subjects"]) <= {"006", "007", "008"}
        assert not set(t["target_subjects"]) & set(t["train_subjects"] + t["val_subjects"])
        fold = json.loads(next((run / "folds").glob("*/fold.json")).read_text())
        assert fold["adaptation_clips"] is r["adaptation"]
    # adaptation changes training: the consistency term sees the target clips too
    runs = {(r["target"], r["adaptation"]): cross / "runs" / r["run"] for r in grid["rows"]}
    hist = {k: json.loads(next((v / "folds").glob("*/fold.json")).read_text())["history"]
            for k, v in runs.items()}
    assert hist[("casme2", False)][0]["train_cons"] != hist[("casme2", True)][0]["train_cons"]


class ScrambledLabels:
    """Target clips whose labels are replaced by random ones (not -1)."""

    def __init__(self, inner, seed):
        self.inner, self.rng = inner, np.random.default_rng(seed)

    def iter_batches(self, **kwargs):
        for batch in self.inner.iter_batches(**kwargs):
            yield {**batch, "label_id": self.rng.integers(0, 3, len(batch["label_id"]))}


def test_target_labels_cannot_steer_training(cross):
    """The same adaptation run with the target's labels withheld or scrambled two ways: the
    training history and the learnt weights are identical."""
    exp = ExperimentConfig().with_overrides([f"{k}={v}" for k, v in [
        ("data.size", 28), ("data.frames", 4), ("model.pretrained", "false"), ("model.sfa_dim", 32),
        ("model.dgat_dim", 32), ("model.fusion_dim", 32), ("train.max_epochs", 2),
        ("train.val_subjects", 1), ("train.batch_size", 4), ("train.cache_trunk", "true")]])
    w = cross / "w"
    [samm] = w.glob("shards-samm-3class-T4-S28-*")
    [casme2] = w.glob("shards-casme2-3class-T4-S28-*")
    setup = plan_transfer(Shards.open(samm), Shards.open(casme2), exp, cross / "scratch",
                          "labels")
    [job] = condition_jobs(setup, [True])
    assert job.sources["target"].unlabelled  # what the runner reads: labels withheld
    outcomes = []
    for target in (lambda: job.sources["target"].reader(),
                   lambda: ScrambledLabels(job.sources["target"].reader(), 1),
                   lambda: ScrambledLabels(job.sources["target"].reader(), 2)):
        readers = {"train": job.sources["train"].reader(), "val": job.sources["val"].reader(),
                   "target": target()}
        result = fit_fold(job, torch.device("cpu"), readers=readers)
        outcomes.append(([{k: v for k, v in h.items() if k != "seconds"}
                          for h in result.record.history], result.predictions.probs))
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_ray_path_trains_what_the_local_path_trains(cross, ray_session):
    record = json.loads((cross / "runs" / "cross.json").read_text())["rows"][1]  # casme2, DA
    run = cross / "runs" / record["run"].split("/")[0]
    exp_rec = json.loads((run / "experiment.json").read_text())
    exp = ExperimentConfig.from_dict(exp_rec["config"])
    setup = plan_transfer(Shards.open(exp_rec["source_shards"]),
                          Shards.open(exp_rec["target_shards"]), exp, cross / "ray_runs", "ray")
    assert run_transfer(setup, [True]) == [True]
    local = json.loads((run / "adaptation" / "folds" / "target:casme2" / "predictions.json")
                       .read_text())
    ray_preds = json.loads((cross / "ray_runs" / "ray" / "adaptation" / "folds" /
                            "target:casme2" / "predictions.json").read_text())
    assert local["keys"] == ray_preds["keys"]
    for p, q in zip(local["probs"], ray_preds["probs"]):
        assert p == pytest.approx(q, abs=1e-4)
    fold = json.loads((cross / "ray_runs" / "ray" / "adaptation" / "folds" / "target:casme2" /
                       "fold.json").read_text())
    assert fold["adaptation_clips"] is True and fold["node_ip"] != "local"
