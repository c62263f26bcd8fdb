"""One fold's training, top to bottom: build the model, train epochs while validation says so,
predict the test subject once with the best-validation weights. No Ray in here: the runner
calls ``fit_fold`` in a Ray Train worker or in this process alike.

The test subject is touched exactly once, after training. Every epoch can be checkpointed
(``on_epoch``): the latest state plus the best weights so far; a retried or resumed fold
continues from it and, because every random draw is derived from (seed, epoch, step), ends with
the same predictions as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..metrics import scores
from ..model import MERLoss, MERNet
from ..model.build import (
    TrunkMismatch,
    build_model,
    frozen_fingerprint,
    set_determinism,
    trunk_fingerprint,
)
from ..model.losses import inverse_freq_weights
from ..provenance import device_name, libraries
from ..records import FoldRecord, Predictions
from .fold_inputs import FoldInputs
from .job import FoldJob, FoldResult
from .trunk import read_marker


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


def weights_blob(net: MERNet, best: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save({"state": best, "frozen_fingerprint": frozen_fingerprint(net)}, buf)
    return buf.getvalue()


def _trainable_state(net: MERNet) -> dict[str, torch.Tensor]:
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
def predict(net: MERNet, data: FoldInputs, name: str, amp: torch.dtype | None = None):
    net.eval()
    keys, labels, probs = [], [], []
    device = next(net.parameters()).device
    for inp, y, k in data.batches(name):
        with autocast(amp, device):
            logits = net(**inp)["logits"]
        probs.append(torch.softmax(logits.float(), -1).cpu())
        labels.append(y.cpu())
        keys += k
    if not keys:
        return [], np.zeros(0, int), np.zeros((0, net.num_classes))
    return keys, torch.cat(labels).numpy(), torch.cat(probs).numpy()


def training_step(net: MERNet, opt, loss_fn: MERLoss, inputs: dict, labels: torch.Tensor,
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


def _train_epoch(net: MERNet, opt, loss_fn: MERLoss, data: FoldInputs, epoch: int,
                 amp: torch.dtype | None = None) -> dict:
    net.train()
    sums, n = {"total": 0.0, "ce": 0.0, "koleo": 0.0, "cons": 0.0}, 0
    targets = data.target_inputs(epoch) if "target" in data else None
    for inp, y, _ in data.batches("train", epoch):
        parts = training_step(net, opt, loss_fn, inp, y, amp,
                              next(targets) if targets is not None else None)
        for k in sums:
            sums[k] += float(parts[k].detach()) * len(y)
        n += len(y)
    return {"epoch": epoch, **{f"train_{k}": v / max(n, 1) for k, v in sums.items()}}


def _select(net: MERNet, data: FoldInputs, st: dict, row: dict, classes: list[int],
            amp: torch.dtype | None = None) -> None:
    """Model selection on validation UF1 only; without validation subjects the last epoch."""
    if "val" not in data:
        st.update(best_epoch=row["epoch"], best=_trainable_state(net))
        return
    _, vy, vp = predict(net, data, "val", amp)
    val = scores(vy, vp.argmax(1), classes)
    row.update(val_uf1=val.uf1, val_uar=val.uar)
    if val.uf1 > st["best_uf1"]:
        st.update(best_uf1=val.uf1, best_epoch=row["epoch"], bad_epochs=0,
                  best=_trainable_state(net))
    else:
        st["bad_epochs"] += 1


def _read_columns(job: FoldJob, split: str) -> tuple[str, ...]:
    """What a split reads: the job's columns, plus the cached augmented views for training."""
    if split == "train" and job.tokens is not None and job.experiment.train.cached_views > 1:
        return (*job.columns, "views")
    return job.columns


def check_tokens(job: FoldJob, net: MERNet) -> None:
    """A fold reading shared trunk tokens must have built the trunk that made them, and the
    folder must hold the augmented views its configuration asks for."""
    if job.tokens is None:
        return
    own = trunk_fingerprint(net)
    if own != job.tokens.fingerprint:
        mine = {"weights": job.backbone.label, "pretrained": job.backbone.pretrained,
                "libraries": libraries()}
        raise TrunkMismatch(
            f"fold {job.key}: the shared trunk tokens in {job.tokens.root} were made by trunk "
            f"{job.tokens.fingerprint[:16]} ({dict(job.tokens.made_with)}); this fold built "
            f"{own[:16]} ({mine}). Are the backbone weights and library versions the same "
            f"everywhere?")
    marker = read_marker(job.tokens.root) or {}
    want = job.experiment.train.views_id
    if marker.get("fingerprint") != job.tokens.fingerprint or marker.get("views") != want:
        raise TrunkMismatch(
            f"fold {job.key}: {job.tokens.root} holds tokens of trunk "
            f"{str(marker.get('fingerprint'))[:16]} with views {marker.get('views')}; this fold "
            f"needs trunk {job.tokens.fingerprint[:16]} with views {want} "
            f"(train.cached_views and the augmentation settings decide them)")


def _class_weights(job: FoldJob, device) -> torch.Tensor | None:
    if job.experiment.loss.class_weights != "inverse_freq":
        return None
    counts = torch.tensor(job.label_counts)
    labels = torch.repeat_interleave(torch.arange(len(counts)), counts)
    return inverse_freq_weights(labels, len(counts)).to(device)


