"""CAS(ME)^3 part A (Li et al.): the largest spontaneous micro-expression set, 30 fps colour
frames (depth maps beside them are not read).

Layout of the distributed part A: one folder per subject and recording,
``part_A/spNO.1/a/color/116.jpg`` (the file name is the frame index the label sheet uses; a
``depth/`` folder sits beside ``color/``), with the label sheet
``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` in the root or a folder below it
(``annotation/``). The root may also be the folder above ``part_A`` (``data/part_A``,
``data/part_A_split/part_A``). What the v2 sheet holds, and how each quirk is handled here:

- The labels are on sheet ``label``, not necessarily the first; header ``Subject, Filename,
  Onset, Apex, Offset, AU, Objective class, emotion``.
- Every cell is text, frame numbers included (``'112'``): parsed as numbers here, so nothing
  depends on how a spreadsheet program typed them.
- 860 rows, 94 subjects ``spNO.1``..``spNO.217`` (the numbering has gaps). ``Filename`` is the
  recording, ``a``..``m`` (one row says ``J``; the folder is looked up ignoring case). A
  recording holds several micro-expressions, so a clip's id is recording and onset
  (``a_116``), and its source is the recording's ``color/`` folder with the span
  onset..offset.
- Emotions: disgust 250, surprise 187, others 158 plus ``Others`` 3 (read lower-cased), fear 86,
  anger 64, sad 57, happy 55. Protocols (``labels.py``): 7class (the seven), 4class (negative =
  anger + disgust + fear + sad, positive = happy, surprise, others), 3class (4class without
  others).
- Known errors, handled by the rules that apply to every dataset (``manifest.py``):
  spNO.149/d has apex 83 before onset 112 and spNO.216/d onset 3647 after apex 2668: the span
  is valid, so the clips stay, noted ``apex outside onset..offset`` with the apex left empty.
  spNO.40/e has offset ``0`` on two rows: an offset of 0 after a later onset is read as not
  annotated, noted, and the row is excluded ("onset or offset not annotated").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..annotations import file_sha256, parse_frame, read_table
from .base import Adapter, RawClip, au_cell, find_annotation

ANNOTATION_GLOB = "cas(me)3_part_A_ME_label*.xlsx"
SHEET = "label"
COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "emotion")
FRAME_DIRS = ("part_A", "Part_A", "data/part_A", "data/part_A_split/part_A",
              "part_A_split/part_A")
_SUBJECT = re.compile(r"^sp\s*no\.?\s*(\d+)$", re.IGNORECASE)


def parse_casme3_subject(value) -> str:
    """'spNO.1', 'spno.1', 1 -> 'spNO.1'."""
    if value is None or str(value).strip() == "":
        raise ValueError("subject is empty")
    text = str(value).strip()
    m = _SUBJECT.match(text)
    if m:
        return f"spNO.{int(m.group(1))}"
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a CAS(ME)^3 subject id: {value!r}") from None
    if number != int(number) or number < 0:
        raise ValueError(f"not a CAS(ME)^3 subject id: {value!r}")
    return f"spNO.{int(number)}"


def frames_root(root: Path) -> Path:
    """The folder holding the ``spNO.*`` subject folders (``root`` when none is found: the
    manifest then reports every clip's frames missing)."""
    for cand in (root, *(root / d for d in FRAME_DIRS)):
        if cand.is_dir() and any(p.is_dir() and _SUBJECT.match(p.name) for p in cand.iterdir()):
            return cand
    return root


def recording_frames(subjects: Path, subject: str, recording: str) -> Path:
    """The folder of a recording's colour frames (it may not exist)."""
    subject_dir = subjects / subject
    if not subject_dir.is_dir() and subjects.is_dir():  # spelled another way on disk
        subject_dir = next((p for p in subjects.iterdir()
                            if _SUBJECT.match(p.name) and
                            parse_casme3_subject(p.name) == subject), subject_dir)
    folder = subject_dir / recording
    if not folder.is_dir() and subject_dir.is_dir():
        folder = next((p for p in subject_dir.iterdir()
                       if p.is_dir() and p.name.lower() == recording.lower()), folder)
    return folder / "color" if (folder / "color").is_dir() or not folder.is_dir() else folder


class Casme3Adapter(Adapter):
    name = "casme3"

    def __init__(self, annotations: Path | None = None):
        self.annotations = annotations

    def clips(self, root: Path) -> Iterator[RawClip]:
        file = find_annotation(root, ANNOTATION_GLOB, "CAS(ME)^3 part A", self.annotations)
        sha = file_sha256(file)
        table = read_table(file, COLUMNS, sheet=SHEET)
        subjects = frames_root(root)
        col = {c: table.column(c) for c in COLUMNS}
        au_col = table.optional("AU")
        for row, v in table.rows:
            where = f"{file.name}:{row}"
            recording = "" if v[col["Filename"]] is None else str(v[col["Filename"]]).strip()
            emotion = v[col["emotion"]]
            emotion = None if emotion is None else str(emotion).strip()
            try:
                subject = parse_casme3_subject(v[col["Subject"]])
            except ValueError as exc:
                yield RawClip("casme3", "?", recording or f"row{row}", emotion, None, None, None,
                              "", where, problem=f"bad subject ({exc})", annotation_sha256=sha)
                continue
            source = str(recording_frames(subjects, subject, recording))
            try:
                onset, apex, offset = (parse_frame(v[col[c]]) for c in
                                       ("Onset", "Apex", "Offset"))
            except ValueError as exc:
                yield RawClip("casme3", subject, f"{recording}_row{row}", emotion, None, None,
                              None, source, where, problem=f"bad frame number ({exc})",
                              annotation_sha256=sha)
                continue
            note = None
            if offset == 0 and onset:
                offset, note = None, f"offset {v[col['Offset']]!r} read as not annotated"
            clip = f"{recording}_{onset}" if onset is not None else f"{recording}_row{row}"
            yield RawClip("casme3", subject, clip, emotion, onset, apex, offset, source, where,
                          note=note, annotation_sha256=sha, action_units=au_cell(v, au_col))
