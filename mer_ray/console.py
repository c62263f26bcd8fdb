"""What a command prints: short summary tables, and long stages that say they are still going.

Everything here is plain lines: a job log, a log file and a terminal show the same thing (a
live progress bar would show nothing in the first two until it ends).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence

TICK_S = 9.0  # a long stage prints a line at least this often (under the 10 s promised)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    fmt = [("  ".join(c.ljust(w) for c, w in zip(r, widths))).rstrip() for r in cells]
    out = ([title] if title else []) + [fmt[0], line] + fmt[1:]
    return "\n".join(out)


def params_text(params: dict) -> str:
    """Chosen settings as a line: ``loss.lambda1=0.1234, model.lora_rank=8``."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def show(headers, rows, title=None) -> None:
    print(table(headers, rows, title), flush=True)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


class Ticker:
    """A long stage that says it is still going: a line when it starts, then, from a thread, a
    line whenever ``every`` seconds pass without one (with ``detail``, e.g. "40/96 clips",
    when the stage gives one), and a closing line when it took longer than that.

        with Ticker("aligning 96 clips") as tick:
            ...
            tick.update("40/96 clips")
    """

    def __init__(self, what: str, every: float = TICK_S, out=None):
        self.what, self.every = what, every
        self.out = out or sys.stdout
        self.detail = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)
            self.last = time.monotonic()

    def update(self, detail: str) -> None:
        self.detail = detail

    def _run(self) -> None:
        while not self._stop.wait(max(0.05, self.last + self.every - time.monotonic())):
            if time.monotonic() - self.last >= self.every:
                detail = f": {self.detail}" if self.detail else ""
                self.say(f"  ... {self.what}{detail}, "
                         f"{duration(time.monotonic() - self.start)} so far")

    def __enter__(self) -> Ticker:
        self.start = time.monotonic()
        self.say(f"{self.what} ...")
        self._thread.start()
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self._stop.set()
        self._thread.join()
        took = time.monotonic() - self.start
        if kind is None and took >= self.every:
            self.say(f"{self.what}: done in {duration(took)}")
