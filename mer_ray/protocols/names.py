"""How runs are named, in one place: every command asks here, once, at its door.

A run's default name says what it is: the dataset, protocol, data folder (with a hash of its
path) and configuration hash, ``-firstN`` for a run of the first N folds only; a repeat with
another training seed adds ``-seed<k>``; a flat search's pick runs as ``<search>-best``; a
transfer names its source and target data.
"""

from __future__ import annotations

from ..config import ExperimentConfig
from ..data.choice import DataChoice


def run_name(data: DataChoice, exp: ExperimentConfig, max_folds: int | None = None,
             prefix: str = "") -> str:
    """A run's default name (above)."""
    dataset, protocol = data.described()
    part = f"-first{max_folds}" if max_folds else ""
    return f"{prefix}{dataset}-{protocol}-{data.identity()}-{exp.hash()}{part}"


def seeded(name: str, seed: int) -> str:
    """The run of one training seed among several."""
    return f"{name}-seed{seed}"


def seed_names(name: str, first: int, seeds: int) -> list[str]:
    """The runs of ``seeds`` training seeds from ``first``: the name itself for one seed."""
    return [name] if seeds <= 1 else [seeded(name, first + i) for i in range(seeds)]


def best_name(search: str) -> str:
    """The LOSO of a flat search's pick."""
    return f"{search}-best"


def data_tag(data: DataChoice) -> str:
    """A dataset and the hash of its folder: ``samm.1a2b3c``."""
    return f"{data.described()[0]}.{data.identity().rsplit('.', 1)[1]}"


def transfer_name(prefix: str, source: str, target: str, exp: ExperimentConfig) -> str:
    """``<prefix>-<source>-to-<target>-<config hash>`` (source and target: ``data_tag``s, or
    dataset names)."""
    return f"{prefix}-{source}-to-{target}-{exp.hash()}"


def grid_row_namer(prefix: str, name: str | None, data: DataChoice, max_folds: int | None):
    """How a grid names its rows' runs: by the configuration (a row that repeats another, as
    lambda1 = 0.1 with lambda2 = 0.5 sits on both sensitivity curves, reuses its folds instead
    of training them again); with ``--name``, after it, else after the data too."""
    if name:
        return lambda exp: f"{name}-{exp.hash()}"
    return lambda exp: run_name(data, exp, max_folds, prefix=f"{prefix}-")
