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

import io
import json
import re
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs

from .storage import Storage


class Node:
    """A file or folder of stored results, local or behind a pyarrow URI (s3://...): the
    report reads through the storage layer, as the runs were written."""

    def __init__(self, storage: Storage, path: str):
        self.storage, self.path = storage, path.rstrip("/")

    def __truediv__(self, name: str) -> Node:
        return Node(self.storage, f"{self.path}/{name}")

    def __eq__(self, other) -> bool:
        return isinstance(other, Node) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __str__(self) -> str:
        return self.path if self.storage.local_path() else \
            f"{self.storage.uri.rstrip('/')}/{self.path[len(self.storage.root):].lstrip('/')}"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def parent(self) -> Node:
        return Node(self.storage, self.path.rsplit("/", 1)[0])

    def _info(self):
        return self.storage.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def read_bytes(self) -> bytes:
        with self.storage.fs.open_input_stream(self.path) as fh:
            return fh.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def read_parquet(self) -> pl.DataFrame:
        return pl.read_parquet(io.BytesIO(self.read_bytes()))

    def files(self, suffix: str) -> list[Node]:
        """Every file below this folder whose name ends with ``suffix``, in a stable order."""
        sel = pafs.FileSelector(self.path, recursive=True)
        return sorted((Node(self.storage, i.path) for i in self.storage.fs.get_file_info(sel)
                       if i.type == pafs.FileType.File and i.path.endswith(suffix)),
                      key=lambda n: n.path)


def _node(path: str | Path) -> Node:
    """A local path or a URI as a Node (the storage opened at its folder)."""
    text = str(path)
    if "://" in text:
        fs, inner = pafs.FileSystem.from_uri(text)
        return Node(Storage(fs, inner, text), inner)
    local = str(Path(text).expanduser().resolve())
    return Node(Storage(pafs.LocalFileSystem(), local, local), local)


def find_inputs(paths: list[str | Path]) -> tuple[list[Node], list[Node], list[Node]]:
    """(run folders, grid files, sweep files) under ``paths`` (folders, files or URIs), each
    once, in a stable order."""
    runs, grids, sweeps = [], [], []
    for given in paths:
        p = _node(given)
        if not p.exists():
            raise FileNotFoundError(f"{given}: no such file or folder")
        if p.is_file():
            candidates = [p]
        else:
            skip = {"folds", "train", "tune", "search", "logs", "mlruns", "tensorboard"}
            candidates = [c for c in p.files(".json")
                          if not skip & set(c.path[len(p.path):].split("/")[:-1])]
            candidates = [c for c in candidates if c.name == "summary.json"] + \
                [c for c in candidates if c.name != "summary.json"]
        for c in candidates:
            if c.name == "summary.json":
                if c.parent not in runs:
                    runs.append(c.parent)
            elif c.name == "sweep.json":
                if c not in sweeps:
                    sweeps.append(c)
            elif c.name.endswith(".json") and c not in grids and _is_grid(c):
                grids.append(c)
    if not runs and not grids and not sweeps:
        raise FileNotFoundError(f"no results under {', '.join(map(str, paths))}: expected run "
                                f"folders with summary.json, grid files (ablation.json, ...) or "
                                f"sweep.json")
    return runs, grids, sweeps


def _is_grid(path: Node) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "grid" in data and isinstance(data.get("rows"), list)


def load_runs(runs: list[Node]) -> pl.DataFrame:
    rows = []
    for r in runs:
        s = json.loads((r / "summary.json").read_text())
        m = s["metrics"]
        rows.append({
            "run": s["name"], "path": str(r), "dataset": s.get("dataset"),
            "protocol": s.get("protocol"), "synthetic": bool(s.get("synthetic")),
            "pretrained": s.get("pretrained") is True, "config_hash": s.get("config_hash"),
            "code_version": s.get("code_version"), "seed": s.get("seed"),
            "folds": s["n_folds"], "clips": s["n_clips"], "uf1": m["uf1"], "uar": m["uar"],
            "fold_mean_uf1": m["per_fold_mean_uf1"], "fold_mean_uar": m["per_fold_mean_uar"],
            "control": bool(s.get("control_shuffled_labels")),
            "uf1_ci95": m.get("uf1_ci95"), "uar_ci95": m.get("uar_ci95"),
            "search_informed": bool(s.get("search_informed")), "nested": "nested" in s,
        })
    return pl.DataFrame(rows)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80]


