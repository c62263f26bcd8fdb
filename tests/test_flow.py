"""Optical flow: each backend against known motion of a real face photo, the strain it implies,
the apex fallback, the shards' flow columns, and the preview."""

import json

import cv2
import numpy as np
import pytest

from mer_ray.data.flow import (
    BACKENDS,
    MIDDLE_APEX,
    apex_position,
    flow_colours,
    optical_flow,
    optical_strain,
    strain_components,
)

S = 112
INNER = slice(16, S - 16)  # away from the borders, where a shifted image has no source
# Stated tolerances: a shift's mean flow within 0.2 px of it on each axis, a pure shift's mean
# strain magnitude below 0.05 (a 5 % zoom's is about 0.07), a zoom's mean divergence
# (exx + eyy) of the right sign and within 25 % of 2 (scale - 1).
SHIFT_TOLERANCE, SHIFT_STRAIN, ZOOM_TOLERANCE = 0.2, 0.05, 0.25


@pytest.fixture(scope="module")
def face():
    from skimage import data

    return cv2.resize(data.astronaut()[30:300, 150:400], (S, S), interpolation=cv2.INTER_AREA)


def warp(image, matrix):
    return cv2.warpAffine(image, np.float32(matrix), (S, S), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dx,dy", [(0.5, 0.3), (2.0, -1.0)])
def test_a_shifted_face_flows_by_the_shift(face, backend, dx, dy):
    u, v = optical_flow(face, warp(face, [[1, 0, dx], [0, 1, dy]]), backend)
    assert u.shape == v.shape == (S, S) and u.dtype == np.float32
    assert abs(float(u[INNER, INNER].mean()) - dx) < SHIFT_TOLERANCE
    assert abs(float(v[INNER, INNER].mean()) - dy) < SHIFT_TOLERANCE
    assert float(optical_strain(u, v)[INNER, INNER].mean()) < SHIFT_STRAIN


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [1.05, 0.95])
def test_a_zoomed_face_strains_outwards_or_inwards(face, backend, scale):
    u, v = optical_flow(face, warp(face, cv2.getRotationMatrix2D((S / 2, S / 2), 0, scale)),
                        backend)
    exx, eyy, _ = strain_components(u, v)
    divergence, expected = float((exx + eyy)[INNER, INNER].mean()), 2 * (scale - 1)
    assert np.sign(divergence) == np.sign(expected)
    assert abs(divergence - expected) < ZOOM_TOLERANCE * abs(expected)


def test_strain_of_known_fields():
    ys, xs = np.mgrid[0:32, 0:32].astype(np.float32)
    exx, eyy, exy = strain_components(0.1 * xs, 0.1 * ys)  # uniform expansion
    assert np.allclose(exx, 0.1) and np.allclose(eyy, 0.1) and np.allclose(exy, 0)
    # Simple shear u = 0.2 y, v = 0: u_y = 0.2, so exy = (u_y + v_x) / 2 = 0.1 and the
    # magnitude sqrt(u_x^2 + v_y^2 + 0.5 (u_y + v_x)^2) = sqrt(0.5 * 0.04) = 0.1414...
    exx, eyy, exy = strain_components(0.2 * ys, np.zeros_like(ys))
    assert np.allclose(exx, 0) and np.allclose(eyy, 0) and np.allclose(exy, 0.1)
    assert np.allclose(optical_strain(0.2 * ys, np.zeros_like(ys)), 0.02 ** 0.5)
    # u = 0.2 y, v = 0.1 x: exy = (0.2 + 0.1) / 2 = 0.15, magnitude sqrt(0.5 * 0.09) = 0.2121...
    assert np.allclose(optical_strain(0.2 * ys, 0.1 * xs), 0.045 ** 0.5)
    # a rotation (u = -0.1 y, v = 0.1 x) has no strain: its shear terms cancel
    assert np.allclose(optical_strain(-0.1 * ys, 0.1 * xs), 0, atol=1e-6)
    assert np.allclose(optical_strain(np.full((8, 8), 3.0), np.full((8, 8), -2.0)), 0)
    colours = flow_colours(np.ones((4, 4)), np.zeros((4, 4)))
    assert colours.shape == (4, 4, 3) and colours.dtype == np.uint8 and colours.max() > 0


def test_apex_outside_the_span_falls_back_to_its_middle():
    numbers = list(range(100, 120))
    span = list(range(2, 12))  # positions of frames 102..111
    assert apex_position(span, numbers, 105) == (5, "")
    assert apex_position(span, numbers, None) == (7, MIDDLE_APEX)
    assert apex_position(span, numbers, 119) == (7, MIDDLE_APEX)  # outside the span


def test_the_preview_renders(tmp_path, capsys):
    from mer_ray.cli import main
    from mer_ray.data.synth import generate

    generate(tmp_path / "syn", "samm", 1, 1, "3class", seed=3)
    out = tmp_path / "flow.png"
    assert main(["flow", "--data-root", str(tmp_path / "syn"), "--size", "56", "--flow", "dis",
                 "--out", str(out)]) == 0
    from PIL import Image

    png = Image.open(out)
    panels = json.loads(png.info["mer_ray_panels"])
    assert panels[0] == "onset (aligned)" and "optical strain" in panels
    assert png.size[0] > 4 * png.size[1]


@pytest.mark.ray
def test_prepare_stores_the_flow_columns(synth_samm, ray_session, tmp_path):
    from mer_ray.data.labels import class_names
    from mer_ray.data.manifest import build_manifest
    from mer_ray.data.prepare import PrepareConfig, prepare_shards
    from mer_ray.data.shards import Shards, SubjectReader

    manifest = build_manifest("samm", synth_samm, "3class")
    prepare_shards(manifest, tmp_path, PrepareConfig(frames=4, size=28, flow="farneback"),
                   class_names=class_names("samm", "3class"))
    shards = Shards.open(tmp_path)
    assert shards.meta.data.flow == "farneback"
    columns = ("subject", "clip", "flow_u", "flow_v", "strain", "onset_frame", "apex_frame",
               "flow_note")
    got = SubjectReader(shards.clips, shards.subjects(), columns).columns
    assert got["flow_u"].shape == (9, 28, 28) and got["flow_u"].dtype == np.float16
    assert got["strain"].dtype == np.float16 and (got["strain"] >= 0).all()
    assert got["apex_frame"].shape == (9, 28, 28, 3) and got["apex_frame"].dtype == np.uint8
    assert np.abs(got["flow_u"].astype(np.float32)).max() > 0  # the expression moved
