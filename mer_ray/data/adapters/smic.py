"""SMIC (Li et al.): the HS subset, 100 fps; VIS and NIR (25 fps) share the layout.

Layout: ``HS/s1/micro/negative/s1_ne_01/image000123.bmp``. Quirks handled here:
- There is no annotation spreadsheet: the emotion is the folder name under ``micro/``
  (negative / positive / surprise) and each clip is its whole folder, so onset and offset are the
  first and last frame on disk.
- There is no apex; ``apex`` stays null (use the middle frame where one is needed).
- Subject folders are ``s1``..``s20`` (not zero-padded); only 16 HS subjects have clips.
- ``non_micro`` folders hold non-expression clips and are not part of any protocol: ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..annotations import AnnotationError
from ..frames import VIDEO_SUFFIXES
from .base import Adapter, RawClip

_SUBJECT = re.compile(r"^s(\d+)$", re.IGNORECASE)


class SmicAdapter(Adapter):
    name = "smic"
    annotation_file = False

    def __init__(self, subset: str = "HS"):
        self.subset = subset

    def _subset_root(self, root: Path) -> Path:
        for cand in (root / self.subset, root / "SMIC_all_raw" / self.subset, root):
            if cand.is_dir() and any(_SUBJECT.match(p.name) for p in cand.iterdir() if p.is_dir()):
                return cand
        raise AnnotationError(
            f"{root}: no SMIC subject folders (s1, s2, ...) found in {root / self.subset} or "
            f"{root}; pass the folder that holds {self.subset}/"
        )

    def clips(self, root: Path) -> Iterator[RawClip]:
        base = self._subset_root(root)
        subjects = sorted(
            (p for p in base.iterdir() if p.is_dir() and _SUBJECT.match(p.name)),
            key=lambda p: int(_SUBJECT.match(p.name).group(1)),
        )
        for subj_dir in subjects:
            subject = f"s{int(_SUBJECT.match(subj_dir.name).group(1))}"
            micro = subj_dir / "micro"
            if not micro.is_dir():
                continue
            for emo_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
                for clip_path in sorted(emo_dir.iterdir()):
                    is_video = clip_path.is_file() and clip_path.suffix.lower() in VIDEO_SUFFIXES
                    if not (clip_path.is_dir() or is_video):
                        continue
                    yield RawClip(
                        "smic", subject, clip_path.stem if is_video else clip_path.name,
                        emo_dir.name.lower(), None, None, None, str(clip_path),
                        str(clip_path.relative_to(root)), whole_source=True,
                    )