def confusion_png(summary: dict, out: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.array(summary["metrics"]["confusion_matrix"])
    names = summary["class_names"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 1.0 + 0.8 * len(names)))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    m = summary["metrics"]
    ax.set_title(f"UF1 {m['uf1']:.3f}, UAR {m['uar']:.3f} (all folds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def fold_bars_png(summary: dict, out: Path) -> None:
    import matplotlib.pyplot as plt

    folds = summary["folds"]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.4 * len(folds) + 1.5), 3.0))
    ax.bar(range(len(folds)), [f["uf1"] for f in folds], color="tab:blue")
    ax.axhline(summary["metrics"]["per_fold_mean_uf1"], color="tab:red", ls="--",
               label=f"mean over folds {summary['metrics']['per_fold_mean_uf1']:.3f}")
    ax.set_xticks(range(len(folds)), [f["test_subject"] for f in folds], rotation=90,
                  fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("UF1")
    ax.set_xlabel("test subject")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


class Bold(str):
    """A table cell shown in bold (the best figure of a column)."""


def _md(cell: str) -> str:
    return f"**{cell}**" if isinstance(cell, Bold) else str(cell)


def _table(header: list[str], rows: list[list[str]], export: list | None = None,
           name: str | None = None) -> list[str]:
    """A Markdown table; with ``export`` and ``name``, also kept for the LaTeX / CSV files."""
    if export is not None and name:
        export.append((name, header, rows))
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]]


def _pct(v: float, best: bool, ci=None, std=None) -> str:
    text = f"{100 * v:.2f}"
    if std is not None:
        text += f" ± {100 * std:.2f}"
    text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""
    return Bold(text) if best else text


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "±": r"$\pm$", "→": r"$\rightarrow$"}


