"""The report's sections: the header, the runs table, one section per run, per grid and per
sweep. Each returns Markdown lines; tables meant for papers are also appended to ``export``."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..console import params_text
from ..integrity import best, is_ranked, notes
from .figures import confusion_png, fold_bars_png, intervals_png, sensitivity_png
from .inputs import Node
from .tables import Figure, md_table, named, num, pct, slug


def is_top(rows: list[dict], row: dict, key: str) -> bool:
    """Whether ``row`` holds the best ``key`` among the rows that may be ranked (ties: all of
    them): the cells shown in bold."""
    top = best(rows, key)
    return top is not None and is_ranked(row) and row[key] == top[key]


def _overlaps(a, b) -> str:
    if not a or not b:
        return "-"
    return "yes" if a[0] <= b[1] and b[0] <= a[1] else "no"


def _run_name(run) -> str:
    return ", ".join(f"`{r}`" for r in run) if isinstance(run, list) else f"`{run}`"


def _difference(row: dict, key: str) -> str:
    """The row's paired difference as a table cell (its numbers kept for CSV)."""
    d = row.get("difference")
    if not d:
        return "(best)" if row.get("best") and is_ranked(row) else "-"
    lo, hi = d[key]["ci95"]
    text = f"{100 * d[key]['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    if "p_holm" in d[key]:
        text += f" Holm p={d[key]['p_holm']:.3f}" + (" (differs)" if d[key]["differs"] else "")
    elif d[key].get("excludes_zero"):
        text += " (excludes 0)"
    cell = Figure(text)
    cell.value, cell.std, cell.ci, cell.best = d[key]["difference"], None, (lo, hi), False
    return cell


def compare_section(grid: dict, stem: str, export: list | None,
                    figures: Path | None = None) -> list[str]:
    """``mer-ray compare``: methods on the same folds; leaky rows marked, never ranked."""
    rows = grid["rows"]
    seeds = grid.get("seeds") or 1

    def top(r):
        return bool(r.get("best")) and is_ranked(r)

    lines = md_table(
        ["dataset", "method", "UF1 % [95 % CI]", "UAR % [95 % CI]", "UF1 difference [95 % CI]",
         "UAR difference [95 % CI]", "versus", "trainable params", "seconds / fold"],
        [[r["dataset"], named(r["method"], r),
          pct(r["uf1"], top(r), r["uf1_ci95"], r.get("uf1_std")),
          pct(r["uar"], top(r), r["uar_ci95"], r.get("uar_std")),
          _difference(r, "uf1"), _difference(r, "uar"), r.get("versus", ""),
          num(r["parameters"]), num(r["seconds_per_fold"], ".1f")] for r in rows],
        export, stem)
    if seeds > 1:
        lines += ["", f"UF1 of each of the {seeds} training seeds:", ""]
        lines += md_table(["dataset", "method", *(f"seed {s}" for s in rows[0]["seeds"])],
                          [[r["dataset"], named(r["method"], r),
                            *(f"{100 * v:.2f}" for v in r["uf1_per_seed"])] for r in rows])
    lines += ["", "The best method that may be ranked in bold. " + " ".join(
        grid.get("notes") or []), ""]
    if figures is not None:
        for ds in dict.fromkeys(r["dataset"] for r in rows):
            png = figures / f"{stem}_{slug(ds)}_uf1.png"
            intervals_png([r for r in rows if r["dataset"] == ds], png,
                          f"{grid.get('title') or stem}: {ds}")
            lines += [f"![UF1 per method]({png.parent.name}/{png.name}) (vector: "
                      f"[SVG]({png.parent.name}/{png.with_suffix('.svg').name}))", ""]
    parts = [(r, ds, d) for r in rows for ds, d in (r.get("per_dataset") or {}).items()]
    if parts:
        lines += md_table(["dataset part", "method", "UF1 %", "UAR %", "clips"],
                          [[ds, named(r["method"], r),
                            f"{100 * d['uf1']:.1f}", f"{100 * d['uar']:.1f}",
                            str(d["n_clips"])] for r, ds, d in parts]) + [""]
    return lines


