"""A PNG a person can read: per class, the onset frame, the apex frame and their difference."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_preview(path: Path, examples: dict[str, tuple[np.ndarray, np.ndarray]], layout: str,
                  protocol: str, gain: float = 8.0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(examples)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.6 * n), squeeze=False)
    for row, (label, (onset, apex)) in enumerate(examples.items()):
        diff = np.abs(apex.astype(np.float32) - onset.astype(np.float32)).mean(axis=2)
        panels = [(onset, "onset"), (apex, "apex"),
                  (np.clip(diff * gain, 0, 255).astype(np.uint8), f"|apex - onset| x{gain:g}")]
        for col, (img, title) in enumerate(panels):
            ax = axes[row][col]
            ax.imshow(img, cmap="magma" if img.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(f"{label}: {title}" if col == 0 else title, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"synthetic {layout} ({protocol}): one clip per class, first subject",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
