"""Adapters on fixtures written in the real formats, including every bad input they must survive."""

from pathlib import Path

import polars as pl
import pytest

from mer_ray.cli import main as cli
from mer_ray.data.annotations import AnnotationError, parse_frame, parse_subject
from mer_ray.data.frames import frame_number, index_frames
from mer_ray.data.manifest import build_manifest
from tests.helpers.formats import CASME2_HEADER, casme2_sheet, samm_sheet, tiny_frames, video


def _by_clip(m: pl.DataFrame) -> dict[str, dict]:
    return {r["clip"]: r for r in m.iter_rows(named=True)}


@pytest.fixture
def samm_root(tmp_path):
    root = tmp_path / "samm"
    base = root / "SAMM"
    tiny_frames(base / "006" / "006_1_2", [f"006_{n:05d}.jpg" for n in range(5562, 5571)])
    # one of the clips with non-standard names: order must follow the parsed number
    tiny_frames(base / "013" / "013_1_12", [f"013_1_12_frame{n}.jpg" for n in (9, 10, 11, 12)])
    tiny_frames(base / "007" / "007_1_1", [f"007_{n:05d}.jpg" for n in range(100, 111)])
    tiny_frames(base / "007" / "007_2_1", [f"007_{n:05d}.jpg" for n in range(100, 111)])
    tiny_frames(base / "007" / "007_3_1", [f"007_{n:05d}.jpg" for n in range(100, 111)])
    video(base / "009" / "009_1_1.avi", frames=10)
    (base / "009").mkdir(exist_ok=True)
    (base / "009" / "009_1_2.mp4").write_bytes(b"not a video at all")
    samm_sheet(root, [
        [6, "006_1_2", 5562, 5565, 5570, "R14 or 4", "Anger"],
        [13, "013_1_12", 9, 10, 12, "12", "Happiness"],
        [7, "007_1_1", 90, 105, 200, "1+2", "Surprise"],      # beyond the frames on disk
        [7, "007_2_1", 110, 105, 100, "4", "Anger"],          # onset after offset
        [7, "007_3_1", 300, 305, 310, "4", "Anger"],          # nothing on disk in the span
        [8, "008_1_1", 10, 12, 14, "4", "Contempt"],          # no folder
        [6, "006_1_3", 10, 12, 14, "7", "Other"],             # outside the 3-class protocol
        [6, "006_1_2", 5562, 5565, 5570, "4", "Anger"],       # duplicate clip id
        [6, "006_1_4", "abc", 12, 14, "4", "Anger"],          # unreadable frame number
        [9, "009_1_1", 2, 4, 8, "12", "Happiness"],           # a video file
        [9, "009_1_2", 2, 4, 8, "12", "Happiness"],           # a video that will not open
    ])
    return root


def test_samm_adapter_reads_quirks_and_records_every_row(samm_root):
    m = build_manifest("samm", samm_root, "3class")
    assert m.height == 11  # nothing dropped
    rows = m.iter_rows(named=True)
    by = {}
    for r in rows:
        by.setdefault(r["clip"], []).append(r)
    first = by["006_1_2"][0]
    assert (first["subject"], first["label"], first["label_id"]) == ("006", "negative", 0)
    assert (first["onset"], first["apex"], first["offset"], first["n_frames"]) == \
        (5562, 5565, 5570, 9)
    assert first["excluded_reason"] is None
    assert first["source"].endswith("SAMM/006/006_1_2")
    assert by["006_1_2"][1]["excluded_reason"] == "duplicate clip id"
    assert "first seen at SAMM_Micro_FACS_Codes_v2.xlsx:15" in by["006_1_2"][1]["notes"]
    assert by["013_1_12"][0]["n_frames"] == 4 and by["013_1_12"][0]["subject"] == "013"
    clamped = by["007_1_1"][0]
    assert clamped["excluded_reason"] is None
    assert (clamped["onset"], clamped["offset"], clamped["n_frames"]) == (100, 110, 11)
    assert "onset 90 clamped to 100" in clamped["notes"]
    assert "offset 200 clamped to 110" in clamped["notes"]
    assert by["007_2_1"][0]["excluded_reason"] == "onset after offset"
    assert by["007_3_1"][0]["excluded_reason"] == "no frames on disk in onset..offset"
    assert by["008_1_1"][0]["excluded_reason"] == "frames missing on disk"
    assert "SAMM/008/008_1_1" in by["008_1_1"][0]["notes"]
    assert by["006_1_3"][0]["excluded_reason"] == "label outside protocol"
    bad = by["006_1_4"][0]
    assert bad["excluded_reason"] == "unreadable annotation row"
    assert "SAMM_Micro_FACS_Codes_v2.xlsx:23" in bad["notes"] and "'abc'" in bad["notes"]
    vid = by["009_1_1"][0]
    assert vid["source"].endswith("009_1_1.avi") and vid["n_frames"] == 7
    assert by["009_1_2"][0]["excluded_reason"] == "video could not be opened"
    assert "009_1_2.mp4" in by["009_1_2"][0]["notes"]


