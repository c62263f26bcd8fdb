"""What every dataset adapter yields, and helpers to find files under a dataset root."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..frames import VIDEO_SUFFIXES


@dataclass
class RawClip:
    """One annotated clip as the annotation describes it, before protocol and disk checks.

    ``source`` is the folder of frames or the video file that should hold the clip (it may not
    exist); ``annotation`` says where the clip was described ("file:row" or a folder), so any
    message about it can point there. ``problem`` is set when the annotation row itself cannot be
    used (an unreadable frame number, say); the manifest then excludes the clip with that reason.
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


class Adapter:
    """A dataset on disk: yields one RawClip per annotated clip, in annotation order."""

    name: str = ""

    def clips(self, root: Path) -> Iterator[RawClip]:
        raise NotImplementedError


def first_existing_dir(root: Path, names: tuple[str, ...]) -> Path:
    """The first ``root/name`` that is a folder, else ``root`` itself."""
    for n in names:
        if (root / n).is_dir():
            return root / n
    return root


def find_annotation(root: Path, pattern: str, what: str, given: Path | None) -> Path:
    """The annotation file: ``given`` if set, else the single match of ``pattern`` near root."""
    if given is not None:
        return given
    hits = sorted(root.glob(pattern)) + sorted(root.glob(f"*/{pattern}"))
    if not hits:
        from ..annotations import AnnotationError

        raise AnnotationError(
            f"{root}: no {what} annotation file ({pattern}) in this folder or one below it; "
            f"pass --annotations FILE to name it"
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
