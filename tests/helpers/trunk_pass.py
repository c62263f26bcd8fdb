"""The frozen-trunk token pass as Ray Data actors over a shard folder (a path or URI), run as a
driver that joins the cluster named by RAY_ADDRESS: ``python -m tests.helpers.trunk_pass SHARDS
CONFIG``. Before the pass it leaves an object where an unfinished pass of an earlier version
would have left one (no marker); it prints one JSON line: the token folder (its pass), the
folder it lives in, and whether a second look finds the finished pass without computing."""

import json
import sys

from mer_ray.cluster import ensure_ray
from mer_ray.config import ExperimentConfig, load_yaml
from mer_ray.data.shards import Shards
from mer_ray.methods.mer.tokens import ensure_trunk_tokens, token_root
from mer_ray.model.build import build_model, trunk_fingerprint
from mer_ray.model.encoder import resolve_backbone
from mer_ray.storage import locate


def two_passes_at_once(shards_uri: str, exp: ExperimentConfig, monkeypatch) -> tuple[list, int]:
    """Two runs asking for the same trunk tokens at the same moment, as two threads of this
    process (each computing in this process, slowly enough for the other to find the lease
    taken): (what each got, how many passes computed). An error of either is raised."""
    import threading
    import time
    import warnings

    from mer_ray.methods.mer import tokens as trunk
    from mer_ray.model.encoder import RANDOM

    monkeypatch.setattr(trunk, "WAIT_POLL_S", 0.1)
    calls, real = [], trunk.encode_here

    def slow(*args, **kw):
        calls.append(1)
        time.sleep(1.5)
        return real(*args, **kw)

    monkeypatch.setattr(trunk, "encode_here", slow)
    got, errors = [], []

    def run():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got.append(trunk.ensure_trunk_tokens(Shards.open(shards_uri), exp, RANDOM,
                                                     where="here"))
        except Exception as exc:  # raised below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    if errors:
        raise errors[0]
    return got, len(calls)


def main(shards_uri: str, config: str) -> None:
    ensure_ray()
    shards = Shards.open(shards_uri)
    exp = ExperimentConfig.from_dict(load_yaml(config))
    backbone = resolve_backbone(exp.model)
    fingerprint = trunk_fingerprint(build_model(exp, len(shards.class_names), backbone))
    root = token_root(shards.root, fingerprint, exp.train.views_id)
    stale = locate(root)
    stale.write_atomic(b"half a pass", "subject=006", "stale.parquet")
    found = ensure_trunk_tokens(shards, exp, backbone, where="ray")
    again = ensure_trunk_tokens(shards, exp, backbone, compute=False)
    print(json.dumps({"root": found.root, "folder": root,
                      "reused": again is not None and again.root == found.root}))


if __name__ == "__main__":
    main(*sys.argv[1:])