def test_samm_five_class_keeps_other(samm_root):
    m = build_manifest("samm", samm_root, "5class")
    assert _by_clip(m)["006_1_3"]["label"] == "other"


def test_casme2_unnamed_columns_subject_ids_and_missing_apex(tmp_path):
    root = tmp_path / "casme2"
    frames = root / "CASME2_RAW_selected"
    tiny_frames(frames / "sub01" / "EP02_01f", [f"img{n}.jpg" for n in range(46, 60)])
    tiny_frames(frames / "sub02" / "EP03_02", [f"reg_img{n}.jpg" for n in range(1, 30)])
    tiny_frames(frames / "sub03" / "EP01_01", [f"img{n}.jpg" for n in range(1, 30)])
    casme2_sheet(root, [
        [1, "EP02_01f", 46, 50, 59, "4+L10", "disgust"],
        ["sub02", "EP03_02", 5, "/", 20, "R12", "happiness"],
        [3, "EP01_01", 5, -1, 20, "?", "repression"],
    ])
    m = _by_clip(build_manifest("casme2", root, "5class"))
    assert m["EP02_01f"]["subject"] == "sub01" and m["EP02_01f"]["n_frames"] == 14
    assert m["EP03_02"]["subject"] == "sub02" and m["EP03_02"]["apex"] is None
    assert m["EP03_02"]["excluded_reason"] is None and "apex not annotated" in m["EP03_02"]["notes"]
    assert m["EP03_02"]["n_frames"] == 16  # reg_img names parse too
    assert m["EP01_01"]["apex"] is None and m["EP01_01"]["excluded_reason"] is None
    m3 = _by_clip(build_manifest("casme2", root, "3class"))
    assert m3["EP03_02"]["excluded_reason"] == "apex missing (protocol needs it)"
    assert m3["EP02_01f"]["label"] == "negative"


def test_missing_column_names_file_and_column(tmp_path):
    header = [h if h != "OnsetFrame" else "Start" for h in CASME2_HEADER]
    casme2_sheet(tmp_path, [[1, "EP02_01f", 46, 50, 59, "4", "disgust"]], header=header)
    with pytest.raises(AnnotationError) as err:
        build_manifest("casme2", tmp_path, "5class")
    msg = str(err.value)
    assert "CASME2-coding-20140508.xlsx" in msg and "'OnsetFrame'" in msg


def test_missing_annotation_file_says_what_to_do(tmp_path):
    with pytest.raises(AnnotationError, match="--annotations"):
        build_manifest("samm", tmp_path, "5class")


def test_smic_emotion_from_folder(tmp_path):
    hs = tmp_path / "smic" / "HS"
    tiny_frames(hs / "s1" / "micro" / "negative" / "s1_ne_01",
                [f"image{n:06d}.bmp" for n in range(120, 131)])
    tiny_frames(hs / "s1" / "micro" / "positive" / "s1_po_01",
                [f"image{n:06d}.bmp" for n in range(10, 14)])
    tiny_frames(hs / "s12" / "micro" / "surprise" / "s12_sur_01",
                [f"image{n:06d}.bmp" for n in range(3, 9)])
    tiny_frames(hs / "s12" / "non_micro" / "s12_x_01", ["image000001.bmp"])
    (hs / "s2" / "micro" / "neutral" / "s2_nn_01").mkdir(parents=True)
    m = _by_clip(build_manifest("smic", tmp_path / "smic", "3class"))
    assert set(m) == {"s1_ne_01", "s1_po_01", "s12_sur_01", "s2_nn_01"}
    ne = m["s1_ne_01"]
    assert (ne["subject"], ne["label"], ne["apex"]) == ("s1", "negative", None)
    assert (ne["onset"], ne["offset"], ne["n_frames"]) == (120, 130, 11)
    assert m["s12_sur_01"]["subject"] == "s12"
    assert m["s2_nn_01"]["excluded_reason"] == "label outside protocol"


def test_frame_names_sort_by_number(tmp_path):
    tiny_frames(tmp_path, ["x10.jpg", "x9.jpg", "x100.jpg", "notes.jpg"])
    idx = index_frames(tmp_path)
    assert idx.numbers == (9, 10, 100)
    assert [Path(f).name for f in idx.files] == ["x9.jpg", "x10.jpg", "x100.jpg"]
    assert [Path(f).name for f in idx.unnumbered] == ["notes.jpg"]
    assert frame_number("006_05562.jpg") == 5562
    assert frame_number("image000123.bmp") == 123