def _fresh_state() -> dict:
    """Everything about a fold's progress that a checkpoint must carry (plain types and
    tensors only: it is read back with ``torch.load(weights_only=True)``)."""
    return {"epoch": 0, "best_uf1": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": [],
            "best": None, "elapsed": 0.0, "attempts": []}


def _keeps_training(st: dict, tc: TrainConfig) -> bool:
    return st["epoch"] < tc.max_epochs and st["bad_epochs"] < tc.patience


def _record(job: FoldJob, net: MERNet, st: dict, device, amp) -> FoldRecord:
    tc = job.experiment.train
    return FoldRecord(
        test_subject=job.split.test, val_subjects=list(job.split.val),
        train_subjects=list(job.split.train), epochs_run=st["epoch"],
        best_epoch=st["best_epoch"], best_val_uf1=st["best_uf1"],
        stopped_early=st["bad_epochs"] >= tc.patience, history=st["history"], seconds=0.0,
        device=device_name(device), pretrained=job.backbone.pretrained,
        weights_source=job.backbone.label, weights_sha256=job.backbone.sha256(),
        cache_trunk=tc.cache_trunk,
        augmented=tc.augment and (not tc.cache_trunk or tc.cached_views > 1),
        trunk_tokens=job.tokens.fingerprint[:16] if job.tokens else None,
        attempts=st["attempts"], adaptation_clips="target" in job.sources,
        precision=str(amp).replace("torch.", "") if amp else "fp32", extra=dict(job.extra))


class Fold:
    """A fold being trained: its model, optimiser, loss, inputs and progress state."""

    def __init__(self, job: FoldJob, device, resume: dict | None, token_cache: dict | None,
                 readers: dict | None):
        exp, tc = job.experiment, job.experiment.train
        set_determinism(tc.deterministic)
        self.job, self.device, self.tc = job, device, tc
        self.amp = autocast_dtype(tc.precision, device)
        self.classes = list(range(len(job.class_names)))
        self.net = build_model(exp, len(job.class_names), job.backbone)
        check_tokens(job, self.net)
        self.net.to(device)
        self.opt = torch.optim.Adam([p for p in self.net.parameters() if p.requires_grad],
                                    lr=tc.lr)
        self.loss_fn = MERLoss(exp.loss, _class_weights(job, device)).to(device)
        if readers is None:  # the test split is read once, after training
            readers = {name: src.reader(_read_columns(job, name))
                       for name, src in job.sources.items() if name != "test"}
        self.data = FoldInputs(self.net, exp, readers, device, job.label_override, token_cache)
        self.st = _fresh_state()
        if resume is not None:
            self.net.load_state_dict(resume["model"], strict=False)
            self.opt.load_state_dict(resume["optimizer"])
            self.st = resume["fold"]

    def epoch(self) -> dict:
        """Train one epoch and select on validation; the epoch's row."""
        t0 = time.perf_counter()
        row = _train_epoch(self.net, self.opt, self.loss_fn, self.data, self.st["epoch"],
                           self.amp)
        _select(self.net, self.data, self.st, row, self.classes, self.amp)
        row["seconds"] = time.perf_counter() - t0
        self.st["history"].append(row)
        self.st["epoch"] += 1
        return row

    def checkpoint(self) -> dict:
        return {"model": _trainable_state(self.net), "optimizer": self.opt.state_dict(),
                "fold": self.st}

    def predict_test(self, record: FoldRecord) -> tuple[Predictions, bytes]:
        """The single look at the test subject, with the best-validation weights."""
        job = self.job
        self.data.add("test", job.sources["test"].reader(job.columns))
        keys, ty, tp = predict(self.net, self.data, "test", self.amp)
        test = scores(ty, tp.argmax(1), self.classes)
        record.test_uf1, record.test_uar, record.n_test = test.uf1, test.uar, len(keys)
        return Predictions(keys, ty.tolist(), tp.tolist()), weights_blob(self.net,
                                                                         self.st["best"])


def fit_fold(job: FoldJob, device, resume: dict | None = None, on_epoch=None,
             token_cache: dict | None = None, readers: dict | None = None,
             every_epoch=None) -> FoldResult:
    """Train one fold and, if its job has a test split, predict it once.

    ``resume``: a checkpoint ``on_epoch`` was given (``{"model", "optimizer", "fold"}``);
    ``on_epoch(checkpoint, row)`` is called after every epoch but the last. ``token_cache``:
    clip -> trunk tokens, shared by folds of one process. ``readers``: split name -> reader
    (default: the job's sources, read now). ``every_epoch(row, last)``: after every epoch, the
    last included (``last``: training stops after it).
    """
    t_start = time.perf_counter()
    fold = Fold(job, device, resume, token_cache, readers)
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

    fold.net.load_state_dict(st["best"], strict=False)  # the best-validation weights
    record = _record(job, fold.net, st, device, fold.amp)
    predictions, weights = None, b""
    if job.predicts_test:
        predictions, weights = fold.predict_test(record)
    end = time.perf_counter()
    record.seconds = round(before + end - t_start, 2)
    # this attempt's fixed costs around training: before the first step, after the last
    record.timing = {"setup_s": round(t_first - t_start, 3), "train_s": round(t_last - t_first, 3),
                     "finish_s": round(end - t_last, 3)}
    return FoldResult(job.key, record, predictions, weights)
