"""Dataset adapters: one per dataset, each next to the notes on its format's quirks."""

from __future__ import annotations

from .base import Adapter, RawClip
from .casme2 import Casme2Adapter
from .megc import MegcAdapter
from .samm import SammAdapter
from .smic import SmicAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "samm": SammAdapter,
    "casme2": Casme2Adapter,
    "smic": SmicAdapter,
    "megc": MegcAdapter,
}


def get_adapter(dataset: str, **kwargs) -> Adapter:
    if dataset not in ADAPTERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(ADAPTERS)}")
    return ADAPTERS[dataset](**kwargs)


__all__ = ["ADAPTERS", "Adapter", "RawClip", "get_adapter"]
