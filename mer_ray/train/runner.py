"""The one way a set of folds runs: ``run_jobs``. Every experiment (a LOSO and its seeds, a
grid row, a transfer, a flat search's trial, a nested search's outer and inner folds) turns
itself into fold jobs (``fold_jobs.py``) and hands them here, to be trained one after another in
this process or on the Ray fold slots (``slots.py``), with the same threads per fold either way
(``train.cpus_per_fold``), so both give the same predictions.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import torch

from ..config import TrainConfig
from ..fitting.device import fold_device, use_gpus
from ..fitting.job import FoldJob
from ..records import FoldRecord
from .attempt import fold_summary, run_job
from .folder import RunFolder
from .progress import Progress
from .slots import SlotPool, fold_failed, fold_slots

Jobs = list[FoldJob] | Callable[[], list[FoldJob]]


def pending(jobs: list[FoldJob]) -> list[FoldJob]:
    """The jobs whose folds have no stored results."""
    from ..records import fold_done
    from ..storage import open_storage

    return [j for j in jobs
            if not (j.storage and fold_done(open_storage(j.storage), j.record_dir))]


def run_jobs(jobs: Jobs, tc: TrainConfig, *, local: bool = False,
             folder: RunFolder | None = None, title: str = "", quiet: bool = False,
             expected: int | None = None, report=None) -> list[FoldRecord]:
    """Train every job whose fold has no stored results; returns the records of the folds
    trained now, and raises ``FoldFailed`` (after the others finished) if some raised.

    ``jobs``: the jobs, or a function making them, called once the Ray slots have started
    (their start-up overlaps it: e.g. the shared trunk tokens), for ``expected`` jobs at most.
    ``local``: in this process, one after another, instead of on Ray (which must then be
    initialised, and ``folder`` given: the slots' records and logs go there). ``report(job,
    row, last)``: after every epoch (in this process only)."""
    if local:
        made = jobs() if callable(jobs) else jobs
        todo = pending(made)
        bar = _progress(len(todo), 1, title, len(made) - len(todo), quiet)
        records = _run_here(todo, tc, bar, report)
    else:
        if folder is None:
            raise ValueError("run_jobs on Ray needs the run folder (where its slots' records go)")
        skipped = 0
        if not callable(jobs):
            todo = pending(jobs)
            jobs, expected, skipped = todo, None, len(jobs) - len(todo)
        wanted = expected if expected is not None else len(jobs)
        if wanted <= 0:
            return []
        use_gpu = use_gpus(tc.use_gpu, on_ray=True)
        with SlotPool(tc, min(fold_slots(tc, use_gpu), wanted), folder.ray_dir,
                      folder.logs_dir, use_gpu) as pool:
            made = jobs() if callable(jobs) else jobs
            todo = pending(made)
            bar = _progress(len(todo), pool.slots, title, skipped + len(made) - len(todo), quiet)
            if bar and folder.logs_dir:
                bar.say(f"worker output: {folder.logs_dir}/slot-*.log")
            pool.submit(todo)
            records = pool.wait(bar)
    if bar:
        bar.end()
    return records


def _progress(total: int, slots: int, title: str, done: int, quiet: bool) -> Progress | None:
    if quiet or not total:
        return None
    bar = Progress(total, slots, title)
    bar.begin(done)
    return bar


def _run_here(jobs: list[FoldJob], tc: TrainConfig, bar: Progress | None,
              report) -> list[FoldRecord]:
    """Every job, one after another in this process, with a slot's thread count."""
    if not jobs:
        return []
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(tc.cpus_per_fold)))
    device = fold_device(use_gpus(tc.use_gpu))
    records, errors = [], {}
    try:
        for job in jobs:
            try:
                res = run_job(job, device, report)
            except Exception:  # recorded, reported at the end; the other folds go on
                errors[job.key] = traceback.format_exc()
                if bar:
                    bar.failed_fold(job.key, errors[job.key])
                continue
            records.append(res.record)
            if bar:
                bar.finished(job.key, fold_summary(res.record), 0)
    finally:
        torch.set_num_threads(before)
    if errors:
        raise fold_failed(errors)
    return records