def _latex_text(text: str) -> str:
    text = str(text).replace("`", "")
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def latex_table(header: list[str], rows: list[list[str]], caption: str) -> str:
    """A LaTeX ``tabular`` (booktabs rules) with the best figures in bold."""
    def cell(c):
        return rf"\textbf{{{_latex_text(c)}}}" if isinstance(c, Bold) else _latex_text(c)

    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_text(caption)}}}",
             r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(_latex_text(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(c) for c in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def csv_table(header: list[str], rows: list[list[str]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows([[str(c).replace("`", "") for c in r] for r in rows])
    return buf.getvalue()


def _overlaps(a, b) -> str:
    if not a or not b:
        return "-"
    return "yes" if a[0] <= b[1] and b[0] <= a[1] else "no"


def _run_name(run) -> str:
    return ", ".join(f"`{r}`" for r in run) if isinstance(run, list) else f"`{run}`"


def grid_section(grid: dict, source: Node, figures: Path,
                 export: list | None = None) -> list[str]:
    rows = grid["rows"]
    stem = _slug(source.stem)
    lines = [f"### {grid.get('title') or grid['grid']}", "", f"From `{source}`.", ""]
    if grid["grid"] == "cross_dataset":
        best_uf1 = max(r["uf1"] for r in rows)
        best_uar = max(r["uar"] for r in rows)
        lines += _table(["transfer", "adaptation", "UF1 %", "UAR %", "target clips"],
                        [[f"{r['source'].upper()} → {r['target'].upper()}",
                          "yes" if r["adaptation"] else "no", _pct(r["uf1"], r["uf1"] == best_uf1),
                          _pct(r["uar"], r["uar"] == best_uar), str(r["n_target_clips"])]
                         for r in rows], export, stem)
        return lines + [""]
    best = {k: max(r[k] for r in rows) for k in ("uf1", "uar", "per_fold_mean_uf1",
                                                  "per_fold_mean_uar")}
    top = max(rows, key=lambda r: r["uf1"])
    lines += _table(["row", "UF1 % (all folds) [95 % CI]", "UAR % (all folds) [95 % CI]",
                     "UF1 % (fold mean)", "UAR % (fold mean)", "UF1 CI overlaps best's",
                     "run"],
                    [[r["row"],
                      *(_pct(r[k], r[k] == best[k], r.get(f"{k}_ci95"), r.get(f"{k}_std"))
                        for k in ("uf1", "uar")),
                      *(_pct(r[k], r[k] == best[k]) for k in ("per_fold_mean_uf1",
                                                               "per_fold_mean_uar")),
                      "(best)" if r is top else _overlaps(r.get("uf1_ci95"),
                                                          top.get("uf1_ci95")),
                      _run_name(r["run"])]
                     for r in rows], export, stem)
    seeds = rows[0].get("seeds") if rows else None
    lines += ["", "Best in bold. All folds: UF1/UAR over every fold's predictions concatenated "
                  "(primary), with its 95 % bootstrap interval over test subjects; fold mean: "
                  "the mean of per-fold figures. A row whose interval overlaps the best row's "
                  "is not shown to differ from it."
              + (f" Mean ± standard deviation over {len(seeds)} training seeds."
                 if seeds and len(seeds) > 1 else ""), ""]
    if grid["grid"] == "seeds" and grid.get("combined"):
        c = grid["combined"]
        lines += [f"Over the seeds ({', '.join(map(str, c['seeds']))}): UF1 "
                  f"{_pct(c['uf1'], False, c['uf1_ci95'], c['uf1_std'])}, UAR "
                  f"{_pct(c['uar'], False, c['uar_ci95'], c['uar_std'])} (interval of the "
                  f"mean over seeds).", ""]
    if grid["grid"] == "lora_vs_full" and all("accounting" in r for r in rows):
        acc = [r["accounting"] for r in rows]
        lines += [f"Table 7 columns (S={acc[0]['image_size']}, T={acc[0]['frames']}; training "
                  f"memory: {acc[0]['memory_kind']}; peak RSS: a CPU process taking two "
                  f"training steps, torch included):", ""]
        lines += _table(["row", "trainable params (M)", "params (M)", "GFLOPs/clip fwd",
                         "GFLOPs/clip train", "training memory MB", "peak RSS MB"],
                        [[r["row"], f"{a['trainable_params'] / 1e6:.2f}",
                          f"{a['total_params'] / 1e6:.2f}", f"{a['gflops_forward']:.1f}",
                          f"{a['gflops_train']:.1f}",
                          "-" if a["training_memory_mb"] is None
                          else f"{a['training_memory_mb']:.0f}",
                          "-" if a["peak_rss_mb"] is None else f"{a['peak_rss_mb']:.0f}"]
                         for r, a in zip(rows, acc)], export, f"{stem}_accounting")
        lines.append("")
    if grid["grid"] == "sensitivity":
        png = figures / f"{_slug(source.stem)}_curves.png"
        sensitivity_png(rows, png)
        lines += [f"![sensitivity]({png.parent.name}/{png.name})", ""]
    return lines


def sweep_section(path: Node) -> list[str]:
    """A sweep: what it optimised, what it chose, which subjects it saw, and every trial."""
    sweep = json.loads(path.read_text())
    chosen = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in sweep["best_params"].items())
    lines = [f"### Sweep `{path.parent.name}`", "", f"From `{path}`.", "",
             f"- Objective: {sweep['objective']}. Sweep folds, by test subject: "
             f"{', '.join(sweep['sweep_folds'])}.",
             f"- Chosen: {chosen} (validation UF1 {sweep['best_val_uf1']:.3f}). The run "
             f"`{path.parent.name}-best` (if it was run) tests subjects that took part in this "
             f"search: its figures are search-informed; report a nested search's instead.",
             f"- Subjects the search trained or validated on: "
             f"{', '.join(sweep['search_subjects'])}.", ""]
    trials_file = path.parent / "trials.parquet"
    if not trials_file.is_file():
        return lines + [f"(no `{trials_file.name}` beside it)", ""]
    trials = trials_file.read_parquet()
    order = "trial" if "trial" in trials.columns else "trial_id"  # ties: the earlier trial
    trials = trials.sort([sweep["metric"], order], descending=[True, False], nulls_last=True)
    params = list(sweep["best_params"])
    lines += _table(["trial", *params, "validation UF1", "folds done", "epochs", "error"],
                    [[str(t["trial_id"]),
                      *(f"{t[k]:.4g}" if isinstance(t[k], float) else str(t[k]) for k in params),
                      "" if t[sweep["metric"]] is None else f"{t[sweep['metric']]:.3f}",
                      str(t["folds_done"]), str(t["epochs_done"]), (t["error"] or "")[:80]]
                     for t in trials.iter_rows(named=True)])
    return lines + [""]


def _override(row: dict, key: str) -> float | None:
    for o in row["overrides"]:
        k, _, v = o.partition("=")
        if k == key:
            return float(v)
    return None


def sensitivity_png(rows: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (swept, fixed, value) in zip(axes, (("loss.lambda1", "loss.lambda2", 0.5),
                                                ("loss.lambda2", "loss.lambda1", 0.1))):
        pts = sorted((_override(r, swept), r) for r in rows
                     if r["row"].startswith(swept.split(".")[1] + "=")
                     and _override(r, fixed) == value)
        xs = [x for x, _ in pts]
        ax.plot(xs, [100 * r["uf1"] for _, r in pts], "o-", label="UF1")
        ax.plot(xs, [100 * r["uar"] for _, r in pts], "s--", label="UAR")
        ax.set_xlabel(f"{swept.split('.')[1]} ({fixed.split('.')[1]} = {value})")
        ax.set_ylabel("% (all folds)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


FORMATS = ("md", "latex", "csv")


def write_report(paths: list[str | Path], out: str | Path,
                 formats: tuple[str, ...] = ("md",)) -> Path:
    """report.md (always) and figures; with "latex" / "csv" in ``formats``, every paper-layout
    table (the runs, each grid, Table 7's accounting) also as ``tables/<name>.tex`` / ``.csv``."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; choose from {', '.join(FORMATS)}")
    export: list = []
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    runs, grids, sweeps = find_inputs(paths)
    table = load_runs(runs) if runs else pl.DataFrame()
    grid_data = [(g, json.loads(g.read_text())) for g in grids]
    synthetic = (runs and table["synthetic"].any()) or any(
        r.get("synthetic") for _, g in grid_data for r in g["rows"])
    random_init = (runs and (~table["pretrained"]).any()) or any(
        not r.get("pretrained", True) for _, g in grid_data for r in g["rows"])
    lines = ["# mer-ray report", ""]
    lines.append("- Data: " + ("**SYNTHETIC** (rendered micro-expressions, not a MER dataset) "
                               "in at least one run" if synthetic else "no synthetic runs"))
    lines.append("- Backbone: " + ("**randomly initialised** in at least one run (not comparable "
                                   "to published DinoV2 results)" if random_init
                                   else "pretrained in every run"))
    lines.append("- Primary figures: UF1/UAR over all folds' predictions concatenated; the mean "
                 "over folds is given beside them.")
    lines.append("")
    if runs:
        best_uf1, best_uar = table["uf1"].max(), table["uar"].max()
        lines += ["## Runs", ""]
        lines += _table(
            ["run", "data", "folds", "clips", "UF1 % (all) [95 % CI]", "UAR % (all) [95 % CI]",
             "UF1 % (fold mean)", "UAR % (fold mean)", "pretrained", "synthetic", "config",
             "code"],
            [[f"`{r['run']}`" + (" (shuffled-label control)" if r["control"] else "")
              + (" **SEARCH-INFORMED**" if r["search_informed"] else "")
              + (" (nested search)" if r["nested"] else ""),
              f"{r['dataset']} {r['protocol'] or ''}".strip(), str(r["folds"]), str(r["clips"]),
              _pct(r["uf1"], r["uf1"] == best_uf1, r["uf1_ci95"]),
              _pct(r["uar"], r["uar"] == best_uar, r["uar_ci95"]),
              f"{100 * r['fold_mean_uf1']:.2f}", f"{100 * r['fold_mean_uar']:.2f}",
              "yes" if r["pretrained"] else "NO", "YES" if r["synthetic"] else "no",
              f"`{r['config_hash']}`", f"`{r['code_version']}`"]
             for r in table.iter_rows(named=True)], export, "runs")
        lines.append("")
        if table["search_informed"].any():
            lines += ["**SEARCH-INFORMED**: the run's configuration was chosen by a search that "
                      "trained or validated on its test subjects; its figures are not an "
                      "unbiased estimate. Report a nested search's figures instead.", ""]
        for r in runs:
            s = json.loads((r / "summary.json").read_text())
            slug = _slug(s["name"])
            confusion_png(s, figures / f"{slug}_confusion.png")
            fold_bars_png(s, figures / f"{slug}_folds.png")
            preds = (r / "predictions.parquet").read_parquet()
            per_class = (preds.group_by("label_name").agg(
                clips=pl.len(), correct=(pl.col("label") == pl.col("prediction")).sum())
                .sort("label_name"))
            lines += [f"### `{s['name']}`", "",
                      f"{s['n_folds']} folds, {s['n_clips']} test clips; seed {s['seed']}; "
                      f"backbone {'pretrained' if s['pretrained'] is True else 'random init'}"
                      f" ({s.get('weights_source')}); augmentation: {s.get('augmentation')}.",
                      ""]
            lines += _table(["class", "test clips", "correct", "recall"],
                            [[c["label_name"], str(c["clips"]), str(c["correct"]),
                              f"{c['correct'] / c['clips']:.3f}"]
                             for c in per_class.iter_rows(named=True)])
            if s.get("nested"):
                outer = s["nested"]["outer_folds"]
                lines += ["", f"Nested search: {s['nested']['trials']} configurations per outer "
                              f"fold, each scored on {s['nested']['inner_folds']} inner fold(s); "
                              f"the outer subject never took part in its own search.", ""]
                keys = sorted({k for o in outer.values() for k in o["chosen_params"]})
                lines += _table(["outer subject", *keys, "inner validation UF1",
                                 "subjects searched on"],
                                [[o, *(f"{v['chosen_params'][k]:.4g}"
                                       if isinstance(v["chosen_params"].get(k), float)
                                       else str(v["chosen_params"].get(k)) for k in keys),
                                  f"{v['best_val_uf1']:.3f}", str(len(v["search_subjects"]))]
                                 for o, v in outer.items()])
            per_dataset = s["metrics"].get("per_dataset")
            if per_dataset:
                m = s["metrics"]
                lines += ["", "Composite (MEGC convention): over all predictions, then over each "
                              "source dataset's part.", ""]
                lines += _table(["predictions", "subjects", "clips", "UF1 %", "UAR %"],
                                [["all", str(s["n_folds"]), str(s["n_clips"]),
                                  f"{100 * m['uf1']:.2f}", f"{100 * m['uar']:.2f}"]] +
                                [[ds, str(d["n_subjects"]), str(d["n_clips"]),
                                  f"{100 * d['uf1']:.2f}", f"{100 * d['uar']:.2f}"]
                                 for ds, d in per_dataset.items()])
            lines += ["", f"![confusion](figures/{slug}_confusion.png) "
                          f"![folds](figures/{slug}_folds.png)", ""]
    if grid_data:
        lines += ["## Experiment grids", ""]
        for g, data in grid_data:
            lines += grid_section(data, g, figures, export)
    if sweeps:
        lines += ["## Hyper-parameter sweeps", ""]
        for sw in sweeps:
            lines += sweep_section(sw)
    written = []
    for name, header, rows in export:
        caption = f"{name}: UF1 / UAR in %, best in bold"
        for fmt, suffix in (("latex", "tex"), ("csv", "csv")):
            if fmt in formats:
                path = out / "tables" / f"{name}.{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(latex_table(header, rows, caption) if fmt == "latex"
                                else csv_table(header, rows))
                written.append(path)
    if written:
        lines += ["## Tables for papers", "",
                  *[f"- `{p.relative_to(out)}`" for p in written], ""]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
