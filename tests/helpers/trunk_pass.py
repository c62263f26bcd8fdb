"""The frozen-trunk token pass as Ray Data actors over a shard folder (a path or URI), run as a
driver that joins the cluster named by RAY_ADDRESS: ``python -m tests.helpers.trunk_pass SHARDS
CONFIG``. Before the pass it leaves an object where an unfinished earlier pass would have left
one (no marker); it prints one JSON line: the token folder, and whether a second look finds the
finished folder without computing."""

import json
import sys

from mer_ray.cluster import ensure_ray
from mer_ray.config import ExperimentConfig, load_yaml
from mer_ray.data.shards import Shards
from mer_ray.model.build import build_model, trunk_fingerprint
from mer_ray.model.encoder import resolve_backbone
from mer_ray.storage import locate
from mer_ray.train.trunk import ensure_trunk_tokens, token_root


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
    print(json.dumps({"root": found.root, "reused": again is not None and again.root == root}))


if __name__ == "__main__":
    main(*sys.argv[1:])
