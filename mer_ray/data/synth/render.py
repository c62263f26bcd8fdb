"""Rendering synthetic micro-expression sequences from one real face photo.

The face is scikit-image's astronaut photo, located with the same dlib landmarks the pipeline
uses. A *subject* is that face under a smooth identity warp, its own scale, roll, yaw-like shear,
illumination gradient, colour cast and sensor noise. A *clip* is a longer sequence of neutral
frames in which an AU-like deformation (a few pixels at apex) rises from onset to apex and falls
to offset, overlaid with distractors that carry no class information: a blink, slow head drift
and brightness flicker.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..align import detect_landmarks, eye_centres
from .actions import ACTION_UNITS, BLINK, EMOTION_AUS


@dataclass(frozen=True)
class RenderConfig:
    frame_size: int = 256  # output frames are square, this many pixels
    inter_ocular: float = 0.24  # eye distance as a fraction of the frame (face ~ half the frame)
    sequence_length: int = 40  # frames per recorded sequence (the clip span sits inside it)
    intensity: float = 1.0  # multiplies every AU amplitude
    distractors: bool = True  # blinks, head drift and flicker (off: only the expression moves)


@dataclass(frozen=True)
class Face:
    image: np.ndarray  # (H, W, 3) float32 RGB, a padded crop around the face
    landmarks: np.ndarray  # (68, 2) in crop coordinates
    iod: float  # inter-ocular distance in crop pixels


@lru_cache(maxsize=1)
def astronaut_face() -> Face:
    from skimage import data

    img = data.astronaut()
    lm = detect_landmarks(img)
    if lm is None:  # would mean dlib or its model is broken, not the photo
        raise RuntimeError("dlib found no face in scikit-image's astronaut photo")
    left, right = eye_centres(lm)
    iod = float(np.linalg.norm(right - left))
    centre = (left + right) / 2 + np.array([0.0, 0.6 * iod])
    half = int(round(3.6 * iod))
    pad = half + 4
    padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    cx, cy = (centre + pad).round().astype(int)
    crop = padded[cy - half:cy + half, cx - half:cx + half].astype(np.float32)
    offset = np.array([cx - half - pad, cy - half - pad], dtype=np.float32)
    return Face(crop, lm - offset, iod)


def bump_field(shape: tuple[int, int], bumps, landmarks: np.ndarray, iod: float,
               scale: float = 1.0) -> np.ndarray:
    """Sum of Gaussian displacement bumps, (H, W, 2) float32 in pixels.

    ``bumps``: (landmark indices, (dx, dy) in IOD units, sigma in IOD units); a bump sits at the
    mean of its landmarks.
    """
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w, 2), np.float32)
    for idx, (dx, dy), sigma in bumps:
        cx, cy = landmarks[list(idx)].mean(axis=0)
        s = sigma * iod
        # Work in a window of 4 sigma: outside it the bump is below 1e-3 of its peak.
        x0, x1 = max(int(cx - 4 * s), 0), min(int(cx + 4 * s) + 1, w)
        y0, y1 = max(int(cy - 4 * s), 0), min(int(cy + 4 * s) + 1, h)
        g = np.exp(-((xs[y0:y1, x0:x1] - cx) ** 2 + (ys[y0:y1, x0:x1] - cy) ** 2) / (2 * s * s))
        field[y0:y1, x0:x1, 0] += dx * iod * scale * g
        field[y0:y1, x0:x1, 1] += dy * iod * scale * g
    return field


@dataclass
class Subject:
    """A synthetic person: the astronaut face under a fixed identity and imaging condition."""

    identity: np.ndarray  # (H, W, 2) displacement field, crop pixels
    landmarks: np.ndarray  # (68, 2) landmarks after the identity warp, crop coordinates
    scale: float
    roll_deg: float
    shear: float
    shift: np.ndarray  # (2,) output pixels
    light: np.ndarray  # (S, S, 1) illumination gain map
    colour: np.ndarray  # (3,) channel gains
    noise: float  # sensor noise sigma, grey levels


def make_subject(rng: np.random.Generator, cfg: RenderConfig) -> Subject:
    face = astronaut_face()
    h, w = face.image.shape[:2]
    bumps = [((i,), tuple(rng.normal(0.0, 0.035, 2)), 0.35) for i in range(0, 68, 2)]
    identity = bump_field((h, w), bumps, face.landmarks, face.iod)
    lm = face.landmarks.copy()
    for i, p in enumerate(face.landmarks):  # landmarks move with the warp (inverse, small field)
        x, y = int(round(p[0])), int(round(p[1]))
        lm[i] = p + identity[min(max(y, 0), h - 1), min(max(x, 0), w - 1)]
    s = cfg.frame_size
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.05, 0.25)
    light = (1.0 + strength * (np.cos(angle) * xs + np.sin(angle) * ys))[..., None]
    return Subject(
        identity=identity,
        landmarks=lm,
        scale=float(rng.uniform(0.9, 1.1)),
        roll_deg=float(rng.uniform(-8, 8)),
        shear=float(rng.uniform(-0.06, 0.06)),
        shift=rng.uniform(-0.04, 0.04, 2) * s,
        light=(light * rng.uniform(0.85, 1.15)).astype(np.float32),
        colour=rng.uniform(0.92, 1.08, 3).astype(np.float32),
        noise=float(rng.uniform(1.0, 4.0)),
    )


@dataclass
class ClipPlan:
    emotion: str
    onset: int  # index into the sequence
    apex: int
    offset: int
    amplitude: float
    blink: tuple[int, int] | None  # (start index, duration) or None
    drift: np.ndarray  # (dx px, dy px, degrees) reached at the last frame
    flicker: tuple[float, float, float]  # (amplitude, period in frames, phase)


def plan_clip(rng: np.random.Generator, emotion: str, cfg: RenderConfig) -> ClipPlan:
    """Timing and distractors of one clip. The draws are the same with distractors off, so a
    clip differs only by them."""
    n = cfg.sequence_length
    rise, fall = int(rng.integers(4, 8)), int(rng.integers(4, 9))
    onset = int(rng.integers(3, max(n - rise - fall - 3, 4)))
    blink = None
    if rng.random() < 0.6:  # blinks happen anywhere, including inside the expression
        dur = int(rng.integers(4, 8))
        blink = (int(rng.integers(0, n - dur)), dur)
    plan = ClipPlan(
        emotion=emotion, onset=onset, apex=onset + rise, offset=onset + rise + fall,
        amplitude=float(rng.uniform(0.75, 1.25)), blink=blink,
        drift=np.array([rng.normal(0, 2.0), rng.normal(0, 2.0), rng.normal(0, 0.8)]),
        flicker=(float(rng.uniform(0.0, 0.04)), float(rng.uniform(3, 12)),
                 float(rng.uniform(0, 2 * np.pi))),
    )
    if not cfg.distractors:
        plan.blink, plan.drift, plan.flicker = None, np.zeros(3), (0.0, 5.0, 0.0)
    return plan


def envelope(plan: ClipPlan, t: int) -> float:
    """Expression strength at sequence index t: 0 outside onset..offset, 1 at apex."""
    if plan.onset <= t <= plan.apex:
        return 0.5 * (1 - np.cos(np.pi * (t - plan.onset) / max(plan.apex - plan.onset, 1)))
    if plan.apex < t <= plan.offset:
        return 0.5 * (1 + np.cos(np.pi * (t - plan.apex) / max(plan.offset - plan.apex, 1)))
    return 0.0


def render_clip(subject: Subject, plan: ClipPlan, cfg: RenderConfig,
                rng: np.random.Generator) -> list[np.ndarray]:
    """The whole sequence as RGB uint8 frames (S, S, 3)."""
    face = astronaut_face()
    h, w = face.image.shape[:2]
    bumps = [b for au in EMOTION_AUS[plan.emotion] for b in ACTION_UNITS[au]]
    expr = bump_field((h, w), bumps, subject.landmarks, face.iod, plan.amplitude * cfg.intensity)
    blink = bump_field((h, w), BLINK, subject.landmarks, face.iod) if plan.blink else None
    grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    s = cfg.frame_size
    left, right = eye_centres(subject.landmarks)
    mid = (left + right) / 2
    base_scale = cfg.inter_ocular * s / face.iod * subject.scale
    frames = []
    n = cfg.sequence_length
    shading = subject.light * subject.colour  # (S, S, 3): illumination and colour cast
    for t in range(n):
        field = subject.identity + envelope(plan, t) * expr
        if plan.blink is not None and plan.blink[0] <= t < plan.blink[0] + plan.blink[1]:
            b = 0.5 * (1 - np.cos(2 * np.pi * (t - plan.blink[0]) / plan.blink[1]))
            field = field + b * blink
        src = grid - field  # backward map: output pixel x samples the face at x - D(x)
        warped = cv2.remap(face.image, src.astype(np.float32), None, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
        frac = t / max(n - 1, 1)
        theta = np.deg2rad(subject.roll_deg + plan.drift[2] * frac)
        c, si = np.cos(theta) * base_scale, np.sin(theta) * base_scale
        lin = np.array([[1.0, subject.shear], [0.0, 1.0]]) @ np.array([[c, -si], [si, c]])
        target = np.array([0.5 * s, 0.40 * s]) + subject.shift + plan.drift[:2] * frac
        m = np.hstack([lin, (target - lin @ mid)[:, None]])
        img = cv2.warpAffine(warped, m, (s, s), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
        amp, period, phase = plan.flicker
        gain = np.float32(1.0 + amp * np.sin(2 * np.pi * t / period + phase))
        img = img * (shading * gain)
        # Sensor noise, one draw per pixel for all three channels (luminance noise; SAMM's
        # frames are grey anyway), in float32: drawing it was most of the rendering time.
        img += subject.noise * rng.standard_normal((s, s, 1), dtype=np.float32)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames
