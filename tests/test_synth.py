"""The synthetic generator: deterministic, readable by the real adapters, classes where the AUs say."""

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mer_ray.data.manifest import build_manifest
from mer_ray.data.synth import generate, is_synthetic
from mer_ray.data.synth.actions import ACTION_UNITS, EMOTION_AUS
from mer_ray.data.synth.render import (
    ClipPlan,
    RenderConfig,
    astronaut_face,
    bump_field,
    envelope,
    make_subject,
    render_clip,
)


def _digest(root: Path) -> str:
    h = hashlib.sha256()  # annotation files included: the sheet is saved reproducibly
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_same_seed_same_dataset(tmp_path):
    a = generate(tmp_path / "a", "casme2", subjects=1, clips_per_class=1, seed=3, progress=False)
    b = generate(tmp_path / "b", "casme2", subjects=1, clips_per_class=1, seed=3, progress=False)
    c = generate(tmp_path / "c", "casme2", subjects=1, clips_per_class=1, seed=4, progress=False)
    assert _digest(a.root) == _digest(b.root) != _digest(c.root)
    ma, mb = (build_manifest("casme2", r.root, "3class").drop("source") for r in (a, b))
    assert ma.equals(mb)


@pytest.mark.parametrize("layout,protocol,classes", [("samm", "5class", 5), ("casme2", "3class", 3),
                                                     ("smic", "3class", 3),
                                                     ("casme3", "7class", 7)])
def test_real_adapter_reads_each_layout(tmp_path, layout, protocol, classes):
    res = generate(tmp_path, layout, subjects=2, clips_per_class=1, protocol=protocol, seed=0,
                   progress=False)
    m = build_manifest(layout, tmp_path, protocol)
    assert m.height == 2 * classes and m["excluded_reason"].null_count() == m.height
    assert m["subject"].n_unique() == 2 and m["label"].n_unique() == classes
    # CAS(ME)^3 clips are named by recording and onset (several share a recording)
    truth = {(c.subject, f"{c.clip}_{c.onset}" if layout == "casme3" else c.clip): c
             for c in res.clips}
    for r in m.iter_rows(named=True):
        c = truth[(r["subject"], r["clip"])]
        assert (r["onset"], r["offset"], r["label"]) == (c.onset, c.offset, c.label)
        assert r["n_frames"] == c.offset - c.onset + 1
    if layout == "samm":  # SAMM frames are grey-scale
        import cv2

        one = next((tmp_path / "SAMM").rglob("*.jpg"))
        assert cv2.imread(str(one), cv2.IMREAD_UNCHANGED).ndim == 2


def test_longer_sequence_around_the_clip(tmp_path):
    res = generate(tmp_path, "samm", subjects=1, clips_per_class=1, seed=0, progress=False)
    c = res.clips[0]
    frames = sorted((tmp_path / "SAMM" / c.subject / c.clip).iterdir())
    assert len(frames) == RenderConfig().sequence_length
    assert c.onset > c.first_frame and c.offset < c.first_frame + len(frames) - 1


def test_preview_written(tmp_path):
    png = tmp_path / "p.png"
    generate(tmp_path / "d", "smic", subjects=1, clips_per_class=1, seed=0, preview=png,
             progress=False)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def _clean_difference(emotion: str) -> np.ndarray:
    """|apex - onset| for one clip with every distractor and the sensor noise switched off."""
    cfg = RenderConfig()
    subject = replace(make_subject(np.random.default_rng(0), cfg), noise=0.0, roll_deg=0.0,
                      shear=0.0)
    plan = ClipPlan(emotion, onset=5, apex=10, offset=15, amplitude=1.0, blink=None,
                    drift=np.zeros(3), flicker=(0.0, 5.0, 0.0))
    frames = render_clip(subject, plan, cfg, np.random.default_rng(0))
    assert np.array_equal(frames[0], frames[plan.onset])  # neutral before onset
    assert np.array_equal(frames[-1], frames[plan.offset])  # and after offset
    return np.abs(frames[plan.apex].astype(float) - frames[plan.onset].astype(float)).mean(2)


