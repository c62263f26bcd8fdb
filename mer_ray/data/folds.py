"""The fold split, in one place: leave-one-subject-out with validation from training subjects,
or (the CD6ME protocol) leave one dataset out.

``loso_splits`` gives one ``FoldSplit`` per subject; ``dataset_splits`` one per source dataset
(its test set: every subject of that dataset); ``protocol_splits`` picks by protocol. A split
refuses to exist if any subject is in two of its sets, and each set is read from its own
subjects' partitions only (``shards.SubjectReader``), so no test-subject row can reach training
or validation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

FOLDS_FILE = "folds.json"  # in every run's folder


class LeakageError(ValueError):
    """A subject appears in more than one of train / validation / test."""


@dataclass(frozen=True)
class FoldSplit:
    """A fold: ``test`` names it (the test subject; a held-out dataset's name, whose subjects
    are ``test_subjects``), ``val`` and ``train`` are subjects."""

    test: str
    val: tuple[str, ...]
    train: tuple[str, ...]
    test_subjects: tuple[str, ...] = ()  # empty: the one subject ``test``

    def __post_init__(self):
        check_disjoint(self.train, self.val, self.tested)
        if not self.train:
            raise ValueError(f"fold {self.test}: no training subjects left")

    @property
    def tested(self) -> tuple[str, ...]:
        """The subjects the fold tests."""
        return self.test_subjects or (self.test,)

    def to_dict(self) -> dict:
        """Plain lists, for records (fold.json)."""
        return {"test": self.test, "val": list(self.val), "train": list(self.train),
                **({"test_subjects": list(self.test_subjects)} if self.test_subjects else {})}


def check_disjoint(train: Iterable[str], val: Iterable[str], test: Iterable[str]) -> None:
    train, val, test = set(train), set(val), set(test)
    overlap = (train & val) | (train & test) | (val & test)
    if overlap:
        raise LeakageError(f"subjects in more than one of train/val/test: {sorted(overlap)}")


def draw_validation(candidates: list[str], labels_by_subject: Mapping[str, set], n_val: int,
                    rng: np.random.Generator, tries: int = 64) -> tuple[str, ...]:
    """``n_val`` whole subjects from ``candidates``, stratified where possible: among seeded
    draws, the first that covers the most classes in validation while leaving every class that
    training had in training."""
    if n_val <= 0 or len(candidates) <= 1:
        return ()
    n_val = min(n_val, len(candidates) - 1)  # always leave someone to train on
    all_classes = set().union(*(labels_by_subject.get(s, set()) for s in candidates))
    best, best_score = None, None
    for _ in range(tries):
        pick = tuple(sorted(rng.choice(candidates, size=n_val, replace=False).tolist()))
        val_cls = set().union(*(labels_by_subject.get(s, set()) for s in pick))
        rest = [s for s in candidates if s not in pick]
        train_cls = set().union(*(labels_by_subject.get(s, set()) for s in rest))
        score = (train_cls == all_classes, len(val_cls))
        if best_score is None or score > best_score:
            best, best_score = pick, score
    return best


def loso_splits(labels_by_subject: Mapping[str, Iterable], n_val: int = 2,
                seed: int = 0) -> list[FoldSplit]:
    """One fold per subject (sorted): that subject is the test set; ``n_val`` others are
    validation, drawn with a generator seeded by (seed, fold number)."""
    subjects = sorted(labels_by_subject)
    if len(subjects) < 2:
        raise ValueError(f"LOSO needs at least 2 subjects (got {len(subjects)})")
    labels = {s: set(labels_by_subject[s]) for s in subjects}
    folds = []
    for i, test in enumerate(subjects):
        rest = [s for s in subjects if s != test]
        val = draw_validation(rest, labels, n_val, np.random.default_rng([seed, i]))
        folds.append(FoldSplit(test, val, tuple(s for s in rest if s not in val)))
    return folds


def dataset_splits(labels_by_subject: Mapping[str, Iterable], dataset_of, n_val: int = 2,
                   seed: int = 0) -> list[FoldSplit]:
    """Leave one dataset out (CD6ME): one fold per source dataset (sorted; ``dataset_of(s)``
    gives a subject's), testing all its subjects; from each training dataset, ``n_val`` of its
    subjects, but no more than a quarter of them (at least one), are validation (drawn with a
    generator seeded by (seed, fold number, dataset number), stratified by label as
    ``draw_validation`` does), so validation spans every training dataset, never the held-out
    one, and training keeps most of each."""
    subjects = sorted(labels_by_subject)
    parts: dict[str, list[str]] = {}
    for s in subjects:
        part = dataset_of(s)
        if part is None:
            raise ValueError(f"subject {s!r} names no dataset: leave-one-dataset-out needs "
                             f"dataset-prefixed subjects (the cd6me composite's)")
        parts.setdefault(part, []).append(s)
    if len(parts) < 2:
        raise ValueError(f"leave-one-dataset-out needs at least 2 datasets (got "
                         f"{', '.join(parts) or 'none'})")
    labels = {s: set(labels_by_subject[s]) for s in subjects}
    folds = []
    for i, held in enumerate(sorted(parts)):
        val = []
        for j, part in enumerate(sorted(parts)):
            if part != held:
                take = min(n_val, max(1, len(parts[part]) // 4))
                val += draw_validation(parts[part], labels, take,
                                       np.random.default_rng([seed, i, j]))
        train = tuple(s for s in subjects if s not in parts[held] and s not in val)
        folds.append(FoldSplit(held, tuple(sorted(val)), train, tuple(parts[held])))
    return folds


def protocol_splits(protocol: str, labels_by_subject: Mapping[str, Iterable], n_val: int = 2,
                    seed: int = 0) -> list[FoldSplit]:
    """The folds a protocol evaluates on: leave one dataset out for CD6ME, else LOSO."""
    if protocol == "cd6me":
        from .adapters.cd6me import part_of

        return dataset_splits(labels_by_subject, part_of, n_val, seed)
    return loso_splits(labels_by_subject, n_val, seed)


def fold_file(folds: Sequence[FoldSplit], keys: Sequence[str], labels: Sequence[str],
              dataset: str, protocol: str, seed: int) -> dict:
    """A run's folds as other codebases can use them (``folds.json`` in every run): each
    fold's test, validation and training subjects, every clip of every subject with its label
    name, and a hash of that content (subjects, clips, labels and the split, nothing about
    the machine or the path), so the same dataset, annotation file, protocol and seed give
    the same hash anywhere. ``keys``: "subject/clip" of every clip, ``labels`` their class
    names."""
    clips: dict[str, list[dict]] = {}
    for key, label in sorted(zip(keys, labels)):
        subject, clip = key.split("/", 1)
        clips.setdefault(subject, []).append({"clip": clip, "label": label})
    content = {"folds": [f.to_dict() for f in folds], "clips": clips}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":"))
                            .encode()).hexdigest()[:16]
    return {"hash": digest, "dataset": dataset, "protocol": protocol, "seed": seed,
            "hash_covers": "the folds (test, validation and training subjects) and every "
                           "clip's subject, id and label", **content}
