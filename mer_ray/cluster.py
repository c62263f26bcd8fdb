"""Starting or joining Ray, the same way for every command."""

from __future__ import annotations

import os

# Ray keeps at most about one idle worker process per CPU and ends the others after a second.
# A LOSO starts many short-lived workers (Ray Data reads that hold no CPU, a fold's helper
# actors), so on a small machine Ray would start, end and start again processes that each cost
# a second or two of CPU importing Ray: measured here, the 8-fold demo took 305 s with the
# default and 265 s with 16 idle workers kept. Only for a local Ray this process starts; a
# value the user set wins.
IDLE_WORKERS_ENV = "RAY_num_workers_soft_limit"


def keep_idle_workers(cpus: int | None = None) -> None:
    """Let a Ray started from this process keep ``max(16, 4 x cpus)`` idle worker processes
    (the variable is read when Ray starts)."""
    os.environ.setdefault(IDLE_WORKERS_ENV, str(max(16, 4 * (cpus or os.cpu_count() or 1))))


def ensure_ray(num_cpus: int | None = None, object_store_memory: int | None = None) -> None:
    """Join the cluster named by RAY_ADDRESS (as under ``ray job submit``), else start a local
    Ray. Does nothing when Ray is already initialised in this process."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    keep_idle_workers(num_cpus)
    ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory,
             include_dashboard=False, log_to_driver=True)
