"""Writing synthetic clips in each dataset's real on-disk format, so the real adapters read them.

- SAMM: ``SAMM/006/006_1_2/006_05562.jpg`` (grey-scale) and ``SAMM_Micro_FACS_Codes_v2.xlsx`` with
  13 rows of preamble above the header on row 14.
- CASME II: ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`` and ``CASME2-coding-20140508.xlsx``
  with its two unnamed columns.
- SMIC: ``HS/s1/micro/negative/s1_ne_01/image000123.bmp``; no spreadsheet, each folder holds
  just the clip.
- CAS(ME)^3 part A: ``part_A/spNO.1/a/color/116.jpg`` and
  ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` with the labels on sheet ``label`` (after
  another sheet) and every cell written as text. Several clips share a recording, at
  frame ranges that do not overlap, as in the real set.
- CASME (I): ``CASME_raw_selected/sub01/EP01_5/EP01_5-46.jpg`` and ``CASME_label_Ver_2.xlsx``
  (integer subjects, ``OnsetF``/``ApexF1``/``ApexF2``/``OffsetF``, two unnamed columns).
- MMEW: ``Micro_Expression/disgust/S01_02/46.jpg`` (filed by emotion) and
  ``MMEW_Micro_Exp.xlsx`` with its ``remarks`` column.
- 4DME: ``gray_micro/S01/S01_1_02/46.jpg`` (grey-scale) and
  ``4DME_Labelling_Micro_release v1.xlsx``: frame cells as floats, AUs spelled ``AU6+AU12``,
  one 0/1 column per AU after them.

Subject cells are text, as in the official sheets (``'006'``, ``'01'``, ``'spNO.1'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import openpyxl

from ..labels import protocol

LAYOUTS = ("samm", "casme2", "smic", "casme3", "casme", "mmew", "4dme")
CASME_XLSX = "CASME_label_Ver_2.xlsx"
CASME_HEADER = ["Subject", "Filename", None, "OnsetF", "ApexF1", "ApexF2", "OffsetF", None,
                "Action Units", "Emotion"]
MMEW_XLSX = "MMEW_Micro_Exp.xlsx"
MMEW_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "remarks",
               "Action Units", "Estimated Emotion"]
FOURDME_XLSX = "4DME_Labelling_Micro_release v1.xlsx"
FOURDME_HEADER = ["sub_ID", "fold_name", "Onset", "Apex", "Offset", "Duration", "Emotion",
                  "AUs"]
# 4DME's classes are valences: the rendered face needs a concrete expression.
FOURDME_RENDER = {"positive": ("happiness",), "negative": ("disgust", "anger", "sadness"),
                  "surprise": ("surprise",), "repression": ("repression",),
                  "others": ("others",)}
# MMEW's "repression" class is written "others" in its sheet (MEB renames it).
MMEW_WRITE = {"repression": "others"}
SAMM_XLSX = "SAMM_Micro_FACS_Codes_v2.xlsx"
CASME2_XLSX = "CASME2-coding-20140508.xlsx"
CASME3_XLSX = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes"]
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class",
                 "emotion"]
CASME3_RECORDINGS = "abcdefghijklm"
# CAS(ME)^3 writes "happy" and "sad"; the renderer knows the longer words.
CASME3_RENDER = {"happy": ("happiness",), "sad": ("sadness",)}
CASME2_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                 "Action Units", "Estimated Emotion"]
SMIC_ABBR = {"negative": "ne", "positive": "po", "surprise": "sur"}
# SMIC only says "negative" or "positive": the rendered face needs a concrete expression.
SMIC_RENDER = {"negative": ("anger", "disgust", "sadness", "fear", "contempt"),
               "positive": ("happiness",), "surprise": ("surprise",)}


@dataclass
class WrittenClip:
    subject_number: int
    subject: str
    clip: str
    emotion: str  # as written in the annotation (dataset spelling)
    render_emotion: str  # the expression actually rendered
    label: str
    first_frame: int  # frame number of the first frame written
    onset: int  # frame numbers
    apex: int
    offset: int
    au: str


def emotion_words(layout: str, protocol_name: str) -> dict[str, tuple[str, ...]]:
    """Class -> the dataset's emotion words for it (lower case), from the protocol's label map."""
    proto = protocol(layout, protocol_name)
    return {c: tuple(e for e, k in proto.emotion_to_class.items() if k == c)
            for c in proto.classes}


def spelled(layout: str, word: str) -> str:
    if layout == "mmew":
        word = MMEW_WRITE.get(word, word)
    return word.capitalize() if layout in ("samm", "4dme") else word


def render_emotions(layout: str, word: str) -> tuple[str, ...]:
    if layout == "smic":
        return SMIC_RENDER[word]
    if layout == "casme3":
        return CASME3_RENDER.get(word, (word,))
    if layout == "4dme":
        return FOURDME_RENDER[word]
    if layout == "mmew" and word == "others":
        return ("repression",)
    return (word,)


def subject_id(layout: str, number: int) -> str:
    return {"samm": f"{number:03d}", "casme2": f"sub{number:02d}", "smic": f"s{number}",
            "casme3": f"spNO.{number}", "casme": f"sub{number:02d}", "mmew": f"S{number:02d}",
            "4dme": f"S{number:02d}"}[layout]


def subject_cell(layout: str, number: int) -> str:
    """The Subject cell as the official sheet writes it: text, zero-padded like the folders."""
    return {"samm": f"{number:03d}", "casme2": f"{number:02d}",
            "casme3": f"spNO.{number}", "casme": number, "mmew": f"S{number:02d}",
            "4dme": f"S{number:02d}"}[layout]


def clip_name(layout: str, subject: str, class_index: int, label_word: str, k: int,
              clips_per_class: int = 1) -> str:
    if layout == "samm":
        return f"{subject}_{class_index + 1}_{k + 1}"
    if layout == "casme2":
        return f"EP{class_index + 2:02d}_{k + 1:02d}f"
    if layout == "casme3":  # the recording; several clips may share one
        return CASME3_RECORDINGS[(class_index * clips_per_class + k) % len(CASME3_RECORDINGS)]
    if layout == "casme":
        return f"EP{class_index + 1:02d}_{k + 1}"
    if layout == "mmew":
        return f"{subject}_{class_index * clips_per_class + k + 1:02d}"
    if layout == "4dme":
        return f"{subject}_{class_index + 1}_{k + 1:02d}"
    return f"{subject}_{SMIC_ABBR[label_word]}_{k + 1:02d}"


def first_frame(layout: str, rng, class_index: int, k: int, clips_per_class: int,
                sequence_length: int) -> int:
    """Frame number of a clip's first written frame. CAS(ME)^3 clips that share a recording
    get frame ranges that do not overlap."""
    if layout == "samm":
        return int(rng.integers(1000, 9000))
    if layout == "casme3":
        turn = (class_index * clips_per_class + k) // len(CASME3_RECORDINGS)
        return int(rng.integers(1, 100)) + turn * (sequence_length + 100)
    return int(rng.integers(1, 100))


def frame_path(root: Path, layout: str, c: WrittenClip, label_word: str, number: int) -> Path:
    if layout == "samm":
        return root / "SAMM" / c.subject / c.clip / f"{c.subject}_{number:05d}.jpg"
    if layout == "casme2":
        return root / "CASME2_RAW_selected" / c.subject / c.clip / f"img{number}.jpg"
    if layout == "casme3":
        return root / "part_A" / c.subject / c.clip / "color" / f"{number}.jpg"
    if layout == "casme":
        return root / "CASME_raw_selected" / c.subject / c.clip / f"{c.clip}-{number}.jpg"
    if layout == "mmew":
        return root / "Micro_Expression" / c.emotion / c.clip / f"{number}.jpg"
    if layout == "4dme":
        return root / "gray_micro" / c.subject / c.clip / f"{number}.jpg"
    return root / "HS" / c.subject / "micro" / label_word / c.clip / f"image{number:06d}.bmp"


def write_frames(root: Path, layout: str, c: WrittenClip, label_word: str,
                 frames: list[np.ndarray]) -> None:
    for i, img in enumerate(frames):
        number = c.first_frame + i
        if layout == "smic" and not (c.onset <= number <= c.offset):
            continue  # SMIC folders hold only the clip itself
        path = frame_path(root, layout, c, label_word, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        if layout in ("samm", "4dme"):
            out = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            ok = cv2.imwrite(str(path), out, [cv2.IMWRITE_JPEG_QUALITY, 95])
        elif layout in ("casme2", "casme3", "casme", "mmew"):
            ok = cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_JPEG_QUALITY, 95])
        else:
            ok = cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"{path}: could not write frame")


def save_reproducibly(wb: openpyxl.Workbook, path: Path) -> None:
    """Save a workbook so that the same content gives the same bytes: openpyxl stamps the
    current time into the document properties and every zip entry, and a manifest records the
    sha256 of the annotation file it read."""
    import io
    import re
    import zipfile

    buf = io.BytesIO()
    wb.save(buf)
    fixed = (1980, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*",
                              rb"\g<1>2000-01-01T00:00:00Z", data)
            dst.writestr(zipfile.ZipInfo(info.filename, fixed), data,
                         compress_type=zipfile.ZIP_DEFLATED)


def write_annotations(root: Path, layout: str, clips: list[WrittenClip]) -> Path | None:
    if layout == "smic":
        return None
    wb = openpyxl.Workbook()
    ws = wb.active
    if layout == "samm":
        path = root / SAMM_XLSX
        ws.append(["SAMM Micro-FACS Codes (synthetic, generated by mer-ray synth)"])
        ws.append(["Frames are synthetic renderings of one public-domain face photograph."])
        for _ in range(11):  # the real file has 13 rows of preamble before the header
            ws.append([])
        ws.append(SAMM_HEADER)
        for c in clips:
            r = ws.max_row + 1  # Duration is a formula, as in the real sheet
            ws.append([subject_cell(layout, c.subject_number), c.clip, 1, c.onset, c.apex,
                       c.offset, f"=F{r}-D{r}+1", "Micro - 1/2", c.au, c.emotion, None,
                       "synthetic"])
    elif layout == "casme2":
        path = root / CASME2_XLSX
        ws.append(CASME2_HEADER)
        for c in clips:
            ws.append([subject_cell(layout, c.subject_number), c.clip, f"{c.clip[:4]}",
                       c.onset, c.apex, c.offset, c.offset - c.onset + 1, c.au, c.emotion])
    elif layout == "casme":
        path = root / CASME_XLSX
        ws.append(CASME_HEADER)
        for c in clips:
            ws.append([c.subject_number, c.clip, f"{c.clip[:4]}", c.onset, c.apex, None,
                       c.offset, c.offset - c.onset + 1, c.au, c.emotion])
    elif layout == "mmew":
        path = root / MMEW_XLSX
        ws.append(MMEW_HEADER)
        for c in clips:
            ws.append([subject_cell(layout, c.subject_number), c.clip, c.onset, c.apex,
                       c.offset, None, c.au, c.emotion])
    elif layout == "4dme":
        path = root / FOURDME_XLSX
        from .actions import AU_NUMBERS

        ws.append([*FOURDME_HEADER, *(f"AU{n}" for n in AU_NUMBERS)])
        for c in clips:
            have = {int(p[2:]) for p in c.au.split("+")}
            ws.append([subject_cell(layout, c.subject_number), c.clip, float(c.onset),
                       float(c.apex), float(c.offset), float(c.offset - c.onset + 1),
                       c.emotion, c.au, *(int(n in have) for n in AU_NUMBERS)])
    else:  # casme3: a first sheet that is not the labels, then sheet "label", all text
        path = root / CASME3_XLSX
        ws.title = "readme"
        ws.append(["synthetic CAS(ME)^3 part A layout, generated by mer-ray synth"])
        ws = wb.create_sheet("label")
        ws.append(CASME3_HEADER)
        for c in clips:
            ws.append([subject_cell(layout, c.subject_number), c.clip, str(c.onset),
                       str(c.apex), str(c.offset), c.au, "1", c.emotion])
    save_reproducibly(wb, path)
    return path
