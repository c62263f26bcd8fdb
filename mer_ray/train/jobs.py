"""Every experiment as fold jobs: the one place a ``FoldJob`` is made.

A ``FoldPlan`` is what the folds of one experiment share: its configuration, its shards, where
the backbone's weights come from (decided once, by the driver), the shared trunk tokens when
there are some, its run folder and tracking. From it:

- ``loso_jobs``: one job per LOSO fold (a run, a seed of a run, a grid row), each predicting its
  test subject once; with ``train.shuffle_labels``, the control's permuted labels;
- ``search_job``: a fold that trains and validates only (a flat search's trial, a nested
  search's inner fold): its test subject is not even read, nothing is stored;
- ``outer_job``: a nested search's outer fold: a LOSO fold whose configuration a search chooses
  where the fold runs, before it trains;
- ``transfer_job``: train on one dataset's subjects, predict another's clips (with adaptation:
  those clips also join training, without their labels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..config import ExperimentConfig
from ..data.folds import FoldSplit
from ..data.labels import is_multilabel
from ..data.shards import Shards
from ..fitting.job import FoldJob, SplitSource, TokenSource
from ..model.encoder import BackboneSource
from .folder import RunFolder


@dataclass(frozen=True)
class FoldPlan:
    """What the fold jobs of one experiment share."""

    experiment: ExperimentConfig
    shards: Shards
    backbone: BackboneSource
    tokens: TokenSource | None = None
    folder: RunFolder | None = None
    tracking: Any = None  # a tracking.TrackingSpec
    method: Any = None  # the methods.Method the jobs are fitted by, resolved by the planner

    @property
    def root(self) -> str:
        """Where the folds read their subjects: the shared tokens, or the aligned clips."""
        return self.tokens.root if self.tokens is not None else str(self.shards.clips)

    def without_tokens(self) -> FoldPlan:
        return replace(self, tokens=None)


def shuffled_labels(shards: Shards, split: FoldSplit, seed: int) -> dict[str, int]:
    """Control run: training and validation labels permuted among those clips (test untouched)."""
    keys, labels = shards.clip_labels(split.train + split.val)
    perm = np.random.default_rng([seed, 7919]).permutation(len(labels))
    return {k: int(labels[i]) for k, i in zip(keys, perm)}


def _sources(plan: FoldPlan, split: FoldSplit, test: bool) -> dict[str, SplitSource]:
    made = plan.shards.meta.shards_id or ""
    sources = {"train": SplitSource(plan.root, split.train, made_from=made)}
    if split.val:
        sources["val"] = SplitSource(plan.root, split.val, made_from=made)
    if test:
        sources["test"] = SplitSource(plan.root, split.tested, made_from=made)
    return sources


def _job(plan: FoldPlan, split: FoldSplit, key: str, exp: ExperimentConfig,
         sources: dict, **kw) -> FoldJob:
    kw.setdefault("data_id", plan.shards.meta.shards_id or "")
    if plan.method is None or plan.method.name != exp.model.method:
        raise ValueError(f"fold {key}: its plan resolves method {getattr(plan.method, 'name', None)!r}, "
                         f"its configuration asks for {exp.model.method!r}")
    multilabel = is_multilabel(plan.shards.meta.protocol)
    if multilabel:  # the labels are AU masks: each AU's positives, and the clips
        masks = plan.shards.clip_labels(split.train)[1]
        counts = [sum((m >> i) & 1 for m in masks) for i in range(len(plan.shards.class_names))]
        clips = len(masks)
    else:
        counts, clips = plan.shards.label_counts(split.train), None
    return FoldJob(key=key, experiment=exp, class_names=tuple(plan.shards.class_names),
                   split=split, sources=sources, multilabel=multilabel,
                   label_counts=tuple(counts), train_clips=clips,
                   backbone=plan.backbone, tokens=plan.tokens, reads=plan.method.columns,
                   method=plan.method, **kw)


def _stored(plan: FoldPlan, key: str) -> dict:
    folder = plan.folder
    return {"storage": folder.storage.uri, "record_dir": folder.fold_dir(key),
            "checkpoint_dir": folder.checkpoint_dir(key)}


def loso_jobs(plan: FoldPlan, splits: list[FoldSplit], tag: str = "") -> list[FoldJob]:
    """One job per LOSO fold, its records in the plan's run folder. ``tag``: when the jobs of
    several runs go to one runner (a comparison), what tells their keys apart ("ststnet/006";
    a key names one fold of one run in the queue and on the console)."""
    exp = plan.experiment
    return [_job(plan, split, f"{tag}/{split.test}" if tag else split.test, exp,
                 _sources(plan, split, test=True),
                 label_override=shuffled_labels(plan.shards, split, exp.train.seed)
                 if exp.train.shuffle_labels else None,
                 tracking=plan.tracking, **_stored(plan, split.test))
            for split in splits]


def search_job(plan: FoldPlan, split: FoldSplit, exp: ExperimentConfig,
               key: str | None = None) -> FoldJob:
    """A fold that trains and validates ``exp`` only: its test subject is never read and
    nothing of it is stored (a search trial's fold). With the plan's run folder, its start
    gate is ``<run>/gate`` (``attempt.pass_gate``)."""
    gate = (plan.folder.storage.uri, plan.folder.rel("gate")) if plan.folder else None
    return _job(plan, split, key or split.test, exp, _sources(plan, split, test=False),
                gate=gate)


def outer_job(plan: FoldPlan, split: FoldSplit, search: Any) -> FoldJob:
    """A nested search's outer fold: ``search.choose(job)`` picks its configuration where it
    runs, then it trains and predicts its test subject once, as a LOSO fold does."""
    return _job(plan, split, split.test, plan.experiment,
                _sources(plan, split, test=True), search=search,
                **_stored(plan, split.test))


def chosen(job: FoldJob, exp: ExperimentConfig, params: dict) -> FoldJob:
    """An outer fold with the configuration its search chose (recorded in its fold.json)."""
    return replace(job, experiment=exp, search=None,
                   extra={**job.extra, "chosen_params": params})


def transfer_job(plan: FoldPlan, target: Shards, train: tuple[str, ...], val: tuple[str, ...],
                 adapt: bool, condition: str, extra: dict) -> FoldJob:
    """Train on ``train`` subjects of the plan's shards (early stopping on ``val``), predict
    every clip of ``target`` once; with ``adapt``, the target clips also join training with
    their labels replaced by -1. Records under ``<run>/<condition>/``."""
    src, tgt = str(plan.shards.clips), str(target.clips)
    made, made_target = plan.shards.meta.shards_id or "", target.meta.shards_id or ""
    test = tuple(target.subjects())
    split = FoldSplit(f"target:{target.meta.dataset or 'target'}", val, train)
    sources = {"train": SplitSource(src, train, made_from=made),
               "test": SplitSource(tgt, test, made_from=made_target)}
    if val:
        sources["val"] = SplitSource(src, val, made_from=made)
    if adapt:
        sources["target"] = SplitSource(tgt, test, unlabelled=True, made_from=made_target)
    folder = plan.folder
    return _job(plan.without_tokens(), split, condition, plan.experiment, sources,
                data_id=f"{plan.shards.meta.shards_id}+{target.meta.shards_id}",
                storage=folder.storage.uri,
                record_dir=folder.rel(condition, "folds", split.test),
                checkpoint_dir=folder.rel(condition, "train"), extra=extra)
