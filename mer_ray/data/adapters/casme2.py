"""CASME II (Yan et al.): 26 subjects, 200 fps.

Layout: ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`` with ``CASME2-coding-20140508.xlsx``.
What the official sheets hold, and how each quirk is handled here:

- Two versions circulate: ``CASME2-coding-20140508.xlsx`` and ``CASME2-coding-20190701.xlsx``
  (which adds an ``Objective Classes`` column and relabels three sub24 clips, EP07_01, EP07_04f
  and EP10_03, from sadness to surprise). Both match ``CASME2-coding*.xlsx``: a root holding
  both is refused with a message naming them (choose one with ``--annotations``), and every
  manifest row records the file it came from and its sha256.
- 20140508 counts: others 99, disgust 63, happiness 32, repression 27, surprise 25, sadness 7,
  fear 2 (255 rows). 5-class keeps 246; 3-class (MEGC 2019) 145 (negative 88, positive 32,
  surprise 25) in 24 subjects.
- Two header cells are empty (after ``Filename`` and after ``OffsetFrame``); columns are looked
  up by name, never by position.
- ``Subject`` cells are text (``'01'``) while folders are ``sub01``; an integer from a re-saved
  copy, or a cell already saying ``sub01``, is read the same way.
- A missing apex is written ``/`` (one row: sub04/EP12_01f); ``-1`` is read the same way. The
  clip span is onset..offset, so such a clip is kept with ``apex`` null and a note in 5-class;
  the MEGC 3-class set needs an apex and leaves it out.
- ``Action Units`` strings look like ``4+L10`` or ``R12``, some with ``?``; kept verbatim in
  the manifest's ``action_units`` and read into ``aus`` by ``data/aus.py`` (a ``?`` is a
  doubtful AU, left out and noted).
- The cropped distribution names frames ``reg_img46.jpg``; the number is parsed from the name, so
  both spellings work.

Per-row fixes (``ROW_FIXES``): rows that the published protocols treat differently from what
the sheet's own values imply, each with its source.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..annotations import file_sha256, parse_frame, parse_subject, read_table
from .base import (
    Adapter,
    RawClip,
    RowFix,
    au_cell,
    clip_source,
    find_annotation,
    first_existing_dir,
)

ANNOTATION_GLOB = "CASME2-coding*.xlsx"
AU_COLUMN = "Action Units"
COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion")
FRAME_DIRS = ("CASME2_RAW_selected", "CASME2-RAW", "CASME2_RAW", "Cropped", "CASME2_Cropped")

ROW_FIXES = (
    # The organisers' combined_3class_gt.csv (MEGC 2019) has 145 CASME II rows: the 147 that
    # the 3-class map gives on 20140508, less sub04/EP12_01f (apex "/", left out by the apex
    # rule) and this one, whose onset and apex are the same frame (69): there is no rise from
    # onset to apex.
    RowFix("sub05", "EP09_05f", ("3class",),
           "onset = apex (frame 69): left out of the MEGC 2019 3-class set",
           "MEGC 2019 ground truth, combined_3class_gt.csv (145 CASME II rows)"),
)
_FIXES = {(f.subject, f.clip.lower()): f for f in ROW_FIXES}


class Casme2Adapter(Adapter):
    name = "casme2"

    def __init__(self, annotations: Path | None = None):
        self.annotations = annotations

    def clips(self, root: Path) -> Iterator[RawClip]:
        file = find_annotation(root, ANNOTATION_GLOB, "CASME II", self.annotations)
        sha = file_sha256(file)
        table = read_table(file, COLUMNS)
        frames_root = first_existing_dir(root, FRAME_DIRS)
        col = {c: table.column(c) for c in COLUMNS}
        au_col = table.optional(AU_COLUMN)
        for row, v in table.rows:
            where = f"{file.name}:{row}"
            clip_name = "" if v[col["Filename"]] is None else str(v[col["Filename"]]).strip()
            try:
                subject = parse_subject(v[col["Subject"]], "sub", 2)
            except ValueError as exc:
                yield RawClip("casme2", "?", clip_name or f"row{row}", None, None, None, None,
                              "", where, problem=f"bad subject ({exc})", annotation_sha256=sha)
                continue
            emotion = v[col["Estimated Emotion"]]
            emotion = None if emotion is None else str(emotion).strip()
            source = str(clip_source(frames_root / subject / clip_name))
            try:
                onset = parse_frame(v[col["OnsetFrame"]])
                offset = parse_frame(v[col["OffsetFrame"]])
            except ValueError as exc:
                yield RawClip("casme2", subject, clip_name, emotion, None, None, None, source,
                              where, problem=f"bad frame number ({exc})", annotation_sha256=sha)
                continue
            note = None
            try:
                apex = parse_frame(v[col["ApexFrame"]])
                if apex is None:
                    note = f"apex not annotated ({v[col['ApexFrame']]!r})"
            except ValueError:
                apex, note = None, f"apex unreadable ({v[col['ApexFrame']]!r})"
            fix = _FIXES.get((subject, clip_name.lower()))
            yield RawClip("casme2", subject, clip_name, emotion, onset, apex, offset, source,
                          where, note=note, annotation_sha256=sha,
                          exclude_in={p: fix.story() for p in fix.protocols} if fix else {},
                          action_units=au_cell(v, au_col))
