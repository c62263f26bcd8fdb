"""Fold slots: Ray Train runs of one worker each that train fold jobs from a queue.

A Train run costs seconds to start (a controller, a worker and helper actors, each a process
importing torch); one per *slot*, kept for the whole run, pays that once instead of once per
fold, so a fold's cost around its training is reading its clips and building its model.

Slots: as many as the cluster holds ``train.cpus_per_fold`` CPUs, ``train.gpus_per_fold`` GPUs
(when folds use GPUs; 0.25 packs four folds on one GPU) and ``train.fold_resources`` for, capped
by ``train.max_concurrent_folds``. A killed worker is restarted by Ray Train
(``train.max_failures``), asks the queue for the fold it held, and continues it from its
checkpoint. A fold that raises is recorded with its error; the other folds go on.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path

import torch

from ..config import TrainConfig
from ..fitting.device import fold_device
from ..fitting.job import FoldJob
from ..fitting.memory import reuse_freed_memory
from ..records import FoldRecord
from .attempt import fold_summary, run_job
from .progress import Progress

CONTROLLER_POLL_S = "0.2"
QUEUE_POLL_S = 0.5
WAIT = "wait"  # the queue's answer to a slot while jobs may still come


class FoldFailed(RuntimeError):
    """Some folds raised; the others finished and were stored. The message names each failed
    fold with the last line of its error; ``details`` holds the whole tracebacks (``--debug``
    prints them)."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


def last_line(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "error"


def fold_failed(errors: dict[str, str], logs: str | None = None) -> FoldFailed:
    """The error of a set of folds some of which raised: a line per failed fold, where the
    tracebacks are, and the tracebacks themselves as ``details``."""
    where = f"; the workers' tracebacks are in {logs}/slot-*.log" if logs else ""
    lines = [f"{len(errors)} fold(s) failed ({', '.join(errors)}); the others were stored"
             f"{where} (--debug prints them here):"]
    lines += [f"  fold {key}: {last_line(error)}" for key, error in errors.items()]
    details = "\n".join(f"fold {key}:\n{error}" for key, error in errors.items())
    return FoldFailed("\n".join(lines), details)


# -- resources -----------------------------------------------------------------------------------

def fold_resources(tc: TrainConfig, use_gpu: bool) -> dict[str, float]:
    """What one fold's worker holds."""
    res = {"CPU": float(tc.cpus_per_fold)}
    if use_gpu:
        res["GPU"] = float(tc.gpus_per_fold)
    res.update({k: float(v) for k, v in (tc.fold_resources or {}).items()})
    return res


def slots_for(resources: dict[str, float], cluster: dict[str, float],
              max_concurrent: int = 0) -> int:
    """How many folds fit at once: for each resource a fold needs, the cluster's total over the
    fold's share (0.25 GPU per fold on 2 GPUs: 8), the smallest of those, capped by
    ``max_concurrent`` (0: no cap); at least 1."""
    counts = [math.floor(cluster.get(key, 0.0) / need + 1e-9)
              for key, need in resources.items() if need > 0]
    slots = min(counts) if counts else 1
    if max_concurrent:
        slots = min(slots, max_concurrent)
    return max(slots, 1)


def fold_slots(tc: TrainConfig, use_gpu: bool) -> int:
    import ray

    return slots_for(fold_resources(tc, use_gpu), ray.cluster_resources(),
                     tc.max_concurrent_folds)


# -- the queue -------------------------------------------------------------------------------------

def _queue_class():
    import ray

    @ray.remote(num_cpus=0)
    class FoldQueue:
        """Hands fold jobs to slots. A slot whose worker was restarted gets the fold it held
        back (it resumes from that fold's checkpoint)."""

        def __init__(self):
            self.pending: deque[FoldJob] = deque()
            self.assigned: dict[int, FoldJob] = {}
            self.events: list[tuple] = []
            self.open = True  # more jobs may come (``add``) until ``close``
            self.idle: set[int] = set()  # slots that asked while no job was there yet
            self.where: dict[str, str] = {}  # running fold -> what it is doing

        def claim(self, slot: int) -> FoldJob | str | None:
            """The slot's job; ``WAIT`` while the queue is empty but open; None when done."""
            job = self.assigned.get(slot)
            if job is not None:
                return job
            if not self.pending:
                if self.open:
                    self.idle.add(slot)
                    return WAIT
                return None
            job = self.assigned[slot] = self.pending.popleft()
            self.where[job.key] = "starting"
            return job

        def add(self, jobs: list[FoldJob]) -> None:
            self.pending.extend(jobs)

        def close(self) -> None:
            self.open = False

        def doing(self, key: str, what: str) -> None:
            self.where[key] = what

        def finish(self, slot: int, key: str, record: bytes) -> None:
            self.assigned.pop(slot, None)
            self.where.pop(key, None)
            self.events.append(("done", key, record))

        def fail(self, slot: int, key: str, error: str) -> None:
            self.assigned.pop(slot, None)
            self.where.pop(key, None)
            self.events.append(("failed", key, error))

        def idle_slots(self) -> list[int]:
            return sorted(self.idle)

        def poll(self, since: int) -> tuple[list[tuple], int, dict[str, str]]:
            return self.events[since:], len(self.assigned), dict(self.where)

    return FoldQueue


# -- a slot's worker ---------------------------------------------------------------------------

@contextlib.contextmanager
def output_to(path: str | None):
    """This process's stdout and stderr (file descriptors included: C libraries write there
    too) appended to ``path``."""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1) as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def epoch_reporter(queue):
    """``run_job``'s per-epoch hook on a slot: tell the queue which epoch the fold is in."""

    def report(job: FoldJob, row: dict, last: bool) -> None:
        epochs = job.experiment.train.max_epochs
        queue.doing.remote(job.key, f"epoch {int(row['epoch']) + 1}/{epochs}")
    return report


