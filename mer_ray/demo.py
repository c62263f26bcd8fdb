"""The main job on the embedded synthetic default: synth -> manifest -> prepare (-> LOSO).

Run as ``python -m mer_ray.demo`` (``make demo``). Fold training is not part of the package yet,
so the demo stops after writing the shards and says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mer_ray.demo", description=__doc__)
    p.add_argument("--workdir", type=Path, default=Path("data/demo"))
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--clips-per-class", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=112)
    args = p.parse_args(argv)
    root, shards = args.workdir / "synthetic_samm", args.workdir / "shards"
    print(f"== synthetic SAMM-layout dataset (3-class) in {root}: SYNTHETIC data, not SAMM ==")
    rc = cli_main(["synth", "--out", str(root), "--layout", "samm", "--protocol", "3class",
                   "--subjects", str(args.subjects), "--clips-per-class",
                   str(args.clips_per_class), "--seed", str(args.seed),
                   "--preview", str(args.workdir / "preview.png")])
    if rc:
        return rc
    print(f"\n== aligned shards in {shards} ==")
    rc = cli_main(["prepare", "--dataset", "samm", "--root", str(root), "--protocol", "3class",
                   "--out", str(shards), "--size", str(args.size), "--overwrite"])
    if rc:
        return rc
    print("\nShards are ready. LOSO training is not implemented yet, so the demo stops here: "
          "no model was trained and no UF1/UAR is reported.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