def grid_section(grid: dict, source: Node, figures: Path,
                 export: list | None = None) -> list[str]:
    rows = grid["rows"]
    stem = slug(source.stem)
    lines = [f"### {grid.get('title') or grid['grid']}", "", f"From `{source}`.", ""]
    if grid["grid"] == "compare":
        return lines + compare_section(grid, stem, export, figures)
    if grid["grid"] == "compare_aus":
        from .au_sections import au_compare_section

        return lines + au_compare_section(grid, stem, export)
    if grid["grid"] == "cross_dataset":
        lines += md_table(["transfer", "adaptation", "UF1 %", "UAR %", "target clips"],
                          [[named(f"{r['source'].upper()} → {r['target'].upper()}", r),
                            "yes" if r["adaptation"] else "no",
                            pct(r["uf1"], is_top(rows, r, "uf1")),
                            pct(r["uar"], is_top(rows, r, "uar")), str(r["n_target_clips"])]
                           for r in rows], export, stem)
        return lines + [""] + _notes(rows)
    top = best(rows, "uf1")
    lines += md_table(["row", "UF1 % (all folds) [95 % CI]", "UAR % (all folds) [95 % CI]",
                       "UF1 % (fold mean)", "UAR % (fold mean)", "UF1 CI overlaps best's",
                       "run"],
                      [[named(r["row"], r),
                        *(pct(r[k], is_top(rows, r, k), r.get(f"{k}_ci95"), r.get(f"{k}_std"))
                          for k in ("uf1", "uar")),
                        *(pct(r[k], is_top(rows, r, k)) for k in ("per_fold_mean_uf1",
                                                                   "per_fold_mean_uar")),
                        "(best)" if r is top else
                        _overlaps(r.get("uf1_ci95"), top.get("uf1_ci95")) if top and
                        is_ranked(r) else "-",
                        _run_name(r["run"])]
                       for r in rows], export, stem)
    seeds = rows[0].get("seeds") if rows else None
    lines += ["", "Best in bold (among the rows that may be ranked). All folds: UF1/UAR over "
                  "every fold's predictions concatenated (primary), with its 95 % bootstrap "
                  "interval over test subjects; fold mean: the mean of per-fold figures. A row "
                  "whose interval overlaps the best row's is not shown to differ from it."
              + (f" Mean ± standard deviation over {len(seeds)} training seeds."
                 if seeds and len(seeds) > 1 else ""), "", *_notes(rows)]
    if grid["grid"] == "seeds" and grid.get("combined"):
        c = grid["combined"]
        lines += [f"Over the seeds ({', '.join(map(str, c['seeds']))}): UF1 "
                  f"{pct(c['uf1'], False, c['uf1_ci95'], c['uf1_std'])}, UAR "
                  f"{pct(c['uar'], False, c['uar_ci95'], c['uar_std'])} (interval of the "
                  f"mean over seeds).", ""]
    if grid["grid"] == "lora_vs_full" and all("accounting" in r for r in rows):
        acc = [r["accounting"] for r in rows]
        lines += [f"Table 7 columns (S={acc[0]['image_size']}, T={acc[0]['frames']}; training "
                  f"memory: {acc[0]['memory_kind']}; peak RSS: a CPU process taking two "
                  f"training steps, torch included):", ""]
        lines += md_table(["row", "trainable params (M)", "params (M)", "GFLOPs/clip fwd",
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
        png = figures / f"{slug(source.stem)}_curves.png"
        sensitivity_png(rows, png)
        lines += [f"![sensitivity]({png.parent.name}/{png.name})", ""]
    return lines


def sweep_section(path: Node) -> list[str]:
    """A sweep: what it optimised, what it chose, which subjects it saw, and every trial."""
    sweep = path.read_json()
    chosen = params_text(sweep["best_params"])
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
    lines += md_table(["trial", *params, "validation UF1", "folds done", "epochs", "error"],
                    [[str(t["trial_id"]),
                      *(f"{t[k]:.4g}" if isinstance(t[k], float) else str(t[k]) for k in params),
                      "" if t[sweep["metric"]] is None else f"{t[sweep['metric']]:.3f}",
                      str(t["folds_done"]), str(t["epochs_done"]), (t["error"] or "")[:80]]
                     for t in trials.iter_rows(named=True)])
    return lines + [""]


def header(synthetic: bool, random_init: bool) -> list[str]:
    return ["# mer-ray report", "",
            "- Data: " + ("**SYNTHETIC** (rendered micro-expressions, not a MER dataset) in at "
                          "least one run" if synthetic else "no synthetic runs"),
            "- Backbone: " + ("**randomly initialised** in at least one run (not comparable "
                              "to published DinoV2 results)" if random_init
                              else "pretrained in every run"),
            "- Primary figures: UF1/UAR over all folds' predictions concatenated; the mean "
            "over folds is given beside them.", ""]


def _notes(rows) -> list[str]:
    """What each integrity mark in ``rows`` means, a line each (none when no row has one)."""
    found = notes(list(rows))
    return [*(f"- {line}" for line in found), ""] if found else []


def runs_section(table: pl.DataFrame, export: list) -> list[str]:
    """Every run in one table; the best figures among the runs that may be ranked in bold."""
    rows = list(table.iter_rows(named=True))
    lines = ["## Runs", ""]
    lines += md_table(
        ["run", "data", "folds", "clips", "UF1 % (all) [95 % CI]", "UAR % (all) [95 % CI]",
         "UF1 % (fold mean)", "UAR % (fold mean)", "method", "backbone", "synthetic",
         "config", "code"],
        [[named(f"`{r['run']}`" + (" (nested search)" if r["nested"] else ""), r),
          f"{r['dataset']} {r['protocol'] or ''}".strip(), num(r["folds"]), num(r["clips"]),
          pct(r["uf1"], is_top(rows, r, "uf1"), r["uf1_ci95"]),
          pct(r["uar"], is_top(rows, r, "uar"), r["uar_ci95"]),
          pct(r["fold_mean_uf1"], False), pct(r["fold_mean_uar"], False),
          r["method"], r["backbone"], "YES" if r["synthetic"] else "no",
          f"`{r['config_hash']}`", f"`{r['code_version']}`"]
         for r in rows], export, "runs")
    return lines + [""] + _notes(rows)


def _nested_lines(s: dict) -> list[str]:
    outer = s["nested"]["outer_folds"]
    lines = ["", f"Nested search: {s['nested']['trials']} configurations per outer fold, each "
                 f"scored on {s['nested']['inner_folds']} inner fold(s); the outer subject "
                 f"never took part in its own search.", ""]
    keys = sorted({k for o in outer.values() for k in o["chosen_params"]})
    return lines + md_table(
        ["outer subject", *keys, "inner validation UF1", "subjects searched on"],
        [[o, *(f"{v['chosen_params'][k]:.4g}" if isinstance(v["chosen_params"].get(k), float)
               else str(v["chosen_params"].get(k)) for k in keys),
          f"{v['best_val_uf1']:.3f}", str(len(v["search_subjects"]))]
         for o, v in outer.items()])


def _composite_lines(s: dict) -> list[str]:
    m = s["metrics"]
    lines = ["", "Composite (MEGC convention): over all predictions, then over each source "
                 "dataset's part.", ""]
    return lines + md_table(
        ["predictions", "subjects", "clips", "UF1 %", "UAR %"],
        [["all", str(s["n_folds"]), str(s["n_clips"]), f"{100 * m['uf1']:.2f}",
          f"{100 * m['uar']:.2f}"]] +
        [[ds, str(d["n_subjects"]), str(d["n_clips"]), f"{100 * d['uf1']:.2f}",
          f"{100 * d['uar']:.2f}"] for ds, d in m["per_dataset"].items()])


def run_section(run: Node, figures: Path) -> list[str]:
    """One run: its setting, per-class recall, its search or composite parts, its figures."""
    s = (run / "summary.json").read_json()
    name = slug(s["name"])
    confusion_png(s, figures / f"{name}_confusion.png")
    fold_bars_png(s, figures / f"{name}_folds.png")
    preds = (run / "predictions.parquet").read_parquet()
    per_class = (preds.group_by("label_name").agg(
        clips=pl.len(), correct=(pl.col("label") == pl.col("prediction")).sum())
        .sort("label_name"))
    lines = [f"### `{s['name']}`", "",
             f"{s['n_folds']} folds, {s['n_clips']} test clips; seed {s['seed']}; backbone "
             f"{ {True: 'pretrained', False: 'random init', None: 'none'}.get(s['pretrained'], 'mixed')} "
             f"({s.get('weights_source')}); method {s.get('method', 'mer')}; augmentation: "
             f"{s.get('augmentation')}.", ""]
    lines += md_table(["class", "test clips", "correct", "recall"],
                      [[c["label_name"], str(c["clips"]), str(c["correct"]),
                        f"{c['correct'] / c['clips']:.3f}"]
                       for c in per_class.iter_rows(named=True)])
    if s.get("nested"):
        lines += _nested_lines(s)
    if s["metrics"].get("per_dataset"):
        lines += _composite_lines(s)
    return lines + ["", f"![confusion](figures/{name}_confusion.png) "
                        f"![folds](figures/{name}_folds.png)", ""]
