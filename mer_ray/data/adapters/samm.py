"""SAMM (Davison et al.): 32 participants, 200 fps, grey-scale frames.

Layout: ``SAMM/006/006_1_2/006_05562.jpg`` with ``SAMM_Micro_FACS_Codes_v2.xlsx`` beside it.
What the official v2 sheet holds, and how each quirk is handled here:

- 13 rows of preamble (title, licence text, blank rows); the header is on row 14. The header is
  found by its column names rather than by its row number, since other versions shift it.
- Columns: ``Subject, Filename, Inducement Code, Onset Frame, Apex Frame, Offset Frame,
  Duration, Micro, Action Units, Estimated Emotion, Objective Classes, Notes``. The 8th column
  is titled ``Micro`` (every value ``Micro - 1/2``); ``Duration`` cells are formulas. Neither is
  read: columns are looked up by name.
- ``Subject`` cells are text (``'006'``), matching the zero-padded folders; an integer (6) from
  a re-saved copy is padded to three digits the same way.
- Two rows have an apex outside onset..offset: ``028_4_1`` (onset 1071, apex 1143, offset
  1134) and ``032_3_1`` (onset 4896, apex 1930, offset 4970). The span is valid, so both stay
  included; the manifest notes ``apex outside onset..offset`` and leaves their apex empty, so
  nothing downstream can use the bad value (``manifest.py`` does this for every dataset).
- ``Action Units`` strings may contain alternatives ("R14 or 4", "10A/B"); kept verbatim,
  never parsed for labels.
- Six clips (013_1_12, 013_1_8, 017_3_2, 026_1_1, 026_1_2, 035_7_2) use non-standard frame file
  names; frames are matched by the number parsed from each name (see ``frames.py``).
- ``Estimated Emotion`` is capitalised ("Anger", "Other"); labels.py maps it lower-cased.
- Counts (v2): anger 57, contempt 12, happiness 26, surprise 15, other 26, disgust 9, fear 8,
  sadness 6 (159 rows); 5-class 136 clips, 3-class 133 (negative 92, positive 26,
  surprise 15) in 28 subjects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..annotations import file_sha256, parse_frame, parse_subject, read_table
from .base import Adapter, RawClip, au_cell, clip_source, find_annotation, first_existing_dir

ANNOTATION_GLOB = "SAMM_Micro_FACS_Codes*.xlsx"
COLUMNS = ("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame",
           "Estimated Emotion")


class SammAdapter(Adapter):
    name = "samm"

    def __init__(self, annotations: Path | None = None):
        self.annotations = annotations

    def clips(self, root: Path) -> Iterator[RawClip]:
        file = find_annotation(root, ANNOTATION_GLOB, "SAMM", self.annotations)
        sha = file_sha256(file)
        table = read_table(file, COLUMNS)
        frames_root = first_existing_dir(root, ("SAMM",))
        col = {c: table.column(c) for c in COLUMNS}
        au_col = table.optional("Action Units")
        for row, v in table.rows:
            where = f"{file.name}:{row}"
            clip_name = "" if v[col["Filename"]] is None else str(v[col["Filename"]]).strip()
            try:
                subject = parse_subject(v[col["Subject"]], "", 3)
            except ValueError as exc:
                # Fall back on the clip name's prefix (006_1_2 -> 006) so the row stays traceable.
                subject = clip_name.split("_")[0] if clip_name else "?"
                yield RawClip("samm", subject, clip_name or f"row{row}", None, None, None, None,
                              "", where, problem=f"bad subject ({exc})", annotation_sha256=sha)
                continue
            emotion = v[col["Estimated Emotion"]]
            try:
                onset, apex, offset = (parse_frame(v[col[c]]) for c in
                                       ("Onset Frame", "Apex Frame", "Offset Frame"))
            except ValueError as exc:
                yield RawClip("samm", subject, clip_name, emotion, None, None, None,
                              str(frames_root / subject / clip_name), where,
                              problem=f"bad frame number ({exc})", annotation_sha256=sha)
                continue
            yield RawClip(
                "samm", subject, clip_name, None if emotion is None else str(emotion).strip(),
                onset, apex, offset, str(clip_source(frames_root / subject / clip_name)), where,
                annotation_sha256=sha, action_units=au_cell(v, au_col),
            )
