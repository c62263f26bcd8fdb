"""Action units as small displacement fields around dlib landmarks.

Each AU moves a few landmarks by a vector given in inter-ocular-distance (IOD) units, with a
Gaussian fall-off (``sigma``, also in IOD units). Image coordinates: x right, y down; "image-left"
is the subject's right side. Landmark numbers follow the 68-point scheme: brows 17-26, nose
27-35, eyes 36-47, outer lips 48-59.
"""

from __future__ import annotations

# AU -> list of (landmark indices, (dx, dy) in IOD units, sigma in IOD units)
ACTION_UNITS: dict[str, list[tuple[tuple[int, ...], tuple[float, float], float]]] = {
    "AU1": [((20, 21), (0.0, -0.07), 0.14), ((22, 23), (0.0, -0.07), 0.14)],  # inner brow raiser
    "AU2": [((17, 18), (0.0, -0.07), 0.14), ((25, 26), (0.0, -0.07), 0.14)],  # outer brow raiser
    "AU4": [((19, 20, 21), (0.03, 0.06), 0.14), ((22, 23, 24), (-0.03, 0.06), 0.14)],  # lowerer
    "AU6": [((40, 41), (0.0, -0.03), 0.16), ((46, 47), (0.0, -0.03), 0.16)],  # cheek raiser
    "AU7": [((40, 41), (0.0, -0.04), 0.10), ((46, 47), (0.0, -0.04), 0.10)],  # lid tightener
    "AU9": [((31,), (0.0, -0.05), 0.12), ((35,), (0.0, -0.05), 0.12),
            ((27, 28), (0.0, 0.03), 0.12)],  # nose wrinkler
    "AU10": [((50, 51, 52), (0.0, -0.06), 0.14)],  # upper lip raiser
    "AU12": [((48,), (-0.06, -0.05), 0.14), ((54,), (0.06, -0.05), 0.14)],  # lip corner puller
    "AU14R": [((54,), (0.07, -0.02), 0.12)],  # unilateral dimpler (one corner only)
    "AU15": [((48,), (0.0, 0.06), 0.14), ((54,), (0.0, 0.06), 0.14)],  # lip corner depressor
    "AU17": [((57, 8), (0.0, -0.05), 0.18)],  # chin raiser
    "AU20": [((48,), (-0.06, 0.0), 0.12), ((54,), (0.06, 0.0), 0.12)],  # lip stretcher
}

# What each emotion word shows. Negative classes pool several of these, as real data does.
EMOTION_AUS: dict[str, tuple[str, ...]] = {
    "happiness": ("AU6", "AU12"),
    "surprise": ("AU1", "AU2"),
    "anger": ("AU4",),
    "contempt": ("AU14R",),
    "disgust": ("AU9", "AU10"),
    "fear": ("AU1", "AU4", "AU20"),
    "sadness": ("AU1", "AU15"),
    "repression": ("AU15", "AU17"),
    "other": ("AU7", "AU17"),
    "others": ("AU7", "AU17"),
}

# A blink: both upper lids (37, 38 / 43, 44) slide down over the eye.
BLINK = [((37, 38), (0.0, 0.12), 0.09), ((43, 44), (0.0, 0.12), 0.09)]


# Every AU number the generator renders (for sheets with one column per AU, as 4DME's).
AU_NUMBERS = tuple(sorted({int(a[2:].rstrip("R")) for a in ACTION_UNITS}))


def au_string(emotion: str, layout: str = "samm") -> str:
    """The AUs of an emotion written the way the layout's annotation file does: ``6+12`` and
    ``R14`` (SAMM, CASME II, CAS(ME)^3, CASME, MMEW), ``AU6+AU12`` (4DME)."""
    parts = []
    for au in EMOTION_AUS[emotion]:
        n = au[2:]
        if layout == "4dme":
            parts.append(f"AU{n.rstrip('R')}")
        else:
            parts.append(f"R{n[:-1]}" if n.endswith("R") else n)
    return "+".join(parts)
