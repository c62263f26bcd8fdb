"""One fold's training, top to bottom: build the model, train epochs while validation says so,
predict the test subject once with the best-validation weights. No Ray in here: the runner
(``runner.py``) calls ``fit_fold`` in a Ray Train worker or in this process alike.

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

from ..config import ExperimentConfig, TrainConfig
from ..data.shards import clip_keys
from ..metrics import scores
from ..model import MERLoss, MERNet
from ..model.build import (
    TrunkMismatch,
    build_model,
    frozen_fingerprint,
    set_determinism,
    trunk_fingerprint,
)
from ..model.inputs import clips_to_tensor
from ..model.losses import inverse_freq_weights
from ..provenance import device_name
from ..records import FoldRecord, Predictions
from .augment import augment_clips
from .job import FoldJob, FoldResult
from .trunk import encode_views


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(parts)).generate_state(1)[0]))


class FoldInputs:
    """Batches of one fold's splits from its readers (``SubjectReader``: clips, or trunk tokens
    computed once for all folds); with ``cache_trunk`` and clip readers, each clip's trunk tokens
    are computed once here. With ``train.cached_views`` > 1 the training clips' augmented views
    come with their tokens (read, or computed here), and each epoch sees every training clip
    through one of them; validation and test clips are only ever seen as aligned."""

    def __init__(self, net: MERNet, exp: ExperimentConfig, readers: dict, device,
                 label_override=None, token_cache: dict | None = None):
        self.net, self.exp, self.readers, self.device = net, exp, readers, device
        self.override = label_override or {}
        # clip key -> trunk tokens; may be shared by folds of one process (same frozen trunk)
        self.token_cache = {} if token_cache is None else token_cache
        self.cached = {}
        if exp.train.cache_trunk:
            for name in readers:
                self.cached[name] = self._encode(name)

    def __contains__(self, name: str) -> bool:
        return name in self.readers

    def _labels(self, batch) -> tuple[list[str], torch.Tensor]:
        keys = clip_keys(batch)
        labels = [self.override.get(k, int(y)) for k, y in zip(keys, batch["label_id"])]
        return keys, torch.tensor(labels, dtype=torch.long)

    def _stream(self, name: str, shuffle_seed: int | None):
        bs = self.exp.train.batch_size
        kwargs = {}
        if shuffle_seed is not None:
            kwargs = {"local_shuffle_buffer_size": 4 * bs, "local_shuffle_seed": shuffle_seed}
        yield from self.readers[name].iter_batches(batch_size=bs, batch_format="numpy", **kwargs)

    def _encode(self, name: str):
        """(keys, labels, tokens (N, T, L, D), views (N, V-1, T, L, D) or None)."""
        tc = self.exp.train
        with_views = name == "train" and tc.cached_views > 1
        keys, labels, tokens, views = [], [], [], []
        for batch in self._stream(name, None):
            k, y = self._labels(batch)
            keys += k
            labels.append(y)
            if "tokens" in batch:  # read from the shared trunk tokens: nothing to compute
                tokens.append(torch.from_numpy(np.ascontiguousarray(batch["tokens"])))
                if with_views:
                    views.append(torch.from_numpy(np.ascontiguousarray(batch["views"])))
                continue
            todo = [i for i, key in enumerate(k) if key not in self.token_cache]
            if todo:
                clips = clips_to_tensor(batch["frames"][todo]).to(self.device)
                for i, tok in zip(todo, self.net.trunk_tokens(clips).half().cpu()):
                    self.token_cache[k[i]] = tok
            tokens.append(torch.stack([self.token_cache[key] for key in k]))
            if with_views:
                vkeys = [f"{key}#{tc.views_id}" for key in k]
                todo = [i for i, key in enumerate(vkeys) if key not in self.token_cache]
                if todo:
                    got = encode_views(self.net, batch["frames"][todo], [k[i] for i in todo],
                                       tc, self.device)
                    for i, v in zip(todo, torch.from_numpy(got)):
                        self.token_cache[vkeys[i]] = v
                views.append(torch.stack([self.token_cache[key] for key in vkeys]))
        return keys, torch.cat(labels), torch.cat(tokens), (torch.cat(views) if views else None)

    def batches(self, name: str, epoch: int | None = None):
        """(model inputs, labels, clip keys); shuffled and augmented when ``epoch`` is given."""
        tc = self.exp.train
        if name in self.cached:
            keys, labels, tokens, views = self.cached[name]
            order = torch.arange(len(keys)) if epoch is None else \
                torch.randperm(len(keys), generator=_generator(tc.seed, epoch, 1))
            pick = None
            if views is not None and epoch is not None:  # one view per clip: 0 is as aligned
                pick = torch.randint(0, views.shape[1] + 1, (len(keys),),
                                     generator=_generator(tc.seed, epoch, 4))
            for idx in order.split(tc.batch_size):
                batch = tokens[idx]  # a copy (index tensor)
                if pick is not None:
                    shown = pick[idx] > 0
                    batch[shown] = views[idx[shown], pick[idx][shown] - 1]
                yield ({"tokens": batch.to(self.device)}, labels[idx].to(self.device),
                       [keys[i] for i in idx])
            return
        seed = None if epoch is None else int(_generator(tc.seed, epoch, 2).initial_seed() % 2**31)
        for step, batch in enumerate(self._stream(name, seed)):
            keys, labels = self._labels(batch)
            x = clips_to_tensor(batch["frames"])
            if epoch is not None and tc.augment:
                x = augment_clips(x, tc, _generator(tc.seed, epoch, step, 3))
            yield {"clips": x.to(self.device)}, labels.to(self.device), keys

    def target_inputs(self, epoch: int):
        """Unlabelled target clips (domain adaptation), cycled as long as training needs them;
        the order is a function of (seed, epoch, pass) like everything else."""
        for k in range(10**6):
            got = False
            for inp, _, _ in self.batches("target", epoch * 1000 + 500 + k):
                got = True
                yield inp
            if not got:
                return


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


@torch.no_grad()
def predict(net: MERNet, data: FoldInputs, name: str, amp: torch.dtype | None = None):
    net.eval()
    keys, labels, probs = [], [], []
    device = next(net.parameters()).device
    for inp, y, k in data.batches(name):
        with _autocast(amp, device):
            logits = net(**inp)["logits"]
        probs.append(torch.softmax(logits.float(), -1).cpu())
        labels.append(y.cpu())
        keys += k
    if not keys:
        return [], np.zeros(0, int), np.zeros((0, net.num_classes))
    return keys, torch.cat(labels).numpy(), torch.cat(probs).numpy()


def _columns(job: FoldJob, split: str) -> tuple[str, ...]:
    """What a split reads: the job's columns, plus the cached augmented views for training."""
    if split == "train" and "tokens" in job.columns and job.experiment.train.cached_views > 1:
        return (*job.columns, "views")
    return tuple(job.columns)


