"""How to register a clip's apex frame to its onset frame for the optical flow: each choice's
flow on synthetic clips without an expression (only head drift, blinks and flicker: noise)
and with one (signal), and the flow methods' LOSO figures on shards made with each.

    python benchmarks/registration.py [--size 56] [--seeds 0 50] [--no-methods]

For each registration (``data.registration``: separate, onset, rigid), on a synthetic
SAMM-layout set rendered twice from the same seed (the same subjects, clips and distractors),
once at ``--synthetic-intensity 0`` and once at the default intensity, every clip's onset and
apex frames are aligned as ``prepare --flow`` aligns them and the TV-L1 flow between them
computed: the mean flow magnitude over the aligned frame (px), per clip, then averaged over
clips; their ratio (expressive over neutral). Because the two renders differ only by the
expression, the expression's own flow is known too (``flow_figures``), and so is each
registration's error against it: a registration whose landmarks move with the expression
turns the expression into misregistration, which raises the plain ratio and the error alike.
Then (unless ``--no-methods``) ``mer-ray compare --methods ststnet,offapexnet`` on the demo
configuration with each registration, on each ``--seeds`` set: the flow methods' honest UF1.

Prints two tables and writes ``registration.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mer_ray.console import show  # noqa: E402
from mer_ray.data.align import (  # noqa: E402
    REGISTRATIONS,
    AlignGeometry,
    detect_landmarks,
    pair_matrices,
    warp,
)
from mer_ray.data.choice import SYNTH_INTENSITY  # noqa: E402
from mer_ray.data.flow import apex_position, optical_flow  # noqa: E402
from mer_ray.data.frames import index_frames, read_frames  # noqa: E402
from mer_ray.data.manifest import build_manifest, included  # noqa: E402
from mer_ray.data.synth import generate  # noqa: E402
from mer_ray.data.synth.render import RenderConfig  # noqa: E402


def clip_pairs(root: Path) -> list[tuple[list, list, str]]:
    """Each included clip's onset and apex frames and their landmarks, as ``prepare --flow``
    reads them (clips in a stable order)."""
    geometry = AlignGeometry()
    out = []
    rows = included(build_manifest("samm", root, "3class")).sort(["subject", "clip"])
    for row in rows.to_dicts():
        index = index_frames(row["source"])
        span = index.span(int(row["onset"]), int(row["offset"]))
        pos, _ = apex_position(span, list(index.numbers), row.get("apex"))
        frames = read_frames(index, [span[0], pos])
        out.append((frames, [detect_landmarks(f, geometry.upsample_retry,
                                              geometry.relative_score) for f in frames],
                    f"{row['subject']}/{row['clip']}"))
    return out


def flow(frames, landmarks, registration: str, size: int) -> np.ndarray:
    """(2, S, S): the TV-L1 flow from the aligned onset to the apex registered to it."""
    a, b, _ = pair_matrices(*landmarks, size, AlignGeometry(), registration)
    return np.stack(optical_flow(warp(frames[0], a, size), warp(frames[1], b, size), "tvl1"))


def flow_figures(neutral: list, expressive: list, size: int) -> dict[str, dict[str, float]]:
    """Per registration: the mean flow magnitude (px) on the clips without and with an
    expression, their ratio, and the paired error.

    The two sets are one render with and without the action units (same seed: the same
    onset frames, head drift, blinks and flicker). The expression's own flow, per clip, is the
    difference of the two sets' flows under the onset's crop, where every onset frame and the
    head's motion are the same in both; each registration's error is how far its flow on the
    expressive clip is from that: the noise it keeps plus the misregistration it adds."""
    assert [c for *_, c in neutral] == [c for *_, c in expressive]
    own = [flow(*e[:2], "onset", size) - flow(*n[:2], "onset", size)
           for n, e in zip(neutral, expressive)]
    expression = float(np.mean([np.hypot(*o).mean() for o in own]))
    out = {}
    for reg in REGISTRATIONS:
        noise = float(np.mean([np.hypot(*flow(*n[:2], reg, size)).mean() for n in neutral]))
        moved = [flow(*e[:2], reg, size) for e in expressive]
        signal = float(np.mean([np.hypot(*m).mean() for m in moved]))
        error = float(np.mean([np.hypot(*(m - o)).mean() for m, o in zip(moved, own)]))
        out[reg] = {"noise": noise, "expressive": signal, "ratio": signal / noise,
                    "expression": expression, "error": error,
                    "expression_to_error": expression / error}
    return out


def methods(workdir: Path, seed: int, registration: str, log: Path) -> dict[str, float]:
    name = f"reg-{registration}-seed{seed}"
    cmd = [sys.executable, "-m", "mer_ray", "compare", "--methods", "ststnet,offapexnet",
           "--flow", "tvl1", "--set", f"data.registration={registration}",
           "--config", "experiments/configs/demo.yaml", "--synthetic-seed", str(seed),
           "--workdir", str(workdir / "data"), "--storage-path", str(workdir / "runs"),
           "--name", name]
    with open(log, "a") as fh:
        print("$", " ".join(cmd[2:]), file=fh, flush=True)
        subprocess.run(cmd, cwd=REPO, check=True, stdout=fh, stderr=subprocess.STDOUT)
    rows = json.loads((workdir / "runs" / f"{name}.json").read_text())["rows"]
    return {r["method"]: r["uf1"] for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/merregistration"))
    ap.add_argument("--size", type=int, default=56, help="aligned frame size (the demo's)")
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--clips-per-class", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 50])
    ap.add_argument("--no-methods", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("registration.json"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sets = {}
    for label, intensity in (("neutral", 0.0), ("expressive", SYNTH_INTENSITY)):
        root = args.workdir / f"set-{label}"
        if not (root / "synth.json").is_file():
            generate(root, "samm", args.subjects, args.clips_per_class, "3class", seed=7,
                     render=RenderConfig(intensity=intensity), progress=False)
        sets[label] = clip_pairs(root)
    figures = flow_figures(sets["neutral"], sets["expressive"], args.size)
    table = [(reg, f"{f['noise']:.3f}", f"{f['expressive']:.3f}", f"{f['ratio']:.2f}",
              f"{f['error']:.3f}", f"{f['expression_to_error']:.2f}")
             for reg, f in figures.items()]
    show(["registration", "mean |flow| px, no expression", "mean |flow| px, expression",
          "ratio", "|flow - expression's own| px", "expression / error"], table,
         title=f"TV-L1 onset -> apex flow at S={args.size}, {len(sets['neutral'])} clips per "
               f"set (synthetic, seed 7, distractors on; the expression's own flow: "
               f"{figures['onset']['expression']:.3f} px)")
    flows = figures
    results = {"size": args.size, "flow": flows, "table": table, "methods": {}}
    if not args.no_methods:
        log = args.workdir / "commands.log"
        for seed in args.seeds:
            for reg in REGISTRATIONS:
                results["methods"][f"{reg} seed {seed}"] = methods(args.workdir, seed, reg, log)
        show(["registration", *(f"{m} UF1 seed {s}" for s in args.seeds
                                for m in ("ststnet", "offapexnet"))],
             [(reg, *(f"{results['methods'][f'{reg} seed {s}'][m]:.3f}" for s in args.seeds
                      for m in ("ststnet", "offapexnet"))) for reg in REGISTRATIONS],
             title="honest UF1 over all folds' predictions (demo configuration, each method's "
                   "recipe)")
    results["seconds"] = time.perf_counter() - start
    args.out.write_text(json.dumps(results, indent=1))
    print(f"JSON: {args.out} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
