"""The data a run trains on, as the user chose it (``DataChoice``): a dataset root aligned into
shards once and reused, shards made by ``mer-ray prepare``, or, without either, a synthetic set
in the dataset's layout (said loudly). ``check`` runs before Ray starts: everything about the
choice that can be known without a cluster fails fast.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..config import DataConfig, ExperimentConfig
from ..console import Ticker
from ..storage import is_uri
from .adapters import DATASETS
from .labels import class_names, protocols_of
from .manifest import build_manifest
from .prepare import PrepareConfig, prepare_shards
from .shards import Shards, is_shard_folder
from .synth import generate, generate_cd6me, generate_composite, is_synthetic
from .synth.render import RenderConfig

# The embedded default set: 8 subjects x 4 clips per class (96 clips in 3-class; SAMM's 3-class
# set has 133 in 28 subjects); the MEGC composite: 3 subjects per part (9 subjects, 108 clips).
# Its action units are rendered at 1.5x the generator's base amplitude: chosen on synthetic
# seeds 10 and 11 (a randomly initialised backbone learns them; at 1x its LOSO UF1 was 0.65-0.68
# there), and checked on seeds that took no part (benchmarks/demo.py).
SYNTH_SIZE = (8, 4)
SYNTH_SUBJECTS = {"megc": 3, "cd6me": 4}
# CD6ME's default: 4 subjects per part, one clip per emotion class of the part's protocol (6
# parts, 24 subjects, 128 clips): small enough that `mer-ray compare --protocol cd6me` with
# every method, honest and leaky, runs here in minutes.
SYNTH_CLIPS = {"cd6me": 1}
SYNTH_INTENSITY = 1.5
SYNTH_SEEDS = {"samm": 0, "casme2": 1, "smic": 2, "casme3": 3}  # seeded apart: stand-ins


@dataclass(frozen=True)
class SyntheticSet:
    """The synthetic set a run uses when it has no data root (``mer-ray synth`` writes one
    with the same settings and defaults)."""

    subjects: int | None = None  # None: the dataset's default
    clips_per_class: int | None = None  # None: the dataset's default
    seed: int = 0
    intensity: float = SYNTH_INTENSITY
    distractors: bool = True

    def subjects_for(self, dataset: str) -> int:
        return self.subjects or SYNTH_SUBJECTS.get(dataset, SYNTH_SIZE[0])

    def clips_for(self, dataset: str) -> int:
        return self.clips_per_class or SYNTH_CLIPS.get(dataset, SYNTH_SIZE[1])

    def folder(self, dataset: str, protocol: str, seed: int) -> str:
        """Every setting that changes the set is in the folder name: no stale set is reused."""
        parts = [f"synthetic_{dataset}_{protocol}"]
        if seed != 0:
            parts.append(f"seed{seed}")
        default = SyntheticSet()
        if (self.subjects_for(dataset), self.clips_for(dataset)) != \
                (default.subjects_for(dataset), default.clips_for(dataset)):
            parts.append(f"{self.subjects_for(dataset)}x{self.clips_for(dataset)}")
        if self.intensity != 1.0:
            parts.append(f"i{self.intensity:g}")
        if not self.distractors:
            parts.append("nodistract")
        return "_".join(parts)

    def render(self, dataset: str, protocol: str, root: Path, seed: int) -> None:
        """Write the set under ``root``, a line at least every few seconds while it renders."""
        render = RenderConfig(intensity=self.intensity, distractors=self.distractors)
        n = self.subjects_for(dataset)
        with Ticker(f"rendering the synthetic {dataset} set ({n} subjects)") as tick:
            def progress(done: int, total: int) -> None:
                tick.update(f"{done}/{total} clips")

            if dataset == "megc":
                generate_composite(root, n, self.clips_for(dataset), seed=seed, render=render,
                                   progress=progress)
            elif dataset == "cd6me":
                generate_cd6me(root, n, self.clips_for(dataset), seed=seed, render=render,
                               progress=progress)
            else:
                generate(root, dataset, n, self.clips_for(dataset), protocol,
                         seed=seed, render=render, progress=progress)


def shards_folder(workdir: Path, dataset: str, protocol: str, data: DataConfig,
                  root: Path) -> Path:
    """Where ``ensure_shards`` keeps the aligned shards of (root, protocol, T, S, geometry):
    the folder name carries the data root's name, so two data sets never share one."""
    default = DataConfig()
    geometry = "" if (data.eye_y, data.inter_ocular) == (default.eye_y, default.inter_ocular) \
        else f"-E{data.eye_y:g}x{data.inter_ocular:g}"
    flow = f"-F{data.flow}" if data.flow else ""
    if data.flow and data.registration != default.registration:
        flow += f"-R{data.registration}"
    return workdir / (f"shards-{dataset}-{protocol}-T{data.frames}-S{data.size}{geometry}{flow}-"
                      f"{Path(root).resolve().name}")


