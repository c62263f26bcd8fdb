"""The report's sections for action-unit results (the CD6ME protocol): a comparison in MEB's
layout (a summary, AUs as columns, held-out datasets as columns) and the AU runs found."""

from __future__ import annotations

from ..integrity import marked
from ..protocols.au_compare import au_table_notes, au_tables
from ..protocols.au_summary import holds_au_figures
from .inputs import Node
from .tables import md_table


def is_au_run(run: Node) -> bool:
    """Whether a run folder holds action-unit figures (its summary's metrics say so)."""
    return holds_au_figures((run / "summary.json").read_json())


def au_compare_section(grid: dict, stem: str, export: list | None) -> list[str]:
    """``mer-ray compare --protocol cd6me``: its three tables, each exported for papers."""
    rows = grid["rows"]
    lines = []
    titles = {"summary": "Mean AU F1", "per_au": "F1 per action unit (%)",
              "per_dataset": "Mean AU F1 per held-out dataset (%)"}
    for name, head, cells in au_tables(rows):
        lines += [f"#### {titles[name]}", ""]
        lines += md_table(head, cells, export, f"{stem}_{name}") + [""]
    return lines + [" ".join(grid.get("notes") or au_table_notes(rows, grid.get("seeds") or 1)),
                    ""]


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def au_runs_section(runs: list[Node]) -> list[str]:
    """One row per AU run: its marks, pooled and per-dataset mean AU F1."""
    sums = [(r / "summary.json").read_json() for r in runs]
    datasets = sorted({d for s in sums for d in s["metrics"].get("per_dataset") or {}})
    rows = []
    for s in sums:
        m = s["metrics"]
        ci = m.get("mean_au_f1_ci95")
        flags = {"leaky": s.get("leaky"), "control": s.get("control_shuffled_labels"),
                 "partial": s.get("partial")}
        rows.append([f"`{s['name']}`", marked(s.get("method", "mer"), flags),
                     _pct(m["mean_au_f1"]) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else ""),
                     _pct(m.get("per_fold_mean_au_f1")),
                     *(_pct((m["per_dataset"].get(d) or {}).get("mean_au_f1")) for d in datasets),
                     "synthetic" if s.get("synthetic") else "", s.get("code_version") or ""])
    return ["## Action-unit runs (CD6ME: leave one dataset out)", "",
            *md_table(["run", "method", "mean AU F1 % [95 % CI]", "mean over datasets %",
                       *datasets, "data", "code"], rows),
            "", "Mean AU F1 over all held-out datasets' predictions pooled, with a bootstrap "
                "interval over test subjects; then each held-out dataset's own figure.", ""]
