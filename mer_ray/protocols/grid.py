"""Grids of LOSO runs: one run per row (a label and the settings it changes on top of the base
configuration), then one table in the paper's layout and a grid file ``mer-ray report`` reads.

Named grids: ``ablation`` (Table 6 rows, then Table A2's: the model variant registry
``model/variants.py``), ``sensitivity`` (Figure 3: lambda1 with lambda2 = 0.5, lambda2 with
lambda1 = 0.1), ``lora-vs-full`` (Table 7: LoRA against full fine-tuning, with the accounting:
trainable parameters, GFLOPs, memory). Any other grid is a YAML file::

    title: Learning rate
    rows:
      - {label: "lr 1e-4", set: [train.lr=1e-4]}
      - {label: "lr 1e-3", set: [train.lr=1e-3]}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..config import ExperimentConfig, load_yaml, parse_override
from ..console import show
from ..data.choice import DataChoice
from ..data.shards import Shards
from ..fitting.device import fold_device, use_gpus
from ..integrity import best, marked, notes, row_flags
from ..model.accounting import model_stats
from ..model.variants import ABLATION, VARIANTS
from .loso import RunOptions, over_seeds, plan_seeded, pm, refuse_clashes, settle, train_planned
from .names import grid_row_namer, seed_names
from .summary import write_grid_file

SENSITIVITY = (0.0, 0.05, 0.1, 0.3, 0.5, 1.0)
NAMED = ("ablation", "sensitivity", "lora-vs-full")


Rows = list[tuple[str, dict]]  # (label, {"section.field": value})


def ablation_rows() -> Rows:
    return [(VARIANTS[v].label, VARIANTS[v].values()) for v in ABLATION]


def sensitivity_rows(values=SENSITIVITY) -> Rows:
    rows = [(f"lambda1={v:g} (lambda2=0.5)", {"loss.lambda1": v, "loss.lambda2": 0.5})
            for v in values]
    rows += [(f"lambda2={v:g} (lambda1=0.1)", {"loss.lambda1": 0.1, "loss.lambda2": v})
             for v in values]
    return rows


# Both rows train from pixels: the frozen-trunk cache does not apply to full fine-tuning.
LORA_VS_FULL = [("LoRA", {"model.finetune": "lora", "train.cache_trunk": False}),
                ("full fine-tuning", {"model.finetune": "full", "train.cache_trunk": False})]


def grid_spec(grid: str, values=SENSITIVITY) -> tuple[Rows, str, str]:
    """(rows, file prefix, title) of a named grid or a grid file."""
    if grid == "ablation":
        return ablation_rows(), "ablation", "Ablation, Table 6 / A2 layout"
    if grid == "sensitivity":
        return sensitivity_rows(values), "sensitivity", "Loss-weight sensitivity (Figure 3)"
    if grid in ("lora-vs-full", "lora_vs_full"):
        return LORA_VS_FULL, "lora_vs_full", "LoRA vs full fine-tuning"
    path = Path(grid)
    if not path.is_file():
        raise FileNotFoundError(f"{grid}: neither a named grid ({', '.join(NAMED)}) nor a grid "
                                f"file (YAML with 'rows: [{{label, set}}]')")
    spec = load_yaml(path)
    rows = spec.get("rows")
    if not isinstance(rows, list) or not rows or not all(
            isinstance(r, dict) and "label" in r for r in rows):
        raise ValueError(f"{path}: expected 'rows:' with a list of {{label: ..., set: [...]}}")
    return ([(str(r["label"]), dict(parse_override(str(s)) for s in r.get("set") or []))
             for r in rows], path.stem, str(spec.get("title") or path.stem))


def accounting(rows: list[GridRow]) -> list[dict]:
    """Table 7's columns for each row, measured before any training (they do not depend on
    it): trainable parameters, GFLOPs per clip, training memory (on a GPU the allocator's peak;
    on a CPU the itemised count beside the peak RSS of a process taking two steps)."""
    out = []
    device = fold_device(use_gpus("auto"))  # this process's: the driver measures
    for row in rows:
        exp = row.exp
        st = model_stats(row.label, exp.model, exp.data.frames, exp.data.size, device=device,
                         rss=device.type == "cpu")
        out.append({"accounting": {
            "trainable_params": st.trainable_params, "total_params": st.total_params,
            "gflops_forward": st.gflops_forward, "gflops_train": st.gflops_train,
            "training_memory_mb": st.peak_memory_mb, "memory_kind": st.memory_kind,
            "peak_rss_mb": st.peak_rss_mb, "frames": exp.data.frames,
            "image_size": exp.data.size}})
    return out


@dataclass(frozen=True)
class GridRow:
    """A row of a grid: its label, the settings it changes and the configuration they resolve
    to (the base file, the recipe of the row's method, the user's --set, then the row's own)."""

    label: str
    settings: dict
    exp: ExperimentConfig


def run_grid(rows: list[GridRow], shards: Shards, opts: RunOptions, prefix: str, title: str,
             names, name: str | None = None,
             row_extras: list[dict] | None = None) -> list[dict]:
    """One LOSO per row, one table (UF1/UAR over all folds' predictions with their interval,
    and the mean over folds; leaky, search-informed, partial and control rows marked), one
    grid file ``<name or prefix>.json`` in the storage. ``names(exp)``: a row's run name
    (``row_namer``)."""
    unique: dict[str, list] = {}  # a row that repeats another reuses its runs
    for row in rows:
        run = names(row.exp)
        if run not in unique:
            unique[run] = plan_seeded(row.exp, shards, opts, run,
                                      {"grid": prefix, "row": row.label,
                                       "row_settings": row.settings})
    summaries = iter(train_planned([p for plans in unique.values() for p in plans], opts,
                                   f"{name or prefix}: {len(rows)} row(s)"))
    results = {}
    for run, plans in unique.items():
        done = [next(summaries) for _ in plans]
        results[run] = over_seeds(done, [p.run.name for p in plans],
                                  plans[0].run.folder.storage, plans[0].run.exp.train.seed)
    out = []
    for row in rows:
        run = names(row.exp)
        res = results[run]
        summary = res["summaries"][0]
        out.append({"row": row.label, "run": run if len(res["runs"]) == 1 else res["runs"],
                    "settings": row.settings, "method": row.exp.model.method,
                    **row_flags(summary),
                    **{k: v for k, v in res.items() if k not in ("runs", "summaries")},
                    "pretrained": summary["pretrained"], "synthetic": summary["synthetic"],
                    "n_folds": summary["n_folds"], **(row_extras[len(out)] if row_extras else {})})
    write_grid_file(opts.storage, f"{name or prefix}.json", prefix, title, out)
    synthetic = " (SYNTHETIC data)" if out and out[0]["synthetic"] else ""
    weights = ", random-init backbone" if out and out[0]["pretrained"] is False else ""
    seeds = f", mean +- std over {opts.seeds} seeds" if opts.seeds > 1 else ""
    top = best(out)
    show(["row", "UF1 % (all folds) [95 % CI]", "UAR % (all folds) [95 % CI]",
          "UF1 % (fold mean)", "UAR % (fold mean)", "folds"],
         [(marked(r["row"], r) + (" (best)" if r is top else ""), pm(r, "uf1"), pm(r, "uar"),
           f"{100 * r['per_fold_mean_uf1']:.2f}", f"{100 * r['per_fold_mean_uar']:.2f}",
           r["n_folds"]) for r in out],
         title=f"{title}{synthetic}{weights}{seeds}")
    for line in notes(out):
        print(line)
    return out


def grid_rows(spec: list[tuple[str, list[str]]], data: DataChoice, configure,
              user_set: set[str]) -> list[GridRow]:
    """Each row's configuration, checked: ``configure(settings)`` resolves the base file,
    the recipe of the method the row chooses, the user's --set and the row's settings."""
    return [GridRow(label, settings, settle(data, configure(settings), user_set))
            for label, settings in spec]


@dataclass(frozen=True)
class GridSpec:
    """A grid, resolved from the command's options: its rows, each resolved to its
    configuration and checked against the data; its file prefix and title; the base
    configuration; the data; the ``--name``."""

    rows: list[GridRow]
    prefix: str
    title: str
    base: ExperimentConfig
    data: DataChoice
    name: str | None = None


def resolve_grid(grid: str, values, data: DataChoice, configure, user_set: set[str],
                 name: str | None) -> GridSpec:
    """The grid the options ask for: ``configure(settings)`` resolves a row's configuration
    (the base file, its method's recipe, the user's --set, the row's settings)."""
    spec, prefix, title = grid_spec(grid, *([values] if values else []))
    base = settle(data, configure({}), user_set)
    return GridSpec(grid_rows(spec, data, configure, user_set), prefix, title, base, data, name)


def run_grid_command(spec: GridSpec, opts: RunOptions, start_ray) -> int:
    """``mer-ray grid``: the rows' run names refused when taken, before ``start_ray``; then
    every row's LOSO and the table."""
    names = grid_row_namer(spec.prefix, spec.name, spec.data, opts.max_folds)
    for row in spec.rows:
        refuse_clashes(spec.data, row.exp, opts.storage,
                       seed_names(names(row.exp), row.exp.train.seed, opts.seeds))
    extras = accounting(spec.rows) if spec.prefix == "lora_vs_full" else None
    start_ray()
    shards = spec.data.prepare(spec.base.data)
    opts = replace(opts, extra={**opts.extra, "data_root": shards.meta.root})
    out = run_grid(spec.rows, shards, opts, spec.prefix, spec.title, names, spec.name, extras)
    if extras:
        lora_vs_full_table(out)
    return 0


def lora_vs_full_table(rows: list[dict]) -> None:
    """Table 7's layout: the accounting beside each row's UF1/UAR."""
    acc = [r["accounting"] for r in rows]
    show(["", "trainable (M)", "params (M)", "GFLOPs/clip fwd", "GFLOPs/clip train",
          "training memory MB", "peak RSS MB (CPU process)", "UF1 % (all folds)",
          "UAR % (all folds)"],
         [(r["row"], f"{a['trainable_params'] / 1e6:.2f}", f"{a['total_params'] / 1e6:.2f}",
           f"{a['gflops_forward']:.1f}", f"{a['gflops_train']:.1f}",
           f"{a['training_memory_mb']:.0f} ({a['memory_kind']})",
           "-" if a["peak_rss_mb"] is None else f"{a['peak_rss_mb']:.0f}",
           f"{100 * r['uf1']:.2f}", f"{100 * r['uar']:.2f}") for r, a in zip(rows, acc)],
         title=f"Table 7 layout, S={acc[0]['image_size']}, T={acc[0]['frames']}")
