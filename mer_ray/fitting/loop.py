"""The fold loop every network method trains through: epochs while the selection split says
so, the selected epoch's weights, the test subject predicted once. A method hands it its
parts (``FoldParts``: network, inputs, loss); the loop, the selection (validation subjects,
or the leaky test selection), the checkpoints and the records are the platform's. No Ray in
here: the runner calls a method's fit in a Ray Train worker or in this process alike.

The test subject is touched exactly once, after training. Every epoch can be checkpointed
(``on_epoch``): the latest state plus the best weights so far; a retried or resumed fold
continues from it and, because every random draw is derived from (seed, epoch, step), ends with
the same predictions as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..model.build import frozen_fingerprint, set_determinism  # noqa: F401  (re-exported)
from ..provenance import device_name
from ..records import FoldRecord, Predictions
from .job import FoldJob, FoldResult


def seeded_generator(*parts: int) -> torch.Generator:
    """A generator seeded by ``parts`` (e.g. seed, epoch, step, purpose)."""
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def norm_statistics_frozen(net: nn.Module):
    """Batch normalisation uses, and does not update, its running statistics in here: a forward
    pass over clips that must not shape them (domain-adaptation target clips) runs inside."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.training]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m in norms:
            m.train()


def weights_blob(net: nn.Module, best: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save({"state": best, "frozen_fingerprint": frozen_fingerprint(net)}, buf)
    return buf.getvalue()


def _trainable_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """What training changes: trainable parameters and every buffer (BatchNorm statistics)."""
    state = {n: p.detach().cpu().clone() for n, p in net.named_parameters() if p.requires_grad}
    state.update({n: b.detach().cpu().clone() for n, b in net.named_buffers()})
    return state


def autocast_dtype(precision: str, device) -> torch.dtype | None:
    """The dtype forward passes autocast to: bf16 when asked (or, with "auto", on a GPU that
    supports it), None for plain fp32."""
    device = torch.device(device)
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(dtype: torch.dtype | None, device):
    """Forward passes in ``dtype`` (None: as they are)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def fp32(out: dict) -> dict:
    """Network outputs in fp32: losses and metrics are computed in full precision."""
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in out.items()}


@torch.no_grad()
def predict(net: nn.Module, data, name: str, amp: torch.dtype | None, task):
    """(clip keys, labels, probabilities) of a split: ``task``'s softmax over classes, or its
    sigmoid per action unit."""
    net.eval()
    keys, labels, probs = [], [], []
    device = next(net.parameters()).device
    for inp, y, k in data.batches(name):
        with autocast(amp, device):
            logits = net(**inp)["logits"]
        probs.append(task.probabilities(logits.float()).cpu())
        labels.append(y.cpu())
        keys += k
    if not keys:
        return [], np.zeros(0, int), np.zeros((0, net.num_classes))
    return keys, torch.cat(labels).numpy(), torch.cat(probs).numpy()


def training_step(net: nn.Module, opt, loss_fn, inputs: dict, labels: torch.Tensor,
                  amp: torch.dtype | None = None, target: dict | None = None) -> dict:
    """One optimiser step on a batch: forward (in ``amp`` when given; ``target``: unlabelled
    clips whose forward pass never shapes batch-norm statistics), the loss in fp32, backward,
    step. Returns the loss parts."""
    device = labels.device
    with autocast(amp, device):
        out = net(**inputs)
        tout = None
        if target is not None:
            with norm_statistics_frozen(net):  # target clips never shape the statistics
                tout = net(**target)
    if amp is not None:
        out, tout = fp32(out), (fp32(tout) if tout is not None else None)
    parts = loss_fn(out, labels, target=tout)
    opt.zero_grad(set_to_none=True)
    parts["total"].backward()
    opt.step()
    return parts


def _train_epoch(net: nn.Module, opt, loss_fn, data, epoch: int,
                 amp: torch.dtype | None = None, task=None) -> dict:
    net.train()
    sums, n = {"total": 0.0, "ce": 0.0, "koleo": 0.0, "cons": 0.0}, 0
    targets = data.target_inputs(epoch) if "target" in data else None
    for inp, y, _ in data.batches("train", epoch):
        if task is not None:
            y = task.targets(y)  # AU masks -> 0/1 per AU under a multi-label protocol
        parts = training_step(net, opt, loss_fn, inp, y, amp,
                              next(targets) if targets is not None else None)
        for k in sums:
            sums[k] += float(parts[k].detach()) * len(y)
        n += len(y)
    return {"epoch": epoch, **{f"train_{k}": v / max(n, 1) for k, v in sums.items()}}


def selection_split(tc: TrainConfig) -> str:
    """The split whose UF1 picks the epoch: "val" (the honest protocol), or "test" with
    ``train.selection=test`` (the common leaky one: each subject's best test epoch)."""
    return "test" if tc.selection == "test" else "val"


def _select(net: nn.Module, data, st: dict, row: dict, task,
            amp: torch.dtype | None = None, split: str = "val") -> None:
    """Model selection on ``split``'s UF1, or mean AU F1 under a multi-label protocol
    (validation unless the leaky protocol asked for the test subject); without that split,
    the last epoch. (``st["best_uf1"]`` holds whichever figure selects.)"""
    if split not in data:
        st.update(best_epoch=row["epoch"], best=_trainable_state(net))
        return
    _, vy, vp = predict(net, data, split, amp, task)
    figure, uar = task.score(vy, vp)
    row[f"{split}_{task.figure}"] = figure
    if uar is not None:
        row[f"{split}_uar"] = uar
    if figure > st["best_uf1"]:
        st.update(best_uf1=figure, best_epoch=row["epoch"], bad_epochs=0,
                  best=_trainable_state(net))
    else:
        st["bad_epochs"] += 1


def _fresh_state() -> dict:
    """Everything about a fold's progress that a checkpoint must carry (plain types and
    tensors only: it is read back with ``torch.load(weights_only=True)``)."""
    return {"epoch": 0, "best_uf1": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": [],
            "best": None, "elapsed": 0.0, "attempts": []}


def _keeps_training(st: dict, tc: TrainConfig) -> bool:
    """Another epoch? Up to max_epochs, stopping early after ``patience`` epochs without a
    better validation UF1; the leaky protocol trains every epoch and keeps the best test one."""
    if tc.selection == "test":
        return st["epoch"] < tc.max_epochs
    return st["epoch"] < tc.max_epochs and st["bad_epochs"] < tc.patience


def _record(job: FoldJob, parts: FoldParts, st: dict, device, amp) -> FoldRecord:
    tc = job.experiment.train
    leaky = tc.selection == "test"
    return FoldRecord(
        test_subject=job.split.test, val_subjects=list(job.split.val),
        train_subjects=list(job.split.train), epochs_run=st["epoch"],
        best_epoch=st["best_epoch"], best_val_uf1=-1.0 if leaky else st["best_uf1"],
        stopped_early=not leaky and st["bad_epochs"] >= tc.patience, history=st["history"],
        seconds=0.0, device=device_name(device), pretrained=job.backbone.pretrained,
        weights_source=job.backbone.label, weights_sha256=job.backbone.sha256(),
        cache_trunk=parts.cache_trunk, augmented=parts.augmented,
        trunk_tokens=job.tokens.fingerprint[:16] if job.tokens else None,
        attempts=st["attempts"], adaptation_clips="target" in job.sources,
        precision=str(amp).replace("torch.", "") if amp else "fp32",
        method=job.experiment.model.method, selection=tc.selection,
        extra={**dict(job.extra), **({"best_test_uf1_selected": st["best_uf1"]}
                                     if leaky else {})})


@dataclass
class FoldParts:
    """What a method trains in a fold: its network (returning ``{"logits": ...}`` and
    whatever its loss reads), its inputs (``batches(split, epoch)``, ``add(split, reader)``,
    ``split in inputs``, ``target_inputs(epoch)``) and its loss (``loss(out, labels,
    target=None)`` -> parts with "total", "ce", "koleo", "cons"); and what its record says it
    trained from: cached trunk tokens, augmented clips."""

    net: nn.Module
    data: Any
    loss_fn: Any
    cache_trunk: bool = False  # what the fold record says it trained from and with
    augmented: bool = False
    check_readers: Any = None  # check_readers(readers): a split read later (the test)


def fold_readers(job: FoldJob, columns=None) -> dict:
    """The readers of a fold's splits before training: every split but the test subject,
    which is read once, after training (with the leaky protocol, from the start: it picks the
    epoch). ``columns(job, split)``: what each split reads (default: the job's columns)."""
    columns = columns or (lambda j, split: j.columns)
    leaky = job.experiment.train.selection == "test"
    return {name: src.reader(columns(job, name)) for name, src in job.sources.items()
            if name != "test" or leaky}


class Fold:
    """A fold being trained: its model, optimiser, loss, inputs and progress state."""

    def __init__(self, job: FoldJob, device, resume: dict | None, parts: FoldParts):
        tc = job.experiment.train
        self.job, self.device, self.tc = job, device, tc
        self.amp = autocast_dtype(tc.precision, device)
        self.task = job.task
        self.net, self.data, self.loss_fn = parts.net, parts.data, parts.loss_fn
        self.check_readers = parts.check_readers
        self.opt = torch.optim.Adam([p for p in self.net.parameters() if p.requires_grad],
                                    lr=tc.lr)
        self.split = selection_split(tc)
        self.st = _fresh_state()
        if resume is not None:
            self.net.load_state_dict(resume["model"], strict=False)
            self.opt.load_state_dict(resume["optimizer"])
            self.st = resume["fold"]

    def epoch(self) -> dict:
        """Train one epoch and select (on validation, or the leaky test); the epoch's row."""
        t0 = time.perf_counter()
        row = _train_epoch(self.net, self.opt, self.loss_fn, self.data, self.st["epoch"],
                           self.amp, self.task)
        _select(self.net, self.data, self.st, row, self.task, self.amp, self.split)
        row["seconds"] = time.perf_counter() - t0
        self.st["history"].append(row)
        self.st["epoch"] += 1
        return row

    def checkpoint(self) -> dict:
        return {"model": _trainable_state(self.net), "optimizer": self.opt.state_dict(),
                "fold": self.st}

    def predict_test(self, record: FoldRecord) -> tuple[Predictions, bytes]:
        """The look at the test subject that makes the fold's predictions, with the selected
        weights (the single look at it, in the honest protocol)."""
        job = self.job
        if "test" not in self.data:
            test = job.sources["test"].reader(job.columns)
            if self.check_readers is not None:
                self.check_readers({"test": test})
            self.data.add("test", test)
        keys, ty, tp = predict(self.net, self.data, "test", self.amp, self.task)
        record.test_uf1, record.test_uar = self.task.score(ty, tp)
        record.n_test = len(keys)
        return Predictions(keys, ty.tolist(), tp.tolist()), weights_blob(self.net,
                                                                         self.st["best"])


def train_fold(job: FoldJob, device, parts: FoldParts, resume: dict | None = None,
               on_epoch=None, every_epoch=None) -> FoldResult:
    """Train a method's fold (``parts``) epoch by epoch, select, and, if the job has a test
    split, predict it. ``resume``: a checkpoint ``on_epoch`` was given (``{"model",
    "optimizer", "fold"}``); ``on_epoch(checkpoint, row)`` is called after every epoch but the
    last; ``every_epoch(row, last)`` after every epoch (``last``: training stops after it)."""
    t_start = time.perf_counter()
    fold = Fold(job, device, resume, parts)
    st, tc = fold.st, fold.tc
    before = st["elapsed"]  # compute time of earlier attempts (a retried or resumed fold)
    # Each start of this fold, and the epoch it started from: a retried worker shows up here.
    st["attempts"].append({"start_epoch": st["epoch"], "started_at": round(time.time(), 3)})
    t_first = time.perf_counter()
    while _keeps_training(st, tc):
        row = fold.epoch()
        more = _keeps_training(st, tc)
        if every_epoch is not None:
            every_epoch(row, not more)
        if on_epoch is not None and more:
            st["elapsed"] = before + time.perf_counter() - t_start
            on_epoch(fold.checkpoint(), row)
    t_last = time.perf_counter()

    fold.net.load_state_dict(st["best"], strict=False)  # the selected epoch's weights
    record = _record(job, parts, st, device, fold.amp)
    predictions, weights = None, b""
    if job.predicts_test:
        predictions, weights = fold.predict_test(record)
    end = time.perf_counter()
    record.seconds = round(before + end - t_start, 2)
    # this attempt's fixed costs around training: before the first step, after the last
    record.timing = {"setup_s": round(t_first - t_start, 3), "train_s": round(t_last - t_first, 3),
                     "finish_s": round(end - t_last, 3)}
    return FoldResult(job.key, record, predictions, weights)
