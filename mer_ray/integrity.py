"""Which figures may be ranked, and how every output marks those that may not: one place.

A run's figure is *leaky* when its model selection read its own test subjects
(``train.selection=test``: each fold's epoch, or the SVM's C, chosen on the test subject, the
common protocol reproduced to show its effect), and *search-informed* when its configuration
was chosen by a search that trained or validated on its test subjects (the flat search's
``-best`` run). Neither is ever ranked with honest figures: no "best", no bold, no difference
from the best is computed against one, in any output (console, ``summary.json``, grid and
comparison files, every report format). Two more marks say what a figure is without
forbidding its ranking among its own kind: *partial* (``--max-folds``: some folds only) and
*control* (shuffled training labels).

Every command and every writer asks here: ``flags`` reads the marks of a summary or a table
row, ``ranked`` keeps the rows that may be ranked, ``best`` picks among them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ExperimentConfig


@dataclass(frozen=True)
class Mark:
    key: str  # the field of a summary or row, and the CSV column
    label: str  # what the console and Markdown show beside the name
    ranked: bool  # whether a row with this mark may be ranked with unmarked rows
    note: str  # what it means, for table notes and footnotes


MARKS = (
    Mark("leaky", "LEAKY", False,
         "its selection read its test subjects (train.selection=test: each fold's epoch, or "
         "setting, chosen on its own test subject; the common protocol, reproduced to show its "
         "effect): optimistic, never a method's honest figure, never ranked"),
    Mark("search_informed", "SEARCH-INFORMED", False,
         "its configuration was chosen by a search that trained or validated on its test "
         "subjects: not an unbiased estimate, never ranked; report a nested search's figure"),
    Mark("selection_unknown", "SELECTION UNDECLARED", False,
         "a scored predictions file whose submitter did not declare how epochs and settings "
         "were chosen (mer-ray score --selection unknown): it may have read its test subjects, "
         "so it is never ranked with honest figures"),
    Mark("partial", "PARTIAL", True, "some folds only (--max-folds): not the whole LOSO"),
    Mark("control", "CONTROL", True,
         "shuffled-label control: training and validation labels permuted, a figure of chance"),
)
MARK = {m.key: m for m in MARKS}

LEAKY_SELECTION = MARK["leaky"].note


def is_leaky(exp: ExperimentConfig) -> bool:
    return exp.train.selection == "test"


def flags(row: dict) -> dict[str, bool | str]:
    """The marks of a summary or a table row: {mark key: truthy value} for those it carries.
    ``partial`` keeps its text ("2 of 8 folds"), the others are True."""
    out: dict[str, bool | str] = {}
    if row.get("leaky") or row.get("selection") == "test":
        out["leaky"] = True
    if row.get("search_informed"):
        out["search_informed"] = True
    if row.get("selection_unknown") or row.get("selection") == "unknown":
        out["selection_unknown"] = True
    partial = row.get("partial")
    if partial:
        out["partial"] = (f"{partial['folds']} of {partial['of']} folds"
                          if isinstance(partial, dict) else str(partial))
    if row.get("control") or row.get("control_shuffled_labels"):
        out["control"] = True
    return out


def row_flags(summary: dict) -> dict:
    """What a table row built from a run's summary carries about it: every mark as a field
    (False / None when absent), so files and reports can read them back."""
    got = flags(summary)
    return {"leaky": bool(got.get("leaky")), "search_informed": bool(got.get("search_informed")),
            "selection_unknown": bool(got.get("selection_unknown")),
            "partial": got.get("partial") or None, "control": bool(got.get("control"))}


def is_ranked(row: dict) -> bool:
    """Whether a row may be ranked with honest figures (best, bold, differences)."""
    return all(MARK[k].ranked for k in flags(row))


def ranked(rows: list[dict]) -> list[dict]:
    return [r for r in rows if is_ranked(r)]


def best(rows: list[dict], key: str = "uf1") -> dict | None:
    """The row with the highest ``key`` among those that may be ranked (ties: the first), or
    None when none may."""
    pool = [r for r in ranked(rows) if r.get(key) is not None]
    return max(pool, key=lambda r: (r[key], -pool.index(r))) if pool else None


def labels(row: dict) -> list[str]:
    """The marks as the console and Markdown show them: "LEAKY", "PARTIAL: 2 of 8 folds"."""
    out = []
    for key, value in flags(row).items():
        label = MARK[key].label
        out.append(f"{label}: {value}" if isinstance(value, str) else label)
    return out


def marked(name: str, row: dict) -> str:
    """``name`` with the row's marks after it, for console tables."""
    return " ".join([name, *labels(row)])


def notes(rows: list[dict]) -> list[str]:
    """One sentence per mark the rows carry, for the note under a table."""
    present = {k for r in rows for k in flags(r)}
    return [f"{MARK[k].label}: {MARK[k].note}." for k in (m.key for m in MARKS) if k in present]


def refuse_leaky(exp: ExperimentConfig, command: str, instead: str) -> None:
    """One line refusing the leaky selection where a command reports honest figures."""
    if is_leaky(exp):
        raise ValueError(f"{command}: train.selection=test is the leaky protocol (each fold's "
                         f"epoch chosen on its test subject) and this command reports honest "
                         f"figures; {instead}")
