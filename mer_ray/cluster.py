"""Starting or joining Ray, the same way for every command."""

from __future__ import annotations

import os


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
    ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory,
             include_dashboard=False, log_to_driver=True)
