"""Label maps and counts: the official files' facts (docs/datasets.md and each adapter's docstring),
reproduced through the real adapters on fixtures written in exactly the official formats."""

import os
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from mer_ray.data.adapters.megc import source_dataset
from mer_ray.data.annotations import AnnotationError, file_sha256
from mer_ray.data.labels import THREE_CLASSES, class_names, protocol
from mer_ray.data.manifest import annotation_files, build_manifest, included
from tests.helpers.formats import casme2_sheet, casme3_sheet, megc_gt, samm_sheet

SAMM_EMOTIONS = {"Anger": 57, "Contempt": 12, "Happiness": 26, "Surprise": 15, "Other": 26,
                 "Disgust": 9, "Fear": 8, "Sadness": 6}
SMIC_CLIPS = {"negative": 70, "positive": 51, "surprise": 43}
CASME3_EMOTIONS = {"disgust": 250, "surprise": 187, "others": 158, "Others": 3, "fear": 86,
                   "anger": 64, "sad": 57, "happy": 55}
EXPECTED = {
    ("casme2", "5class"): {"happiness": 32, "disgust": 63, "repression": 27, "surprise": 25,
                           "others": 99},
    ("casme2", "3class"): {"negative": 88, "positive": 32, "surprise": 25},
    ("samm", "5class"): {"anger": 57, "contempt": 12, "happiness": 26, "surprise": 15,
                         "other": 26},
    ("samm", "3class"): {"negative": 92, "positive": 26, "surprise": 15},
    ("smic", "3class"): {"negative": 70, "positive": 51, "surprise": 43},
    ("megc", "3class"): {"negative": 250, "positive": 109, "surprise": 83},
    # spNO.40/e's two rows with offset 0 (disgust in this fixture) are excluded
    ("casme3", "7class"): {"anger": 64, "disgust": 248, "fear": 86, "happy": 55, "sad": 57,
                           "surprise": 187, "others": 161},
    ("casme3", "4class"): {"negative": 455, "positive": 55, "surprise": 187, "others": 161},
    ("casme3", "3class"): {"negative": 455, "positive": 55, "surprise": 187},
}
ROWS = {"casme2": 255, "samm": 159, "smic": 164, "megc": 578, "casme3": 860}
SUBJECTS_3CLASS = {"casme2": 24, "samm": 28, "smic": 16, "megc": 68, "casme3": 94}
EXCLUDED = {
    ("casme2", "5class"): {"label outside protocol": 9},
    ("casme2", "3class"): {"label outside protocol": 108, "apex missing (protocol needs it)": 1,
                           "left out by a documented per-row fix": 1},
    ("samm", "5class"): {"label outside protocol": 23},
    ("samm", "3class"): {"label outside protocol": 26},
    ("smic", "3class"): {},
    ("megc", "3class"): {"label outside protocol": 134, "apex missing (protocol needs it)": 1,
                         "left out by a documented per-row fix": 1},
    ("casme3", "7class"): {"onset or offset not annotated": 2},
    ("casme3", "4class"): {"onset or offset not annotated": 2},
    ("casme3", "3class"): {"onset or offset not annotated": 2, "label outside protocol": 161},
}


def casme2_rows(version: str = "20140508") -> list[list]:
    """The 255 rows of the official sheet as far as counts and quirks go: 26 subjects (text
    cells '01'..'26'), sub10 and sub18 holding only clips the 3-class protocol drops, the one
    apex written '/', the onset = apex row, the three sub24 clips 20190701 relabels."""
    sad24 = "surprise" if version == "20190701" else "sadness"
    special = [
        ["04", "EP12_01f", 30, "/", 60, "4", "disgust"],
        ["05", "EP09_05f", 69, 69, 95, "4", "disgust"],
        ["24", "EP07_01", 10, 15, 20, "1+2", sad24],
        ["24", "EP07_04f", 10, 15, 20, "1+2", sad24],
        ["24", "EP10_03", 10, 15, 20, "1+2", sad24],
    ]
    rest = {"others": 99, "disgust": 61, "happiness": 32, "repression": 27, "surprise": 25,
            "sadness": 4, "fear": 2}
    normal = [n for n in range(1, 27) if n not in (10, 18)]
    rows, i = list(special), 0
    for emo, n in rest.items():
        for _ in range(n):
            if emo == "others" and i < 6:  # sub10 and sub18: only clips 3-class drops
                subject = (10, 18)[i % 2]
            else:
                subject = normal[i % len(normal)]
            rows.append([f"{subject:02d}", f"EP{i:03d}_01", 10, 15, 20, "4", emo])
            i += 1
    return rows


