"""What every dataset adapter yields, and helpers to find files under a dataset root."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..frames import VIDEO_SUFFIXES

# An exclusion reason an adapter decides (the manifest's REASONS has it): a 4DME row naming
# several emotions, which no single-label protocol can use.
SEVERAL_EMOTIONS = "several emotions"


def join_notes(*notes: str | None) -> str | None:
    """Notes about one clip as one text ("; " between them), or None when there are none."""
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


@dataclass
class RawClip:
    """One annotated clip as the annotation describes it, before protocol and disk checks.

    ``source`` is the folder of frames or the video file that should hold the clip (it may not
    exist); ``annotation`` says where the clip was described ("file:row" or a folder), so any
    message about it can point there, and ``annotation_sha256`` which version of that file it
    was. ``problem`` is set when the annotation row itself cannot be used (an unreadable frame
    number, say); the manifest then excludes the clip with that reason. ``reason`` is an
    exclusion the adapter decided (one of the manifest's ``REASONS``: a clip the MEGC ground
    truth leaves out, say), with ``note`` saying why. ``exclude_in`` maps a protocol name to
    the story of a documented per-row fix that leaves this clip out of that protocol (see
    ``RowFix``). ``label`` is set when an authoritative list gives the class directly (the
    MEGC ground truth) instead of the emotion word.
    """

    dataset: str
    subject: str
    clip: str
    emotion: str | None
    onset: int | None
    apex: int | None
    offset: int | None
    source: str
    annotation: str
    problem: str | None = None
    note: str | None = None
    whole_source: bool = False  # no onset/offset annotated: the clip is every frame of source
    annotation_sha256: str | None = None
    reason: str | None = None
    exclude_in: dict[str, str] = field(default_factory=dict)
    label: str | None = None
    unlisted: str | None = None
    action_units: str | None = None  # the AU cell as written (None: not coded); data/aus.py


@dataclass(frozen=True)
class RowFix:
    """A documented correction of one annotation row, kept next to the adapter it applies to:
    the row, what is wrong or decided about it, and where that comes from."""

    subject: str
    clip: str
    protocols: tuple[str, ...]  # the protocols the clip is left out of
    reason: str
    source: str

    def story(self) -> str:
        return f"{self.reason} (source: {self.source})"


class Adapter:
    """A dataset on disk: yields one RawClip per annotated clip, in annotation order."""

    name: str = ""
    annotation_file: bool = True  # reads an annotation file (which --annotations may name)

    def clips(self, root: Path) -> Iterator[RawClip]:
        raise NotImplementedError


def au_cell(values: tuple, position: int | None) -> str | None:
    """A row's AU cell as text (None: the sheet has no AU column, or the cell is empty and
    the row so codes none: ``data/aus.py`` reads both)."""
    if position is None:
        return None
    cell = values[position]
    if cell is None:
        return ""
    return str(int(cell)) if isinstance(cell, float) and cell.is_integer() else str(cell).strip()


def first_existing_dir(root: Path, names: tuple[str, ...]) -> Path:
    """The first ``root/name`` that is a folder, else ``root`` itself."""
    for n in names:
        if (root / n).is_dir():
            return root / n
    return root


def matching_files(folder: Path, pattern: str) -> list[Path]:
    """Files in ``folder`` whose names match ``pattern``, ignoring case (copies of the datasets
    differ in capitalisation); Office lock files (``~$...``) are not annotation files."""
    if not folder.is_dir():
        return []
    pat = pattern.lower()
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith("~$")
                  and fnmatch.fnmatchcase(p.name.lower(), pat))


def find_annotation(root: Path, pattern: str, what: str, given: Path | None) -> Path:
    """The annotation file: ``given`` if set, else the one match of ``pattern`` in root or a
    folder right below it. Several matches are several versions of the file, which label clips
    differently (CASME II's 20140508 and 20190701 sheets): that is refused, never guessed."""
    from ..annotations import AnnotationError

    if given is not None:
        if not Path(given).is_file():
            raise AnnotationError(f"{given}: annotation file not found (--annotations)")
        return Path(given)
    hits = matching_files(root, pattern)
    if root.is_dir():
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            hits += matching_files(sub, pattern)
    if not hits:
        raise AnnotationError(
            f"{root}: no {what} annotation file ({pattern}) in this folder or one below it; "
            f"pass --annotations FILE to name it"
        )
    if len(hits) > 1:
        raise AnnotationError(
            f"{root}: {len(hits)} {what} annotation files match {pattern}: "
            f"{', '.join(str(h) for h in hits)}. They are different versions that label clips "
            f"differently; pass --annotations FILE to choose the one to use."
        )
    return hits[0]


def clip_source(folder: Path) -> Path:
    """A clip's frames: the folder when it exists, else a video file of the same name, else the
    folder (which the manifest then reports as missing)."""
    if folder.is_dir():
        return folder
    for suffix in sorted(VIDEO_SUFFIXES):
        for cand in (folder.with_suffix(suffix), folder.with_suffix(suffix.upper())):
            if cand.is_file():
                return cand
    return folder
