"""Run by test_multinode.py in its own process: a LOSO on a simulated multi-node cluster
(``ray.cluster_utils.Cluster``) whose nodes offer logical GPUs, folds packed two to a GPU
(``train.gpus_per_fold=0.5``), then the same LOSO in process.

    python tests/helpers/multinode_loso.py SHARDS OUT NODES FOLDS

Writes OUT/schedule.json: per fold the node it ran on, what its worker held, and the
wall-clock span of each fold, so the test can check placement, packing and concurrency.
"""

import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

from tests.helpers.tiny import TINY  # noqa: E402


def main(shards: str, out: str, nodes: int, folds: int) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from mer_ray.config import ExperimentConfig
    from mer_ray.data.shards import Shards
    from mer_ray.fitting.device import LOGICAL_GPUS
    from mer_ray.protocols.loso import plan_loso, train_folds
    from mer_ray.protocols.summary import summarise_run
    from mer_ray.train.slots import fold_slots

    # The nodes' GPUs are logical only: folds scheduled on them compute on the CPU. The
    # variable reaches the workers through the cluster's processes, started after it is set.
    os.environ[LOGICAL_GPUS] = "1"
    shards = Shards.open(shards)

    warnings.simplefilter("ignore")
    exp = ExperimentConfig().with_overrides(TINY + [
        "train.use_gpu=true", "train.gpus_per_fold=0.5"])
    cluster = Cluster(initialize_head=True, head_node_args={
        # The head has CPUs but no GPU: only the folds' GPU share keeps them off it.
        "num_cpus": 2, "object_store_memory": 150_000_000, "include_dashboard": False})
    node_ids = {}
    for i in range(nodes):
        # GPUs Ray counts (logical): no CUDA here, so the folds compute on the CPU, but Ray
        # schedules them by their share of a GPU exactly as on a GPU node.
        node = cluster.add_node(num_cpus=2, num_gpus=1, resources={f"node_{i}": 1},
                                object_store_memory=100_000_000)
        node_ids[node.node_id] = i
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    slots = fold_slots(exp.train, True)
    t0 = time.time()
    print("cluster up", file=sys.stderr)
    try:
        setup = plan_loso(shards, exp, Path(out) / "runs", name="multi", max_folds=folds)
        train_folds(setup)
        print(f"ray LOSO {time.time() - t0:.1f} s", file=sys.stderr)
        summarise_run(setup.view())
    finally:  # a failure must not leave the simulated cluster (and its address file) behind
        ray.shutdown()
        cluster.shutdown()
    # in this process, with the same settings but on the CPU: this machine has no GPU
    single = plan_loso(shards, exp.with_values({"train.use_gpu": False}), Path(out) / "runs",
                       name="single", max_folds=folds)
    train_folds(single, local=True)
    summarise_run(single.view())
    schedule = {}
    for f in setup.folds:
        rec = json.loads((Path(out) / "runs" / "multi" / "folds" / f.test / "fold.json")
                         .read_text())
        schedule[f.test] = {"node": node_ids.get(rec["node_id"], "not a GPU node"),
                            "node_id": rec["node_id"], "start": rec["started_at"],
                            "end": rec["finished_at"], "resources": rec["resources"]}
    (Path(out) / "schedule.json").write_text(json.dumps(
        {"nodes": nodes, "slots": slots, "folds": schedule}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
