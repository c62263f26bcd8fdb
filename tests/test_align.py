"""Alignment on the real astronaut photo rotated by known angles."""

import cv2
import numpy as np
import pytest
from skimage import data

from mer_ray.data.align import (
    AlignGeometry,
    NoFaceError,
    align_clip,
    align_face,
    detect_landmarks,
    eye_centres,
    predictor_path,
    transform_points,
)

SIZE = 224


@pytest.fixture(scope="module")
def astronaut():
    img = data.astronaut()
    return img, detect_landmarks(img)


def test_predictor_ships_with_package():
    assert predictor_path().stat().st_size > 50_000_000


@pytest.mark.parametrize("angle", [-20.0, -10.0, -3.0, 0.0, 7.0, 15.0, 25.0])
def test_eye_line_level_and_distance_fixed(astronaut, angle):
    img, ref = astronaut
    h, w = img.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    rotated = cv2.warpAffine(img, rot, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    # Ground truth: the eyes found on the upright photo, carried by the known rotation.
    true_eyes = transform_points(np.stack(eye_centres(ref)), rot)
    aligned = align_face(rotated, SIZE)
    assert aligned is not None and aligned.image.shape == (SIZE, SIZE, 3)
    left, right = transform_points(true_eyes, aligned.matrix)
    tilt = np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))
    assert abs(tilt) < 1.0
    iod = np.linalg.norm(right - left)
    target = AlignGeometry().inter_ocular * SIZE
    assert abs(iod - target) / target < 0.02
    mid = (left + right) / 2
    assert np.allclose(mid, [SIZE / 2, AlignGeometry().eye_y * SIZE], atol=SIZE * 0.02)
    assert aligned.landmarks.shape == (68, 2)


def test_largest_face_wins(astronaut):
    img, _ = astronaut
    small = cv2.resize(img, (256, 256))
    canvas = np.full((768, 1024, 3), 90, np.uint8)
    canvas[:512, 512:] = img  # big face on the right
    canvas[512:, :256] = small  # small face bottom left
    lm = detect_landmarks(canvas)
    assert lm is not None and lm[:, 0].mean() > 512 and lm[:, 1].mean() < 512


def test_clip_frames_without_face_reuse_nearest(astronaut):
    img, _ = astronaut
    blank = np.full_like(img, 127)
    frames = [blank, img, blank, blank, np.fliplr(img).copy()]
    out, found = align_clip(frames, 112)
    assert found == [False, True, False, False, True]
    assert out.shape == (5, 112, 112, 3)
    # frame 0 borrowed frame 1's transform; frame 3 is nearer frame 4 than frame 1
    ref1 = align_face(img, 112)
    m1 = ref1.matrix
    assert np.array_equal(out[0], cv2.warpAffine(blank, m1, (112, 112),
                                                 borderMode=cv2.BORDER_REPLICATE))
    assert np.array_equal(out[1], ref1.image)


def test_clip_without_any_face_is_rejected():
    with pytest.raises(NoFaceError, match="no face"):
        align_clip([np.full((200, 200, 3), 127, np.uint8)] * 3, 112)


def test_geometry_validated():
    with pytest.raises(ValueError):
        AlignGeometry(eye_y=1.5)


def test_rigid_fit_recovers_a_known_motion():
    from mer_ray.data.align import rigid_fit

    pts = np.random.default_rng(0).uniform(0, 200, (8, 2))
    angle = np.deg2rad(3.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = pts @ rot.T + [4.0, -2.5]
    fit = rigid_fit(pts, moved)
    assert np.allclose(fit[:, :2], rot) and np.allclose(fit[:, 2], [4.0, -2.5])
    scaled = rigid_fit(pts, pts * 1.1)  # no scale in a rigid fit: the rotation stays one
    assert np.isclose(np.linalg.det(scaled[:, :2]), 1.0)


def test_each_registration_places_the_apex_its_own_way(astronaut):
    """onset: both frames through the onset's transform (a moved head stays moved); rigid:
    the apex's head motion undone by the stable landmarks; separate: each frame by its own
    eyes. A frame without a face takes the other's alignment, with a note."""
    from mer_ray.data.align import STABLE, align_pair, eye_matrix, pair_matrices

    img, lm = astronaut
    h, w = img.shape[:2]
    shift = np.float32([[1, 0, 6], [0, 1, -4]])  # the head moved 6 px right, 4 px up
    moved = cv2.warpAffine(img, shift, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    lm_moved = transform_points(lm, shift)
    geo = AlignGeometry()
    a, b, note = pair_matrices(lm, lm_moved, SIZE, geo, "onset")
    assert np.array_equal(a, b) and note == ""
    a, b, _ = pair_matrices(lm, lm_moved, SIZE, geo, "rigid")
    assert np.allclose(transform_points(lm_moved[list(STABLE)], b),
                       transform_points(lm[list(STABLE)], a), atol=1e-3)
    a, b, _ = pair_matrices(lm, lm_moved, SIZE, geo, "separate")
    assert np.allclose(b, eye_matrix(lm_moved, SIZE, geo))
    a, b, note = pair_matrices(lm, None, SIZE, geo, "rigid")
    assert np.array_equal(a, b) and "no face in the apex frame" in note
    onset, apex, note = align_pair(img, moved, SIZE, registration="onset")
    assert onset.shape == apex.shape == (SIZE, SIZE, 3) and note == ""
    with pytest.raises(ValueError, match="registration"):
        align_pair(img, moved, SIZE, registration="nope")