def slot_worker(config: dict) -> None:
    """The Ray Train worker function: train fold jobs from the queue until none are left."""
    import ray

    queue, slot = config["queue"], config["slot"]
    torch.set_num_threads(config["threads"])
    reuse_freed_memory()
    device = fold_device(config["use_gpu"])
    ctx = ray.get_runtime_context()
    node = (ctx.get_node_id(), ray.util.get_node_ip_address())
    held = {k: v for k, v in ctx.get_assigned_resources().items() if v}
    with output_to(config.get("log_file")):
        # What every fold's model needs, imported while the driver may still be preparing the
        # jobs (the trunk tokens): otherwise the slot's first fold pays for it.
        import peft  # noqa: F401
        import timm  # noqa: F401

        while (job := ray.get(queue.claim.remote(slot))) is not None:
            if job == WAIT:
                time.sleep(QUEUE_POLL_S / 5)
                continue
            try:
                result = run_job(job, device, epoch_reporter(queue), node=node, resources=held)
            except Exception:
                error = traceback.format_exc()
                print(f"fold {job.key} failed:\n{error}", flush=True)
                ray.get(queue.fail.remote(slot, job.key, error))
                continue
            ray.get(queue.finish.remote(slot, job.key, result.record.to_json()))


def _train_slot(slot: int, queue, tc: TrainConfig, use_gpu: bool, storage_uri: str,
                run_name: str, log_dir: str | None, errors: dict) -> None:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    try:
        trainer = TorchTrainer(
            slot_worker,
            train_loop_config={
                "queue": queue, "slot": slot, "threads": max(1, int(tc.cpus_per_fold)),
                "use_gpu": use_gpu,
                "log_file": str(Path(log_dir) / f"slot-{slot}.log") if log_dir else None},
            scaling_config=ray.train.ScalingConfig(
                num_workers=1, use_gpu=use_gpu,
                resources_per_worker=fold_resources(tc, use_gpu)),
            # One worker: no collective ever runs, and gloo starts anywhere (NCCL, the GPU
            # default, needs CUDA on the worker).
            torch_config=TorchConfig(backend="gloo"),
            run_config=ray.train.RunConfig(
                name=f"{run_name}-slot{slot}", storage_path=storage_uri,
                failure_config=ray.train.FailureConfig(max_failures=tc.max_failures)),
        )
        trainer.fit()
    except Exception as exc:  # the slot's Train run gave up (e.g. more failures than allowed)
        errors[slot] = f"slot {slot}: {type(exc).__name__}: {exc}"