def write_casme2(root: Path, version: str = "20140508") -> Path:
    return casme2_sheet(root, casme2_rows(version), version=version)


def write_samm(root: Path) -> None:
    # 29 participants with micro-expressions ('006'..'037', text cells); '020' has only
    # "Other"; the two rows whose apex lies outside onset..offset.
    subjects = [n for n in range(6, 38) if n not in (8, 21, 27)]
    rows = [["028", "028_4_1", 1071, 1143, 1134, "4", "Anger"],
            ["032", "032_3_1", 4896, 1930, 4970, "4", "Anger"]]
    left = dict(SAMM_EMOTIONS, Anger=55)
    normal = [s for s in subjects if s != 20]
    i = 0
    for emo, n in left.items():
        for _ in range(n):
            s = 20 if emo == "Other" and i % 5 == 0 else normal[i % len(normal)]
            rows.append([f"{s:03d}", f"{s:03d}_1_{i}", 100, 105, 110, "R14 or 4", emo])
            i += 1
    samm_sheet(root, rows)


SMIC_SUBJECTS = [1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20]


def write_smic(root: Path) -> None:
    i = 0
    for emo, n in SMIC_CLIPS.items():
        for _ in range(n):
            s = SMIC_SUBJECTS[i % len(SMIC_SUBJECTS)]
            (root / "HS" / f"s{s}" / "micro" / emo / f"s{s}_{emo[:2]}_{i:02d}").mkdir(
                parents=True)
            i += 1


def _casme3_subjects() -> list[int]:
    chosen, evens = {1, 40, 149, 216, 217}, iter(range(2, 216, 2))
    while len(chosen) < 94:
        chosen.add(next(evens))
    return sorted(chosen)


CASME3_SUBJECTS = _casme3_subjects()


