"""Dataset adapters: one per dataset, each next to the notes on its format's quirks.

``ADAPTERS`` is the one list of dataset names the package knows; commands and scripts read it.
"""

from __future__ import annotations

from pathlib import Path

from ..annotations import AnnotationError
from .base import Adapter, RawClip, RowFix
from .casme import CasmeAdapter
from .casme2 import Casme2Adapter
from .casme3 import Casme3Adapter
from .cd6me import Cd6meAdapter
from .fourdme import FourDmeAdapter
from .megc import MegcAdapter
from .mmew import MmewAdapter
from .samm import SammAdapter
from .smic import SmicAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "samm": SammAdapter,
    "casme2": Casme2Adapter,
    "smic": SmicAdapter,
    "casme3": Casme3Adapter,
    "megc": MegcAdapter,
    "casme": CasmeAdapter,
    "mmew": MmewAdapter,
    "4dme": FourDmeAdapter,
    "cd6me": Cd6meAdapter,
}
DATASETS = tuple(ADAPTERS)


def get_adapter(dataset: str, annotations: Path | None = None) -> Adapter:
    """The adapter for ``dataset``; ``annotations`` names its annotation file (the MEGC
    composite: its ground-truth CSV) when it is not under the dataset root."""
    if dataset not in ADAPTERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(ADAPTERS)}")
    cls = ADAPTERS[dataset]
    if not cls.annotation_file:
        if annotations is not None:
            raise AnnotationError(f"{annotations}: {dataset} has no annotation file (its labels "
                                  f"are its folder names); leave out --annotations")
        return cls()
    return cls(annotations=annotations)


__all__ = ["ADAPTERS", "DATASETS", "Adapter", "RawClip", "RowFix", "get_adapter"]
