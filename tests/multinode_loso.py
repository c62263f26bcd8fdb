"""Run by test_multinode.py in its own process: a LOSO on a simulated multi-node cluster
(``ray.cluster_utils.Cluster``), each node offering one fold slot, then the same LOSO in process.

    python tests/multinode_loso.py SHARDS OUT NODES FOLDS

Writes OUT/schedule.json: per fold the node it ran on, the nodes and their slots, and the
wall-clock span of each fold, so the test can check placement and concurrency.
"""

import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tiny import TINY  # noqa: E402  (tests/, this script's folder)


def main(shards: str, out: str, nodes: int, folds: int) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from mer_ray.train.config import ExperimentConfig
    from mer_ray.train.local import run_folds_local
    from mer_ray.train.loso import plan_loso, run_folds
    from mer_ray.train.results import summarise

    warnings.simplefilter("ignore")
    exp = ExperimentConfig().with_overrides(TINY + [
        "train.max_epochs=2", "train.fold_resources={fold_slot: 1}"])
    cluster = Cluster(initialize_head=True, head_node_args={
        # The head has CPUs but no fold slot: only train.fold_resources keeps folds off it.
        "num_cpus": 2, "object_store_memory": 150_000_000, "include_dashboard": False})
    node_ids = {}
    for i in range(nodes):
        node = cluster.add_node(num_cpus=1, resources={"fold_slot": 1, f"node_{i}": 1},
                                object_store_memory=100_000_000)
        node_ids[node.node_id] = i
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    t0 = time.time()
    print("cluster up", file=sys.stderr)
    setup = plan_loso(shards, exp, Path(out) / "runs", name="multi", max_folds=folds)
    run_folds(setup)
    print(f"ray LOSO {time.time() - t0:.1f} s", file=sys.stderr)
    summarise(setup)
    ray.shutdown()
    cluster.shutdown()
    single = plan_loso(shards, exp, Path(out) / "runs", name="single", max_folds=folds)
    run_folds_local(single)
    summarise(single)
    schedule = {}
    for f in setup.folds:
        rec = json.loads((Path(out) / "runs" / "multi" / "folds" / f.test / "fold.json")
                         .read_text())
        schedule[f.test] = {"node": node_ids.get(rec["node_id"], "not a slot node"),
                            "node_id": rec["node_id"], "start": rec["started_at"],
                            "end": rec["finished_at"]}
    (Path(out) / "schedule.json").write_text(json.dumps(
        {"nodes": nodes, "folds": schedule}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
