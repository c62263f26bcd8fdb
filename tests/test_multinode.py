"""A simulated cluster, a head with CPUs only and a node with a (logical) GPU, two folds packed
on the GPU: every fold runs on the GPU node holding half a GPU, never more at once than the
slots the resources give, and the results equal the same LOSO run in one process (so the
Ray-free loop of the overhead benchmark trains exactly what Ray trains). One GPU node: every
fold slot is a Train run of its own, and four of them on two cores cost a minute more than
two."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NODES, FOLDS = 1, 4


@pytest.fixture(scope="module")
def six_subject_shards(ray_session, tmp_path_factory):
    from mer_ray.config import DataConfig
    from mer_ray.data.choice import ensure_shards
    from mer_ray.data.synth import generate

    root = tmp_path_factory.mktemp("six")
    generate(root / "synth", "samm", subjects=FOLDS, clips_per_class=1, protocol="3class",
             seed=2, progress=False)
    return ensure_shards("samm", root / "synth", "3class", DataConfig(frames=4, size=28), root,
                         synthetic=True)


def test_folds_packed_on_gpu_nodes(six_subject_shards, tmp_path):
    script = Path(__file__).parent / "helpers" / "multinode_loso.py"
    log = tmp_path / "driver.log"
    with open(log, "w") as sink:  # a pipe nobody reads can fill up and block the driver
        proc = subprocess.run([sys.executable, str(script), str(six_subject_shards.root),
                               str(tmp_path), str(NODES), str(FOLDS)], stdout=sink,
                              stderr=subprocess.STDOUT, timeout=900)
    assert proc.returncode == 0, log.read_text()[-3000:]
    plan = json.loads((tmp_path / "schedule.json").read_text())
    schedule = plan["folds"]
    # one GPU per node, half a GPU per fold: 2 slots a node (the head's CPUs add none: folds
    # need a GPU share)
    assert plan["slots"] == 2 * NODES
    assert len(schedule) == FOLDS
    assert all(isinstance(f["node"], int) for f in schedule.values())  # only GPU nodes
    assert all(f["resources"].get("GPU") == 0.5 and f["resources"].get("CPU") == 1
               for f in schedule.values())
    assert len({f["node"] for f in schedule.values()}) == NODES  # every GPU node took folds
    # never more folds at once than slots, nor than two on one GPU
    spans = [(f["start"], f["end"], f["node"]) for f in schedule.values()]
    for s, _, node in spans:
        assert sum(a <= s < b for a, b, _ in spans) <= plan["slots"]
        assert sum(a <= s < b and n == node for a, b, n in spans) <= 2
    multi = pl.read_parquet(tmp_path / "runs" / "multi" / "predictions.parquet").sort("clip")
    single = pl.read_parquet(tmp_path / "runs" / "single" / "predictions.parquet").sort("clip")
    assert multi.height == single.height == FOLDS * 3
    assert multi.select("fold", "clip", "prediction").equals(
        single.select("fold", "clip", "prediction"))
    for p, q in zip(multi["probabilities"], single["probabilities"]):
        assert p.to_list() == pytest.approx(q.to_list(), abs=1e-4)