def _centroid(diff: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:diff.shape[0], 0:diff.shape[1]]
    return np.array([(xs * diff).sum(), (ys * diff).sum()]) / diff.sum()


def test_classes_move_the_face_where_their_aus_say():
    happy, surprise, anger, contempt = (
        _clean_difference(e) for e in ("happiness", "surprise", "anger", "contempt"))
    s = RenderConfig().frame_size
    # mouth (AU12) well below the brows (AU1+2, AU4)
    assert _centroid(happy)[1] > _centroid(surprise)[1] + 0.15 * s
    assert _centroid(happy)[1] > _centroid(anger)[1] + 0.15 * s
    # AU14 on one lip corner only: off the midline; AU12 pulls both corners: on it
    mid = _centroid(happy)[0]
    assert abs(_centroid(contempt)[0] - mid) > 0.05 * s
    # brow raise and brow lowering differ in where inside the brow region they act
    assert np.corrcoef(surprise.ravel(), anger.ravel())[0, 1] < 0.8


def test_apex_displacement_is_a_few_pixels():
    face = astronaut_face()
    cfg = RenderConfig()
    px_per_crop_px = cfg.inter_ocular * cfg.frame_size / face.iod
    for emotion, aus in EMOTION_AUS.items():
        bumps = [b for au in aus for b in ACTION_UNITS[au]]
        field = bump_field(face.image.shape[:2], bumps, face.landmarks, face.iod)
        peak = np.linalg.norm(field, axis=2).max() * px_per_crop_px
        assert 1.5 < peak < 8.0, emotion


def test_envelope_rises_and_falls():
    plan = ClipPlan("happiness", 4, 8, 14, 1.0, None, np.zeros(3), (0, 5, 0))
    values = [envelope(plan, t) for t in range(20)]
    assert values[:5] == [0.0] * 5 and values[8] == 1.0 and values[14] == pytest.approx(0.0)
    assert all(v == 0.0 for v in values[15:])
    assert np.all(np.diff(values[4:9]) > 0) and np.all(np.diff(values[8:15]) < 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="layout"):
        generate("/tmp/never", "sddb")  # not a layout mer-ray writes
    with pytest.raises(ValueError, match="5class"):
        generate("/tmp/never", "smic", protocol="5class")


@pytest.mark.ray
def test_subjects_rendered_on_ray_match_the_serial_set(ray_session, tmp_path, monkeypatch):
    import json

    import mer_ray.data.synth as synth

    monkeypatch.setattr(synth, "PARALLEL_FROM", 1)  # parallel even for this small set
    serial = generate(tmp_path / "serial", "samm", subjects=3, clips_per_class=1, seed=5,
                      progress=False, workers=1)
    parallel = generate(tmp_path / "ray", "samm", subjects=3, clips_per_class=1, seed=5,
                        progress=False, workers=2)
    assert _digest(serial.root) == _digest(parallel.root)
    assert [c.clip for c in serial.clips] == [c.clip for c in parallel.clips]
    assert json.loads((serial.root / "synth.json").read_text()) == \
        json.loads((parallel.root / "synth.json").read_text())


def test_composite_is_three_layouts_read_by_the_megc_adapter(tmp_path):
    from mer_ray.data.manifest import included
    from mer_ray.data.synth import generate_composite

    generate_composite(tmp_path, subjects=2, clips_per_class=1, seed=5, progress=False)
    assert is_synthetic(tmp_path)
    m = build_manifest("megc", tmp_path, "3class")
    inc = included(m)
    assert inc.height == 18 and inc["subject"].n_unique() == 6
    assert sorted(set(inc["dataset"])) == ["casme2", "samm", "smic"]
