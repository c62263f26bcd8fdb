"""MMEW (Ben et al., 2021): 36 subjects at 90 fps.

Layout: clips are filed by emotion, ``Micro_Expression/{emotion}/{clip}/``, beside the sheet
``MMEW_Micro_Exp.xlsx``. What the sheet holds, as MEB reads it:

- columns ``Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, remarks, Action Units,
  Estimated Emotion``; looked up by name; the ``Subject`` cell is kept as written.
- Sixteen rows (0-based data rows 33, 35-42, 142, 143, 145, 146, 148, 154, 156) have a wrong or
  missing apex and offset; MEB replaces both with estimates (``FIXES``). Each fixed row is
  noted in the manifest with the sheet's values.
- Emotions: happiness, surprise, disgust, fear, sadness, anger, others. MEB renames ``others``
  to ``repression``; the 7-class protocol (``labels.py``) does the same, the 3-class one
  groups the negative emotions.
- The emotion folder is the sheet's emotion as written (``Micro_Expression/disgust/...``).
"""

from __future__ import annotations

from .sheet import SheetAdapter, SheetFix, SheetSpec, text_subject

MEB = "MEB's estimate for a wrong or missing apex and offset (tvaranka/meb, datasets.py)"
_ROWS = (33, 35, 36, 37, 38, 39, 40, 41, 42, 142, 143, 145, 146, 148, 154, 156)
_APEX = (40, 15, 46, 20, 25, 20, 23, 28, 32, 56, 32, 27, 22, 29, 31, 38)
_OFFSET = (75, 54, 59, 98, 80, 93, 58, 61, 68, 88, 80, 85, 61, 108, 72, 106)
FIXES = tuple(SheetFix(r, {"apex": a, "offset": o}, MEB) for r, a, o in zip(_ROWS, _APEX, _OFFSET))


SPEC = SheetSpec(
    "mmew", ("MMEW_Micro_Exp*.xlsx",), "MMEW",
    {"subject": "Subject", "clip": "Filename", "onset": "OnsetFrame", "apex": "ApexFrame",
     "offset": "OffsetFrame", "aus": "Action Units", "emotion": "Estimated Emotion"},
    ("Micro_Expression",),
    text_subject,
    lambda top, subject, clip, emotion: top / (emotion or "unknown") / clip,
    FIXES,
)


class MmewAdapter(SheetAdapter):
    name = "mmew"
    spec = SPEC
