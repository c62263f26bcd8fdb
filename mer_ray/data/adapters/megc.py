"""MEGC 2019 composite: the union of SAMM, CASME II and SMIC-HS under the 3-class protocol.

Layout: one folder holding ``samm/``, ``casme2/`` and ``smic/``, each a dataset root as its own
adapter expects (any case; ``casme_ii`` is accepted too), and optionally the organisers'
ground truth ``combined_3class_gt.csv`` (or name it with ``--annotations``). Subject ids are
prefixed by dataset (``samm_006``, ``casme2_sub01``, ``smic_s1``) so subjects from different
datasets never merge in LOSO; each row keeps its source dataset in ``dataset``.

The composite: 442 clips, 68 subjects; negative 250, positive 109, surprise 83; CASME II 145
(88/32/25), SMIC 164 (70/51/43), SAMM 133 (92/26/15). Scores are reported over all 442
predictions and over each dataset's part (``source_dataset``).

Without the ground truth, each part is its dataset's 3-class protocol; CASME II's per-row fix
(``casme2.ROW_FIXES``: sub05/EP09_05f) makes its part the organisers' 145.

The ground truth file, as distributed: no header, CRLF line ends, rows
``database,subject,filename,label`` with label 0 negative, 1 positive, 2 surprise; CASME II
subjects ``sub01``, SAMM subjects unpadded (``6``, while folders are ``006``), SMIC ids
zero-padded (``s01``, ``s01_ne_01``, while folders are ``s1``, ``s1_ne_01``). With it, its
rows decide membership and labels: clips are joined to it by normalised ids, a clip it does
not list is kept as an excluded row ("not in the ground-truth list"), and a row of it with no
annotated clip becomes an excluded row too ("in the ground-truth list, not in the
annotations").
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..annotations import AnnotationError, file_sha256, parse_subject
from ..labels import THREE_CLASSES
from .base import Adapter, RawClip, join_notes, matching_files
from .casme2 import Casme2Adapter
from .samm import SammAdapter
from .smic import SmicAdapter

PARTS = {
    "samm": (SammAdapter, ("samm",)),
    "casme2": (Casme2Adapter, ("casme2", "casme_ii", "casmeii", "casme2_raw")),
    "smic": (SmicAdapter, ("smic", "smic-e", "smic_e")),
}
GT_NAME = "combined_3class_gt.csv"
GT_LABELS = dict(enumerate(THREE_CLASSES))  # 0 negative, 1 positive, 2 surprise
_SMIC_ID = re.compile(r"^s0*(\d+)", re.IGNORECASE)


def source_dataset(subject: str) -> str | None:
    """The dataset a composite subject id comes from ('casme2_sub01' -> 'casme2')."""
    prefix = subject.split("_", 1)[0]
    return prefix if prefix in PARTS else None


def normalise_id(part: str, subject, clip) -> tuple[str, str, str]:
    """(dataset, subject, clip) as the part's adapter spells them, for joining the ground truth:
    samm '6' -> '006'; casme2 '01' / 'sub01' -> 'sub01'; smic 's01', 's01_ne_01' -> 's1',
    's1_ne_01'. Clip names compare without case."""
    subject, clip = str(subject).strip(), str(clip).strip()
    if part == "samm":
        subject = parse_subject(subject, "", 3)
    elif part == "casme2":
        subject = parse_subject(subject, "sub", 2)
    elif part == "smic":
        subject, clip = _SMIC_ID.sub(r"s\1", subject), _SMIC_ID.sub(r"s\1", clip)
    return part, subject, clip.lower()


def read_ground_truth(file: Path) -> tuple[dict, list[RawClip]]:
    """The ground-truth rows keyed by normalised id -> (class, "file:line"), and a RawClip
    with ``problem`` for each line that cannot be read."""
    rows, bad = {}, []
    try:
        with open(file, newline="", encoding="utf-8-sig") as fh:  # CRLF or LF alike
            lines = list(csv.reader(fh))
    except OSError as exc:
        raise AnnotationError(f"{file}: ground-truth file not readable ({exc})") from None
    for n, cells in enumerate(lines, start=1):
        where = f"{file.name}:{n}"
        if not cells or all(not c.strip() for c in cells):
            continue
        if n == 1 and cells[0].strip().lower() in ("database", "dataset"):
            continue  # a copy that gained a header
        try:
            if len(cells) < 4:
                raise ValueError(f"expected 4 columns (database, subject, filename, label), "
                                 f"got {len(cells)}")
            part = cells[0].strip().lower()
            if part not in PARTS:
                raise ValueError(f"unknown database {cells[0]!r}")
            key = normalise_id(part, cells[1], cells[2])
            label = GT_LABELS.get(int(cells[3].strip()))
            if label is None:
                raise ValueError(f"label {cells[3]!r} is not 0, 1 or 2")
        except ValueError as exc:
            bad.append(RawClip(cells[0].strip().lower() if cells else "?", "?",
                               f"line{n}", None, None, None, None, "", where,
                               problem=f"ground truth: {exc}"))
            continue
        if key in rows:
            bad.append(RawClip(key[0], f"{key[0]}_{key[1]}", key[2], None, None, None, None, "",
                               where, problem=f"ground truth repeats {key[1]}/{key[2]} "
                                              f"(first at {rows[key][1]})"))
            continue
        rows[key] = (label, where)
    return rows, bad


class MegcAdapter(Adapter):
    name = "megc"

    def __init__(self, annotations: Path | None = None):
        self.annotations = annotations

    def ground_truth(self, root: Path) -> Path | None:
        if self.annotations is not None:
            if not Path(self.annotations).is_file():
                raise AnnotationError(f"{self.annotations}: ground-truth file not found "
                                      f"(--annotations)")
            return Path(self.annotations)
        hits = matching_files(root, GT_NAME)
        return hits[0] if hits else None

    def clips(self, root: Path) -> Iterator[RawClip]:
        dirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
        found = {}
        for part, (_, names) in PARTS.items():
            hit = next((dirs[n] for n in names if n in dirs), None)
            if hit is None:
                raise AnnotationError(
                    f"{root}: the MEGC composite needs a '{part}/' folder here holding the "
                    f"{part} dataset root (found: {', '.join(sorted(dirs)) or 'nothing'})"
                )
            found[part] = hit
        gt_file = self.ground_truth(root)
        if gt_file is None:
            for part, (cls, _) in PARTS.items():
                for clip in cls().clips(found[part]):
                    yield replace(clip, subject=f"{part}_{clip.subject}")
            return
        gt, bad = read_ground_truth(gt_file)
        sha = file_sha256(gt_file)
        yield from bad
        matched = set()
        for part, (cls, _) in PARTS.items():
            for clip in cls().clips(found[part]):
                out = replace(clip, subject=f"{part}_{clip.subject}", exclude_in={})
                if clip.problem:
                    yield out
                    continue
                key = normalise_id(part, clip.subject, clip.clip)
                if key not in gt:
                    yield replace(out, unlisted=f"{gt_file.name} does not list {part} "
                                                f"{clip.subject}/{clip.clip}")
                    continue
                matched.add(key)
                label, where = gt[key]
                # Two files describe this clip: its part's sheet (span) and the ground truth
                # (membership, class); both are named, with their hashes in the same order.
                yield replace(out, label=label, note=join_notes(clip.note, f"class from {where}"),
                              annotation=f"{clip.annotation}; {where}",
                              annotation_sha256=f"{clip.annotation_sha256 or ''}; {sha}")
        for key, (label, where) in gt.items():
            if key in matched:
                continue
            part, subject, clip = key
            yield RawClip(part, f"{part}_{subject}", clip, None, None, None, None, "", where,
                          note=f"{where}: no {part} clip {subject}/{clip} in "
                               f"{found[part]}'s annotations",
                          annotation_sha256=sha, reason="in the ground-truth list, not in the "
                                                        "annotations", label=label)