@pytest.mark.parametrize("value,expected", [(46, 46), (46.0, 46), ("46", 46), ("/", None),
                                            (-1, None), ("-1", None), (None, None)])
def test_parse_frame(value, expected):
    assert parse_frame(value) == expected


@pytest.mark.parametrize("value", ["abc", 4.5, -3, True])
def test_parse_frame_rejects(value):
    with pytest.raises(ValueError):
        parse_frame(value)


def test_parse_subject():
    assert parse_subject(6, "", 3) == "006"
    assert parse_subject("006", "", 3) == "006"
    assert parse_subject(1, "sub", 2) == "sub01"
    assert parse_subject("sub01", "sub", 2) == "sub01"
    assert parse_subject(26.0, "sub", 2) == "sub26"
    with pytest.raises(ValueError):
        parse_subject("x1", "sub", 2)


def test_cli_manifest_counts_and_strict(samm_root, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    assert cli(["manifest", "--dataset", "samm", "--root", str(samm_root), "--protocol",
                "3class", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "included clips per class" in text and "duplicate clip id" in text
    assert pl.read_parquet(out).height == 11
    assert cli(["manifest", "--dataset", "samm", "--root", str(samm_root), "--out", str(out),
                "--strict"]) == 3


def test_cli_error_names_file(tmp_path, capsys):
    assert cli(["manifest", "--dataset", "casme2", "--root", str(tmp_path), "--out",
                str(tmp_path / "m.parquet")]) == 2
    assert "CASME2-coding" in capsys.readouterr().err


def test_casme3_frame_layout_and_recordings(tmp_path):
    """Part A as distributed: data/part_A/spNO.1/a/color/<index>.jpg (depth/ beside it), the
    label sheet in annotation/; a sheet 'J' found in folder 'j'; two clips in one recording."""
    from tests.helpers.formats import casme3_sheet

    base = tmp_path / "casme3" / "data" / "part_A"
    tiny_frames(base / "spNO.1" / "a" / "color", [f"{n}.jpg" for n in range(100, 160)])
    tiny_frames(base / "spNO.1" / "a" / "depth", [f"{n}.png" for n in range(100, 160)])
    tiny_frames(base / "spNO.7" / "j" / "color", [f"{n}.jpg" for n in range(0, 20)])
    casme3_sheet(tmp_path / "casme3" / "annotation" /
                 "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", [
                     ["spNO.1", "a", 100, 105, 120, "4", "disgust"],
                     ["spNO.1", "a", 130, 135, 150, "12", "happy"],
                     ["spNO.7", "J", 2, 5, 9, "1+2", "surprise"],
                     ["spNO.9", "b", 2, 5, 9, "1+2", "Others"],
                 ])
    m = _by_clip(build_manifest("casme3", tmp_path / "casme3", "7class"))
    assert set(m) == {"a_100", "a_130", "J_2", "b_2"}
    first = m["a_100"]
    assert first["source"].endswith("data/part_A/spNO.1/a/color")
    assert (first["n_frames"], first["label"]) == (21, "disgust")
    assert m["a_130"]["n_frames"] == 21 and m["a_130"]["source"] == first["source"]
    assert m["J_2"]["source"].endswith("spNO.7/j/color") and m["J_2"]["n_frames"] == 8
    assert m["b_2"]["excluded_reason"] == "frames missing on disk"
    assert m["b_2"]["label"] == "others"
    m4 = _by_clip(build_manifest("casme3", tmp_path / "casme3", "4class", check_frames=False))
    assert (m4["a_100"]["label"], m4["a_130"]["label"]) == ("negative", "positive")


def test_smic_takes_no_annotation_file(tmp_path):
    with pytest.raises(AnnotationError, match="no annotation file"):
        build_manifest("smic", tmp_path, "3class", annotations=tmp_path / "x.xlsx")


def test_cli_manifest_names_the_annotation_file(samm_root, tmp_path, capsys):
    from mer_ray.data.annotations import file_sha256

    assert cli(["manifest", "--dataset", "samm", "--root", str(samm_root), "--out",
                str(tmp_path / "m.parquet"), "--no-frame-check"]) == 0
    sha = file_sha256(samm_root / "SAMM_Micro_FACS_Codes_v2.xlsx")
    assert f"annotations: SAMM_Micro_FACS_Codes_v2.xlsx (sha256 {sha})" in capsys.readouterr().out
    m = pl.read_parquet(tmp_path / "m.parquet")
    assert set(m["annotation_sha256"]) == {sha}
    assert m["n_frames"].null_count() == m.height  # --no-frame-check reads annotations only
