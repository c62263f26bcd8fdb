"""Optional experiment tracking (``--tracking mlflow|tensorboard``; off by default): each fold's
per-epoch metrics and its test figures, and each run's summary.

- MLflow, through Ray's integration (``ray.air.integrations.mlflow.setup_mlflow``, which also
  works inside a Ray Train worker): one MLflow experiment per run, one MLflow run per fold and one
  for the summary. Without ``--tracking-uri`` the store is local: ``mlruns/mlflow.db`` under the
  storage folder (``./mlruns`` for remote storage), a SQLite file (MLflow 3 keeps its plain
  folder store in maintenance mode). ``mlflow ui --backend-store-uri sqlite:///...`` opens it.
  Needs ``pip install 'mer-ray[tracking]'`` (MLflow with its UI). MLflow's own messages (its
  database set-up) go to its loggers at WARNING and above only, not to the console.
- TensorBoard: tensorboardX (what Ray's TensorBoard integration writes with) event files under
  ``<storage>/<run>/tensorboard/<fold>/`` (or ``--tracking-uri DIR``); ``tensorboard --logdir``
  opens them.

A tracker is a small picklable description (``TrackingSpec``): it travels with each fold job
to whichever process trains the fold, which opens its own writer there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("mlflow", "tensorboard")
SUMMARY = "run summary"  # the tracked entry of a run's summary figures


@dataclass(frozen=True)
class TrackingSpec:
    kind: str  # mlflow | tensorboard
    uri: str  # MLflow tracking URI, or the TensorBoard log folder of the run
    experiment: str  # the run's name


def tracker_for(kind: str | None, uri: str | None, setup) -> TrackingSpec | None:
    """The tracking description for a LOSO run (``setup``), or None when tracking is off."""
    if not kind:
        return None
    if kind not in KINDS:
        raise ValueError(f"--tracking {kind!r}: choose {' or '.join(KINDS)}")
    local = setup.storage.local_path()
    if kind == "mlflow":
        if uri is None:
            base = Path(local) if local else Path.cwd()
            (base / "mlruns").mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{(base / 'mlruns' / 'mlflow.db').resolve()}"
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise ValueError("--tracking mlflow needs MLflow: pip install 'mer-ray[tracking]'") \
                from None
        quiet_mlflow()
    else:
        uri = uri or str(Path(local or ".") / setup.name / "tensorboard")
    return TrackingSpec(kind, uri, setup.name)


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _numbers(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}


def quiet_mlflow() -> None:
    """MLflow and the database layer under it log their set-up (table creation, migrations) at
    INFO: kept off the console."""
    import logging

    for name in ("mlflow", "alembic", "alembic.runtime.migration", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


class FoldTracker:
    """What one fold logs: its configuration, every epoch's figures, its final figures."""

    def __init__(self, spec: TrackingSpec, fold: str, config: dict):
        self.spec = spec
        if spec.kind == "mlflow":
            from ray.air.integrations.mlflow import setup_mlflow

            quiet_mlflow()  # in the fold's own process too
            self.mlflow = setup_mlflow(_flat(config), tracking_uri=spec.uri,
                                       experiment_name=spec.experiment,
                                       run_name=fold if fold == SUMMARY else f"fold {fold}",
                                       create_experiment_if_not_exists=True,
                                       tags={"fold": fold, "mer_ray.run": spec.experiment})
        else:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(Path(spec.uri) / ("summary" if fold == SUMMARY
                                                              else fold)))

    def epoch(self, row: dict) -> None:
        step = int(row["epoch"])
        if self.spec.kind == "mlflow":
            self.mlflow.log_metrics(_numbers(row), step=step)
        else:
            for k, v in _numbers(row).items():
                self.writer.add_scalar(k, v, step)

    def end(self, figures: dict) -> None:
        final = _numbers({k: v for k, v in figures.items() if v is not None})
        if self.spec.kind == "mlflow":
            self.mlflow.log_metrics(final)
            self.mlflow.end_run()
        else:
            for k, v in final.items():
                self.writer.add_scalar(f"final/{k}", v, 0)
            self.writer.close()


def log_summary(spec: TrackingSpec | None, setup, summary: dict) -> None:
    """A run's summary figures (and its configuration) as one more tracked entry."""
    if spec is None:
        return
    m = summary["metrics"]
    figures = {k: m[k] for k in ("uf1", "uar", "per_fold_mean_uf1", "per_fold_mean_uar")}
    for key in ("uf1_ci95", "uar_ci95"):
        if m.get(key):
            figures[f"{key}_low"], figures[f"{key}_high"] = m[key]
    tracker = FoldTracker(spec, SUMMARY, summary["config"])
    tracker.end(figures)
