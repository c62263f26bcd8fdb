"""``mer-ray score`` for the CD6ME protocol: anyone's action-unit predictions, scored as
mer-ray scores its own AU runs.

One row per test clip (``clip``, and ``subject`` where clip ids repeat), the predicted AUs given
one of three ways, read in this order:

    p_AU1 ... p_AU17   a probability per AU (all 12): an AU is predicted at > 0.5; kept
    AU1 ... AU17       0 / 1 per AU (all 12)
    prediction         the AU set as text: "AU1+AU4", "1,4", "4+L10" (any spelling
                       ``data/aus.py`` reads), "none" or empty for no AU

An optional ``fold`` column must name each clip's own dataset (the fold that holds it out).
Missing, unknown or repeated clips, AUs outside the protocol's 12 and values that are not 0 / 1
are refused, one line per problem, before anything is written.
"""

from __future__ import annotations

import polars as pl

from ..au_metrics import decide
from ..data.adapters.cd6me import part_of
from ..data.aus import au_mask, au_numbers, mask_name, parse_aus
from .score_rows import ScoreRefused, clip_problems, column_named, named_items, row_keys
from .truth import Truth


def _from_text(values: list, numbers: tuple[int, ...], problems: list[str]) -> list:
    masks, outside = [], set()
    for v in values:
        parsed = parse_aus("" if v is None else str(v))
        got = set(parsed.aus) if parsed is not None else set()
        outside |= got - set(numbers)
        masks.append(au_mask(got, numbers))
    if outside:
        problems.append(f"predicted AUs outside the protocol's {len(numbers)}: "
                        f"{', '.join(f'AU{a}' for a in sorted(outside))}")
    return masks


def au_predictions(frame: pl.DataFrame, names: tuple[str, ...],
                   problems: list[str]) -> tuple[list | None, list | None]:
    """(a mask per row, probabilities per row or None) from the file's columns (above)."""
    numbers = au_numbers(names)
    probs = [column_named(frame, f"p_{n.lower()}", f"prob_{n.lower()}") for n in names]
    if all(probs):
        p = [list(map(float, r)) for r in frame.select(probs).iter_rows()]
        return decide(p), p
    binary = [column_named(frame, n.lower()) for n in names]
    if all(binary):
        rows = list(frame.select(binary).iter_rows())
        bad = sorted({str(v) for r in rows for v in r if v not in (0, 1, True, False)})
        if bad:
            problems.append(f"AU columns hold values other than 0 / 1: {named_items(bad)} "
                            f"(probabilities go in p_AU1 ... p_AU17)")
            return None, None
        return [sum(int(v) << i for i, v in enumerate(r)) for r in rows], None
    col = column_named(frame, "prediction_name", "prediction", "predicted", "pred", "aus")
    if col is None:
        problems.append(f"needs the predicted AUs: p_AU1 ... p_AU17, AU1 ... AU17 (0 / 1) or a "
                        f"prediction column (\"AU1+AU4\"); found {', '.join(frame.columns)}")
        return None, None
    return _from_text(frame[col].to_list(), numbers, problems), None


def match_aus(frame: pl.DataFrame, truth: Truth, file: str) -> pl.DataFrame:
    """The file's rows as an AU run's predictions (``summary.collect``'s columns, the fold
    being the clip's dataset), or ``ScoreRefused`` listing every problem."""
    names = truth.class_names
    clip_col = column_named(frame, "clip", "clip_id", "key")
    if clip_col is None:
        raise ScoreRefused(f"{file}: needs a clip column (found {', '.join(frame.columns)})")
    problems: list[str] = []
    keys, ambiguous = row_keys(frame, truth, clip_col,
                               column_named(frame, "subject", "subject_id"), problems)
    truth_of = dict(zip(truth.keys, truth.labels))
    clip_problems(keys, ambiguous, truth, problems)
    masks, probs = au_predictions(frame, names, problems)
    fold_col = column_named(frame, "fold", "held_out_dataset")
    if fold_col is not None:
        wrong = sorted(f"{k} in fold {f}" for k, f in zip(keys, frame[fold_col].to_list())
                       if k is not None and str(f) != part_of(k))
        if wrong:
            problems.append(f"{len(wrong)} clip(s) predicted in a fold other than their own "
                            f"dataset's (CD6ME holds one dataset out per fold): "
                            f"{named_items(wrong)}")
    if problems:
        raise ScoreRefused("\n".join(f"{file}: refused: {p}" for p in problems))
    rows = []
    for i, key in enumerate(keys):
        subject, clip = key.split("/", 1)
        y = truth_of[key]
        rows.append({"fold": part_of(subject), "subject": subject, "clip": clip, "label": y,
                     "label_name": mask_name(y, names), "prediction": masks[i],
                     "prediction_name": mask_name(masks[i], names),
                     "probabilities": probs[i] if probs is not None else None})
    return (pl.DataFrame(rows, schema_overrides={"probabilities": pl.List(pl.Float64)})
            .sort("fold", "subject", "clip"))


def au_scored_fold_rows(per_fold: list[dict]) -> list[dict]:
    """Per-fold rows of a scored AU file: its figures, none of training's records."""
    return [{"test_subject": pf["fold"], "held_out_dataset": pf["fold"], "val_subjects": None,
             "mean_au_f1": pf["mean_au_f1"], "n": pf["n"], "n_subjects": pf["n_subjects"],
             "aus_absent": pf["aus_absent"], "best_epoch": None, "epochs_run": None,
             "best_val_au_f1": None, "worker_seconds": None, "wall_seconds": None}
            for pf in per_fold]