# -- the pool -------------------------------------------------------------------------------------

class SlotPool:
    """``slots`` Ray Train runs (one worker each) training the jobs of one queue. The slots
    start when the pool does, so a driver can start them and then prepare the jobs (their
    start-up and the preparation overlap): ``submit`` jobs, then ``wait``. Leaving the
    ``with`` block closes the queue, so the slots end even when preparing failed. Ray must be
    initialised. ``storage_uri``: where the slots' Train runs keep Ray's own records."""

    def __init__(self, tc: TrainConfig, slots: int, storage_uri: str, log_dir: str | None,
                 use_gpu: bool):
        import ray

        self.use_gpu, self.slots, self.log_dir = use_gpu, slots, log_dir
        # A worker's Train run checks on its controller once per health-check interval (2 s
        # by default); Ray Train passes this variable from the process that builds the trainer
        # to its controller. A value the user set is kept.
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", CONTROLLER_POLL_S)
        # The preemption watcher (one more actor process per Train run) follows nodes that a
        # cloud provider drains; a one-node cluster has no other node to move a fold to.
        if len([n for n in ray.nodes() if n.get("Alive")]) == 1:
            os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        self.queue = _queue_class().remote()
        self.jobs: list[FoldJob] = []
        self.slot_errors: dict[int, str] = {}
        run_name = time.strftime("%Y%m%d-%H%M%S")
        # fit() blocks while its run lasts: one thread per slot drives it (Tune trials or tasks
        # would cost a process each).
        self.threads = [threading.Thread(target=_train_slot, daemon=True,
                                         args=(i, self.queue, tc, use_gpu, storage_uri,
                                               run_name, log_dir, self.slot_errors))
                        for i in range(slots)]
        for t in self.threads:
            t.start()

    def __enter__(self) -> SlotPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(self, jobs: list[FoldJob]) -> None:
        import ray

        self.jobs += jobs
        ray.get(self.queue.add.remote(jobs))

    def close(self) -> None:
        """No more jobs: each slot ends when the queue is empty."""
        import ray

        ray.get(self.queue.close.remote())

    def wait(self, progress: Progress | None = None) -> list[FoldRecord]:
        """Close the queue and wait until every slot has ended; returns the records of the
        folds that finished, and raises ``FoldFailed`` naming those that did not."""
        import ray

        self.close()
        seen, done, failed = 0, {}, {}
        while True:
            alive = any(t.is_alive() for t in self.threads)
            events, running, where = ray.get(self.queue.poll.remote(seen))
            seen += len(events)
            for kind, key, info in events:
                if kind == "done":
                    done[key] = FoldRecord.from_json(info)
                    if progress:
                        progress.finished(key, fold_summary(done[key]), running)
                else:
                    failed[key] = info
                    if progress:
                        progress.failed_fold(key, info)
            if not alive:
                break
            if progress:
                progress.running(where)
            time.sleep(QUEUE_POLL_S)
        for t in self.threads:
            t.join()
        unfinished = [j.key for j in self.jobs if j.key not in done and j.key not in failed]
        if failed or unfinished:
            errors = dict(failed)
            for key in unfinished:
                errors[key] = "; ".join(self.slot_errors.values()) or "not trained"
            raise fold_failed(errors, self.log_dir)
        return list(done.values())
