"""4DME (Li et al., 2022): grey-scale 2-D frames (the 3-D meshes are not read).

Layout: ``gray_micro/{subject}/{clip}/`` beside the sheet ``4DME_Labelling_Micro_release
v1.xlsx``. What the sheet holds, as MEB reads it:

- columns ``sub_ID, fold_name, Onset, Apex, Offset, ..., Emotion, AUs`` and one 0/1 column per
  AU (not read: ``AUs`` says the same); looked up by name. Frame cells may be floats (``46.0``).
- ``AUs`` strings mark an AU the coders were unsure of with ``(k)`` (``AU12(k)+AU14``); like MEB,
  such AUs are left out of the AU set by default and named in the manifest's notes
  (``data/aus.py``).
- The AU cells of 0-based data rows 144 and 145 are exchanged in the release; MEB swaps them
  back (``FIXES``), and so does this adapter, noting both rows.
- ``Emotion`` names several emotions in some rows (``Negative+Surprise``): such a clip is kept
  with the reason "several emotions" (outside every single-label protocol; its AUs are still
  read). Emotions: positive, negative, surprise, repression, others (5-class); the 3-class
  protocol keeps the first three.
"""

from __future__ import annotations

from .sheet import SheetAdapter, SheetFix, SheetSpec, text_subject

MEB = "the release exchanges these two rows' AU cells; MEB swaps them (tvaranka/meb)"
FIXES = (SheetFix(144, {"swap_aus_with": 145}, MEB), SheetFix(145, {"swap_aus_with": 144}, MEB))
SPEC = SheetSpec(
    "4dme", ("4DME_Labelling_Micro*.xlsx",), "4DME",
    {"subject": "sub_ID", "clip": "fold_name", "onset": "Onset", "apex": "Apex",
     "offset": "Offset", "aus": "AUs", "emotion": "Emotion"},
    ("gray_micro", "gray_micro_crop"),
    text_subject,
    lambda top, subject, clip, emotion: top / subject / clip,
    FIXES,
    split_emotions=True,
)


class FourDmeAdapter(SheetAdapter):
    name = "4dme"
    spec = SPEC
