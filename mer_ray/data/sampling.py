"""Uniform temporal sampling of a clip's span (docs/method.md, section 1)."""

from __future__ import annotations

import numpy as np


def uniform_indices(n: int, t: int) -> np.ndarray:
    """``t`` positions spread evenly over ``n`` frames: ``round(linspace(0, n - 1, t))``.

    Always returns ``t`` int64 positions in ``[0, n - 1]``, non-decreasing, first 0 and last
    ``n - 1``. When ``n < t`` frames repeat by the same formula; a short clip is never dropped.
    """
    if n < 1:
        raise ValueError(f"cannot sample from an empty span (n={n})")
    if t < 1:
        raise ValueError(f"number of sampled frames must be at least 1 (t={t})")
    return np.round(np.linspace(0, n - 1, t)).astype(np.int64)