def _build_checked(job: FoldJob) -> MERNet:
    """The fold's model; a fold reading shared trunk tokens must have built the trunk that
    made them."""
    net = build_model(job.experiment, len(job.class_names))
    if job.token_fingerprint is not None:
        own = trunk_fingerprint(net)
        if own != job.token_fingerprint:
            raise TrunkMismatch(f"fold {job.key}: the shared trunk tokens were made by trunk "
                                f"{job.token_fingerprint[:16]}, this fold built {own[:16]}")
    return net


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


def autocast_dtype(precision: str, device) -> torch.dtype | None:
    """The dtype forward passes autocast to: bf16 when asked (or, with "auto", on a GPU that
    supports it), None for plain fp32."""
    device = torch.device(device)
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _autocast(dtype: torch.dtype | None, device):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def _fp32(out: dict) -> dict:
    """Network outputs in fp32: losses and metrics are computed in full precision."""
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in out.items()}


def _train_epoch(net: MERNet, opt, loss_fn: MERLoss, data: FoldInputs, epoch: int,
                 amp: torch.dtype | None = None) -> dict:
    net.train()
    sums, n = {"total": 0.0, "ce": 0.0, "koleo": 0.0, "cons": 0.0}, 0
    targets = data.target_inputs(epoch) if "target" in data else None
    device = next(net.parameters()).device
    for inp, y, _ in data.batches("train", epoch):
        with _autocast(amp, device):
            out = net(**inp)
            tout = None
            if targets is not None:
                with norm_statistics_frozen(net):  # target clips never shape the statistics
                    tout = net(**next(targets))
        if amp is not None:
            out, tout = _fp32(out), (_fp32(tout) if tout is not None else None)
        parts = loss_fn(out, y, target=tout)
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        opt.step()
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


