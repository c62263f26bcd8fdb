"""CASME (I), MMEW and 4DME: fixtures in their official sheet formats (every quirk
docs/datasets.md and each adapter's docstring list), and their synthetic layouts read back."""

from collections import Counter
from pathlib import Path

import openpyxl
import pytest

from mer_ray.data.manifest import build_manifest, included


def _sheet(path: Path, header: list, rows: list[list]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def _rows(df, clip):
    return df.filter(df["clip"] == clip).to_dicts()[0]


def test_casme_sheet_and_its_row_fixes(tmp_path):
    """Integer subjects, OnsetF / ApexF1 / ApexF2 / OffsetF, two unnamed columns; MEB's
    corrections of data rows 40, 42, 43, 54 and 140, each noted with the sheet's value."""
    header = ["Subject", "Filename", None, "OnsetF", "ApexF1", "ApexF2", "OffsetF", None,
              "Action Units", "Emotion"]
    emotions = ["happiness", "disgust", "surprise", "repression", "tense", "fear", "contempt",
                "sadness"]
    rows = [[i % 19 + 1, f"EP{i:03d}_1", "x", 10, 20, None, 30, 21, "4+L10",
             emotions[i % len(emotions)]] for i in range(141)]
    _sheet(tmp_path / "CASME_label_Ver_2.xlsx", header, rows)
    m = build_manifest("casme", tmp_path, "3class", check_frames=False)
    assert m.height == 141
    r40 = _rows(m, "EP040_1")
    assert (r40["subject"], r40["onset"], r40["apex"], r40["offset"]) == ("sub03", 100, 120, 149)
    assert "onset 10 -> 100" in r40["notes"] and "offset 30 -> 149" in r40["notes"]
    assert _rows(m, "EP140_1")["offset"] == 142 and _rows(m, "EP054_1")["offset"] == 40
    assert _rows(m, "EP041_1")["notes"] is None  # an unfixed row keeps the sheet's values
    assert _rows(m, "EP000_1")["aus"] == [4, 10]
    inc = included(m)
    # 3-class: repression and tense are outside it
    assert set(inc["emotion"]) == {"happiness", "disgust", "surprise", "fear", "contempt",
                                   "sadness"}
    assert (m["excluded_reason"] == "label outside protocol").sum() == \
        sum(emotions[i % 8] in ("repression", "tense") for i in range(141))


def test_mmew_sheet_fixes_and_others_as_repression(tmp_path):
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "remarks",
              "Action Units", "Estimated Emotion"]
    emotions = ["happiness", "surprise", "disgust", "fear", "sadness", "anger", "others"]
    rows = [[f"S{i % 36 + 1:02d}", f"S{i % 36 + 1:02d}_{i:03d}", 5, 10, 40, None, "R12",
             emotions[i % 7]] for i in range(157)]
    _sheet(tmp_path / "MMEW_Micro_Exp.xlsx", header, rows)
    (tmp_path / "Micro_Expression").mkdir()
    m = build_manifest("mmew", tmp_path, "7class", check_frames=False)
    fixed = m.filter(m["notes"].str.contains("MEB's estimate", literal=True))
    assert fixed.height == 16
    r = _rows(m, f"S{154 % 36 + 1:02d}_154")
    assert (r["apex"], r["offset"]) == (31, 72) and "apex 10 -> 31" in r["notes"]
    assert Counter(included(m)["label"])["repression"] == sum(i % 7 == 6 for i in range(157))
    # clips are filed by emotion
    assert r["source"].endswith(f"Micro_Expression/{emotions[154 % 7]}/S11_154")


def test_4dme_float_frames_doubtful_aus_swap_and_several_emotions(tmp_path):
    header = ["sub_ID", "fold_name", "Onset", "Apex", "Offset", "Duration", "Emotion", "AUs",
              "AU4", "AU12"]
    rows = [[f"S{i % 20 + 1:02d}", f"S{i % 20 + 1:02d}_{i:03d}", 10.0, 15.0, 30.0, 21.0,
             "Positive", f"AU{i % 30 + 1}", 0, 0] for i in range(146)]
    rows[3][7] = "AU12(k)+AU14"
    rows[5][6] = "Negative+Surprise"
    rows[144][7], rows[145][7] = "AU4", "AU6+AU12"
    _sheet(tmp_path / "4DME_Labelling_Micro_release v1.xlsx", header, rows)
    m = build_manifest("4dme", tmp_path, "5class", check_frames=False)
    r3 = _rows(m, "S04_003")
    assert r3["onset"] == 10 and r3["aus"] == [14] and "doubtful AU(s) [12]" in r3["notes"]
    r5 = _rows(m, "S06_005")
    assert r5["excluded_reason"] == "several emotions" and r5["aus"] == [6]
    assert "several emotions ['Negative', 'Surprise']" in r5["notes"]
    assert _rows(m, "S05_144")["aus"] == [6, 12] and _rows(m, "S06_145")["aus"] == [4]
    assert "exchanged with data row 145" in _rows(m, "S05_144")["notes"]


@pytest.mark.parametrize("layout, protocol, classes", [
    ("casme", "3class", 3), ("mmew", "7class", 7), ("mmew", "3class", 3),
    ("4dme", "5class", 5), ("4dme", "3class", 3)])
def test_synthetic_layouts_are_read_by_their_adapters(tmp_path, layout, protocol, classes,
                                                      capsys):
    """``mer-ray synth --layout X`` writes the dataset's own format; its adapter reads every
    clip back, with its class and AUs, and the frames on disk."""
    from mer_ray.cli import main
    from mer_ray.data.synth.actions import EMOTION_AUS

    assert main(["synth", "--out", str(tmp_path / "s"), "--layout", layout, "--subjects", "2",
                 "--clips-per-class", "1", "--protocol", protocol]) == 0
    m = build_manifest(layout, tmp_path / "s", protocol)
    inc = included(m)
    assert inc.height == m.height == 2 * classes
    assert Counter(inc["label"]) == {c: 2 for c in set(inc["label"])}
    import json

    written = {(c["subject"], c["clip"]): c for c in json.loads(
        (tmp_path / "s" / "synth.json").read_text())["clips"]}
    for r in inc.to_dicts():
        rendered = written[(r["subject"], r["clip"])]["render_emotion"]
        assert r["aus"] == sorted(int(a[2:].rstrip("R")) for a in EMOTION_AUS[rendered])
        assert r["n_frames"] and r["n_frames"] > 0
