"""A fold's data as the training loop sees it: batches of each split, read from the fold's
readers (clips, or trunk tokens computed once for all folds), with the trunk tokens and the
cached augmented views of the training clips held in memory when the trunk cache is on.

Every random draw (shuffling, augmentation, which view a clip shows) comes from a generator
seeded by (seed, epoch, ...), so a resumed fold draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch

from ...config import ExperimentConfig
from ...data.shards import clip_keys
from ...fitting.loop import seeded_generator
from ...model import MERNet
from ...model.inputs import clips_to_tensor
from .augment import augment_clips
from .tokens import encode_views


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

    def add(self, name: str, reader) -> None:
        """A split read later than the others (the test split, once, after training)."""
        self.readers[name] = reader
        if self.exp.train.cache_trunk:
            self.cached[name] = self._encode(name)

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
                torch.randperm(len(keys), generator=seeded_generator(tc.seed, epoch, 1))
            pick = None
            if views is not None and epoch is not None:  # one view per clip: 0 is as aligned
                pick = torch.randint(0, views.shape[1] + 1, (len(keys),),
                                     generator=seeded_generator(tc.seed, epoch, 4))
            for idx in order.split(tc.batch_size):
                batch = tokens[idx]  # a copy (index tensor)
                if pick is not None:
                    shown = pick[idx] > 0
                    batch[shown] = views[idx[shown], pick[idx][shown] - 1]
                yield ({"tokens": batch.to(self.device)}, labels[idx].to(self.device),
                       [keys[i] for i in idx])
            return
        seed = None if epoch is None else \
            int(seeded_generator(tc.seed, epoch, 2).initial_seed() % 2**31)
        for step, batch in enumerate(self._stream(name, seed)):
            keys, labels = self._labels(batch)
            x = clips_to_tensor(batch["frames"])
            if epoch is not None and tc.augment:
                x = augment_clips(x, tc, seeded_generator(tc.seed, epoch, step, 3))
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
