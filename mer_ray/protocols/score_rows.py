"""What every predictions file is read with before it is scored (``scoring.py`` and, for AU
sets, ``au_scoring.py``): its columns found by name, its rows' clip keys, and refusals that
name at most a few clips each."""

from __future__ import annotations

import polars as pl

from .truth import Truth

SHOWN = 5  # clips named in a refusal before "and N more"


class ScoreRefused(ValueError):
    """The predictions file cannot be scored: one line per problem."""


def named_items(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def column_named(frame: pl.DataFrame, *names: str) -> str | None:
    lower = {c.lower(): c for c in frame.columns}
    return next((lower[n] for n in names if n in lower), None)


def row_keys(frame: pl.DataFrame, truth: Truth, clip_col: str, subject_col: str | None,
              problems: list[str]) -> tuple[list[str | None], set[str]]:
    """Each row's "subject/clip" key in the truth's terms (None where it cannot be told), and
    the clip ids that name clips of several subjects."""
    clips = [None if c is None else str(c).strip() for c in frame[clip_col].to_list()]
    if subject_col is not None:
        subjects = [None if s is None else str(s).strip() for s in frame[subject_col].to_list()]
        return [None if c is None or s is None else (c if c.startswith(f"{s}/") else f"{s}/{c}")
                for s, c in zip(subjects, clips)], set()
    by_clip: dict[str, list[str]] = {}
    for key in truth.keys:
        by_clip.setdefault(key.split("/", 1)[1], []).append(key)
    known = set(truth.keys)
    out, ambiguous = [], []
    for c in clips:
        if c is None or c in known:
            out.append(c)
        elif len(by_clip.get(c, [])) > 1:
            ambiguous.append(c)
            out.append(None)
        else:
            out.append(by_clip[c][0] if c in by_clip else c)
    if ambiguous:
        problems.append(f"{len(set(ambiguous))} clip id(s) name clips of several subjects: "
                        f"{named_items(sorted(set(ambiguous)))}; add a subject column (or write "
                        f"clip as subject/clip)")
    return out, set(ambiguous)


def clip_problems(keys: list, ambiguous: set[str], truth: Truth, problems: list[str]) -> None:
    """The rows' keys against the truth's clips: rows without a clip id, clips it does not
    have, clips predicted more than once, clips with no prediction (an ambiguous id is reported
    as such, not again as unnamed or missing); one line each, added to ``problems``."""
    unnamed = sum(k is None for k in keys)
    if unnamed and not problems:
        problems.append(f"{unnamed} row(s) have no clip id")
    truth_of = set(truth.keys)
    extra = sorted({k for k in keys if k is not None and k not in truth_of})
    if extra:
        problems.append(f"{len(extra)} clip(s) not in {truth.dataset} {truth.protocol} (as read "
                        f"from {truth.source}): {named_items(extra)}")
    seen: dict[str, int] = {}
    for k in keys:
        if k is not None:
            seen[k] = seen.get(k, 0) + 1
    repeated = sorted(k for k, n in seen.items() if n > 1)
    if repeated:
        problems.append(f"{len(repeated)} clip(s) predicted more than once: "
                        f"{named_items(repeated)}")
    missing = [k for k in truth.keys if k not in seen and k.split("/", 1)[1] not in ambiguous]
    if missing:
        problems.append(f"{len(missing)} clip(s) of the protocol have no prediction: "
                        f"{named_items(missing)} (`mer-ray folds` lists every clip)")