def fit_fold(job: FoldJob, device, resume: dict | None = None, on_epoch=None,
             token_cache: dict | None = None, readers: dict | None = None,
             every_epoch=None) -> FoldResult:
    """Train one fold and, if its job has a test split, predict it once.

    ``resume``: a checkpoint ``on_epoch`` was given (``{"model", "optimizer", "fold"}``);
    ``on_epoch(checkpoint, row)`` is called after every epoch but the last. ``token_cache``:
    clip -> trunk tokens, shared by folds of one process. ``readers``: split name -> reader
    (default: the job's sources, read now). ``every_epoch(row)``: after every epoch, the
    last included (tracking).
    """
    t_start = time.perf_counter()
    exp, tc = job.experiment, job.experiment.train
    set_determinism(tc.deterministic)
    amp = autocast_dtype(tc.precision, device)
    classes = list(range(len(job.class_names)))
    net = _build_checked(job).to(device)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=tc.lr)
    loss_fn = MERLoss(exp.loss, _class_weights(job, device)).to(device)
    if readers is None:
        readers = {name: src.reader(_columns(job, name)) for name, src in job.sources.items()
                   if name != "test"}  # the test split is read once, after training
    data = FoldInputs(net, exp, readers, device, job.label_override, token_cache)

    st = _fresh_state()
    if resume is not None:
        net.load_state_dict(resume["model"], strict=False)
        opt.load_state_dict(resume["optimizer"])
        st = resume["fold"]
    before = st["elapsed"]  # compute time of earlier attempts (a retried or resumed fold)
    # Each start of this fold, and the epoch it started from: a retried worker shows up here.
    st["attempts"].append({"start_epoch": st["epoch"], "started_at": round(time.time(), 3)})
    t_first = time.perf_counter()

    while _keeps_training(st, tc):
        t0 = time.perf_counter()
        row = _train_epoch(net, opt, loss_fn, data, st["epoch"], amp)
        _select(net, data, st, row, classes, amp)
        row["seconds"] = time.perf_counter() - t0
        st["history"].append(row)
        st["epoch"] += 1
        if every_epoch is not None:
            every_epoch(row)
        if on_epoch is not None and _keeps_training(st, tc):
            st["elapsed"] = before + time.perf_counter() - t_start
            on_epoch({"model": _trainable_state(net), "optimizer": opt.state_dict(), "fold": st},
                     row)
    t_last = time.perf_counter()

    net.load_state_dict(st["best"], strict=False)  # the best-validation weights
    record = FoldRecord(
        test_subject=job.split.test, val_subjects=list(job.split.val),
        train_subjects=list(job.split.train), epochs_run=st["epoch"],
        best_epoch=st["best_epoch"], best_val_uf1=st["best_uf1"],
        stopped_early=st["bad_epochs"] >= tc.patience, history=st["history"], seconds=0.0,
        device=device_name(device), pretrained=net.pretrained, weights_source=net.encoder.weights_source,
        cache_trunk=tc.cache_trunk,
        augmented=tc.augment and (not tc.cache_trunk or tc.cached_views > 1),
        trunk_tokens=job.token_fingerprint[:16] if job.token_fingerprint else None,
        attempts=st["attempts"], adaptation_clips="target" in job.sources,
        precision=str(amp).replace("torch.", "") if amp else "fp32", extra=dict(job.extra))
    predictions, weights = None, b""
    if job.predicts_test:
        # The single look at the test subject, with the best-validation weights.
        data.readers["test"] = job.sources["test"].reader(job.columns)
        if tc.cache_trunk:
            data.cached["test"] = data._encode("test")
        keys, ty, tp = predict(net, data, "test", amp)
        test = scores(ty, tp.argmax(1), classes)
        record.test_uf1, record.test_uar, record.n_test = test.uf1, test.uar, len(keys)
        predictions = Predictions(keys, ty.tolist(), tp.tolist())
        weights = weights_blob(net, st["best"])
    end = time.perf_counter()
    record.seconds = round(before + end - t_start, 2)
    # this attempt's fixed costs around training: before the first step, after the last
    record.timing = {"setup_s": round(t_first - t_start, 3),
                              "train_s": round(t_last - t_first, 3),
                              "finish_s": round(end - t_last, 3)}
    return FoldResult(job.key, record, predictions, weights)
