"""What the flow-based CNNs share: their inputs (the shards' onset -> apex flow and strain maps,
resized to the network's input size and normalised as the authors fed them) and their fit (a
``network.NetworkMethod``: the fold loop of ``fitting/loop.py`` with a plain cross-entropy).

Input normalisation, as the authors did it: STSTNet's published code
(christy1206/STSTNet, ``main.py``) reads each clip's u, v and strain from 8-bit images in a
folder named ``norm_u_v_os``: every map stretched over the 0-255 range by its own minimum and
maximum (per clip and channel); MEB stores the same per-clip, per-channel min-max stretch as
[0, 1] floats (``tools/extract_optical_flow.py``) and feeds it to both STSTNet and OFF-ApexNet.
Here each map is resized to the network's input (area averaging), then stretched to [0, 1] by
its own minimum and maximum (a constant map becomes 0). Two deviations, each stated: the
authors' values are 0-255 (ours 1/255 of theirs: the first convolution absorbs a constant
scale; MEB uses [0, 1] too), and they are 8-bit (ours float32: no rounding).

No augmentation (neither paper augments). Every random draw (the batch order, dropout) comes
from the seed and the epoch, so a resumed fold trains as an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np

from .network import NetworkMethod

NO_AUGMENTATION = ("none: the onset -> apex flow maps of the aligned clip, resized and "
                   "min-max normalised per clip and channel, as the method's authors fed them")


def resized(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S) maps at ``size`` x ``size`` (area averaging), float32."""
    import cv2

    if not len(maps):
        return np.zeros((0, size, size), np.float32)
    return np.stack([cv2.resize(m.astype(np.float32), (size, size),
                                interpolation=cv2.INTER_AREA) for m in maps])


def minmax(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) -> each map stretched to [0, 1] by its own minimum and maximum (a constant
    map: 0)."""
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1.0), 0.0) \
        .astype(np.float32)


def flow_array(cols: dict, channels: tuple[str, ...], size: int) -> np.ndarray:
    """A split's flow maps as the authors fed them: (N, channels, size, size), each map resized
    and min-max normalised per clip and channel."""
    return np.stack([minmax(resized(np.asarray(cols[c]), size)) for c in channels], axis=1)


class FlowCNN(NetworkMethod):
    """A flow CNN as a method: ``network(classes)`` (built seeded) on the shards' flow
    ``channels`` at ``size`` x ``size``, trained by the platform's fold loop with a plain
    cross-entropy, without augmentation."""

    needs_flow = True
    channels: tuple[str, ...] = ()
    size: int = 28
    input_name = "flow"

    @property
    def columns(self) -> tuple[str, ...]:
        return ("subject", "clip", "label_id", *sorted(set(self.channels)))

    def inputs(self, cols: dict) -> np.ndarray:
        return flow_array(cols, self.channels, self.size)

    def augmentation(self, exp) -> str:
        return NO_AUGMENTATION


