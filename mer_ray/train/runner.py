"""The one way folds run. Whole runs (a LOSO and each of its seeds, a grid's rows, a
transfer's targets, a comparison's methods, a nested search's outer folds) are planned
(``PlannedRun``: a folder, the fold jobs it makes once what its folds share exists) and handed
together to ``run_planned``: it decides once where they run (this process or the Ray fold
slots) and on what device, makes what the runs' folds share (a method's ``shared_inputs``: the
paper model's frozen-trunk tokens) once per shards and configuration, and trains every fold of
every run through one slot pool (one per set of fold resources). ``run_jobs`` trains a list of
fold jobs, one after another in this process or on the slots (``slots.py``), with the same
threads per fold either way (``train.cpus_per_fold``), so both give the same predictions; a
flat search's trial and a nested search's inner folds call it directly, in their own process.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..config import ExperimentConfig, TrainConfig
from ..fitting.device import fold_device, use_gpus, warn_if_bf16_emulated
from ..fitting.job import FoldJob
from ..fitting.memory import reuse_freed_memory
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
             folder: RunFolder | None = None, title: str | None = "",
             expected: int | None = None, report=None,
             use_gpu: bool | None = None) -> list[FoldRecord]:
    """Train every job whose fold has no stored results; returns the records of the folds
    trained now, and raises ``FoldFailed`` (after the others finished) if some raised.

    ``jobs``: the jobs, or a function making them, called once the Ray slots have started
    (their start-up overlaps it: e.g. the shared trunk tokens), for ``expected`` jobs at most.
    ``local``: in this process, one after another, instead of on Ray (which must then be
    initialised, and ``folder`` given: the slots' records and logs go there). ``title``: the
    progress lines' (None: no progress lines). ``report(job,
    row, last)``: after every epoch (in this process only). ``use_gpu``: whether the folds
    train on GPUs, when the caller decided it (else decided here, by ``train.use_gpu``: the
    cluster's GPUs on Ray, this process's locally)."""
    if use_gpu is None:
        use_gpu = use_gpus(tc.use_gpu, on_ray=not local)
    warn_if_bf16_emulated(tc.precision, use_gpu)
    if local:
        made = jobs() if callable(jobs) else jobs
        todo = pending(made)
        bar = _progress(len(todo), 1, title, len(made) - len(todo))
        records = _run_here(todo, tc, bar, report, fold_device(use_gpu))
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
        with SlotPool(tc, min(fold_slots(tc, use_gpu), wanted), folder.ray_dir,
                      folder.logs_dir, use_gpu) as pool:
            made = jobs() if callable(jobs) else jobs
            todo = pending(made)
            bar = _progress(len(todo), pool.slots, title, skipped + len(made) - len(todo))
            if bar and folder.logs_dir:
                bar.say(f"worker output: {folder.logs_dir}/slot-*.log")
            pool.submit(todo)
            records = pool.wait(bar)
    if bar:
        bar.end()
    return records


def _progress(total: int, slots: int, title: str | None, done: int) -> Progress | None:
    if title is None or not total:
        return None
    bar = Progress(total, slots, title)
    bar.begin(done)
    return bar


def _run_here(jobs: list[FoldJob], tc: TrainConfig, bar: Progress | None,
              report, device) -> list[FoldRecord]:
    """Every job, one after another in this process, with a slot's thread count."""
    if not jobs:
        return []
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(tc.cpus_per_fold)))
    reuse_freed_memory()
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


@dataclass(frozen=True)
class Shared:
    """What the folds of a run share, made once before they train by the run's method
    (``method.shared_inputs``; the paper model's frozen-trunk tokens): the method and what it
    makes them from."""

    method: Any
    shards: Any
    exp: ExperimentConfig
    backbone: Any

    def key(self) -> tuple[str, str]:
        return str(self.shards.root), self.exp.hash()


@dataclass(frozen=True)
class PlannedRun:
    """A run whose folds go to ``run_planned``: its folder (claimed), ``jobs(shared)`` making
    its fold jobs once what they share exists (None: nothing), how many folds have no results
    yet, and what its folds share."""

    folder: RunFolder
    jobs: Callable[[Any], list[FoldJob]]
    todo: int
    tc: TrainConfig
    shared: Shared | None = None


def _resources(tc: TrainConfig) -> str:
    """What decides the slots a run's folds need: runs that agree share one pool."""
    return repr((tc.use_gpu, tc.cpus_per_fold, tc.gpus_per_fold, tc.fold_resources,
                 tc.max_concurrent_folds, tc.max_failures))


def run_planned(runs: list[PlannedRun], *, local: bool, folder: RunFolder,
                title: str) -> list[FoldRecord]:
    """Every fold without results of every run, through one slot pool per set of fold
    resources (or in this process: ``local``). What the runs' folds share is made once per
    shards and configuration: on Ray, by a pass that starts while the slots do when it runs
    in this process (else before them: a Ray Data pass would wait for the CPUs the slots hold);
    in this process, only read when it exists (then both paths train on the same inputs)."""
    records: list[FoldRecord] = []
    groups: dict[str, list[PlannedRun]] = {}
    for run in runs:
        if run.todo:
            groups.setdefault(_resources(run.tc), []).append(run)
    for group in groups.values():
        tc = group[0].tc
        use_gpu = use_gpus(tc.use_gpu, on_ray=not local)  # decided here, once, passed down
        slots = 1 if local else fold_slots(tc, use_gpu)
        made: dict[tuple, Any] = {}

        def jobs(group=group, use_gpu=use_gpu, slots=slots, made=made):
            out = []
            for run in group:
                shared = None
                if run.shared is not None:
                    key = run.shared.key()
                    if key not in made:
                        s = run.shared
                        made[key] = s.method.shared_inputs(s.shards, s.exp, s.backbone,
                                                           use_gpu, slots, not local)
                    shared = made[key]
                out += run.jobs(shared)
            return out

        if local:
            records += run_jobs(jobs(), tc, local=True, title=title, use_gpu=use_gpu)
            continue
        here = all(r.shared is None or r.shared.method.shared_place(r.shared.shards,
                                                                    r.shared.exp) == "here"
                   for r in group)
        records += run_jobs(jobs if here else jobs(), tc, folder=folder, title=title,
                            expected=sum(r.todo for r in group), use_gpu=use_gpu)
    return records
