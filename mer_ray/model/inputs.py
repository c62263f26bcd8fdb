"""From stored aligned frames to the network's input tensor."""

from __future__ import annotations

import numpy as np
import torch

# Fixed ImageNet statistics: per-subject or per-dataset statistics would make results
# incomparable, and computing them on test data would leak (docs/datasets.md: rules every adapter keeps).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def clips_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames (B, T, S, S, 3) -> float32 (B, T, 3, S, S), ImageNet-normalised."""
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = frames.copy()  # read-only buffers (Arrow) cannot back a tensor
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (B, T, S, S, 3), got {tuple(x.shape)} {x.dtype}")
    x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    return (x - mean) / std
