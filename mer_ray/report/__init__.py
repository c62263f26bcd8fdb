"""``mer-ray report``: Markdown and PNG figures from stored results, read with polars.

Inputs are run folders (holding ``summary.json``), grid files (``ablation.json``,
``sensitivity.json``, ``lora_vs_full.json``, ``cross.json``, a sweep's best run...) or folders
holding either, local or behind a pyarrow URI (s3://, gs://, file://): they are read through
the storage layer. Folders are searched recursively. The report has:

- a header saying whether any backbone was randomly initialised and any data synthetic;
- a table comparing every run (UF1/UAR over all folds' predictions, the primary figure, and the
  mean over folds), with each run's config hash and code version;
- per run, a confusion matrix and per-fold UF1 bars;
- per grid, its table in the paper's layout (UF1/UAR in %, best in bold); sensitivity grids also
  get curves of UF1/UAR against lambda1 and lambda2;
- per sweep (``sweep.json`` beside ``trials.parquet``), its objective, the chosen configuration,
  the subjects the search saw, and every trial, best validation UF1 first.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .au_sections import au_runs_section, is_au_run
from .inputs import find_inputs, load_runs
from .sections import grid_section, header, run_section, runs_section, sweep_section
from .tables import csv_table, latex_table

FORMATS = ("md", "latex", "csv")


def _write_tables(export: list, out: Path, formats: tuple[str, ...]) -> list[Path]:
    written = []
    for name, head, rows in export:
        caption = f"{name}: UF1 / UAR in %, best in bold"
        for fmt, suffix in (("latex", "tex"), ("csv", "csv")):
            if fmt in formats:
                path = out / "tables" / f"{name}.{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(latex_table(head, rows, caption) if fmt == "latex"
                                else csv_table(head, rows))
                written.append(path)
    return written


def write_report(paths: list[str | Path], out: str | Path,
                 formats: tuple[str, ...] = ("md",), progress=None) -> Path:
    """report.md (always) and figures; with "latex" / "csv" in ``formats``, every paper-layout
    table (the runs, each grid, Table 7's accounting) also as ``tables/<name>.tex`` / ``.csv``
    (in CSV, a figure's value and interval bounds in numeric columns of their own).
    ``progress(text)``: after each run's section (its figures take a moment each)."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; choose from {', '.join(FORMATS)}")
    import matplotlib

    matplotlib.use("Agg")
    runs, grids, sweeps = find_inputs(paths)  # inputs that cannot be read: nothing written
    au_runs = [r for r in runs if is_au_run(r)]  # CD6ME: action-unit figures, their own table
    runs = [r for r in runs if r not in au_runs]
    out = Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    table = load_runs(runs) if runs else pl.DataFrame()
    grid_data = [(g, g.read_json()) for g in grids]
    synthetic = (runs and table["synthetic"].any()) or any(
        r.get("synthetic") for _, g in grid_data for r in g["rows"])
    random_init = (runs and table["random_init"].any()) or any(
        r.get("pretrained") is False for _, g in grid_data for r in g["rows"])
    au_sums = [(r / "summary.json").read_json() for r in au_runs]
    synthetic = synthetic or any(s.get("synthetic") for s in au_sums)
    random_init = random_init or any(s.get("pretrained") is False for s in au_sums)
    export: list = []
    lines = header(bool(synthetic), bool(random_init))
    if runs:
        lines += runs_section(table, export)
        for k, r in enumerate(runs):
            if progress is not None:
                progress(f"{k}/{len(runs)} runs")
            lines += run_section(r, figures)
    if au_runs:
        lines += au_runs_section(au_runs)
    if grid_data:
        lines += ["## Experiment grids", ""]
        for g, data in grid_data:
            lines += grid_section(data, g, figures, export)
    if sweeps:
        lines += ["## Hyper-parameter sweeps", ""]
        for sw in sweeps:
            lines += sweep_section(sw)
    written = _write_tables(export, out, formats)
    if written:
        lines += ["## Tables for papers", "",
                  *[f"- `{p.relative_to(out)}`" for p in written], ""]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
