"""Optical flow from a clip's onset frame to its apex frame, and the optical strain it implies:
the input of the field's flow-based methods (STSTNet, OFF-ApexNet, and many since).

The flow is computed between the *aligned* onset and apex frames (the same eye-centre alignment
as the clips, at the shard size S), on their grey levels, by one of three OpenCV backends:

- ``tvl1``: Dual TV-L1 (Zach, Pock and Bischof 2007), OpenCV's contrib module; what most MER
  papers use;
- ``farneback``: Farneback's polynomial expansion (2003);
- ``dis``: Dense Inverse Search (Kroeger et al. 2016), ``MEDIUM`` preset.

``u`` and ``v`` are the horizontal and vertical displacement in pixels of the aligned frame
(x to the right, y down). Optical strain is the symmetric part of the flow's gradient:
``exx = du/dx``, ``eyy = dv/dy``, ``exy = (du/dy + dv/dx) / 2``; its magnitude
``sqrt(exx^2 + eyy^2 + 2 exy^2)`` is what STSTNet's third stream reads. A uniform shift has no
strain; a face that grows (the camera closer) has ``exx + eyy > 0``.

The apex: the manifest's apex frame when it has one inside the span; otherwise (missing, or
outside onset..offset) the middle frame of the span, and the row's ``flow_note`` says so.
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("tvl1", "farneback", "dis")
FLOW_COLUMNS = ("flow_u", "flow_v", "strain", "onset_frame", "apex_frame", "flow_note")
MIDDLE_APEX = "apex missing or outside the span: the span's middle frame stands for it"


def _grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def optical_flow(onset: np.ndarray, apex: np.ndarray, backend: str = "tvl1") -> tuple[
        np.ndarray, np.ndarray]:
    """(u, v), float32 (H, W): where each pixel of ``onset`` (H, W, 3) uint8 RGB moved to in
    ``apex``."""
    import cv2

    if backend not in BACKENDS:
        raise ValueError(f"unknown flow backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    a, b = _grey(onset), _grey(apex)
    if backend == "tvl1":
        if not hasattr(cv2, "optflow"):
            raise RuntimeError("TV-L1 needs OpenCV's contrib module (opencv-contrib-python-"
                               "headless); use --flow farneback or --flow dis without it")
        flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b, None)
    elif backend == "farneback":
        flow = cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15,
                                            iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
    else:
        dis = cv2.DISOpticalFlow_create(cv2.DISOpticalFlow_PRESET_MEDIUM)
        flow = dis.calc(a, b, None)
    return flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)


def strain_components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray]:
    """(exx, eyy, exy), float32 (H, W): the flow's normal and shear strain (central
    differences)."""
    du_dy, du_dx = np.gradient(u.astype(np.float32))
    dv_dy, dv_dx = np.gradient(v.astype(np.float32))
    return du_dx, dv_dy, 0.5 * (du_dy + dv_dx)


def optical_strain(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Optical strain magnitude, float32 (H, W)."""
    exx, eyy, exy = strain_components(u, v)
    return np.sqrt(exx ** 2 + eyy ** 2 + 2 * exy ** 2).astype(np.float32)


def flow_colours(u: np.ndarray, v: np.ndarray, top: float | None = None) -> np.ndarray:
    """The flow as an RGB colour-wheel image (H, W, 3) uint8: hue is the direction, brightness
    the magnitude (scaled to ``top``, default the largest)."""
    import cv2

    mag, ang = cv2.cartToPolar(u.astype(np.float32), v.astype(np.float32))
    top = float(top or np.percentile(mag, 99.5) or 1.0)  # a few border pixels do not set it
    hsv = np.zeros((*u.shape, 3), np.uint8)
    hsv[..., 0] = (ang * 90 / np.pi).astype(np.uint8)  # 0..180: OpenCV's hue range
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(255 * mag / top, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def apex_position(span: list[int], numbers: list[int], apex: int | None) -> tuple[int, str]:
    """The position (into the frame index) of the apex frame, and a note when the span's
    middle stands for it."""
    if apex is not None and apex in numbers:
        pos = numbers.index(apex)
        if span[0] <= pos <= span[-1]:
            return pos, ""
    return span[len(span) // 2], MIDDLE_APEX


def flow_columns(onset: np.ndarray, apex: np.ndarray, backend: str, note: str = "") -> dict:
    """The shard columns of one clip: flow and strain (float16, S x S), the aligned onset and
    apex frames (uint8), and the note."""
    u, v = optical_flow(onset, apex, backend)
    return {"flow_u": u.astype(np.float16), "flow_v": v.astype(np.float16),
            "strain": optical_strain(u, v).astype(np.float16), "onset_frame": onset,
            "apex_frame": apex, "flow_note": note}
