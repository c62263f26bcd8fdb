"""Where folds run: one after another in this process, or on Ray Train workers that each train a
queue of folds.

The Ray path starts one ``TorchTrainer`` per fold *slot* (one worker each: a GPU, or a share of
one, when the cluster has them) and keeps it for the whole run: its worker takes fold jobs from
a queue actor until none are left. A Train run costs seconds to start (a controller, a worker
and helper actors, each a process importing torch); paid once per slot instead of once per
fold, a fold's cost around its training is reading its clips and building its model.

What holds whatever runs a fold:

- Every epoch a fold writes its checkpoint to storage (``<run>/train/fold-<id>/state.pt``,
  tensors and plain types only: it is read with ``torch.load(weights_only=True)``). A killed
  worker is restarted by Ray Train (``train.max_failures``), asks the queue for the fold it
  held, and continues it from that checkpoint; a run submitted again after its driver was
  killed does the same for every unfinished fold. Finished folds (``fold.json`` present) are
  never trained again.
- Results stream to storage per fold, as each finishes (``job.store_result``).
- A fold that raises is recorded with its error; the other folds go on, and the run ends with
  an error naming the failed folds.

Slots: as many as the cluster holds ``train.cpus_per_fold`` CPUs, ``train.gpus_per_fold`` GPUs
(when folds use GPUs; 0.25 packs four folds on one GPU) and ``train.fold_resources`` for, capped
by ``train.max_concurrent_folds``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import TrainConfig
from ..records import PAUSE, STATE, fold_done
from ..storage import open_storage
from ..tracking import FoldTracker
from .fold import fit_fold
from .job import FoldJob, FoldResult, store_result

CONTROLLER_POLL_S = "0.2"
QUEUE_POLL_S = 0.5
WAIT = "wait"  # the queue's answer to a slot while jobs may still come


# -- one fold, anywhere -------------------------------------------------------------------------

def load_checkpoint(storage, job: FoldJob) -> dict | None:
    """The fold's latest epoch checkpoint, or None."""
    if not job.storage or not storage.exists(job.checkpoint_dir, STATE):
        return None
    blob = storage.read_bytes(job.checkpoint_dir, STATE)
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def _checkpoint_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def trunk_cache_key(job: FoldJob) -> str:
    """Folds whose frozen trunks are the same (same model settings and seed) share tokens."""
    import json

    return json.dumps([asdict(job.experiment.model), job.experiment.train.seed], sort_keys=True,
                      default=str)


def run_job(job: FoldJob, device, token_cache: dict | None = None, on_epoch=None,
            node: tuple[str, str] = ("local", "local"),
            resources: dict | None = None) -> FoldResult:
    """Train one fold: resume from its checkpoint if it has one, checkpoint every epoch, and
    store its records when it finishes (when the job names a storage)."""
    started, t0 = time.time(), time.perf_counter()
    storage = open_storage(job.storage) if job.storage else None
    resume = load_checkpoint(storage, job) if storage else None
    tracker = FoldTracker(job.tracking, job.key, job.experiment.to_dict()) \
        if job.tracking else None

    def save(state: dict, row: dict) -> None:
        if storage is not None:
            storage.write_atomic(_checkpoint_bytes(state), job.checkpoint_dir, STATE)
            while storage.exists(job.checkpoint_dir, PAUSE):  # held at a committed epoch
                time.sleep(0.1)
        if on_epoch is not None:
            on_epoch(state, row)

    def epoch_done(row: dict) -> None:
        if tracker is not None:
            tracker.epoch(row)

    before_fit = time.perf_counter() - t0
    result = fit_fold(job, device, resume, save, token_cache, every_epoch=epoch_done)
    rec = result.record
    if tracker is not None:
        tracker.end({"test_uf1": rec.test_uf1, "test_uar": rec.test_uar,
                     "best_val_uf1": rec.best_val_uf1, "best_epoch": rec.best_epoch,
                     "epochs_run": rec.epochs_run})
    rec.timing["setup_s"] = round(rec.timing["setup_s"] + before_fit, 3)
    rec.wall_seconds = round(time.perf_counter() - t0, 2)
    rec.started_at, rec.finished_at = round(started, 3), round(started + rec.wall_seconds, 3)
    rec.node_id, rec.node_ip = node
    rec.resources = resources or {}
    if storage is not None and job.predicts_test:
        store_result(storage, job, result)
        storage.delete(job.checkpoint_dir, STATE)  # the fold is done: its records say all
    return result


def local_device(tc: TrainConfig) -> torch.device:
    use = torch.cuda.is_available() and tc.use_gpu is not False
    return torch.device("cuda" if use else "cpu")


# -- resources -----------------------------------------------------------------------------------

def wants_gpu(tc: TrainConfig) -> bool:
    """train.use_gpu resolved against the cluster: auto means "when the cluster has GPUs"."""
    import ray

    return tc.use_gpu is True or (tc.use_gpu == "auto"
                                  and ray.cluster_resources().get("GPU", 0) > 0)


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


# -- progress ------------------------------------------------------------------------------------

def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


class Progress:
    """One line per finished fold, with done / total, how many run now and an estimate of the
    time left (from the mean wall time of the folds finished so far and the slots in use)."""

    def __init__(self, total: int, slots: int, title: str = "", out=None):
        self.total, self.slots, self.title = total, max(slots, 1), title
        self.out = out or sys.stdout
        self.done, self.failed, self.walls = 0, 0, []
        self.start = time.perf_counter()

    def begin(self, already_done: int = 0) -> None:
        head = f"{self.title}: " if self.title else ""
        extra = f" ({already_done} already done)" if already_done else ""
        print(f"{head}{self.total} fold(s) to train on {self.slots} slot(s){extra}",
              file=self.out, flush=True)

    def finished(self, key: str, info: dict, running: int) -> None:
        self.done += 1
        self.walls.append(info.get("wall_seconds") or 0.0)
        left = self.total - self.done - self.failed
        eta = ""
        if left:
            mean = sum(self.walls) / len(self.walls)
            eta = f", about {_duration(mean * math.ceil(left / self.slots))} left"
        score = ""
        if info.get("test_uf1") is not None:
            score = f"test UF1 {info['test_uf1']:.3f} UAR {info['test_uar']:.3f}, "
        elif info.get("best_val_uf1") is not None:
            score = f"validation UF1 {info['best_val_uf1']:.3f}, "
        print(f"[{self.done + self.failed}/{self.total}] fold {key}: {score}"
              f"{info.get('epochs_run')} epochs, {_duration(info.get('wall_seconds') or 0)} "
              f"({running} running{eta})", file=self.out, flush=True)

    def failed_fold(self, key: str, error: str) -> None:
        self.failed += 1
        last = error.strip().splitlines()[-1] if error.strip() else "error"
        print(f"[{self.done + self.failed}/{self.total}] fold {key}: FAILED ({last})",
              file=self.out, flush=True)

    def end(self) -> None:
        print(f"{self.done} fold(s) trained in {_duration(time.perf_counter() - self.start)}"
              + (f", {self.failed} failed" if self.failed else ""), file=self.out, flush=True)


def _summary(result: FoldResult) -> dict:
    r = result.record
    return {"test_uf1": r.test_uf1, "test_uar": r.test_uar, "best_val_uf1": r.best_val_uf1,
            "epochs_run": r.epochs_run, "wall_seconds": r.wall_seconds}


class FoldFailed(RuntimeError):
    """Some folds raised; the others finished and were stored."""


# -- in this process -----------------------------------------------------------------------------

def run_local(jobs: list[FoldJob], threads: int | None = None, progress: Progress | None = None,
              device=None) -> list[FoldResult]:
    """Every job, one after another in this process (all cores for each, unless ``threads``).
    Folds of one trunk share the tokens computed here."""
    if not jobs:
        return []
    torch.set_num_threads(threads or os.cpu_count() or 1)
    device = device or local_device(jobs[0].experiment.train)
    caches: dict[str, dict] = {}
    results, errors = [], {}
    for job in jobs:
        cache = caches.setdefault(trunk_cache_key(job), {}) \
            if job.experiment.train.cache_trunk and job.token_fingerprint is None else None
        try:
            res = run_job(job, device, cache)
        except Exception:  # recorded, reported at the end; the other folds go on
            errors[job.key] = traceback.format_exc()
            if progress:
                progress.failed_fold(job.key, errors[job.key])
            continue
        results.append(res)
        if progress:
            progress.finished(job.key, _summary(res), 0)
    if errors:
        raise FoldFailed(_failure_message(errors))
    return results


def _failure_message(errors: dict[str, str]) -> str:
    first = next(iter(errors))
    return (f"{len(errors)} fold(s) failed ({', '.join(errors)}); the others were stored. "
            f"First error, fold {first}:\n{errors[first]}")


# -- on Ray Train workers ------------------------------------------------------------------------

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
            return job

        def add(self, jobs: list[FoldJob]) -> None:
            self.pending.extend(jobs)

        def close(self) -> None:
            self.open = False

        def finish(self, slot: int, key: str, info: dict) -> None:
            self.assigned.pop(slot, None)
            self.events.append(("done", key, info))

        def fail(self, slot: int, key: str, error: str) -> None:
            self.assigned.pop(slot, None)
            self.events.append(("failed", key, error))

        def idle_slots(self) -> list[int]:
            return sorted(self.idle)

        def poll(self, since: int) -> tuple[list[tuple], int, int]:
            return self.events[since:], len(self.assigned), len(self.pending)

    return FoldQueue