def reusable_shards(dataset: str, root: Path, protocol: str, data: DataConfig, workdir: Path,
                    annotations: Path | None = None) -> Shards | None:
    """The shards ``ensure_shards`` would reuse as they are (made from this root, dataset and
    annotation file at these frame settings), or None when it would align them again."""
    shards = shards_folder(workdir, dataset, protocol, data, root)
    given = str(Path(annotations).resolve()) if annotations else None
    if not is_shard_folder(shards):
        return None
    found = Shards.open(shards)
    meta = found.meta
    if meta.root == str(Path(root).resolve()) and meta.dataset == dataset \
            and meta.annotations == given:
        return found
    return None


def ensure_shards(dataset: str, root: Path, protocol: str, data: DataConfig, workdir: Path,
                  synthetic: bool, annotations: Path | None = None) -> Shards:
    """Aligned shards for (root, protocol, T, S, geometry), prepared once and reused; shards
    made from another annotation file are made again."""
    shards = shards_folder(workdir, dataset, protocol, data, root)
    given = str(Path(annotations).resolve()) if annotations else None
    found = reusable_shards(dataset, root, protocol, data, workdir, annotations)
    if found is not None:
        print(f"reusing aligned shards in {shards}")
        return found
    manifest = build_manifest(dataset, root, protocol, annotations=annotations)
    n = manifest["excluded_reason"].is_null().sum()
    with Ticker(f"aligning {n} clips into {shards} (Ray Data)"):
        res = prepare_shards(manifest, shards, PrepareConfig.from_data(data),
                             class_names=class_names(dataset, protocol), overwrite=True,
                             extra_meta={"dataset": dataset, "protocol": protocol,
                                         "root": str(root.resolve()), "synthetic": synthetic,
                                         "annotations": given})
    print(f"aligned {res.clips} clips ({res.rejected.height} rejected, see rejected.parquet)")
    return Shards.open(shards)


