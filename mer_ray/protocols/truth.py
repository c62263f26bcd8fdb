"""What a predictions file is scored against: every clip of a protocol with its subject and
class, and the protocol's LOSO folds, read from prepared shards or from a dataset's
annotations (``scoring.py`` scores; ``mer-ray score`` and ``mr.score`` read the truth here)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ..data.folds import FoldSplit, fold_file, protocol_splits
from ..data.labels import label_names


@dataclass(frozen=True)
class Truth:
    """Every clip of a protocol with its subject and class, and the protocol's LOSO folds."""

    dataset: str
    protocol: str
    class_names: tuple[str, ...]
    keys: tuple[str, ...]  # "subject/clip", sorted
    labels: tuple[int, ...]  # class index of each key
    folds: tuple[FoldSplit, ...]
    folds_file: dict  # data.folds.fold_file: what a run on this data stores
    source: str  # where the truth was read: the shard folder or the data root
    synthetic: bool = False

    @property
    def subjects(self) -> list[str]:
        return [s for f in self.folds for s in f.tested]


def truth_from_shards(shards, val_subjects: int, seed: int) -> Truth:
    """The truth a run on these shards tests against (its clips, classes and folds)."""
    from .loso import folds_content

    meta = shards.meta
    folds = protocol_splits(meta.protocol, shards.subject_labels(), val_subjects, seed)
    keys, ids = shards.clip_labels([s for f in folds for s in f.tested])
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return Truth(meta.dataset, meta.protocol, tuple(meta.class_names),
                 tuple(keys[i] for i in order), tuple(int(ids[i]) for i in order),
                 tuple(folds), folds_content(shards, folds, seed), str(shards.root),
                 bool(meta.synthetic))


def truth_from_manifest(manifest: pl.DataFrame, dataset: str, protocol: str, root: str,
                        val_subjects: int, seed: int) -> Truth:
    """The truth from a dataset's annotations: the clips its manifest includes (a run on
    shards also leaves out clips whose faces could not be aligned: score against those shards
    with --shards to match such a run exactly)."""
    from ..data.labels import class_names
    from ..data.manifest import included

    names = class_names(dataset, protocol)
    rows = included(manifest).sort(["subject", "clip"])
    if rows.is_empty():
        raise ValueError(f"{root}: no clip of {dataset} {protocol} is included (see `mer-ray "
                         f"manifest` for each clip's reason)")
    keys = [f"{s}/{c}" for s, c in zip(rows["subject"], rows["clip"])]
    labels = [int(i) for i in rows["label_id"]]
    by_subject: dict[str, set[int]] = {}
    for k, y in zip(keys, labels):
        by_subject.setdefault(k.split("/", 1)[0], set()).add(y)
    folds = protocol_splits(protocol, by_subject, val_subjects, seed)
    content = fold_file(folds, keys, label_names(protocol, names, labels), dataset,
                        protocol, seed)
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return Truth(dataset, protocol, tuple(names), tuple(keys[i] for i in order),
                 tuple(labels[i] for i in order), tuple(folds), content, str(root))


def truth_for(*, shards=None, data_root=None, dataset: str | None = None,
              protocol: str | None = None, annotations=None, val_subjects: int, seed: int,
              option=lambda name: f"--{name.replace('_', '-')}") -> Truth:
    """The truth ``mer-ray score`` and ``mr.score`` score against: ``shards`` (a path, or an
    opened ``Shards``; a ``dataset`` or ``protocol`` given must be theirs) or ``data_root`` with
    ``dataset`` and ``protocol`` (its manifest). ``option(name)``: how the caller's messages
    name a setting (``--data-root`` on the command line, ``data_root=`` in Python)."""
    if shards is not None:
        from ..data.shards import Shards

        opened = shards if isinstance(shards, Shards) else Shards.open(shards)
        for what, given, theirs in (("dataset", dataset, opened.meta.dataset),
                                    ("protocol", protocol, opened.meta.protocol)):
            if given is not None and given != theirs:
                raise ValueError(f"{option(what)} {given}: the shards in {opened.root} are "
                                 f"{theirs} (their prepare.json); drop {option(what)} or give "
                                 f"other shards")
        return truth_from_shards(opened, val_subjects, seed)
    if data_root is None or dataset is None or protocol is None:
        raise ValueError(f"scoring needs the truth: {option('shards')} (the shards the "
                         f"predictions were made on) or {option('data_root')} with "
                         f"{option('dataset')} and {option('protocol')}")
    from ..data.manifest import build_manifest

    manifest = build_manifest(dataset, data_root, protocol, annotations=annotations)
    return truth_from_manifest(manifest, dataset, protocol, str(data_root), val_subjects, seed)


