"""``mer-ray compare``: methods x datasets on the same folds, one table.

Every method runs as its own LOSO run on the same shards, with the same seed, so the same folds
and validation subjects; all their folds go to the fold runner as one list of jobs (the slots
start once). Per dataset, the table gives each method's UF1 / UAR over all folds' predictions
with their 95 % bootstrap intervals over test subjects, the paired bootstrap interval of its
difference from the best method (each resample scores both on the same subjects; "excludes 0"
says the difference is not just which subjects happened to be tested), its trainable
parameters and its compute seconds per fold. On the MEGC composite, each source dataset's
part too.

A method's configuration is the base configuration, then the method's own recipe (its
registry entry), then the user's ``--set``. When a method reads optical flow, every method's
shards carry it (``data.flow``, TV-L1 unless ``--flow`` says otherwise): one shard folder, the
same clips for all.

``with_leaky`` also runs every method with ``train.selection=test`` (each fold's epoch chosen on
its test subject: the common protocol) and shows both figures and the difference; a leaky run is
never the best, nor any figure the table calls honest.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

from ..config import ExperimentConfig
from ..console import show
from ..data.shards import Shards
from ..methods import METHODS, load_with_recipe, method_named
from ..metrics import paired_difference
from ..train.fold_jobs import loso_jobs
from ..train.run_folder import RunFolder
from ..train.runner import run_jobs
from .data import DataChoice
from .loso import LosoRun, RunOptions, plan_loso, refuse_clashes, run_name, settle
from .summary import subject_predictions, summarise_run


@dataclass
class Entry:
    """One run of the comparison: a method (honest or leaky) on a dataset."""

    dataset: str
    method: str
    leaky: bool
    exp: ExperimentConfig
    name: str
    run: LosoRun | None = None
    summary: dict | None = None


def method_config(base_file, overrides: list[str], method: str, flow: str | None,
                  leaky: bool) -> ExperimentConfig:
    """Base file, then the method's recipe, then the user's overrides."""
    exp = load_with_recipe(base_file, [f"model.method={method}", *overrides])
    values = {"data.flow": flow} if flow else {}
    if leaky:
        values["train.selection"] = "test"
    return exp.with_values(values) if values else exp


def plan_entries(methods: list[str], data: dict[str, DataChoice], base_file, overrides,
                 user_set: set[str], storage: str, prefix: str, with_leaky: bool,
                 max_folds: int | None) -> list[Entry]:
    """Every (dataset, method, protocol) run, checked and named, its name refused when the
    folder holds another run; before Ray starts."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; registered: {', '.join(METHODS)}")
    flow = next((o.partition("=")[2] for o in overrides if o.startswith("data.flow=")), None)
    if flow is None and any(method_named(m).needs_flow for m in methods):
        flow = "tvl1"
    entries = []
    for ds, choice in data.items():
        for method in methods:
            for leaky in (False, True) if with_leaky else (False,):
                exp = settle(choice, method_config(base_file, overrides, method, flow, leaky),
                             user_set)
                tag = f"{method}-leaky" if leaky else method
                name = run_name(choice, exp, max_folds, prefix=f"{prefix}-{tag}-")
                refuse_clashes(choice, exp, storage, [name])
                entries.append(Entry(ds, method, leaky, exp, name))
    return entries


def train_entries(entries: list[Entry], shards: dict[str, Shards], opts: RunOptions,
                  folder: RunFolder) -> None:
    """Every entry's folds as one list of jobs through the fold runner; the paper model's
    trunk tokens computed while the slots start."""
    from .loso import shared_tokens

    for e in entries:
        e.run = plan_loso(shards[e.dataset], e.exp, opts.storage_path, e.name, opts.max_folds)
    todo = sum(len(e.run.todo()) for e in entries)

    def jobs():
        out = []
        for e in entries:
            tokens = shared_tokens(e.run, False, 1) if opts.local else \
                shared_tokens(e.run, _gpu(e.exp), _slots(e.exp))
            out += loso_jobs(e.run.plan(tokens), e.run.folds)
        return out

    base = entries[0].exp.train
    run_jobs(jobs if not opts.local else jobs(), base, local=opts.local, folder=folder,
             title=f"{folder.name}: {len(entries)} run(s)", expected=todo)


def _gpu(exp: ExperimentConfig) -> bool:
    from ..train.device import use_gpus

    return use_gpus(exp.train.use_gpu, on_ray=True)


def _slots(exp: ExperimentConfig) -> int:
    from ..train.slots import fold_slots

    return fold_slots(exp.train, _gpu(exp))


