"""Writers for test fixtures in the datasets' real on-disk formats.

Written independently of the synthetic generator so the adapters are tested against the formats,
not against the project's own writer.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import openpyxl

SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Type", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes"]
CASME2_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                 "Action Units", "Estimated Emotion"]


def write_xlsx(path: Path, rows: list[list], preamble: int = 0) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    for i in range(preamble):
        ws.append([f"preamble line {i + 1}"] if i % 3 == 0 else [])
    for r in rows:
        ws.append(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def samm_sheet(root: Path, rows: list[list], header=SAMM_HEADER) -> Path:
    """rows: [subject int, clip, onset, apex, offset, au, emotion]."""
    body = [[s, c, 1, on, ap, off, off - on + 1 if isinstance(on, int) and isinstance(off, int) else None,
             "Micro - 1/2", au, emo, 1, ""] for s, c, on, ap, off, au, emo in rows]
    return write_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", [header] + body, preamble=13)


def casme2_sheet(root: Path, rows: list[list], header=CASME2_HEADER) -> Path:
    """rows: [subject, clip, onset, apex, offset, au, emotion]."""
    body = [[s, c, "x", on, ap, off, 0, au, emo] for s, c, on, ap, off, au, emo in rows]
    return write_xlsx(root / "CASME2-coding-20140508.xlsx", [header] + body)


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