@contextlib.contextmanager
def _output_to(path: str | None):
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


def slot_worker(config: dict) -> None:
    """The Ray Train worker function: train fold jobs from the queue until none are left."""
    import ray
    import ray.train.torch

    queue, slot = config["queue"], config["slot"]
    torch.set_num_threads(config["threads"])
    # The GPU (or share of one) Ray assigned, when this node has CUDA; else the CPU.
    device = ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")
    ctx = ray.get_runtime_context()
    node = (ctx.get_node_id(), ray.util.get_node_ip_address())
    held = {k: v for k, v in ctx.get_assigned_resources().items() if v}
    caches: dict[str, dict] = {}
    with _output_to(config.get("log_file")):
        # What every fold's model needs, imported while the driver may still be preparing the
        # jobs (the trunk tokens): otherwise the slot's first fold pays for it.
        import peft  # noqa: F401
        import timm  # noqa: F401

        while (job := ray.get(queue.claim.remote(slot))) is not None:
            if job == WAIT:
                time.sleep(QUEUE_POLL_S / 5)
                continue
            cache = caches.setdefault(trunk_cache_key(job), {}) \
                if job.experiment.train.cache_trunk and job.token_fingerprint is None else None
            try:
                result = run_job(job, device, cache, node=node, resources=held)
            except Exception:
                error = traceback.format_exc()
                print(f"fold {job.key} failed:\n{error}", flush=True)
                ray.get(queue.fail.remote(slot, job.key, error))
                continue
            ray.get(queue.finish.remote(slot, job.key, _summary(result)))


def _train_slot(slot: int, queue, tc: TrainConfig, use_gpu: bool, storage_uri: str,
                run_name: str, log_dir: str | None, errors: dict) -> None:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    try:
        trainer = TorchTrainer(
            slot_worker,
            train_loop_config={
                "queue": queue, "slot": slot, "threads": max(1, int(tc.cpus_per_fold)),
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


class SlotPool:
    """``slots`` Ray Train runs (one worker each) training the jobs of one queue. The slots
    start when the pool does, so a driver can start them and then prepare the jobs (their
    start-up and the preparation overlap): ``submit`` jobs, then ``wait``. Leaving the
    ``with`` block closes the queue, so the slots end even when preparing failed. Ray must be
    initialised. ``storage_uri``: where the slots' Train runs keep Ray's own records."""

    def __init__(self, tc: TrainConfig, slots: int, storage_uri: str,
                 log_dir: str | None = None, use_gpu: bool | None = None):
        import ray

        self.use_gpu = wants_gpu(tc) if use_gpu is None else use_gpu
        self.slots = slots
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
                                         args=(i, self.queue, tc, self.use_gpu, storage_uri,
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

    def wait(self, progress: Progress | None = None) -> list[str]:
        """Close the queue and wait until every slot has ended; returns the keys of the folds
        that finished, and raises ``FoldFailed`` naming those that did not."""
        import ray

        self.close()
        seen, done, failed = 0, [], {}
        while True:
            alive = any(t.is_alive() for t in self.threads)
            events, running, _ = ray.get(self.queue.poll.remote(seen))
            seen += len(events)
            for kind, key, info in events:
                if kind == "done":
                    done.append(key)
                    if progress:
                        progress.finished(key, info, running)
                else:
                    failed[key] = info
                    if progress:
                        progress.failed_fold(key, info)
            if not alive:
                break
            time.sleep(QUEUE_POLL_S)
        for t in self.threads:
            t.join()
        unfinished = [j.key for j in self.jobs if j.key not in done and j.key not in failed]
        if failed or unfinished:
            errors = dict(failed)
            for key in unfinished:
                errors[key] = "; ".join(self.slot_errors.values()) or "not trained"
            raise FoldFailed(_failure_message(errors))
        return done


def run_ray(jobs: list[FoldJob], tc: TrainConfig, storage_uri: str,
            progress: Progress | None = None, log_dir: str | None = None) -> list[str]:
    """Every job on Ray Train workers, ``fold_slots`` of them at once; returns the keys of the
    folds that finished. Ray must be initialised. ``storage_uri``: where the slots' Train runs
    keep Ray's own records (``<storage>/train/ray/``)."""
    if not jobs:
        return []
    use_gpu = wants_gpu(tc)
    slots = min(fold_slots(tc, use_gpu), len(jobs))
    if progress is not None:
        progress.slots = slots
    with SlotPool(tc, slots, storage_uri, log_dir, use_gpu) as pool:
        pool.submit(jobs)
        return pool.wait(progress)


def pending(jobs: list[FoldJob]) -> list[FoldJob]:
    """The jobs whose folds have no stored results."""
    out = []
    for job in jobs:
        if job.storage and fold_done(open_storage(job.storage), job.record_dir):
            continue
        out.append(job)
    return out
