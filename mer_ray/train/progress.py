"""What a running set of folds prints: a line when it starts, one per finished (or failed)
fold with the time left, and, while folds train, a line at least every ``EVERY_S`` seconds
saying which epoch each running fold is in (a job log or a log file shows it too: nothing
here needs a terminal)."""

from __future__ import annotations

import math
import sys
import time

from ..console import TICK_S as EVERY_S
from ..console import duration


class Progress:
    """One line per finished fold, with done / total, how many run now and an estimate of the
    time left (from the mean wall time of the folds finished so far and the slots in use)."""

    def __init__(self, total: int, slots: int, title: str = "", out=None):
        self.total, self.slots, self.title = total, max(slots, 1), title
        self.out = out or sys.stdout
        self.done, self.failed, self.walls = 0, 0, []
        self.start = self.last = time.perf_counter()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)
        self.last = time.perf_counter()

    def begin(self, already_done: int = 0) -> None:
        head = f"{self.title}: " if self.title else ""
        extra = f" ({already_done} already done)" if already_done else ""
        self.say(f"{head}{self.total} fold(s) to train on {self.slots} slot(s){extra}")

    def finished(self, key: str, info: dict, running: int) -> None:
        self.done += 1
        self.walls.append(info.get("wall_seconds") or 0.0)
        left = self.total - self.done - self.failed
        eta = ""
        if left:
            mean = sum(self.walls) / len(self.walls)
            eta = f", about {duration(mean * math.ceil(left / self.slots))} left"
        score = ""
        figure = "UF1" if info.get("test_uar") is not None or info.get("test_uf1") is None \
            else "mean AU F1"  # a multi-label (CD6ME) fold has no UAR
        if info.get("test_uf1") is not None:
            score = f"test {figure} {info['test_uf1']:.3f}" + (
                f" UAR {info['test_uar']:.3f}, " if info["test_uar"] is not None else ", ")
        elif info.get("best_val_uf1") is not None:
            score = f"validation UF1 {info['best_val_uf1']:.3f}, "
        chose = f" [chose {info['chosen']}]" if info.get("chosen") else ""
        self.say(f"[{self.done + self.failed}/{self.total}] fold {key}: {score}"
                 f"{info.get('epochs_run')} epochs, {duration(info.get('wall_seconds') or 0)} "
                 f"({running} running{eta}){chose}")

    def failed_fold(self, key: str, error: str) -> None:
        self.failed += 1
        last = error.strip().splitlines()[-1] if error.strip() else "error"
        self.say(f"[{self.done + self.failed}/{self.total}] fold {key}: FAILED ({last})")

    def running(self, where: dict[str, str]) -> None:
        """At most every ``EVERY_S`` seconds since the last line: what each running fold is
        doing (``where``: fold key -> e.g. "epoch 3/8")."""
        if time.perf_counter() - self.last < EVERY_S:
            return
        now = ", ".join(f"fold {k} {w}" for k, w in sorted(where.items())) or "starting"
        self.say(f"  ... {self.done + self.failed}/{self.total} done, "
                 f"{duration(time.perf_counter() - self.start)} so far: {now}")

    def end(self) -> None:
        self.say(f"{self.done} fold(s) trained in {duration(time.perf_counter() - self.start)}"
                 + (f", {self.failed} failed" if self.failed else ""))
