"""mer-ray from Python (a notebook, a script): ``import mer_ray as mr``.

    run = mr.loso("experiments/configs/demo.yaml")      # a LOSO on Ray, as `mer-ray train`
    run = mr.load_run("results/demo")                  # or a stored one (a folder or s3://...)
    run.predictions                                    # one row per test clip (polars)
    other = mr.score("their_predictions.csv", shards="data/shards")   # as `mer-ray score`
    mr.compare([run, other])                           # the compare table, as a DataFrame

Every function does what its command does, through the same code: the same checks (a bad input
raises the ``ValueError`` / ``FileNotFoundError`` whose message the command prints), the same
folds, the same figures and the same run folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl


@dataclass
class Run:
    """A stored run (or a scored predictions file): its ``summary.json`` and what lies beside
    it, read when first asked for."""

    path: str  # the run's folder or URI
    summary: dict
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.summary["name"]

    @property
    def figures(self) -> dict:
        """UF1 / UAR over all folds' predictions (primary), their 95 % intervals, and the
        means over folds."""
        from .protocols.au_summary import holds_au_figures

        m = self.summary["metrics"]
        if holds_au_figures(self.summary):  # CD6ME: mean AU F1, pooled and per dataset
            return {k: m.get(k) for k in ("mean_au_f1", "mean_au_f1_ci95",
                                          "per_fold_mean_au_f1", "per_au_f1")}
        return {k: m.get(k) for k in ("uf1", "uar", "uf1_ci95", "uar_ci95",
                                      "per_fold_mean_uf1", "per_fold_mean_uar")}

    @property
    def marks(self) -> list[str]:
        """LEAKY, SELECTION UNDECLARED, PARTIAL, ... (``integrity``): empty for an honest run."""
        from .integrity import labels

        return labels(self.summary)

    @property
    def predictions(self) -> pl.DataFrame:
        if "predictions" not in self._cache:
            self._cache["predictions"] = self._node("predictions.parquet").read_parquet()
        return self._cache["predictions"]

    @property
    def folds(self) -> dict | None:
        """The run's ``folds.json`` (every fold's subjects and clips, and their hash)."""
        node = self._node("folds.json")
        return node.read_json() if node.exists() else None

    @property
    def config(self):
        """The run's ``ExperimentConfig`` (None for a scored file: mer-ray did not train it)."""
        from .config import ExperimentConfig

        raw = self.summary.get("config")
        return ExperimentConfig.from_dict(raw) if raw else None

    @property
    def provenance(self) -> dict:
        """What produced it: code version, configuration hash, seed, weights, libraries."""
        s = self.summary
        return {"code_version": s.get("code_version"), "config_hash": s.get("config_hash"),
                "seed": s.get("seed"), "pretrained": s.get("pretrained"),
                "weights_source": s.get("weights_source"), "selection": s.get("selection"),
                "folds_hash": s.get("folds_hash"), **(s.get("provenance") or {})}

    @property
    def shards(self) -> str | None:
        """The shard folder it was tested on (what ``score`` takes as ``shards=``)."""
        return self.summary.get("shards")

    def _node(self, name: str):
        from .report.inputs import open_node

        return open_node(self.path) / name

    def __repr__(self) -> str:
        m, s = self.summary["metrics"], self.summary

        def ci(key):
            got = m.get(f"{key}_ci95")
            return f" [{got[0]:.3f}, {got[1]:.3f}]" if got else ""
        marks = "".join(f" {x}" for x in self.marks)
        if "mean_au_f1" in self.figures:  # a CD6ME run
            return (f"Run({self.name!r}: {s['dataset']} {s['protocol']}, method "
                    f"{s.get('method')}, {s['n_folds']} folds, {s['n_clips']} clips; mean AU F1 "
                    f"{m['mean_au_f1']:.3f}{ci('mean_au_f1')} over all folds' predictions; "
                    f"mean over held-out datasets {m['per_fold_mean_au_f1']:.3f}"
                    f"{'; SYNTHETIC' if s.get('synthetic') else ''}{marks})")
        return (f"Run({self.name!r}: {s['dataset']} {s['protocol']}, method "
                f"{s.get('method')}, {s['n_folds']} folds, {s['n_clips']} clips; UF1 "
                f"{m['uf1']:.3f}{ci('uf1')}, UAR {m['uar']:.3f}{ci('uar')} over all folds' "
                f"predictions; fold mean UF1 {m['per_fold_mean_uf1']:.3f}"
                f"{'; SYNTHETIC' if s.get('synthetic') else ''}{marks})")


