"""Face alignment by eye centres (docs/method.md, section 1).

dlib's frontal detector finds the face (the largest, when there are several), the 68-point
predictor places the landmarks, and a similarity transform levels the eye line, puts the eye
midpoint at a fixed place and fixes the inter-ocular distance as a fraction of the output size.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..config import DataConfig

LEFT_EYE = slice(36, 42)  # image-left eye (the subject's right), points 36-41
RIGHT_EYE = slice(42, 48)
# Landmarks that facial actions move least: the nose bridge (27-30) and the eye corners (36,
# 39, 42, 45). The "rigid" registration fits the apex's onto the onset's (``align_pair``);
# brows, lids, cheeks, nostrils, lips and jaw move with the expression.
STABLE = (27, 28, 29, 30, 36, 39, 42, 45)
REGISTRATIONS = ("separate", "onset", "rigid")


@dataclass(frozen=True)
class AlignGeometry:
    """Where the eyes land in the aligned output, as fractions of the output size S."""

    # (ours) the defaults are DataConfig's: the eye midpoint's height leaves the brows and the
    # chin in frame
    eye_y: float = DataConfig.eye_y
    inter_ocular: float = DataConfig.inter_ocular
    upsample_retry: int = 1  # detector upsampling tried when no face is found at 0
    # (ours) Several detections: the largest among those scoring at least this fraction of the
    # best score. The plain "largest" rule picks dlib's weak false positives on busy
    # backgrounds (seen on the astronaut photo rotated by -10 degrees: 0.02 vs 0.62).
    relative_score: float = 0.5

    def __post_init__(self):
        if not 0.0 < self.eye_y < 1.0 or not 0.0 < self.inter_ocular < 1.0:
            raise ValueError("eye_y and inter_ocular are fractions of the output size in (0, 1)")


@dataclass
class AlignedFace:
    image: np.ndarray  # (S, S, 3) uint8 RGB
    landmarks: np.ndarray  # (68, 2) float32, in output pixel coordinates
    matrix: np.ndarray  # (2, 3) float64, source pixel -> output pixel


def predictor_path() -> Path:
    """The 68-point model shipped by the face-recognition-models package.

    The package's ``__init__`` imports ``pkg_resources``, which recent setuptools no longer has,
    so the file is located through the import system without importing the package.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed; pip install "
                           "face-recognition-models (it ships the dlib 68-point predictor)")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "models" / "shape_predictor_68_face_landmarks.dat"
        if p.is_file():
            return p
    raise RuntimeError("shape_predictor_68_face_landmarks.dat not found in face-recognition-models")


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib  # dlib objects cannot be pickled: each process builds its own

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


def detect_landmarks(image_rgb: np.ndarray, upsample_retry: int = 1,
                     relative_score: float = 0.5) -> np.ndarray | None:
    """68 landmarks (68, 2) of the largest confidently detected face, or None without a face."""
    import dlib

    detector, predictor = _dlib_models()
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY) if image_rgb.ndim == 3 else image_rgb
    grey = np.ascontiguousarray(grey)
    faces, scores, _ = detector.run(grey, 0, 0.0)
    if len(faces) == 0 and upsample_retry > 0:
        faces, scores, _ = detector.run(grey, upsample_retry, 0.0)
    if len(faces) == 0:
        return None
    best = max(scores)
    confident = [f for f, sc in zip(faces, scores) if sc >= relative_score * best]
    box = max(confident, key=lambda r: r.width() * r.height())
    shape = predictor(grey, dlib.rectangle(box.left(), box.top(), box.right(), box.bottom()))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return landmarks[LEFT_EYE].mean(axis=0), landmarks[RIGHT_EYE].mean(axis=0)


def eye_matrix(landmarks: np.ndarray, size: int, geometry: AlignGeometry) -> np.ndarray:
    """The 2x3 similarity transform that puts the eyes where ``geometry`` says."""
    left, right = eye_centres(np.asarray(landmarks, dtype=np.float64))
    dx, dy = right - left
    angle = np.arctan2(dy, dx)
    scale = geometry.inter_ocular * size / max(np.hypot(dx, dy), 1e-6)
    c, s = scale * np.cos(-angle), scale * np.sin(-angle)
    rot = np.array([[c, -s], [s, c]])
    mid = (left + right) / 2.0
    target = np.array([0.5 * size, geometry.eye_y * size])
    return np.hstack([rot, (target - rot @ mid)[:, None]])


