"""What produced a result: the code version recorded next to every artefact."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

from .version import VERSION as __version__


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+g<commit>`` (``.dirty`` when the work tree has changes), or just the
    package version outside a git checkout."""
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, check=True,
                             capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, check=True, capture_output=True, text=True,
                               timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=16)
def file_sha256(path: str) -> str | None:
    """The sha256 of a file (None when it is not there)."""
    import hashlib

    p = Path(path).expanduser().resolve()
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=1)
def libraries() -> dict[str, str | None]:
    """The Python and library versions of this process (a driver's, or a fold worker's)."""
    import platform

    return {"python": platform.python_version(),
            **{name: _version(name) for name in ("torch", "timm", "peft", "ray", "numpy")}}


def provenance(backbone: dict | None = None, devices: list[str] | None = None,
               workers: list[dict] | None = None) -> dict:
    """What produced a result beyond its configuration: the code version, the versions of the
    libraries in the driver and in the processes that trained the folds (each distinct set
    once), where it ran, and the backbone weights' source and sha256 (the file itself is not
    stored with results)."""
    out = {"code_version": code_version(), **libraries(),
           "devices": sorted(set(devices or []))}
    if workers:
        distinct = []
        for w in workers:
            if w and w not in distinct:
                distinct.append(w)
        out["fold_workers"] = distinct
    if backbone:
        out["backbone_weights"] = backbone
    return out


def device_name(device) -> str:
    """'cpu', or the GPU's model name ('cuda:0 NVIDIA H100 80GB HBM3')."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} {torch.cuda.get_device_name(device)}"
    return str(device)
