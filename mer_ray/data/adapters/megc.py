"""MEGC 2019 composite: the union of SAMM, CASME II and SMIC-HS under the 3-class protocol.

Layout: one folder holding ``samm/``, ``casme2/`` and ``smic/``, each a dataset root as its own
adapter expects (any case; ``casme_ii`` is accepted too). Subject ids are prefixed by dataset
(``samm_006``, ``casme2_sub01``, ``smic_s1``) so subjects from different datasets never merge in
LOSO. Each row keeps its source dataset in ``dataset`` and is labelled by that dataset's 3-class
map.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..annotations import AnnotationError
from .base import Adapter, RawClip
from .casme2 import Casme2Adapter
from .samm import SammAdapter
from .smic import SmicAdapter

PARTS = {
    "samm": (SammAdapter, ("samm",)),
    "casme2": (Casme2Adapter, ("casme2", "casme_ii", "casmeii", "casme2_raw")),
    "smic": (SmicAdapter, ("smic", "smic-e", "smic_e")),
}


class MegcAdapter(Adapter):
    name = "megc"

    def clips(self, root: Path) -> Iterator[RawClip]:
        dirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
        found = {}
        for part, (_, names) in PARTS.items():
            hit = next((dirs[n] for n in names if n in dirs), None)
            if hit is None:
                raise AnnotationError(
                    f"{root}: the MEGC composite needs a '{part}/' folder here holding the "
                    f"{part} dataset root (found: {', '.join(sorted(dirs)) or 'nothing'})"
                )
            found[part] = hit
        for part, (cls, _) in PARTS.items():
            for clip in cls().clips(found[part]):
                yield replace(clip, subject=f"{part}_{clip.subject}")
