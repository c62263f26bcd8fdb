"""Face alignment by eye centres (METHOD.md section 1).

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
