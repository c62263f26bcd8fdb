"""The methods' registry: what a method is, and the names it goes by."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..config import ExperimentConfig, described, load_experiment


@dataclass(frozen=True)
class Recipe:
    """A method's own training settings: applied wherever the method is chosen, after the
    configuration file and before the user's settings (``load_with_recipe``). A field left
    None keeps the configuration's value."""

    lr: float | None = described(None, "Adam learning rate")
    batch_size: int | None = described(None, "clips per step")
    max_epochs: int | None = described(None, "upper bound on epochs")
    patience: int | None = described(None, "epochs without a better validation UF1 before "
                                           "stopping")
    precision: str | None = described(None, "fp32 | bf16 | auto (train.precision)")

    def values(self) -> dict[str, Any]:
        """The recipe as configuration settings (``train.<field>``)."""
        return {f"train.{f.name}": getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


class Method:
    """A method the fold runner can train: subclass it, say what it reads and how it fits a
    fold, and ``register`` an instance. The fold loop, the selection, the records and the
    predictions stay the platform's (``fitting/``); a method imports those small interfaces,
    never the trainer (``train/``), which runs any method it is handed.

    Class attributes: ``name`` (``model.method``), ``summary``; ``columns``, the shard columns
    a fold reads (None: the clips, or the paper model's trunk tokens); ``needs_flow``, the
    shards must carry optical flow (``data.flow``); ``uses_backbone``, it builds the DinoV2
    backbone (whose weights' source the driver decides); ``recipe``, its own training
    settings, applied wherever the method is chosen (``load_with_recipe``)."""

    name: str = ""
    summary: str = ""
    columns: tuple[str, ...] | None = None
    needs_flow: bool = False
    uses_backbone: bool = False
    recipe: Recipe = Recipe()

    def fit(self, job, device, resume=None, on_epoch=None, cache=None,
            every_epoch=None):
        """Train one fold and, when its job has a test split, predict it once: a
        ``fitting.job.FoldResult``. ``resume``/``on_epoch``: its epoch checkpoint, when it has
        epochs; ``cache``: a dict this process keeps for the same clips (their features);
        ``every_epoch(row, last)``: after every epoch."""
        raise NotImplementedError

    def parameters(self, exp: ExperimentConfig, classes: int) -> int:
        """Its trainable parameters for ``classes`` classes."""
        raise NotImplementedError

    def augmentation(self, exp: ExperimentConfig) -> str:
        """What its training clips went through, in words (the run summary says it)."""
        return "none"

    def shared_inputs(self, shards, exp: ExperimentConfig, backbone, use_gpu: bool,
                      slots: int, compute: bool = True):
        """What every fold of a run reads in common, made once before they train (a
        ``fitting.job.TokenSource``), or None: nothing for this configuration (with
        ``compute`` off: only what exists already)."""
        return None

    def shared_place(self, shards, exp: ExperimentConfig) -> str:
        """Where making ``shared_inputs`` runs: "here" (or nothing to make), or "ray"."""
        return "here"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def method_named(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"model.method: unknown method {name!r}; registered: "
                         f"{', '.join(METHODS)}")
    return METHODS[name]


def method_of(exp: ExperimentConfig) -> Method:
    """The method a configuration trains; a flow method needs shards with flow."""
    method = method_named(exp.model.method)
    if method.needs_flow and exp.data.flow is None:
        raise ValueError(f"model.method={method.name} reads optical flow: set data.flow "
                         f"(--flow tvl1, farneback or dis) so the shards carry it")
    return method


def caches_trunk(exp: ExperimentConfig) -> bool:
    """Whether the folds read frozen-trunk tokens (``train.cache_trunk``, for a method with the
    backbone: the others have no trunk)."""
    return exp.train.cache_trunk and method_named(exp.model.method).uses_backbone


def load_with_recipe(path, settings: dict[str, Any] | None = None,
                     extra: dict[str, Any] | None = None) -> ExperimentConfig:
    """The configuration a command runs: the file (or the defaults), then the chosen method's
    recipe, then ``settings`` (the user's: ``--set`` and the like, parsed once at the door,
    which win over the recipe), then ``extra`` (a grid row's or a comparison's own). ``mer-ray
    train --set model.method=ststnet`` and ``mer-ray compare`` so train the same thing."""
    later = {**(settings or {}), **(extra or {})}
    base = load_experiment(path)
    method = method_named(later.get("model.method", base.model.method))
    return base.with_values({"model.method": method.name, **method.recipe.values(), **later})
