"""What CASME (I), MMEW and 4DME have in common: one spreadsheet row per clip (subject, clip,
onset, apex, offset, AUs, emotion) and a folder of frames per clip. Each dataset's module says
which columns, which folders and which rows need fixing; this module reads them alike.

Row fixes (``SheetFix``) are MEB's corrections of rows whose frame numbers or AU cells are wrong
in the released sheets. MEB addresses them by 0-based data row (pandas' index: the rows below
the header, in order); so does this module, and every fixed row gets a note in the manifest
saying what the sheet had, what replaced it and where the correction comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..annotations import file_sha256, parse_frame, read_table
from .base import (
    SEVERAL_EMOTIONS,
    Adapter,
    RawClip,
    au_cell,
    clip_source,
    find_annotation,
    first_existing_dir,
)


@dataclass(frozen=True)
class SheetFix:
    """A correction of one data row (0-based, below the header): new values by role
    (``onset``, ``apex``, ``offset``, ``aus``; ``swap_aus_with``: the row whose AU cell this
    one's is exchanged with)."""

    row: int
    values: dict
    source: str


@dataclass(frozen=True)
class SheetSpec:
    dataset: str
    globs: tuple[str, ...]  # annotation file names, tried in order
    what: str  # the dataset's name in messages
    columns: dict[str, str]  # role -> header: subject, clip, onset, apex, offset, aus, emotion
    frame_dirs: tuple[str, ...]  # the frames' top folder, as distributions name it
    subject: Callable[[object], str]  # a subject cell -> the subject's id (and folder)
    folder: Callable[[Path, str, str, str | None], Path]  # (top, subject, clip, emotion)
    fixes: tuple[SheetFix, ...] = ()
    required: tuple[str, ...] = ("subject", "clip", "onset", "offset", "emotion")
    split_emotions: bool = False  # a cell may name several emotions ("Negative+Surprise")
    extra: dict = field(default_factory=dict)


def text_subject(cell) -> str:
    """A subject cell kept as written (``S01``; a number read from a re-saved copy as its
    integer)."""
    text = "" if cell is None else str(int(cell) if isinstance(cell, float) else cell).strip()
    if not text:
        raise ValueError("empty subject cell")
    return text


def find_sheet(root: Path, spec: SheetSpec, given: Path | None) -> Path:
    """The annotation file: ``given``, or the first of ``spec.globs`` found under ``root``."""
    from ..annotations import AnnotationError

    if given is not None:
        return find_annotation(root, spec.globs[0], spec.what, given)
    last = None
    for pattern in spec.globs:
        try:
            return find_annotation(root, pattern, spec.what, None)
        except AnnotationError as exc:
            if "annotation files match" in str(exc):
                raise
            last = exc
    raise AnnotationError(str(last).replace(f"({spec.globs[-1]})",
                                            f"({' or '.join(spec.globs)})"))


def emotions_of(cell, split: bool) -> list[str]:
    """The emotion words of a cell (several when ``split`` and the cell joins them)."""
    if cell is None or not str(cell).strip():
        return []
    text = str(cell).strip()
    if not split:
        return [text]
    import re

    return [w for w in (p.strip() for p in re.split(r"[+,/&;]|\band\b", text)) if w]


class SheetAdapter(Adapter):
    """A dataset read by ``sheet_clips``: a subclass names it and gives its ``spec``."""

    spec: SheetSpec

    def __init__(self, annotations: Path | None = None):
        self.annotations = annotations

    def clips(self, root: Path) -> Iterator[RawClip]:
        yield from sheet_clips(root, self.spec, self.annotations)


def sheet_clips(root: Path, spec: SheetSpec, annotations: Path | None) -> Iterator[RawClip]:
    file = find_sheet(root, spec, annotations)
    sha = file_sha256(file)
    must = tuple(spec.columns[r] for r in spec.required)
    table = read_table(file, must)
    col = {role: table.optional(name) for role, name in spec.columns.items()}
    top = first_existing_dir(root, spec.frame_dirs)
    rows = list(table.rows)
    fixes = {f.row: f for f in spec.fixes}
    swapped = {}
    for f in spec.fixes:
        other = f.values.get("swap_aus_with")
        if other is not None and max(f.row, other) < len(rows) and col["aus"] is not None:
            swapped[f.row] = rows[other][1][col["aus"]]
    for i, (row, v) in enumerate(rows):
        where = f"{file.name}:{row}"

        def cell(role, v=v):
            return None if col.get(role) is None else v[col[role]]

        clip = "" if cell("clip") is None else str(cell("clip")).strip()
        words = emotions_of(cell("emotion"), spec.split_emotions)
        emotion = words[0] if len(words) == 1 else None
        notes = []
        if len(words) > 1:
            notes.append(f"several emotions {words}: outside every single-label protocol")
        try:
            subject = spec.subject(cell("subject"))
        except ValueError as exc:
            yield RawClip(spec.dataset, "?", clip or f"row{row}", emotion, None, None, None, "",
                          where, problem=f"bad subject ({exc})", annotation_sha256=sha)
            continue
        source = str(clip_source(spec.folder(top, subject, clip, emotion)))
        try:
            onset, apex, offset = (parse_frame(cell(r)) for r in ("onset", "apex", "offset"))
        except ValueError as exc:
            yield RawClip(spec.dataset, subject, clip or f"row{row}", emotion, None, None, None,
                          source, where, problem=f"bad frame number ({exc})",
                          annotation_sha256=sha)
            continue
        aus = au_cell(v, col["aus"])
        span = {"onset": onset, "apex": apex, "offset": offset}
        fix = fixes.get(i)
        for role, value in (fix.values.items() if fix is not None else ()):
            if role == "swap_aus_with":
                was, aus = aus, au_cell((swapped[i],), 0)
                notes.append(f"AU cell {was!r} exchanged with data row {value}'s {aus!r} "
                             f"({fix.source})")
            else:
                notes.append(f"{role} {span[role]} -> {value} ({fix.source})")
                span[role] = value
        yield RawClip(spec.dataset, subject, clip, emotion, span["onset"], span["apex"],
                      span["offset"], source, where,
                      note="; ".join(notes) or None, annotation_sha256=sha, action_units=aus,
                      reason=SEVERAL_EMOTIONS if len(words) > 1 else None)
