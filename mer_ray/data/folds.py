"""The fold split, in one place: leave-one-subject-out with validation from training subjects.

``loso_splits`` gives one ``FoldSplit`` per subject. A split refuses to exist if any subject is
in two of its sets, and ``fold_datasets`` reads each set from its own subject partitions only, so
no test-subject row can reach training or validation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .prepare import CLIPS_DIR


class LeakageError(ValueError):
    """A subject appears in more than one of train / validation / test."""


@dataclass(frozen=True)
class FoldSplit:
    test: str
    val: tuple[str, ...]
    train: tuple[str, ...]

    def __post_init__(self):
        check_disjoint(self.train, self.val, (self.test,))
        if not self.train:
            raise ValueError(f"fold {self.test}: no training subjects left")

    def to_dict(self) -> dict:
        """Plain lists, for configs that cross process boundaries (Tune, Ray Train)."""
        return {"test": self.test, "val": list(self.val), "train": list(self.train)}

    @classmethod
    def from_dict(cls, data: dict) -> FoldSplit:
        return cls(data["test"], tuple(data["val"]), tuple(data["train"]))


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


def shard_subjects(shards: str | Path) -> list[str]:
    """Subjects present in a shard folder (its ``clips/subject=...`` partitions)."""
    root = Path(shards) / CLIPS_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no shards here; create them with 'mer-ray prepare'")
    return sorted(p.name.split("=", 1)[1] for p in root.iterdir()
                  if p.is_dir() and p.name.startswith("subject="))


def subject_labels(shards: str | Path) -> dict[str, set[int]]:
    """label_ids per subject, read from the shard files' label column only."""
    import pyarrow.parquet as pq

    out = {}
    for s in shard_subjects(shards):
        table = pq.read_table(Path(shards) / CLIPS_DIR / f"subject={s}", columns=["label_id"])
        out[s] = set(table.column("label_id").to_pylist())
    return out


def _read_subjects(root: Path, subjects: tuple[str, ...]):
    """The ``subject=...`` partitions of ``root`` (clip shards, or trunk tokens) for these
    subjects only, as a Ray Dataset."""
    import ray.data
    from ray.data.datasource import Partitioning

    paths = [str(root / f"subject={s}") for s in subjects]
    missing = [p for p in paths if not Path(p).is_dir()]
    if missing:
        raise FileNotFoundError(f"no shards for subject(s) {missing} under {root}")
    # Reads request no CPU: a fold worker holds the CPUs while it consumes these shards, and a
    # read waiting for a free CPU would wait for ever on a machine whose CPUs all train. Ray
    # 2.60's second read path adds a file-listing step that always asks for one CPU, so the
    # first path is used here (the dataset keeps the context it was built with).
    ctx = ray.data.DataContext.get_current()
    previous, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        return ray.data.read_parquet(paths, partitioning=Partitioning("hive", base_dir=str(root)),
                                     num_cpus=0)
    finally:
        ctx.use_datasource_v2 = previous


@dataclass
class FoldData:
    split: FoldSplit
    train: object  # ray.data.Dataset
    val: object | None
    test: object


def fold_datasets(shards: str | Path, split: FoldSplit, root: str | Path | None = None) -> FoldData:
    """Train / validation / test Ray Datasets of one fold, each reading only its own subjects'
    partitions (partition pruning by path). ``root``: another subject-partitioned folder to read
    instead of the clip shards (the shared trunk tokens)."""
    root = Path(root) if root is not None else Path(shards) / CLIPS_DIR
    return FoldData(
        split,
        _read_subjects(root, split.train),
        _read_subjects(root, split.val) if split.val else None,
        _read_subjects(root, (split.test,)),
    )