def _row(e: Entry, best: Entry | None, honest: Entry | None) -> dict:
    """A table row: the entry's figures, and its paired difference from ``best`` (an honest
    method) or, for a leaky entry, from its own honest run."""
    s, m = e.summary, e.summary["metrics"]
    classes = range(len(s["class_names"]))
    storage = e.run.folder.storage
    row = {"dataset": e.dataset, "method": e.method, "leaky": e.leaky, "run": e.name,
           **{k: m[k] for k in ("uf1", "uar", "uf1_ci95", "uar_ci95", "per_fold_mean_uf1",
                                "per_fold_mean_uar")},
           "parameters": method_named(e.method).parameters(e.exp, len(s["class_names"])),
           "seconds_per_fold": statistics.mean(f["worker_seconds"] for f in s["folds"]),
           "synthetic": s["synthetic"], "pretrained": s["pretrained"],
           "per_dataset": m.get("per_dataset")}
    other = honest if e.leaky else best
    if other is not None and other is not e:
        diff = paired_difference(subject_predictions(storage, e.name),
                                 subject_predictions(storage, other.name), classes,
                                 seed=e.exp.train.seed)
        row["versus"] = other.method + (" (honest)" if e.leaky else "")
        row["difference"] = {k: diff[k] for k in ("uf1", "uar")}
    return row


def compare_rows(entries: list[Entry]) -> list[dict]:
    """The table's rows: per dataset, the honest runs (the best first compared with none),
    then the leaky runs, each against its method's honest run."""
    rows = []
    for ds in dict.fromkeys(e.dataset for e in entries):
        honest = [e for e in entries if e.dataset == ds and not e.leaky]
        best = max(honest, key=lambda e: (e.summary["metrics"]["uf1"], -honest.index(e)))
        for e in honest:
            rows.append({**_row(e, best, None), "best": e is best})
        for e in (e for e in entries if e.dataset == ds and e.leaky):
            own = next(h for h in honest if h.method == e.method)
            rows.append({**_row(e, None, own), "best": False})
    return rows


def _diff(row: dict, key: str) -> str:
    d = row.get("difference")
    if not d:
        return "(best)" if row.get("best") else "-"
    lo, hi = d[key]["ci95"]
    return (f"{100 * d[key]['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
            + (" *" if d[key]["excludes_zero"] else ""))


def show_table(rows: list[dict], title: str) -> None:
    def pct(v, ci):
        return f"{100 * v:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else f"{100 * v:.1f}"

    show(["dataset", "method", "UF1 % [95 % CI]", "UAR % [95 % CI]", "UF1 diff [paired CI]",
          "UAR diff [paired CI]", "versus", "params", "s/fold"],
         [(r["dataset"], r["method"] + (" LEAKY" if r["leaky"] else ""),
           pct(r["uf1"], r["uf1_ci95"]), pct(r["uar"], r["uar_ci95"]), _diff(r, "uf1"),
           _diff(r, "uar"), r.get("versus", ""), f"{r['parameters']:,}",
           f"{r['seconds_per_fold']:.1f}") for r in rows], title=title)
    print("UF1/UAR over all folds' predictions; diff: this row minus 'versus' on the same test "
          "subjects (* the paired 95 % interval excludes 0); LEAKY rows chose each fold's "
          "epoch on its test subject and are never a method's honest figure")


def compare_command(methods: list[str], datasets: list[str], roots: list[str], protocol: str,
                    workdir, synthetic, base_file, overrides: list[str], user_set: set[str],
                    opts: RunOptions, name: str | None, with_leaky: bool, start_ray) -> list[dict]:
    """Everything checked and every run named before ``start_ray``; then the shards, every
    run's folds at once, their summaries, and the table (``<storage>/<name>.json`` for
    ``mer-ray report``)."""
    from .data import SYNTH_SEEDS
    from .transfer import parse_roots

    given = parse_roots(roots)
    datasets = list(dict.fromkeys(datasets or ["samm"]))
    data = {ds: DataChoice(ds, protocol, given.get(ds), None, None, synthetic, workdir,
                           seed=synthetic.seed + (SYNTH_SEEDS.get(ds, 0) if len(datasets) > 1
                                                  else 0))
            for ds in datasets}
    prefix = name or "compare"
    entries = plan_entries(methods, data, base_file, overrides, user_set, opts.storage_path,
                           prefix, with_leaky, opts.max_folds)
    start_ray()
    shards = {ds: data[ds].prepare(next(e.exp for e in entries if e.dataset == ds).data)
              for ds in datasets}
    folder = RunFolder.open(opts.storage_path, prefix)
    train_entries(entries, shards, opts, folder)
    for e in entries:
        e.summary = summarise_run(e.run.view(), {**opts.extra, "compare": prefix})
    rows = compare_rows(entries)
    title = (f"{prefix}: {len(methods)} method(s) on the same folds"
             + (" (SYNTHETIC data)" if rows and rows[0]["synthetic"] else ""))
    folder.storage.write_atomic(json.dumps(
        {"grid": "compare", "title": title, "methods": methods, "datasets": datasets,
         "with_leaky": with_leaky, "rows": rows}, indent=1, default=str).encode(),
        f"{prefix}.json")
    show_table(rows, title)
    for r in rows:
        for part, d in (r.get("per_dataset") or {}).items():
            print(f"  {r['method']}{' LEAKY' if r['leaky'] else ''} on the {part} part: "
                  f"UF1 {100 * d['uf1']:.1f}, UAR {100 * d['uar']:.1f} ({d['n_clips']} clips)")
    return rows