def casme3_rows() -> list[list]:
    """860 rows, 94 subjects spNO.1..spNO.217, recordings a..m (one 'J'), the known errors."""
    rows = [["spNO.149", "d", 112, 83, 150, "4", "fear"],
            ["spNO.216", "d", 3647, 2668, 3690, "12", "happy"],
            ["spNO.40", "e", 500, 520, 0, "4", "disgust"],
            ["spNO.40", "e", 900, 930, 0, "4", "disgust"]]
    left = dict(CASME3_EMOTIONS, disgust=248, fear=85, happy=54)
    i = 0
    for emo, n in left.items():
        for _ in range(n):
            s = CASME3_SUBJECTS[i % len(CASME3_SUBJECTS)]
            rec = "J" if i == 7 else "abcdefghijklm"[(i // len(CASME3_SUBJECTS)) % 13]
            onset = 1000 + 40 * i
            rows.append([f"spNO.{s}", rec, onset, onset + 10, onset + 25, "4", emo])
            i += 1
    return rows


def write_casme3(root: Path) -> Path:
    return casme3_sheet(root / "annotation" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
                        casme3_rows())


WRITERS = {"casme2": write_casme2, "samm": write_samm, "smic": write_smic,
           "casme3": write_casme3}


@pytest.fixture(scope="module")
def label_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("labels")
    for name, writer in WRITERS.items():
        writer(base / name)
    return base


def manifest(roots: Path, dataset: str, proto: str, **kw) -> pl.DataFrame:
    return build_manifest(dataset, roots if dataset == "megc" else roots / dataset, proto,
                          check_frames=False, **kw)


@pytest.mark.parametrize("dataset,proto", list(EXPECTED))
def test_included_counts_match_the_official_files(label_roots, dataset, proto):
    m = manifest(label_roots, dataset, proto)
    inc = included(m)
    assert dict(Counter(inc["label"].to_list())) == EXPECTED[(dataset, proto)]
    # nothing dropped: every annotated clip keeps a row, with a countable reason
    assert m.height == ROWS[dataset]
    reasons = Counter(m.filter(pl.col("excluded_reason").is_not_null())["excluded_reason"])
    assert dict(reasons) == EXCLUDED[(dataset, proto)]
    if proto == "3class":
        assert inc["subject"].n_unique() == SUBJECTS_3CLASS[dataset]
    # label ids follow the protocol's class order
    names = class_names(dataset, proto)
    assert all(names[i] == lab for i, lab in zip(inc["label_id"], inc["label"]))


def test_megc_composite_per_dataset(label_roots):
    m = manifest(label_roots, "megc", "3class")
    inc = included(m)
    assert inc.height == 442
    assert dict(Counter(inc["dataset"])) == {"casme2": 145, "smic": 164, "samm": 133}
    per = {d: dict(Counter(inc.filter(pl.col("dataset") == d)["label"])) for d in
           ("casme2", "smic", "samm")}
    assert per == {"casme2": {"negative": 88, "positive": 32, "surprise": 25},
                   "smic": {"negative": 70, "positive": 51, "surprise": 43},
                   "samm": {"negative": 92, "positive": 26, "surprise": 15}}
    assert {source_dataset(s) for s in m["subject"]} == {"samm", "casme2", "smic"}
    assert (m["dataset"] == m["subject"].map_elements(source_dataset,
                                                      return_dtype=pl.Utf8)).all()


def test_samm_text_subjects_micro_column_and_bad_apex(label_roots):
    m = manifest(label_roots, "samm", "3class")
    rows = {r["clip"]: r for r in m.iter_rows(named=True)}
    assert rows["028_4_1"]["subject"] == "028"  # text cell, zero padding kept
    for clip, values in (("028_4_1", "onset 1071, apex 1143, offset 1134"),
                         ("032_3_1", "onset 4896, apex 1930, offset 4970")):
        r = rows[clip]
        assert r["excluded_reason"] is None  # the span is valid: the clip stays
        assert r["apex"] is None  # ... but the bad apex cannot be used
        assert "apex outside onset..offset" in r["notes"] and values in r["notes"]
        assert (r["onset"], r["offset"]) == tuple(int(v.split()[-1]) for v in
                                                  values.split(", ")[::2])
    good = [r for r in rows.values() if r["excluded_reason"] is None and r["apex"] is not None]
    assert good and all(r["onset"] <= r["apex"] <= r["offset"] for r in good)


def test_casme2_fixes_and_versions(label_roots, tmp_path):
    m3 = {r["clip"]: r for r in manifest(label_roots, "casme2", "3class").iter_rows(named=True)}
    assert m3["EP12_01f"]["excluded_reason"] == "apex missing (protocol needs it)"
    fix = m3["EP09_05f"]
    assert fix["excluded_reason"] == "left out by a documented per-row fix"
    assert "onset = apex" in fix["notes"] and "combined_3class_gt.csv" in fix["notes"]
    m5 = {r["clip"]: r for r in manifest(label_roots, "casme2", "5class").iter_rows(named=True)}
    assert m5["EP09_05f"]["excluded_reason"] is None  # 5-class keeps it
    assert m5["EP12_01f"]["excluded_reason"] is None and m5["EP12_01f"]["apex"] is None
    assert {r["subject"] for r in m5.values()} == {f"sub{n:02d}" for n in range(1, 27)}

    # the 20190701 sheet: three sub24 clips move from sadness to surprise
    newer = tmp_path / "newer"
    write_casme2(newer, "20190701")
    m = build_manifest("casme2", newer, "3class", check_frames=False)
    assert dict(Counter(included(m)["label"])) == {"negative": 88, "positive": 32,
                                                   "surprise": 28}
    assert annotation_files(m) == [("CASME2-coding-20190701.xlsx",
                                    file_sha256(newer / "CASME2-coding-20190701.xlsx"))]

    # both versions side by side: refused, naming both and the way out
    both = tmp_path / "both"
    write_casme2(both, "20140508")
    write_casme2(both, "20190701")
    with pytest.raises(AnnotationError) as err:
        build_manifest("casme2", both, "3class", check_frames=False)
    msg = str(err.value)
    assert "CASME2-coding-20140508.xlsx" in msg and "CASME2-coding-20190701.xlsx" in msg
    assert "--annotations" in msg
    chosen = build_manifest("casme2", both, "3class", check_frames=False,
                            annotations=both / "CASME2-coding-20190701.xlsx")
    assert included(chosen).height == 148
    assert set(chosen["annotation_sha256"]) == {file_sha256(both / "CASME2-coding-20190701.xlsx")}


def test_casme3_text_cells_and_known_errors(label_roots):
    m = manifest(label_roots, "casme3", "7class")
    assert m["subject"].n_unique() == 94
    assert set(m["subject"]) >= {"spNO.1", "spNO.40", "spNO.149", "spNO.216", "spNO.217"}
    by = {(r["subject"], r["clip"]): r for r in m.iter_rows(named=True)}
    assert len(by) == 860  # recording + onset identifies a clip: no false duplicates
    for key, values in ((("spNO.149", "d_112"), "onset 112, apex 83, offset 150"),
                        (("spNO.216", "d_3647"), "onset 3647, apex 2668, offset 3690")):
        r = by[key]
        assert r["excluded_reason"] is None and r["apex"] is None
        assert "apex outside onset..offset" in r["notes"] and values in r["notes"]
    for onset in (500, 900):
        r = by[("spNO.40", f"e_{onset}")]
        assert r["excluded_reason"] == "onset or offset not annotated"
        assert "offset '0' read as not annotated" in r["notes"]
    assert any(c.startswith("J_") for _, c in by)  # the one 'J' recording
    # frame numbers arrived as text and were read as numbers
    assert m["onset"].dtype == pl.Int64 and m["onset"].null_count() == 0
    assert annotation_files(m)[0][0] == "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"


def gt_rows_for(m: pl.DataFrame, keys: list | None = None) -> list[tuple[str, str, str, int]]:
    """The ground-truth rows for a composite manifest's included clips, spelled as the
    organisers spell them: CASME II 'sub01', SAMM unpadded '6', SMIC 's01' / 's01_ne_01';
    CASME II, then SMIC, then SAMM. ``keys`` receives each row's manifest (subject, clip)."""
    import re

    ids = {"negative": 0, "positive": 1, "surprise": 2}
    out = []
    inc = included(m)
    for part in ("casme2", "smic", "samm"):
        for r in inc.filter(pl.col("dataset") == part).iter_rows(named=True):
            subject = r["subject"].split("_", 1)[1]
            clip = r["clip"]
            if part == "samm":
                subject = str(int(subject))
            elif part == "smic":
                subject = re.sub(r"^s(\d+)", lambda g: f"s{int(g.group(1)):02d}", subject)
                clip = re.sub(r"^s(\d+)", lambda g: f"s{int(g.group(1)):02d}", clip)
            out.append((part, subject, clip, ids[r["label"]]))
            if keys is not None:
                keys.append((r["subject"], r["clip"]))
    return out


def test_megc_ground_truth_file(label_roots, tmp_path):
    plain = manifest(label_roots, "megc", "3class")
    keys: list = []
    rows = gt_rows_for(plain, keys)
    assert len(rows) == 442 and rows[0][1].startswith("sub") and rows[-1][1] == str(
        int(rows[-1][1]))
    gt = megc_gt(tmp_path / "combined_3class_gt.csv", rows)
    assert gt.read_bytes().count(b"\r\n") == 442 and not gt.read_bytes().startswith(b"data")
    m = manifest(label_roots, "megc", "3class", annotations=gt)
    inc = included(m)
    assert dict(Counter(inc["label"])) == {"negative": 250, "positive": 109, "surprise": 83}
    assert dict(Counter(inc["dataset"])) == {"casme2": 145, "smic": 164, "samm": 133}
    assert inc.select("subject", "clip").sort(["subject", "clip"]).equals(
        included(plain).select("subject", "clip").sort(["subject", "clip"]))
    assert ("combined_3class_gt.csv", file_sha256(gt)) in annotation_files(m)

    # The ground truth decides: a row it lacks, a row with no clip, a class it changes.
    dropped, changed = rows[0], rows[200]
    edited = [r for r in rows if r != dropped]
    edited[edited.index(changed)] = (*changed[:3], (changed[3] + 1) % 3)
    edited.append(("samm", "6", "006_9_9", 2))
    m = manifest(label_roots, "megc", "3class",
                 annotations=megc_gt(tmp_path / "edited.csv", edited))
    by = {(r["subject"], r["clip"]): r for r in m.iter_rows(named=True)}
    gone = by[(f"casme2_{dropped[1]}", dropped[2])]
    assert gone["excluded_reason"] == "not in the ground-truth list"
    extra = by[("samm_006", "006_9_9")]
    assert extra["excluded_reason"] == "in the ground-truth list, not in the annotations"
    assert extra["label"] == "surprise" and "edited.csv:442" in extra["annotation"]
    assert changed[0] == "smic" and changed[1].startswith("s0")  # joined through s01 -> s1
    moved = by[keys[200]]
    assert moved["excluded_reason"] is None and moved["label"] == THREE_CLASSES[(changed[3] + 1) % 3]
    assert "from the ground-truth list" in moved["notes"]
    # a clip the ground truth lists but its sheet drops (CASME II sub05/EP09_05f) comes back
    with_fix = rows + [("casme2", "sub05", "EP09_05f", 0)]
    m = manifest(label_roots, "megc", "3class",
                 annotations=megc_gt(tmp_path / "with_fix.csv", with_fix))
    assert included(m).height == 443


def test_megc_ground_truth_found_in_root(label_roots, tmp_path):
    import shutil

    root = tmp_path / "megc"
    for part in ("samm", "casme2", "smic"):
        shutil.copytree(label_roots / part, root / part)
    rows = gt_rows_for(manifest(label_roots, "megc", "3class"))
    megc_gt(root / "combined_3class_gt.csv", rows[:-1])
    m = build_manifest("megc", root, "3class", check_frames=False)
    assert included(m).height == 441
    # only clips the protocol's rules would have kept say "not listed" (the dropped row and
    # CASME II sub05/EP09_05f, which the ground truth, not a fix, now leaves out); the others
    # keep the protocol's own reason
    reasons = Counter(m["excluded_reason"].drop_nulls())
    unlisted = m.filter(pl.col("excluded_reason") == "not in the ground-truth list")
    assert set(unlisted["clip"]) == {rows[-1][2], "EP09_05f"}
    assert reasons["label outside protocol"] == 134


def test_three_class_order_is_shared():
    for ds in ("casme2", "samm", "smic", "megc", "casme3"):
        assert class_names(ds, "3class") == THREE_CLASSES


def test_unknown_protocol_is_named():
    with pytest.raises(ValueError, match="smic.*5class"):
        protocol("smic", "5class")
    with pytest.raises(ValueError, match="megc"):
        class_names("megc", "5class")
    with pytest.raises(ValueError, match="casme3.*5class"):
        protocol("casme3", "5class")


def test_emotion_words_normalised():
    p = protocol("samm", "3class")
    assert p.label_of(" Anger ") == "negative"
    assert p.label_of("HAPPINESS") == "positive"
    assert p.label_of("Other") is None
    assert protocol("casme3", "7class").label_of("Others") == "others"


# The licensed files themselves: set MER_RAY_<DATASET>_ROOT to check the counts on them.
@pytest.mark.parametrize("dataset,proto", [k for k in EXPECTED if k[0] not in ("megc",
                                                                                "casme3")])
def test_counts_on_real_annotation_files(dataset, proto):
    root = os.environ.get(f"MER_RAY_{dataset.upper()}_ROOT")
    if not root:
        pytest.skip(f"MER_RAY_{dataset.upper()}_ROOT not set (licensed data)")
    m = build_manifest(dataset, root, proto, check_frames=False)
    assert dict(Counter(included(m)["label"].to_list())) == EXPECTED[(dataset, proto)]
