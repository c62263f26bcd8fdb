"""Writers for test fixtures in the datasets' real on-disk formats.

Written independently of the synthetic generator so the adapters are tested against the formats,
not against the project's own writer. What each official file holds (and so what these write):

- SAMM ``SAMM_Micro_FACS_Codes_v2.xlsx``: 13 rows of preamble, the header on row 14, the 8th
  column titled ``Micro``, ``Duration`` as a formula, ``Subject`` as text (``'006'``).
- CASME II ``CASME2-coding-20140508.xlsx``: two unnamed header cells, ``Subject`` as text
  (``'01'``); the ``-20190701`` version adds ``Objective Classes``.
- CAS(ME)^3 ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``: labels on sheet ``label`` (not the
  first sheet here), every cell text, frame numbers included.
- MEGC 2019 ``combined_3class_gt.csv``: no header, CRLF line ends,
  ``database,subject,filename,label``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import openpyxl

SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes"]
CASME2_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                 "Action Units", "Estimated Emotion"]
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class",
                 "emotion"]


def write_xlsx(path: Path, rows: list[list], preamble: int = 0,
               sheets: dict[str, list[list]] | None = None) -> Path:
    """``rows`` on the first sheet (after ``preamble`` rows); ``sheets``: more named sheets."""
    wb = openpyxl.Workbook()
    ws = wb.active
    for i in range(preamble):
        ws.append([f"preamble line {i + 1}"] if i % 3 == 0 else [])
    for r in rows:
        ws.append(r)
    for name, body in (sheets or {}).items():
        extra = wb.create_sheet(name)
        for r in body:
            extra.append(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def samm_sheet(root: Path, rows: list[list], header=SAMM_HEADER) -> Path:
    """rows: [subject, clip, onset, apex, offset, au, emotion]; the subject is written as given
    (the official sheet: text such as '006')."""
    body = []
    for i, (s, c, on, ap, off, au, emo) in enumerate(rows):
        r = 15 + i  # spreadsheet row: 13 preamble rows, the header on row 14
        body.append([s, c, 1, on, ap, off, f"=F{r}-D{r}+1", "Micro - 1/2", au, emo, 1, ""])
    return write_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", [header] + body, preamble=13)


def casme2_sheet(root: Path, rows: list[list], header=CASME2_HEADER,
                 version: str = "20140508") -> Path:
    """rows: [subject, clip, onset, apex, offset, au, emotion] (subject as given: the official
    sheets hold text such as '01'). Version 20190701 adds an ``Objective Classes`` column."""
    newer = version == "20190701"
    head = list(header) + (["Objective Classes"] if newer else [])
    body = [[s, c, "x", on, ap, off, 0, au, emo] + ([1] if newer else [])
            for s, c, on, ap, off, au, emo in rows]
    return write_xlsx(root / f"CASME2-coding-{version}.xlsx", [head] + body)


def casme3_sheet(path: Path, rows: list[list]) -> Path:
    """rows: [subject, recording, onset, apex, offset, au, emotion]; every cell written as text,
    on sheet ``label`` after a first sheet that is not the labels."""
    body = [[str(x) for x in (s, f, on, ap, off, au, "1", emo)]
            for s, f, on, ap, off, au, emo in rows]
    return write_xlsx(path, [["notes sheet: not the labels"]],
                      sheets={"label": [CASME3_HEADER] + body})


def megc_gt(path: Path, rows: list[tuple[str, str, str, int]]) -> Path:
    """The organisers' ground truth: no header, CRLF, database,subject,filename,label."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{d},{s},{f},{y}\r\n" for d, s, f, y in rows).encode())
    return path


def tiny_frames(folder: Path, names: list[str], size: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        img = np.full((size, size, 3), 128, np.uint8)
        assert cv2.imwrite(str(folder / n), img)


def video(path: Path, frames: int, size: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (size, size))
    for i in range(frames):
        w.write(np.full((size, size, 3), i * 10 % 255, np.uint8))
    w.release()
    return path
