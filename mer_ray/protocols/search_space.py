"""Search spaces: a YAML mapping of ``section.field`` to a distribution, checked against the
configuration, as Ray Tune domains (the flat search) or Optuna distributions (the nested
search)::

    loss.lambda1: {type: loguniform, low: 0.01, high: 1.0}
    model.lora_rank: {type: choice, values: [4, 8, 16]}

Types: uniform, loguniform (low, high), randint (low, high exclusive), choice (values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ExperimentConfig, load_yaml


class SweepInterrupted(RuntimeError):
    """A search was stopped before every trial finished; its state is saved for a resume."""


def refuse_leaky(exp: ExperimentConfig) -> None:
    """A search picks configurations on validation figures; the leaky protocol (epochs chosen
    on the test subject) has no place in one."""
    from ..integrity import refuse_leaky as refuse

    refuse(exp, "mer-ray sweep", "a search chooses on validation figures only: use "
                                 "train.selection=validation")


# Settings a search space may not contain: what decides how a fold's epoch is selected is the
# protocol itself, not a hyper-parameter (train.selection=test would let a trial choose on
# its test subjects).
NOT_SEARCHED = {"train.selection": "the selection protocol is not a hyper-parameter (test "
                                   "would choose on the test subjects)"}


SPACE_TYPES = ("uniform", "loguniform", "randint", "choice")


def read_space(path: str | Path) -> dict[str, dict]:
    """The search space file, checked: ``section.field`` -> its distribution spec."""
    known = ExperimentConfig().to_dict()
    space = {}
    for key, spec in load_yaml(path).items():
        section, _, name = key.partition(".")
        if section not in known or name not in known[section]:
            raise ValueError(f"{path}: {key!r} is not a config field (section.field, e.g. "
                             f"loss.lambda1)")
        if key in NOT_SEARCHED:
            raise ValueError(f"{path}: {key} cannot be searched: {NOT_SEARCHED[key]}")
        if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
            raise ValueError(f"{path}: {key}: expected {{type: {' | '.join(SPACE_TYPES)}, ...}}")
        need = ("values",) if spec["type"] == "choice" else ("low", "high")
        missing = [k for k in need if k not in spec]
        if missing:
            raise ValueError(f"{path}: {key}: {spec['type']} needs {', '.join(missing)}")
        space[key] = dict(spec)
    if not space:
        raise ValueError(f"{path}: empty search space")
    return space


def tune_space(space: dict[str, dict]) -> dict[str, Any]:
    """Ray Tune domains for a checked space."""
    from ray import tune

    makers = {
        "uniform": lambda s: tune.uniform(float(s["low"]), float(s["high"])),
        "loguniform": lambda s: tune.loguniform(float(s["low"]), float(s["high"])),
        "randint": lambda s: tune.randint(int(s["low"]), int(s["high"])),
        "choice": lambda s: tune.choice(list(s["values"])),
    }
    return {k: makers[s["type"]](s) for k, s in space.items()}


def optuna_space(space: dict[str, dict]) -> dict[str, Any]:
    """Optuna distributions for a checked space (randint's high is exclusive, as in Tune)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    makers = {
        "uniform": lambda s: FloatDistribution(float(s["low"]), float(s["high"])),
        "loguniform": lambda s: FloatDistribution(float(s["low"]), float(s["high"]), log=True),
        "randint": lambda s: IntDistribution(int(s["low"]), int(s["high"]) - 1),
        "choice": lambda s: CategoricalDistribution(list(s["values"])),
    }
    return {k: makers[s["type"]](s) for k, s in space.items()}


def load_space(path: str | Path) -> dict[str, Any]:
    """Tune search-space domains from the YAML file at ``path``."""
    return tune_space(read_space(path))
