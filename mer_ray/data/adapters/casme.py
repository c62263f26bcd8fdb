"""CASME (I) (Yan et al., 2013): 19 subjects at 60 fps.

Layout: ``CASME_raw_selected/sub01/EP01_5/`` (``sub{subject:02d}/{clip}``, a folder of frames
whose names end in the frame number) and the coding sheet (``CASME*.xlsx``; MEB's copy is named
``casme.xlsx``). What the sheet holds, as MEB reads it:

- columns ``Subject, Filename, OnsetF, ApexF1, ApexF2, OffsetF, Action Units, Emotion`` and two
  unnamed ones; looked up by name. ``Subject`` cells are integers (``1`` -> ``sub01``);
  ``ApexF1`` is the apex used (``ApexF2``, a second apex some clips have, is not).
- Three rows have onsets, five offsets and three apexes that do not match the frame folders; MEB
  corrects them (``FIXES``, 0-based data rows): onsets of rows 40, 42, 43 -> 100, 101, 57;
  offsets of rows 40, 42, 43, 54, 140 -> 149, 119, 74, 40, 142; apexes of rows 40, 42, 43 ->
  120, 110, 65. Each fixed row is noted in the manifest with the sheet's value.
- ``Action Units`` like CASME II's (``4+L10``), read by ``data/aus.py``.
- Emotions: happiness, disgust, repression, surprise, tense, fear, contempt, sadness. The
  3-class protocol (``labels.py``) groups them as the MEGC maps do; repression and tense are
  outside it. MEB uses CASME for the cross-dataset AU protocol only (189 clips).
"""

from __future__ import annotations

from ..annotations import parse_subject
from .sheet import SheetAdapter, SheetFix, SheetSpec

MEB = "MEB's row fix, checked against the frame folders (tvaranka/meb, datasets.py)"
FIXES = (
    SheetFix(40, {"onset": 100, "offset": 149, "apex": 120}, MEB),
    SheetFix(42, {"onset": 101, "offset": 119, "apex": 110}, MEB),
    SheetFix(43, {"onset": 57, "offset": 74, "apex": 65}, MEB),
    SheetFix(54, {"offset": 40}, MEB),
    SheetFix(140, {"offset": 142}, MEB),
)
SPEC = SheetSpec(
    "casme", ("CASME_label*.xlsx", "CASME-coding*.xlsx", "casme.xlsx"), "CASME (I)",
    {"subject": "Subject", "clip": "Filename", "onset": "OnsetF", "apex": "ApexF1",
     "offset": "OffsetF", "aus": "Action Units", "emotion": "Emotion"},
    ("CASME_raw_selected", "CASME_RAW_selected", "Cropped"),
    lambda cell: parse_subject(cell, "sub", 2),
    lambda top, subject, clip, emotion: top / subject / clip,
    FIXES,
)


class CasmeAdapter(SheetAdapter):
    name = "casme"
    spec = SPEC
