"""The data a run trains on: a dataset root aligned into shards once and reused, or, without a
root, a synthetic set in the dataset's layout (said loudly), or shards made by ``mer-ray
prepare``; and where a command's Ray messages go.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig
from ..data.adapters import DATASETS
from ..data.labels import class_names
from ..data.manifest import build_manifest
from ..data.prepare import PrepareConfig, prepare_shards
from ..data.shards import Shards, is_shard_folder
from ..data.synth import generate, generate_composite, is_synthetic
from ..data.synth.render import RenderConfig
from ..storage import open_storage

LAYOUT = {"samm": "samm", "casme2": "casme2", "smic": "smic", "casme3": "casme3"}
# The embedded default set: 8 subjects x 4 clips per class (96 clips in 3-class; SAMM's 3-class
# set has 133 in 28 subjects); the MEGC composite: 3 subjects per part (9 subjects, 108 clips).
# Its action units are rendered at 1.5x the generator's base amplitude: chosen on synthetic
# seeds 10 and 11 (a randomly initialised backbone learns them; at 1x its LOSO UF1 was 0.65-0.68
# there), and checked on seeds that took no part (benchmarks/demo.py).
SYNTH_SIZE = (8, 4)
SYNTH_SUBJECTS = {"megc": 3}
SYNTH_INTENSITY = 1.5
SYNTH_SEEDS = {"samm": 0, "casme2": 1, "smic": 2, "casme3": 3}  # seeded apart: stand-ins


@dataclass(frozen=True)
class SyntheticSet:
    """The synthetic set a run uses when it has no data root."""

    subjects: int | None = None  # None: the dataset's default
    clips: int = SYNTH_SIZE[1]
    seed: int = 0
    intensity: float = SYNTH_INTENSITY
    distractors: bool = True

    def subjects_for(self, dataset: str) -> int:
        return self.subjects or SYNTH_SUBJECTS.get(dataset, SYNTH_SIZE[0])

    def folder(self, dataset: str, protocol: str, seed: int) -> str:
        """Every setting that changes the set is in the folder name: no stale set is reused."""
        parts = [f"synthetic_{dataset}_{protocol}"]
        if seed != 0:
            parts.append(f"seed{seed}")
        if (self.subjects_for(dataset), self.clips) != \
                (SYNTH_SUBJECTS.get(dataset, SYNTH_SIZE[0]), SYNTH_SIZE[1]):
            parts.append(f"{self.subjects_for(dataset)}x{self.clips}")
        if self.intensity != 1.0:
            parts.append(f"i{self.intensity:g}")
        if not self.distractors:
            parts.append("nodistract")
        return "_".join(parts)


def ensure_shards(dataset: str, root: Path, protocol: str, data: DataConfig, workdir: Path,
                  synthetic: bool, annotations: Path | None = None) -> Shards:
    """Aligned shards for (root, protocol, T, S, geometry), prepared once and reused. The
    folder name carries the data root's name, so two data sets never share (and overwrite)
    one folder; shards made from another annotation file are made again."""
    default = DataConfig()
    geometry = "" if (data.eye_y, data.inter_ocular) == (default.eye_y, default.inter_ocular) \
        else f"-E{data.eye_y:g}x{data.inter_ocular:g}"
    shards = workdir / (f"shards-{dataset}-{protocol}-T{data.frames}-S{data.size}{geometry}-"
                        f"{root.resolve().name}")
    given = str(Path(annotations).resolve()) if annotations else None
    if is_shard_folder(shards):
        found = Shards.open(shards)
        meta = found.meta
        if meta.root == str(root.resolve()) and meta.dataset == dataset \
                and meta.annotations == given:
            print(f"reusing aligned shards in {shards}")
            return found
    manifest = build_manifest(dataset, root, protocol, annotations=annotations)
    res = prepare_shards(manifest, shards, PrepareConfig.from_data(data),
                         class_names=class_names(dataset, protocol), overwrite=True,
                         extra_meta={"dataset": dataset, "protocol": protocol,
                                     "root": str(root.resolve()), "synthetic": synthetic,
                                     "annotations": given})
    print(f"aligned {res.clips} clips into {shards} ({res.rejected.height} rejected, see "
          f"rejected.parquet)")
    return Shards.open(shards)


def dataset_shards(dataset: str, root: Path | None, protocol: str, data: DataConfig,
                   workdir: Path, synthetic: SyntheticSet, seed: int | None = None,
                   annotations: Path | None = None) -> tuple[Path, Shards]:
    """(data root, aligned shards) of one dataset; a synthetic set in its layout when ``root``
    is None (said loudly). Ray must be running."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if root is None:
        seed = synthetic.seed if seed is None else seed
        root = workdir / synthetic.folder(dataset, protocol, seed)
        print(f"No data root for {dataset}: using a SYNTHETIC {dataset}-layout set in {root} "
              f"(seed {seed}, AU intensity x{synthetic.intensity:g}, "
              f"{'' if synthetic.distractors else 'no '}distractors; rendered "
              f"micro-expressions on one face photo, not {dataset.upper()} data).", flush=True)
        render = RenderConfig(intensity=synthetic.intensity, distractors=synthetic.distractors)
        if not (root / "synth.json").is_file():
            if dataset == "megc":
                generate_composite(root, synthetic.subjects_for(dataset), synthetic.clips,
                                   seed=seed, render=render)
            else:
                generate(root, LAYOUT[dataset], synthetic.subjects_for(dataset), synthetic.clips,
                         protocol, seed=seed, render=render)
    elif not Path(root).exists():
        raise FileNotFoundError(f"{root}: data root not found (--data-root)")
    return root, ensure_shards(dataset, root, protocol, data, workdir, is_synthetic(root),
                               annotations)


def driver_log(storage_path: str, workdir: Path, command: str) -> Path:
    """Where a command's Ray messages go: ``<storage>/logs/`` (``<workdir>/logs/`` when the
    storage is remote)."""
    local = open_storage(storage_path).local_path("logs")
    base = Path(local) if local else Path(workdir) / "logs"
    return base / f"{time.strftime('%Y%m%d-%H%M%S')}-{command}.log"
