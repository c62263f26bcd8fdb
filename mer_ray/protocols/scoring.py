"""``mer-ray score``: anyone's predictions, scored as mer-ray scores its own runs.

A predictions file (CSV or Parquet) has one row per test clip:

    clip         the clip id as the dataset names it, or "subject/clip"
    subject      optional: needed when clip ids repeat across subjects (CASME II's EP02_01f)
    prediction   the predicted class: its name (case-insensitive) or its index in the
                 protocol's class order (``mer-ray folds`` lists the classes)
    fold         optional: the fold each clip was predicted in (its test subject, or any id);
                 checked against the subjects: in a LOSO a clip is predicted only in its own
                 subject's fold
    label        optional: the true class the submitter used; checked against the protocol's
    p_<class>    optional: a score per class (``prob_<class>`` and a list column
                 ``probabilities`` are read too), kept with the predictions

The truth (every clip of the protocol, its subject and class, and the folds) comes from
prepared shards (``--shards``: exactly the clips a run on them tests) or from the dataset's
annotations (``--data-root``: the clips its manifest includes; none is aligned). A file that
misses clips, names clips the protocol does not have, repeats a clip, predicts a class outside
the protocol, or puts a clip in another subject's fold is refused, one line per problem, before
anything is written. Otherwise the figures are computed by the code that scores mer-ray's own
runs (``summary.run_metrics``), and the scored file becomes a run folder (``summary.json``,
``predictions.parquet``, ``folds.json`` and the submitted file as given) that ``mer-ray
report``, ``compare``-style differences and the leaderboard read like any other run.

Under the CD6ME protocol a row carries the clip's predicted AU set instead of a class
(``au_scoring.py`` says how), and the figures are the AU run's.

The submitter's declared selection is recorded and shown with the figure: ``validation``
(epochs and settings chosen without the test subjects) is ranked with mer-ray's honest runs;
``test`` is the leaky protocol and ``unknown`` an undeclared one, and neither is ever ranked
with honest figures (``integrity``).
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..data.folds import FOLDS_FILE
from ..integrity import LEAKY_SELECTION, MARK
from ..metrics import paired_difference
from ..provenance import code_version, provenance
from ..storage import Storage
from .score_rows import ScoreRefused, clip_problems, column_named, named_items, row_keys
from .summary import run_metrics, scored_fold_rows
from .truth import Truth

SELECTIONS = ("validation", "test", "unknown")


def read_predictions(path: str | Path) -> tuple[pl.DataFrame, bytes]:
    """The file as a DataFrame, and its bytes (kept with the scored run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such predictions file")
    raw = path.read_bytes()
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pl.read_parquet(io.BytesIO(raw))
        elif path.suffix.lower() in (".csv", ".txt", ".tsv"):
            frame = pl.read_csv(io.BytesIO(raw), separator="\t" if path.suffix.lower() == ".tsv"
                                else ",", infer_schema_length=None)
        else:
            raise ValueError("suffix")
    except Exception as exc:  # polars' parse errors are its own types
        why = "not .csv, .tsv or .parquet" if str(exc) == "suffix" else \
            (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ValueError(f"{path}: not a predictions file mer-ray can read ({why}); write CSV "
                         f"or Parquet with columns clip, prediction (and optionally subject, "
                         f"fold, label, p_<class>)") from None
    return frame, raw


def _class_of(value, names: tuple[str, ...]) -> int | None:
    """A class given as its name (any case) or its index; None when it is neither."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) if float(value).is_integer() and 0 <= value < len(names) else None
    text = str(value).strip()
    lower = [n.lower() for n in names]
    if text.lower() in lower:
        return lower.index(text.lower())
    return int(text) if text.isdigit() and int(text) < len(names) else None


def _probabilities(frame: pl.DataFrame, names: tuple[str, ...]) -> list | None:
    """Per-class scores from a list column or one column per class; None when absent."""
    col = column_named(frame, "probabilities", "probs", "scores")
    if col is not None and isinstance(frame.schema[col], pl.List):
        return [None if p is None else [float(x) for x in p] for p in frame[col].to_list()]
    for prefix in ("p_", "prob_", "score_"):
        cols = [column_named(frame, f"{prefix}{n.lower()}") for n in names]
        if all(cols):
            return [list(map(float, row)) for row in frame.select(cols).iter_rows()]
    return None


def match(frame: pl.DataFrame, truth: Truth, file: str) -> pl.DataFrame:
    """The file's rows as a run's predictions (``summary.collect``'s columns), or
    ``ScoreRefused`` listing every problem found, one line each."""
    names = truth.class_names
    clip_col = column_named(frame, "clip", "clip_id", "key")
    pred_col = column_named(frame, "prediction_name", "prediction", "predicted", "pred")
    if clip_col is None or pred_col is None:
        raise ScoreRefused(
            f"{file}: needs a clip column and a prediction column (found "
            f"{', '.join(frame.columns) or 'none'}); see mer-ray score --help")
    problems: list[str] = []
    keys, ambiguous = row_keys(frame, truth, clip_col, column_named(frame, "subject", "subject_id"),
                            problems)
    truth_of = dict(zip(truth.keys, truth.labels))
    clip_problems(keys, ambiguous, truth, problems)
    given = frame[pred_col].to_list()
    preds = [_class_of(v, names) for v in given]
    bad = sorted({str(v) for v, p in zip(given, preds) if p is None})
    if bad:
        problems.append(f"{sum(p is None for p in preds)} prediction(s) outside the protocol's "
                        f"classes ({', '.join(names)}, or 0-{len(names) - 1}): {named_items(bad)}")
    label_col = column_named(frame, "label_name", "label", "true", "truth")
    if label_col is not None:
        told = [_class_of(v, names) for v in frame[label_col].to_list()]
        wrong = sorted(k for k, t in zip(keys, told)
                       if k in truth_of and t != truth_of[k])
        if wrong:
            problems.append(f"{len(wrong)} clip(s) whose label column differs from the "
                            f"protocol's class: {named_items(wrong)} (another annotation file or "
                            f"label map?)")
    fold_col = column_named(frame, "fold", "test_subject")
    if fold_col is not None:
        problems += _fold_problems(frame[fold_col].to_list(), keys, truth)
    if problems:
        raise ScoreRefused("\n".join(f"{file}: refused: {p}" for p in problems))
    probs = _probabilities(frame, names)
    rows = []
    for i, key in enumerate(keys):
        subject, clip = key.split("/", 1)
        y = truth_of[key]
        rows.append({"fold": subject, "subject": subject, "clip": clip, "label": y,
                     "label_name": names[y], "prediction": preds[i],
                     "prediction_name": names[preds[i]],
                     "probabilities": probs[i] if probs is not None else None})
    order = {s: n for n, s in enumerate(truth.subjects)}
    return (pl.DataFrame(rows, schema_overrides={"probabilities": pl.List(pl.Float64)})
            .sort(by=[pl.col("subject").replace_strict(order, return_dtype=pl.Int64),
                      pl.col("clip")]))


def _fold_problems(folds: list, keys: list, truth: Truth) -> list[str]:
    """A fold column must agree with the subjects: a fold named after a subject holds that
    subject's clips only; a fold with another id holds one subject's clips, and each subject
    is in one fold."""
    subjects = set(truth.subjects)
    by_fold: dict[str, set[str]] = {}
    wrong = []
    for fold, key in zip(folds, keys):
        if key is None or fold is None:
            continue
        fold, subject = str(fold), key.split("/", 1)[0]
        by_fold.setdefault(fold, set()).add(subject)
        if fold in subjects and fold != subject:
            wrong.append(f"{key} in fold {fold}")
    out = []
    if wrong:
        out.append(f"{len(wrong)} clip(s) predicted in another subject's fold (in a LOSO a clip "
                   f"is tested only when its own subject is held out): {named_items(sorted(wrong))}")
    mixed = sorted(f for f, s in by_fold.items() if f not in subjects and len(s) > 1)
    if mixed:
        out.append(f"{len(mixed)} fold(s) hold clips of several subjects (a LOSO fold tests one "
                   f"subject): {named_items([f'{f}: {sorted(by_fold[f])}' for f in mixed])}")
    split = sorted(s for s in subjects
                   if len({f for f, held in by_fold.items() if s in held}) > 1)
    if split:
        out.append(f"{len(split)} subject(s) tested in more than one fold: {named_items(split)}")
    return out


@dataclass
class Scored:
    """A scored predictions file: its summary (``summary.json``) and predictions."""

    summary: dict
    predictions: pl.DataFrame


def score(frame: pl.DataFrame, truth: Truth, *, file: str = "predictions",
          selection: str = "unknown", method: str | None = None, seed: int = 0,
          name: str | None = None, raw: bytes | None = None) -> Scored:
    """The figures of a predictions file against ``truth``, as a run's summary. ``seed``: the
    bootstrap's (the intervals a run with train.seed=seed reports)."""
    if selection not in SELECTIONS:
        raise ValueError(f"--selection {selection!r}: choose from {', '.join(SELECTIONS)}")
    from ..data.labels import is_multilabel

    if is_multilabel(truth.protocol):  # CD6ME: AU sets per clip (au_scoring.py)
        from .au_scoring import au_scored_fold_rows, match_aus

        preds = match_aus(frame, truth, file)
        metrics = run_metrics(preds, [f.test for f in truth.folds], truth.class_names, seed,
                              False, multilabel=True)
        fold_rows = au_scored_fold_rows(metrics.pop("_per_fold"))
    else:
        preds = match(frame, truth, file)
        metrics = run_metrics(preds, truth.subjects, truth.class_names, seed,
                              truth.dataset == "megc")
        fold_rows = scored_fold_rows(truth.subjects, metrics.pop("_per_fold"),
                                     truth.class_names)
    digest = hashlib.sha256(raw if raw is not None else frame.write_csv().encode()).hexdigest()
    method = method or Path(file).stem
    summary = {
        "name": name or f"scored-{method}-{truth.dataset}-{truth.protocol}-{digest[:8]}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": truth.dataset, "protocol": truth.protocol, "synthetic": truth.synthetic,
        "class_names": list(truth.class_names), "n_folds": len(truth.folds),
        "n_clips": preds.height, "metrics": metrics,
        "folds": fold_rows,
        "config": None, "config_hash": None, "seed": seed,
        "code_version": code_version(),
        "provenance": provenance(None, [], []),
        "method": method, "selection": selection,
        **({"leaky": LEAKY_SELECTION} if selection == "test" else {}),
        **({"selection_unknown": MARK["selection_unknown"].note}
           if selection == "unknown" else {}),
        "pretrained": None, "weights_source": None, "augmentation": None,
        "control_shuffled_labels": False, "search_informed": False,
        "scored": {"file": str(file), "sha256": digest, "selection_declared": selection,
                   "truth": truth.source, "has_probabilities":
                       bool(preds["probabilities"].is_not_null().any())},
        "shards": truth.source,
        "folds_file": FOLDS_FILE, "folds_hash": truth.folds_file["hash"],
        "data": {"root": truth.source, "clips": len(truth.keys)},
    }
    return Scored(summary, preds)


def against(scored: Scored, storage: Storage, run: str, seed: int = 0) -> dict:
    """The paired subject-bootstrap difference of the scored file minus a stored run (same
    dataset, protocol and test clips)."""
    import json

    from .summary import by_subject, subject_predictions

    try:
        other = json.loads(storage.read_bytes(run, "summary.json"))
    except (FileNotFoundError, OSError):
        raise FileNotFoundError(f"--against {storage.where(run)}: no run there (no "
                                f"summary.json); give a run's name in --storage-path") from None
    s = scored.summary
    if (other.get("dataset"), other.get("protocol")) != (s["dataset"], s["protocol"]):
        raise ValueError(f"--against {run}: a {other.get('dataset')} {other.get('protocol')} "
                         f"run; these predictions are {s['dataset']} {s['protocol']}")
    theirs = subject_predictions(storage, run)
    ours = by_subject(scored.predictions)
    if sorted(theirs) != sorted(ours) or \
            sum(len(v[0]) for v in theirs.values()) != scored.predictions.height:
        raise ValueError(f"--against {run}: its test clips are not these (subjects "
                         f"{len(theirs)} vs {len(ours)}); compare runs on the same data")
    same = {"run": run, "same_folds": other.get("folds_hash") == s["folds_hash"],
            "run_marks": {k: True for k in ("leaky", "search_informed") if other.get(k)}}
    from .au_summary import holds_au_figures

    if holds_au_figures(s):  # CD6ME: the mean AU F1's difference
        from ..au_metrics import au_paired

        d = au_paired(ours, theirs, len(s["class_names"]), seed=seed)
        d["excludes_zero"] = not d["ci95"][0] <= 0 <= d["ci95"][1]
        return {**same, "figures": ["mean_au_f1"], "resamples": 1000,
                "run_mean_au_f1": other["metrics"]["mean_au_f1"], "mean_au_f1": d}
    diff = paired_difference(ours, theirs, list(range(len(s["class_names"]))), seed=seed)
    return {**same, "figures": ["uf1", "uar"], "run_uf1": other["metrics"]["uf1"],
            "run_uar": other["metrics"]["uar"], **diff}


def write(scored: Scored, storage: Storage, folds_file: dict, raw: bytes | None,
          file: str) -> str:
    """The scored file as a run folder; a second scoring of another file under the same
    name is refused."""
    import json

    s = scored.summary
    name = s["name"]
    if storage.exists(name, "summary.json"):
        old = json.loads(storage.read_bytes(name, "summary.json"))
        same = (old.get("scored") or {}).get("sha256") == s["scored"]["sha256"]
        if not same:
            raise FileExistsError(f"{storage.where(name)} holds another run; use another "
                                  f"--name or remove that folder")
    if raw is not None:
        storage.write_atomic(raw, name, f"submitted{Path(file).suffix.lower()}")
    storage.write_atomic(json.dumps(folds_file, indent=1).encode(), name, FOLDS_FILE)
    storage.write_parquet(scored.predictions, name, "predictions.parquet")
    storage.write_atomic(json.dumps(s, indent=1, default=str).encode(), name, "summary.json")
    return storage.where(name)
