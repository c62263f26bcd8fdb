"""CASME II (Yan et al.): 26 subjects, 200 fps.

Layout: ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`` with ``CASME2-coding-20140508.xlsx``
(also distributed as ``-20190701`` and ``-updated``). Quirks handled here:
- Two header cells are empty (the columns after ``Filename`` and after ``OffsetFrame``); columns
  are therefore looked up by name, never by position.
- ``Subject`` is an integer (1) while folders are ``sub01``; a file that already says ``sub01``
  is accepted too.
- A missing apex is written ``/`` or ``-1``. The clip span is onset..offset, so such a clip is
  kept with ``apex`` null and a note.
- ``Action Units`` strings look like ``4+L10`` or ``R12``, some with ``?``; kept verbatim.
- The cropped distribution names frames ``reg_img46.jpg``; the number is parsed from the name, so
  both spellings work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..annotations import parse_frame, parse_subject, read_table
from .base import Adapter, RawClip, clip_source, find_annotation, first_existing_dir

ANNOTATION_GLOB = "CASME2-coding*.xlsx"
COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion")
FRAME_DIRS = ("CASME2_RAW_selected", "CASME2-RAW", "CASME2_RAW", "Cropped", "CASME2_Cropped")


class Casme2Adapter(Adapter):
    name = "casme2"

    def __init__(self, annotations: Path | None = None):
        self.annotations = annotations

    def clips(self, root: Path) -> Iterator[RawClip]:
        file = find_annotation(root, ANNOTATION_GLOB, "CASME II", self.annotations)
        table = read_table(file, COLUMNS)
        frames_root = first_existing_dir(root, FRAME_DIRS)
        col = {c: table.column(c) for c in COLUMNS}
        for row, v in table.rows:
            where = f"{file.name}:{row}"
            clip_name = "" if v[col["Filename"]] is None else str(v[col["Filename"]]).strip()
            try:
                subject = parse_subject(v[col["Subject"]], "sub", 2)
            except ValueError as exc:
                yield RawClip("casme2", "?", clip_name or f"row{row}", None, None, None, None,
                              "", where, problem=f"bad subject ({exc})")
                continue
            emotion = v[col["Estimated Emotion"]]
            emotion = None if emotion is None else str(emotion).strip()
            source = str(clip_source(frames_root / subject / clip_name))
            try:
                onset = parse_frame(v[col["OnsetFrame"]])
                offset = parse_frame(v[col["OffsetFrame"]])
            except ValueError as exc:
                yield RawClip("casme2", subject, clip_name, emotion, None, None, None, source,
                              where, problem=f"bad frame number ({exc})")
                continue
            note = None
            try:
                apex = parse_frame(v[col["ApexFrame"]])
                if apex is None:
                    note = f"apex not annotated ({v[col['ApexFrame']]!r})"
            except ValueError:
                apex, note = None, f"apex unreadable ({v[col['ApexFrame']]!r})"
            yield RawClip("casme2", subject, clip_name, emotion, onset, apex, offset, source,
                          where, note=note)