@dataclass(frozen=True)
class DataChoice:
    """The data a command was given: a dataset root, prepared shards, or neither (a synthetic
    set in the dataset's layout)."""

    dataset: str = "samm"
    protocol: str = "3class"
    root: Path | None = None
    shards: Path | str | None = None  # a folder or a URI (s3://bucket/shards)
    annotations: Path | None = None
    synthetic: SyntheticSet = field(default_factory=SyntheticSet)
    workdir: Path = Path("data")
    seed: int | None = None  # the synthetic set's seed, when not synthetic.seed
    opened: Shards | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        # absolute paths: Ray's workers render, read and write them from their own working
        # folder, which need not be this process's (a notebook that changed folder)
        object.__setattr__(self, "workdir", Path(self.workdir).expanduser().resolve())
        if self.root is not None:
            object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    def handle(self) -> Shards:
        """The given shards, opened once: their ``prepare.json`` is read here and every later
        question about them (their dataset, frame settings, id) reads this handle."""
        if self.opened is None:
            object.__setattr__(self, "opened", Shards.open(self.shards))
        return self.opened

    def check(self) -> None:
        """Everything about the choice that needs no cluster; a clear error when it is
        wrong."""
        if self.shards is not None:
            if self.root is not None:
                raise ValueError("give --shards or --data-root, not both")
            self.handle()  # names the folder when it is not a shard folder
            return
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of "
                             f"{', '.join(DATASETS)}")
        if self.protocol not in protocols_of(self.dataset):
            raise ValueError(f"dataset {self.dataset!r} has no protocol {self.protocol!r} "
                             f"(offered: {', '.join(protocols_of(self.dataset))})")
        if self.root is not None and not Path(self.root).exists():
            raise FileNotFoundError(f"{self.root}: data root not found (--data-root)")
        if self.annotations is not None and not Path(self.annotations).is_file():
            raise FileNotFoundError(f"{self.annotations}: annotation file not found "
                                    f"(--annotations)")

    @property
    def synthetic_root(self) -> Path:
        seed = self.synthetic.seed if self.seed is None else self.seed
        return self.workdir / self.synthetic.folder(self.dataset, self.protocol, seed)

    def source(self) -> Path | str:
        """What the data is read from: the shards (a path or URI), the data root, or the
        synthetic set."""
        if self.shards is not None:
            return self.shards_path(DataConfig())
        return Path(self.root or self.synthetic_root).expanduser().resolve()

    def shards_path(self, data: DataConfig) -> Path | str:
        """Where the shards are (or will be) for these frame settings: a path, or the URI."""
        if self.shards is not None:
            where = self.handle().root
            return where if is_uri(where) else Path(where)
        return shards_folder(self.workdir, self.dataset, self.protocol, data,
                             self.source()).resolve()

    def described(self) -> tuple[str, str]:
        """(dataset, protocol): given shards' own, else the choice's."""
        if self.shards is not None:
            meta = self.handle().meta
            return meta.dataset or "data", meta.protocol or "protocol"
        return self.dataset, self.protocol

    def identity(self) -> str:
        """A short, readable name for the data: its folder's name and a hash of its path (two
        sets in folders of the same name get different run names)."""
        where = self.source()
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(where).rstrip("/").rsplit("/", 1)[-1])[:40]
        return f"{name}.{hashlib.sha256(str(where).encode()).hexdigest()[:6]}"

    def ready(self, data: DataConfig) -> bool:
        """Whether ``prepare`` has nothing to render or align (given shards, or shards made
        from this data at these settings): then a run in this process needs no Ray."""
        if self.shards is not None:
            return True
        root = self.root if self.root is not None else self.synthetic_root
        if self.root is None and not (Path(root) / "synth.json").is_file():
            return False
        return reusable_shards(self.dataset, Path(root), self.protocol, data, self.workdir,
                               self.annotations) is not None

    def prepare(self, data: DataConfig) -> Shards:
        """The shards to train on (aligning them, or rendering a synthetic set first, when
        needed). Ray must be running."""
        if self.shards is not None:
            return self.handle()
        root = self.root
        if root is None:
            root = self.synthetic_root
            seed = self.synthetic.seed if self.seed is None else self.seed
            print(f"No data root for {self.dataset}: using a SYNTHETIC {self.dataset}-layout "
                  f"set in {root} (seed {seed}, AU intensity x{self.synthetic.intensity:g}, "
                  f"{'' if self.synthetic.distractors else 'no '}distractors; rendered "
                  f"micro-expressions on one face photo, not {self.dataset.upper()} data).",
                  flush=True)
            if not (root / "synth.json").is_file():
                self.synthetic.render(self.dataset, self.protocol, root, seed)
        return ensure_shards(self.dataset, Path(root), self.protocol, data, self.workdir,
                             is_synthetic(root), self.annotations)


def parse_roots(items: list[str]) -> dict[str, Path]:
    """``--data-root DATASET=PATH`` items as {dataset: folder}."""
    roots = {}
    for item in items:
        key, _, path = item.partition("=")
        if key not in DATASETS or not path:
            raise ValueError(f"--data-root {item!r}: expected DATASET=PATH with DATASET in "
                             f"{', '.join(DATASETS)}")
        roots[key] = Path(path)
    return roots


def dataset_choices(datasets: list[str] | None, roots: list[str], protocol: str,
                    synthetic: SyntheticSet, workdir: Path, shards=None,
                    apart: bool = True) -> dict[str, DataChoice]:
    """Several datasets' data, keyed by dataset: each its folder (``roots``: DATASET=PATH
    items) or, without one, a synthetic set in its layout, seeded apart per dataset when
    ``apart`` (stand-ins for different datasets are different sets); or, with ``shards``,
    the one dataset those shards hold. ``datasets`` None: SAMM."""
    if shards is not None:
        if roots or datasets:
            raise ValueError("give --shards or --dataset / --data-root, not both (the shards "
                             "name their dataset)")
        choice = DataChoice(shards=shards)
        return {choice.described()[0]: choice}
    given = parse_roots(roots)
    return {ds: DataChoice(ds, protocol, given.get(ds), None, None, synthetic, workdir,
                           seed=synthetic.seed + (SYNTH_SEEDS.get(ds, 0) if apart else 0))
            for ds in dict.fromkeys(datasets or ["samm"])}


def frames_from_shards(exp: ExperimentConfig, shards: Shards, user_set: set[str]) -> \
        ExperimentConfig:
    """The run's frame settings: the shards' own (T, S, alignment), except those the user set
    (a config file's data section, --set data.*, --frames, --size), which must then match."""
    made = shards.meta.data
    keep = {f"data.{f.name}": getattr(made, f.name) for f in fields(DataConfig)
            if f"data.{f.name}" not in user_set}
    exp = exp.with_values(keep) if keep else exp
    shards.check(exp.data)
    return exp
