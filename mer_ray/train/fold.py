"""One LOSO fold as it runs on its Ray Train worker: train, early-stop on validation, predict test.

The test subject is touched exactly once, after training, with the best-validation weights.
Every epoch writes a checkpoint (the latest state plus the best weights so far); a retried or
resumed fold continues from it and, because every random draw is derived from (seed, epoch,
step), ends with the same predictions as an uninterrupted run.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..metrics import scores
from ..model import MERLoss, MERNet
from ..model.inputs import clips_to_tensor
from ..model.losses import inverse_freq_weights
from .augment import augment_clips
from .config import ExperimentConfig

COLUMNS = ["subject", "clip", "label_id", "frames"]
STATE = "state.pt"
FOLD_JSON, FOLD_PREDS = "fold.json", "predictions.json"
# The best-validation weights of what trains (and every buffer), with the fingerprint of the
# frozen rest: enough to rebuild the fold's model for ``mer-ray checkpoint``.
FOLD_WEIGHTS = "weights.pt"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(exp: ExperimentConfig, num_classes: int) -> MERNet:
    """The same initial weights in every fold and every process: seeded right before building."""
    seed_everything(exp.train.seed)
    return MERNet(exp.model, num_classes)


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(parts)).generate_state(1)[0]))


class FoldInputs:
    """Batches of one fold's splits, streamed from Ray Data shards, or from trunk tokens computed
    once per clip when ``cache_trunk`` is on (then there is no pixel augmentation)."""

    def __init__(self, net: MERNet, exp: ExperimentConfig, shards: dict, device,
                 label_override: dict[str, int] | None, token_cache: dict | None = None):
        self.net, self.exp, self.shards, self.device = net, exp, shards, device
        self.override = label_override or {}
        # clip key -> trunk tokens; may be shared by folds of one process (same frozen trunk)
        self.token_cache = {} if token_cache is None else token_cache
        self.cached = {}
        if exp.train.cache_trunk:
            for name in shards:
                self.cached[name] = self._encode(name)

    def _labels(self, batch) -> tuple[list[str], torch.Tensor]:
        keys = [f"{s}/{c}" for s, c in zip(batch["subject"], batch["clip"])]
        labels = [self.override.get(k, int(y)) for k, y in zip(keys, batch["label_id"])]
        return keys, torch.tensor(labels, dtype=torch.long)

    def _stream(self, name: str, shuffle_seed: int | None):
        bs = self.exp.train.batch_size
        kwargs = {}
        if shuffle_seed is not None:
            kwargs = {"local_shuffle_buffer_size": 4 * bs, "local_shuffle_seed": shuffle_seed}
        yield from self.shards[name].iter_batches(batch_size=bs, batch_format="numpy", **kwargs)

    def _encode(self, name: str):
        keys, labels, tokens = [], [], []
        for batch in self._stream(name, None):
            k, y = self._labels(batch)
            if "tokens" in batch:  # read from the shared trunk tokens: nothing to compute
                tokens.append(torch.from_numpy(np.ascontiguousarray(batch["tokens"])))
                keys += k
                labels.append(y)
                continue
            todo = [i for i, key in enumerate(k) if key not in self.token_cache]
            if todo:
                clips = clips_to_tensor(batch["frames"][todo]).to(self.device)
                for i, tok in zip(todo, self.net.trunk_tokens(clips).half().cpu()):
                    self.token_cache[k[i]] = tok
            tokens.append(torch.stack([self.token_cache[key] for key in k]))
            keys += k
            labels.append(y)
        return keys, torch.cat(labels), torch.cat(tokens)

    def batches(self, name: str, epoch: int | None = None):
        """(model inputs, labels, clip keys); shuffled and augmented when ``epoch`` is given."""
        tc = self.exp.train
        if name in self.cached:
            keys, labels, tokens = self.cached[name]
            order = torch.arange(len(keys)) if epoch is None else \
                torch.randperm(len(keys), generator=_generator(tc.seed, epoch, 1))
            for idx in order.split(tc.batch_size):
                yield ({"tokens": tokens[idx].to(self.device)}, labels[idx].to(self.device),
                       [keys[i] for i in idx])
            return
        seed = None if epoch is None else int(_generator(tc.seed, epoch, 2).initial_seed() % 2**31)
        for step, batch in enumerate(self._stream(name, seed)):
            keys, labels = self._labels(batch)
            x = clips_to_tensor(batch["frames"])
            if epoch is not None and tc.augment:
                x = augment_clips(x, tc, _generator(tc.seed, epoch, step, 3))
            yield {"clips": x.to(self.device)}, labels.to(self.device), keys


def frozen_fingerprint(net: MERNet) -> str:
    """sha256 over the parameters that never train (the backbone outside LoRA): a rebuilt model
    whose frozen weights differ (other pretrained weights, another random init) is refused."""
    import hashlib

    h = hashlib.sha256()
    for name, p in net.named_parameters():
        if not p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def weights_blob(net: MERNet, best: dict[str, torch.Tensor]) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"state": best, "frozen_fingerprint": frozen_fingerprint(net)}, buf)
    return buf.getvalue()


def _trainable_state(net: MERNet) -> dict[str, torch.Tensor]:
    """What training changes: trainable parameters and every buffer (BatchNorm statistics)."""
    state = {n: p.detach().cpu().clone() for n, p in net.named_parameters() if p.requires_grad}
    state.update({n: b.detach().cpu().clone() for n, b in net.named_buffers()})
    return state


@torch.no_grad()
def predict(net: MERNet, data: FoldInputs, name: str):
    net.eval()
    keys, labels, probs = [], [], []
    for inp, y, k in data.batches(name):
        probs.append(torch.softmax(net(**inp)["logits"].float(), -1).cpu())
        labels.append(y.cpu())
        keys += k
    if not keys:
        return [], np.zeros(0, int), np.zeros((0, net.num_classes))
    return keys, torch.cat(labels).numpy(), torch.cat(probs).numpy()


def fit_fold(exp: ExperimentConfig, class_names: list[str], split: dict, sources: dict,
             device, label_override: dict | None = None,
             train_label_counts: list[int] | None = None, resume: dict | None = None,
             save=None, token_cache: dict | None = None,
             predict_test: bool = True,
             token_fingerprint: str | None = None) -> tuple[dict, dict, bytes]:
    """Train one fold and predict its test subject; no Ray in here.

    ``sources`` maps "train" / "val" / "test" (and "target": unlabelled clips for domain
    adaptation, consistency term only) to objects with Ray Data's ``iter_batches``
    (a ``DataIterator`` on a worker, ``LocalSplit`` in process). ``resume`` is a saved state
    (``{"model", "optimizer", "fold"}``); ``save(state, files, metrics)`` is called after every
    epoch and once at the end with the fold record files. ``predict_test=False`` (hyper-parameter search) never reads the test subject at
    all: the record then has validation figures only. ``token_fingerprint``: the sources hold
    shared trunk tokens (``trunk.py``) made by the trunk with this fingerprint; a fold whose
    own trunk differs refuses them. Returns (fold record, predictions, best weights as
    ``FOLD_WEIGHTS`` bytes).
    """
    tc = exp.train
    classes = list(range(len(class_names)))
    net = build_model(exp, len(classes))
    if token_fingerprint is not None:
        from .trunk import TrunkMismatch, trunk_fingerprint

        own = trunk_fingerprint(net)
        if own != token_fingerprint:
            raise TrunkMismatch(f"fold {split['test']}: the shared trunk tokens were made by "
                                f"trunk {token_fingerprint[:16]}, this fold built {own[:16]}")
    net = net.to(device)
    trainable = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=tc.lr)
    weights = None
    if exp.loss.class_weights == "inverse_freq":
        counts = torch.tensor(train_label_counts)
        weights = inverse_freq_weights(torch.repeat_interleave(torch.arange(len(counts)), counts),
                                       len(classes)).to(device)
    loss_fn = MERLoss(exp.loss, weights).to(device)
    t_start = time.perf_counter()
    if not predict_test:
        sources = {k: v for k, v in sources.items() if k != "test"}
    data = FoldInputs(net, exp, sources, device, label_override, token_cache)

    st = {"epoch": 0, "best_uf1": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": [],
          "best": None, "elapsed": 0.0, "done": False}
    if resume is not None:
        net.load_state_dict(resume["model"], strict=False)
        opt.load_state_dict(resume["optimizer"])
        st = resume["fold"]
    before = st["elapsed"]  # compute time of earlier attempts (a retried or resumed fold)
    # Each start of this fold, and the epoch it started from: a retried worker shows up here.
    st.setdefault("attempts", []).append({"start_epoch": st["epoch"],
                                          "started_at": round(time.time(), 3)})

    def checkpoint(files: dict[str, bytes] | None = None, metrics: dict | None = None):
        st["elapsed"] = before + time.perf_counter() - t_start
        if save is not None:
            save({"model": _trainable_state(net), "optimizer": opt.state_dict(), "fold": st},
                 files or {}, metrics or {})

    def target_inputs(epoch: int):
        """Unlabelled target clips (domain adaptation), cycled as long as training needs them;
        the order is a function of (seed, epoch, pass) like everything else."""
        for k in range(10**6):
            got = False
            for inp, _, _ in data.batches("target", epoch * 1000 + 500 + k):
                got = True
                yield inp
            if not got:
                return

    epoch = st["epoch"]
    while epoch < tc.max_epochs and st["bad_epochs"] < tc.patience:
        t0 = time.perf_counter()
        net.train()
        sums, n = {"total": 0.0, "ce": 0.0, "koleo": 0.0, "cons": 0.0}, 0
        targets = target_inputs(epoch) if "target" in sources else None
        for inp, y, _ in data.batches("train", epoch):
            tout = net(**next(targets)) if targets is not None else None
            parts = loss_fn(net(**inp), y, target=tout)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            opt.step()
            for k in sums:
                sums[k] += float(parts[k].detach()) * len(y)
            n += len(y)
        row = {"epoch": epoch, **{f"train_{k}": v / max(n, 1) for k, v in sums.items()}}
        if "val" in sources:
            _, vy, vp = predict(net, data, "val")
            val = scores(vy, vp.argmax(1), classes)
            row.update(val_uf1=val.uf1, val_uar=val.uar)
            if val.uf1 > st["best_uf1"]:
                st.update(best_uf1=val.uf1, best_epoch=epoch, bad_epochs=0,
                          best=_trainable_state(net))
            else:
                st["bad_epochs"] += 1
        else:  # no validation subjects: the last epoch is the model
            st.update(best_epoch=epoch, best=_trainable_state(net))
        row["seconds"] = time.perf_counter() - t0
        st["history"].append(row)
        epoch += 1
        st["epoch"] = epoch
        if epoch < tc.max_epochs and st["bad_epochs"] < tc.patience:
            checkpoint(metrics={k: v for k, v in row.items() if isinstance(v, (int, float))})

    # The single look at the test subject, with the best-validation weights.
    net.load_state_dict(st["best"], strict=False)
    if not predict_test:
        return {"val_subjects": list(split["val"]), "train_subjects": list(split["train"]),
                "epochs_run": epoch, "best_epoch": st["best_epoch"],
                "best_val_uf1": st["best_uf1"], "history": st["history"]}, {}, b""
    keys, ty, tp = predict(net, data, "test")
    test = scores(ty, tp.argmax(1), classes)
    fold = {
        "test_subject": split["test"], "val_subjects": list(split["val"]),
        "train_subjects": list(split["train"]), "epochs_run": epoch,
        "best_epoch": st["best_epoch"], "best_val_uf1": st["best_uf1"],
        "stopped_early": st["bad_epochs"] >= tc.patience, "test_uf1": test.uf1,
        "test_uar": test.uar, "n_test": len(keys), "history": st["history"],
        "seconds": round(before + time.perf_counter() - t_start, 2), "device": str(device),
        "pretrained": net.pretrained, "weights_source": net.encoder.weights_source,
        "cache_trunk": tc.cache_trunk, "augmented": tc.augment and not tc.cache_trunk,
        "trunk_tokens": token_fingerprint[:16] if token_fingerprint else None,
        "attempts": st["attempts"],
        "adaptation_clips": "target" in sources,
    }
    preds = {"keys": keys, "labels": ty.tolist(), "probs": tp.tolist()}
    st["done"] = True
    st["final_metrics"] = {"test_uf1": test.uf1, "best_val_uf1": st["best_uf1"],
                           "epochs_run": epoch, "done": 1}
    weights = weights_blob(net, st["best"])
    checkpoint({FOLD_JSON: json.dumps(fold).encode(), FOLD_PREDS: json.dumps(preds).encode(),
                FOLD_WEIGHTS: weights}, st["final_metrics"])
    return fold, preds, weights


def train_fold(config: dict) -> None:
    """The Ray Train worker function. ``config``: experiment (dict), class_names, split (dict),
    label_override (dict or None), train_label_counts (list)."""
    import ray.train
    import ray.train.torch

    exp = ExperimentConfig.from_dict(config["experiment"])
    torch.set_num_threads(exp.train.cpus_per_fold)
    device = ray.train.torch.get_device()
    names = ["train", "test"] + (["val"] if config["split"]["val"] else []) + \
        (["target"] if config.get("adaptation") else [])
    sources = {n: ray.train.get_dataset_shard(n) for n in names}

    resume = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            resume = torch.load(Path(d) / STATE, map_location="cpu", weights_only=False)
        if resume["fold"]["done"]:  # finished but not collected: hand the same result back
            ray.train.report(resume["fold"]["final_metrics"], checkpoint=ckpt)
            return

    def save(state: dict, files: dict[str, bytes], metrics: dict) -> None:
        if FOLD_JSON in files:  # where it ran is known only here
            fold = json.loads(files[FOLD_JSON])
            fold.update(node_id=ray.get_runtime_context().get_node_id(),
                        node_ip=ray.util.get_node_ip_address())
            files = {**files, FOLD_JSON: json.dumps(fold).encode()}
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, Path(tmp) / STATE)
            for fname, blob in files.items():
                (Path(tmp) / fname).write_bytes(blob)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    fit_fold(exp, config["class_names"], config["split"], sources, device,
             config.get("label_override"), config.get("train_label_counts"), resume, save,
             token_fingerprint=config.get("token_fingerprint"))
