"""Action-unit cells, every dataset's spelling read into one set of AU numbers (data/aus.py):
each quirk the datasets' sheets have, and the manifest column that carries the result."""

import pytest

from mer_ray.data.aus import CD6ME_AUS, au_vector, parse_aus


@pytest.mark.parametrize("cell, aus, noted", [
    ("4+L10", (4, 10), None),  # CASME II: side marks
    ("R12", (12,), None),
    ("R14 or 4", (4, 14), "alternatives"),  # SAMM: an alternative keeps both
    ("10A/B", (10,), None),  # SAMM: two intensities of one AU
    ("12B+R14A", (12, 14), None),
    ("AU4+AU7", (4, 7), None),  # an AU prefix
    ("1, 2，4", (1, 2, 4), None),  # CAS(ME)^3 part C: a full-width comma
    ("L1 + R2 ; 5", (1, 2, 5), None),
    (12, (12,), None),  # a number cell
    (12.0, (12,), None),
    ("", (), None),  # coded: no AU
    ("-", (), None),
])
def test_spellings(cell, aus, noted):
    got = parse_aus(cell)
    assert got.aus == aus
    assert (got.note is None) if noted is None else (noted in got.note)


def test_doubt_marks_are_left_out_and_noted():
    """CASME II's ``?`` and 4DME's ``(k)``: the coders were unsure; left out unless asked."""
    got = parse_aus("4?+L10")
    assert got.aus == (10,) and got.doubtful == (4,) and "doubtful AU(s) [4]" in got.note
    got = parse_aus("AU12(k)+AU14")
    assert got.aus == (14,) and got.doubtful == (12,) and "left out" in got.note
    assert parse_aus("AU12 (k)+AU14", keep_doubtful=True).aus == (12, 14)
    lone = parse_aus("?")
    assert lone.aus == () and "not AUs" in lone.note


def test_parts_that_are_not_aus_are_named():
    got = parse_aus("4+blink+L10")
    assert got.aus == (4, 10) and "'blink'" in got.note


def test_no_cell_is_not_coded():
    assert parse_aus(None) is None  # SMIC codes no AUs: unknown, not "none"


def test_the_cd6me_target():
    assert len(CD6ME_AUS) == 12
    assert au_vector((4, 10, 20)) == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0]


def test_the_synthetic_sets_au_strings_reach_the_manifest(synth_samm, capsys):
    """The generator writes each clip's AUs in the sheet; the manifest reads them back, and
    ``mer-ray manifest`` counts them."""
    from mer_ray.cli import main
    from mer_ray.data.manifest import build_manifest, included
    from mer_ray.data.synth.actions import EMOTION_AUS

    rows = included(build_manifest("samm", synth_samm, "3class")).to_dicts()
    for r in rows:
        want = sorted(int(a[2:].rstrip("R")) for a in EMOTION_AUS[r["emotion"].lower()])
        assert r["aus"] == want, r
    assert main(["manifest", "--dataset", "samm", "--data-root", str(synth_samm), "--protocol",
                 "3class", "--out", str(synth_samm.parent / "m.parquet")]) == 0
    out = capsys.readouterr().out
    assert "action units of the included clips" in out and "AU12 (CD6ME)" in out