def load_run(path_or_uri: str | Path | Run) -> Run:
    """A stored run: its folder, or a URI (s3://bucket/results/name)."""
    if isinstance(path_or_uri, Run):
        return path_or_uri
    from .report.inputs import open_node

    node = open_node(path_or_uri)
    summary = node / "summary.json"
    if not summary.exists():
        raise FileNotFoundError(f"{path_or_uri}: no run there (no summary.json); give a run's "
                                f"folder, as mer-ray train or score wrote it")
    return Run(str(node), summary.read_json())


def _frame(predictions) -> tuple[pl.DataFrame, bytes | None, str]:
    from .protocols.scoring import read_predictions

    if isinstance(predictions, (str, Path)):
        frame, raw = read_predictions(predictions)
        return frame, raw, str(predictions)
    if isinstance(predictions, pl.DataFrame):
        return predictions, None, "predictions"
    try:  # a pandas DataFrame, without making pandas a dependency
        return pl.from_pandas(predictions), None, "predictions"
    except (TypeError, ValueError, ImportError):
        raise TypeError("predictions: a file path, a polars or a pandas DataFrame") from None


def score(predictions, *, shards: str | Path | None = None, data_root: str | Path | None = None,
          dataset: str | None = None, protocol: str | None = None,
          selection: str = "unknown", method: str | None = None, seed: int = 0,
          val_subjects: int | None = None, storage: str | None = None,
          name: str | None = None, against: str | None = None) -> Run:
    """``mer-ray score`` from Python. ``predictions``: a CSV / Parquet path or a DataFrame
    (columns clip, prediction; optionally subject, fold, label, p_<class>). The truth comes
    from ``shards`` (a run's ``run.shards``) or ``data_root`` with ``dataset`` and
    ``protocol``. ``seed``, ``val_subjects``: the folds' and the bootstrap's, as a run's
    train.seed / train.val_subjects. With ``storage``, the scored run is written there (and
    ``against`` names a run in it); otherwise it is kept in memory."""
    from .config import TrainConfig
    from .protocols import scoring
    from .protocols.truth import truth_for

    frame, raw, file = _frame(predictions)
    truth = truth_for(
        shards=shards, data_root=data_root, dataset=dataset, protocol=protocol, seed=seed,
        val_subjects=TrainConfig.val_subjects if val_subjects is None else val_subjects,
        option=lambda name: f"{name}=")
    scored = scoring.score(frame, truth, file=file, selection=selection, method=method,
                           seed=seed, name=name, raw=raw)
    if storage is None:
        if against is not None:
            raise ValueError("score(against=...) reads the run from storage=...")
        run = Run(f"(in memory: {scored.summary['name']})", scored.summary)
        run._cache["predictions"] = scored.predictions
        return run
    from .storage import open_storage

    store = open_storage(storage)
    if against is not None:
        scored.summary["against"] = scoring.against(scored, store, against, seed)
    where = scoring.write(scored, store, truth.folds_file, raw, file)
    return load_run(where)


def compare(runs: list) -> pl.DataFrame:
    """The compare table over stored runs (``mer-ray compare``'s rows): per dataset, each
    method's UF1 / UAR over all folds' predictions with 95 % subject-bootstrap intervals, the
    best honest method, every other honest row's paired difference from it (Holm-adjusted
    p-values), and each leaky row's leak beside its honest run; rows that may not be ranked
    (LEAKY, SELECTION UNDECLARED, SEARCH-INFORMED) are marked and never best. ``runs``: runs
    or their paths; a list inside the list is one method's runs with several training seeds
    (one row, their mean)."""
    from .protocols.stored import stored_rows

    loaded = [[load_run(r) for r in (item if isinstance(item, (list, tuple)) else [item])]
              for item in runs]
    if not loaded:
        raise ValueError("compare() needs at least one run")
    storages = []
    for group in loaded:
        stores = {str(Path(r.path).parent) for r in group}
        if len(stores) > 1:
            raise ValueError(f"compare(): the seeds of one row live in one folder (got "
                             f"{sorted(stores)})")
        storages.append(_storage_of(group[0]))
    rows = stored_rows([[r.summary for r in g] for g in loaded], storages)
    return pl.DataFrame([_flat(r) for r in rows])


def _storage_of(run: Run):
    from .report.inputs import open_node

    if run.path.startswith("(in memory"):
        raise ValueError(f"{run.name}: a scored file kept in memory; score it with storage=... "
                         f"to compare it")
    return open_node(run.path).parent.as_storage()


