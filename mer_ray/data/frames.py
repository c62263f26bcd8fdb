"""Where a clip's frames live on disk, and reading them.

A source is either a folder of images or a video file. Frames are addressed by *frame number*:
for a folder, the last integer in each file name (``006_05562.jpg`` -> 5562, ``img46.jpg`` -> 46,
``image000123.bmp`` -> 123); for a video, the 0-based index of the frame in the file. Six SAMM
clips use non-standard names, so frames are ordered by the number parsed from the name and never
matched by an exact file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".wmv"}
_LAST_INT = re.compile(r"(\d+)(?!.*\d)")


class FrameError(Exception):
    """A frame or video that cannot be read; the message names the file."""


def frame_number(name: str) -> int | None:
    """The last integer in a file name's stem, or None when it has none."""
    m = _LAST_INT.search(Path(name).stem)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class FrameIndex:
    """The frames a source holds, by frame number (ascending)."""

    source: str
    numbers: tuple[int, ...]
    files: tuple[str, ...] | None  # None for a video
    unnumbered: tuple[str, ...] = ()  # image files whose names hold no number

    @property
    def is_video(self) -> bool:
        return self.files is None

    def __len__(self) -> int:
        return len(self.numbers)

    def span(self, first: int, last: int) -> list[int]:
        """Positions (into ``numbers``) of the frames numbered first..last inclusive."""
        lo = int(np.searchsorted(self.numbers, first, side="left"))
        hi = int(np.searchsorted(self.numbers, last, side="right"))
        return list(range(lo, hi))


def index_frames(source: str | Path) -> FrameIndex:
    """List a folder's images (sorted by parsed number) or count a video's frames."""
    path = Path(source)
    if path.is_dir():
        numbered, unnumbered = [], []
        for f in path.iterdir():
            if f.suffix.lower() not in IMAGE_SUFFIXES or not f.is_file():
                continue
            n = frame_number(f.name)
            (numbered.append((n, str(f))) if n is not None else unnumbered.append(str(f)))
        numbered.sort()
        return FrameIndex(
            str(path),
            tuple(n for n, _ in numbered),
            tuple(f for _, f in numbered),
            tuple(sorted(unnumbered)),
        )
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise FrameError(f"{path}: video could not be opened (is it a valid video file?)")
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            if count <= 0:  # some containers do not store a count: decode to count
                count = 0
                while cap.grab():
                    count += 1
        finally:
            cap.release()
        return FrameIndex(str(path), tuple(range(count)), None)
    raise FrameError(f"{path}: neither a folder of frames nor a video file "
                     f"({', '.join(sorted(VIDEO_SUFFIXES))})")


def read_image_rgb(file: str | Path) -> np.ndarray:
    """Read one image as RGB uint8 (H, W, 3); grey-scale images are replicated to 3 channels."""
    data = np.fromfile(str(file), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise FrameError(f"{file}: image could not be decoded (corrupt or not an image)")
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_frames(index: FrameIndex, positions: list[int]) -> list[np.ndarray]:
    """Read the frames at ``positions`` of ``index`` as RGB uint8 arrays, in the order given."""
    if not index.is_video:
        return [read_image_rgb(index.files[p]) for p in positions]
    wanted = sorted(set(positions))
    got: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(index.source)
    try:
        if not cap.isOpened():
            raise FrameError(f"{index.source}: video could not be opened")
        cap.set(cv2.CAP_PROP_POS_FRAMES, wanted[0])
        pos = wanted[0]
        for w in wanted:
            while pos < w:  # grab() skips without decoding
                if not cap.grab():
                    break
                pos += 1
            ok, frame = cap.read()
            if not ok:
                raise FrameError(f"{index.source}: frame {w} could not be decoded")
            pos += 1
            got[w] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    return [got[p] for p in positions]
