"""How long a command's console stays silent: run it with its output going to a pipe (as under
a job submit or into a log file, not a terminal), stamp every line with the time it arrived,
and print the longest gaps between lines.

    python benchmarks/console_gaps.py [--workdir /tmp/mergaps] [--out console.txt] [-- CMD ...]

Without a command it runs what ``make demo`` runs, from nothing (render, align, trunk tokens,
the folds, the report) in a fresh work folder. The console, each line with its second, goes to
``--out``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def demo(workdir: Path) -> list[list[str]]:
    mer = [sys.executable, "-m", "mer_ray"]
    return [[*mer, "train", "--config", "experiments/configs/demo.yaml", "--workdir",
             str(workdir), "--storage-path", str(workdir / "results"), "--name", "demo"],
            [*mer, "report", str(workdir / "results"), "--out", str(workdir / "report")]]


def stamped(commands: list[list[str]]) -> list[tuple[float, str]]:
    """Every line the commands print (stdout and stderr), with its arrival time."""
    lines, start = [], time.monotonic()
    for cmd in commands:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        for line in proc.stdout:
            lines.append((time.monotonic() - start, line.rstrip("\n")))
        if proc.wait() != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    lines.append((time.monotonic() - start, "(end)"))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mergaps"))
    ap.add_argument("--out", type=Path, default=Path("console.txt"))
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = [c for c in args.command if c != "--"]
    if command:
        commands = [command]
    else:
        shutil.rmtree(args.workdir, ignore_errors=True)
        commands = demo(args.workdir)
    lines = stamped(commands)
    args.out.write_text("".join(f"{t:7.1f}  {text}\n" for t, text in lines))
    gaps = sorted(((b[0] - a[0], a[1], b[1]) for a, b in zip([(0.0, "(start)")] + lines, lines)),
                  reverse=True)
    print(f"{len(lines) - 1} lines in {lines[-1][0]:.0f} s; console with times: {args.out}")
    print("longest silences (seconds, the line before, the line after):")
    for gap, before, after in gaps[:5]:
        print(f"  {gap:6.1f}  {before[:70]!r} -> {after[:70]!r}")


if __name__ == "__main__":
    main()