def _flat(row: dict) -> dict[str, Any]:
    """A compare row as flat columns (figures as fractions, intervals as low / high); an
    action-unit row (CD6ME) with its mean AU F1, per AU and per held-out dataset."""
    if "mean_au_f1" in row:
        d = (row.get("difference") or {}).get("mean_au_f1") or {}
        low, high = row.get("mean_au_f1_ci95") or [None, None]
        dl, dh = d.get("ci95") or [None, None]
        return {**{k: row.get(k) for k in ("dataset", "method", "run", "best", "leaky",
                                           "partial", "control", "mean_au_f1",
                                           "per_fold_mean_au_f1", "parameters",
                                           "seconds_per_fold", "versus")},
                "mean_au_f1_low": low, "mean_au_f1_high": high,
                **{f"F1 {a}": v for a, v in row["per_au_f1"].items()},
                **{f"held out {k}": v for k, v in row["per_dataset"].items()},
                "difference": d.get("difference"), "difference_low": dl,
                "difference_high": dh, "p_holm": d.get("p_holm"),
                "seeds": len(row.get("seeds") or [])}
    out = {k: row.get(k) for k in ("dataset", "method", "run", "best", "leaky",
                                   "selection_unknown", "search_informed", "partial",
                                   "control", "uf1", "uar", "per_fold_mean_uf1",
                                   "per_fold_mean_uar", "uf1_std", "parameters",
                                   "seconds_per_fold", "versus")}
    for key in ("uf1", "uar"):
        ci = row.get(f"{key}_ci95") or [None, None]
        out[f"{key}_low"], out[f"{key}_high"] = ci
        d = (row.get("difference") or {}).get(key) or {}
        out[f"{key}_difference"] = d.get("difference")
        low, high = d.get("ci95") or [None, None]
        out[f"{key}_difference_low"], out[f"{key}_difference_high"] = low, high
        out[f"{key}_p_holm"] = d.get("p_holm")
    out["seeds"] = len(row.get("seeds") or [])
    return out


def loso(config: str | Path | dict | None = None, data: str | Path | None = None, *,
         dataset: str = "samm", protocol: str = "3class", settings: dict | None = None,
         storage: str = "results", name: str | None = None, local: bool = False,
         seeds: int = 1, max_folds: int | None = None, workdir: str | Path = "data",
         synthetic: dict | None = None) -> Run:
    """``mer-ray train`` from Python: a LOSO run on Ray (``local=True``: in this process),
    returned as a ``Run``. ``config``: a YAML file or a dict of settings ({"model.lora_rank":
    8} or {"model": {"lora_rank": 8}}); ``settings``: more, applied after it. ``data``: a shard
    folder (``mer-ray prepare``'s) or a dataset root (with ``dataset`` and ``protocol``);
    None: the synthetic default in ``dataset``'s layout (``synthetic``: its options, as
    ``subjects``, ``clips_per_class``, ``seed``)."""
    from dataclasses import replace

    from .cluster import driver_log, ensure_ray
    from .data.choice import DataChoice, SyntheticSet
    from .data.shards import is_shard_folder
    from .methods import load_with_recipe
    from .protocols.loso import RunOptions, refuse_clashes, settle, train
    from .protocols.names import run_name, seed_names

    given = dict(_flatten(config) if isinstance(config, dict) else {})
    given.update(_flatten(settings or {}))
    config_file = Path(config) if isinstance(config, (str, Path)) else None
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: no such configuration file")
    exp = load_with_recipe(config_file, given)
    user_set = {k for k in given if k.startswith("data.")}
    if config_file is not None:
        from .config import load_yaml

        user_set |= {f"data.{k}" for k in (load_yaml(config_file).get("data") or {})}
    shard_folder = data is not None and is_shard_folder(data)
    choice = DataChoice(dataset, protocol, None if data is None or shard_folder else Path(data),
                        data if shard_folder else None, None,
                        SyntheticSet(**(synthetic or {})), Path(workdir))
    exp = settle(choice, exp, user_set)
    name = name or run_name(choice, exp, max_folds)
    opts = RunOptions(storage_path=str(storage), max_folds=max_folds, local=local, seeds=seeds,
                      extra={"command": ["mer_ray.loso (Python)"]})
    refuse_clashes(choice, exp, opts.storage, seed_names(name, exp.train.seed, seeds))
    if not (local and shard_folder):  # aligning or rendering needs Ray Data; folds on Ray
        ensure_ray(log_file=driver_log(str(storage), Path(workdir), "loso"))
    shards = choice.prepare(exp.data)
    train(exp, shards, replace(opts, extra={**opts.extra, "data_root": shards.meta.root}), name)
    first = seed_names(name, exp.train.seed, seeds)[0]
    return load_run(opts.storage.where(first))


def _flatten(settings: dict, prefix: str = "") -> dict:
    """{"model": {"lora_rank": 8}} and {"model.lora_rank": 8} alike as {"model.lora_rank": 8}."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict) and "." not in key and not prefix:
            out.update(_flatten(value, f"{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


__all__ = ["Run", "compare", "load_run", "loso", "score"]
