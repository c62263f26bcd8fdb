"""CD6ME: the cross-dataset action-unit benchmark's six datasets, read as one composite.

Layout: one folder holding ``casme/``, ``casme2/``, ``samm/``, ``4dme/``, ``mmew/`` and
``casme3/`` (any case; the aliases in ``PARTS`` are accepted too), each a dataset root as its
own adapter expects. Subject ids are prefixed by dataset (``casme_1``, ``casme2_sub01``,
``samm_006``, ``4dme_11``, ``mmew_S01``, ``casme3_spNO.1``) so subjects of different datasets
never merge, and the prefix is how a fold knows a subject's dataset (``part_of``).

Membership is decided by the action-unit coding, not the emotion: every clip whose AU cell the
part's adapter reads is in (``data/labels.py``'s cd6me protocol gives it its AU set), whatever
its emotion word. So the 4DME rows that name several emotions, which every emotion protocol
leaves out, are in here (noted); a clip without AU coding is kept with the reason "AUs not
coded". Everything else (spans, frames on disk, per-row fixes) is each part's adapter's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ..annotations import AnnotationError
from .base import SEVERAL_EMOTIONS, Adapter, RawClip, join_notes
from .casme import CasmeAdapter
from .casme2 import Casme2Adapter
from .casme3 import Casme3Adapter
from .fourdme import FourDmeAdapter
from .mmew import MmewAdapter
from .samm import SammAdapter

# part -> (adapter, folder names accepted for it); the order is the benchmark's table order.
PARTS = {
    "casme": (CasmeAdapter, ("casme", "casme1", "casme_i")),
    "casme2": (Casme2Adapter, ("casme2", "casme_ii", "casmeii")),
    "samm": (SammAdapter, ("samm",)),
    "4dme": (FourDmeAdapter, ("4dme", "fourdme")),
    "mmew": (MmewAdapter, ("mmew",)),
    "casme3": (Casme3Adapter, ("casme3", "casme3_a", "part_a", "cas(me)3")),
}


def part_of(subject: str) -> str | None:
    """The dataset a CD6ME subject id comes from ('casme2_sub01' -> 'casme2')."""
    prefix = subject.split("_", 1)[0]
    return prefix if prefix in PARTS else None


def part_folders(root: Path) -> dict[str, Path]:
    """Each part's dataset root under ``root``; a missing part is an error naming them all."""
    dirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
    found, missing = {}, []
    for part, (_, names) in PARTS.items():
        hit = next((dirs[n] for n in names if n in dirs), None)
        if hit is None:
            missing.append(part)
        else:
            found[part] = hit
    if missing:
        raise AnnotationError(
            f"{root}: the CD6ME benchmark needs one folder per dataset here; missing "
            f"{', '.join(f'{m}/' for m in missing)} (found: {', '.join(sorted(dirs)) or 'nothing'}"
            f"). Each holds that dataset's root as its own adapter reads it.")
    return found


class Cd6meAdapter(Adapter):
    name = "cd6me"
    annotation_file = False  # each part finds its own sheet

    def clips(self, root: Path) -> Iterator[RawClip]:
        for part, folder in part_folders(Path(root)).items():
            for clip in PARTS[part][0]().clips(folder):
                out = replace(clip, dataset=part, subject=f"{part}_{clip.subject}")
                if clip.reason == SEVERAL_EMOTIONS:
                    # the emotion does not matter here; the AU cell does
                    out = replace(out, reason=None, note=join_notes(
                        clip.note, f"{SEVERAL_EMOTIONS} ({clip.emotion}): in, as AU coding "
                                   f"decides membership"))
                yield out