def warp(image_rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(image_rgb, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def align_face(image_rgb: np.ndarray, size: int,
               geometry: AlignGeometry | None = None) -> AlignedFace | None:
    """Align one RGB image; None when no face is found."""
    geometry = geometry or AlignGeometry()
    lm = detect_landmarks(image_rgb, geometry.upsample_retry, geometry.relative_score)
    if lm is None:
        return None
    m = eye_matrix(lm, size, geometry)
    return AlignedFace(warp(image_rgb, m, size), transform_points(lm, m), m)


class NoFaceError(Exception):
    """No face in any frame of a clip."""


def align_clip(frames: list[np.ndarray], size: int,
               geometry: AlignGeometry | None = None) -> tuple[np.ndarray, list[bool]]:
    """Align each frame; a frame without a face reuses the nearest frame's transform.

    Returns the aligned frames (T, S, S, 3) uint8 and, per frame, whether a face was found there.
    Raises NoFaceError when no frame has a face.
    """
    geometry = geometry or AlignGeometry()
    mats: list[np.ndarray | None] = []
    for f in frames:
        lm = detect_landmarks(f, geometry.upsample_retry, geometry.relative_score)
        mats.append(None if lm is None else eye_matrix(lm, size, geometry))
    found = [m is not None for m in mats]
    have = [i for i, ok in enumerate(found) if ok]
    if not have:
        raise NoFaceError(f"no face found in any of the {len(frames)} sampled frames")
    out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        nearest = min(have, key=lambda j: (abs(j - i), j))
        out[i] = warp(f, mats[nearest], size)
    return out, found


def pair_matrices(lm_onset, lm_apex, size: int, geometry: AlignGeometry,
                  registration: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The two warps of ``align_pair`` (onset, apex: 2 x 3, source pixels -> aligned pixels)
    from the two frames' landmarks (None: no face), and a note when a frame had none."""
    have = [m for m in (lm_onset, lm_apex) if m is not None]
    if not have:
        raise NoFaceError("no face found in the onset or the apex frame")
    note = "" if len(have) == 2 else \
        f"no face in the {'onset' if lm_onset is None else 'apex'} frame: both use the other's alignment"
    if registration == "separate" or len(have) == 1:
        mats = [eye_matrix(lm, size, geometry) if lm is not None else None
                for lm in (lm_onset, lm_apex)]
        a, b = (m if m is not None else next(x for x in mats if x is not None) for m in mats)
        return a, b, note
    onset = eye_matrix(lm_onset, size, geometry)
    if registration == "onset":
        return onset, onset, note
    apex = onset @ np.vstack([rigid_fit(lm_apex[list(STABLE)], lm_onset[list(STABLE)]),
                              [0.0, 0.0, 1.0]])  # apex -> onset image -> aligned
    return onset, apex, note


def rigid_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The rotation and translation (2 x 3) that bring the points ``src`` (N, 2) closest to
    ``dst`` in the least-squares sense (Kabsch; no scale: a head that moves does not grow)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    u, _, vt = np.linalg.svd((dst - mu_d).T @ (src - mu_s))
    rot = u @ np.diag([1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return np.hstack([rot, (mu_d - rot @ mu_s)[:, None]])


def align_pair(onset: np.ndarray, apex: np.ndarray, size: int,
               geometry: AlignGeometry | None = None,
               registration: str = "onset") -> tuple[np.ndarray, np.ndarray, str]:
    """The onset and apex frames (RGB) aligned for the optical flow between them: (onset, apex)
    (S, S, 3) uint8 and a note ("" when both frames had a face and the registration went as
    asked).

    ``registration``: how the apex is placed on the onset (``data.registration``):
    - "separate": each frame by its own eye centres (the clips' alignment): landmark jitter
      between the two frames becomes flow, and so does nothing of the head's motion;
    - "onset": both frames by the onset's eye-centre transform (the field's common crop): no
      landmark jitter, the head's own motion between the frames stays in the flow;
    - "rigid": the onset by its eye centres, the apex by a least-squares rigid fit of its
      stable landmarks (``STABLE``) onto the onset's, then the onset's transform: head motion
      removed, the fit's error (landmark jitter, and the landmarks' own response to the
      expression) added.
    A frame without a face takes the other's alignment (noted); neither: ``NoFaceError``."""
    if registration not in REGISTRATIONS:
        raise ValueError(f"registration must be one of {REGISTRATIONS} (got {registration!r})")
    geometry = geometry or AlignGeometry()
    lms = [detect_landmarks(f, geometry.upsample_retry, geometry.relative_score)
           for f in (onset, apex)]
    a, b, note = pair_matrices(*lms, size, geometry, registration)
    return warp(onset, a, size), warp(apex, b, size), note
