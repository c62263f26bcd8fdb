"""``mer-ray compare``: methods x datasets on the same folds, one table.

Every method runs as its own LOSO run on the same shards, with the same seeds, so the same
folds and validation subjects (validation subjects are drawn per training seed, the same for
every method); all their folds go to the fold runner as one list of jobs (the slots start
once). With ``--seeds N`` each method is trained with N seeds (``train.seed``, +1, ...).

Per dataset, the table gives each method's UF1 / UAR over all folds' predictions (the mean
over seeds, each seed's figure, their spread) with a 95 % bootstrap interval that resamples
test subjects (and, with several seeds, the seeds too); the paired bootstrap interval of its
difference from the best method (each resample scores both methods on the same subjects and
seeds, over one class set); the two-sided bootstrap p-value of that difference, Holm-adjusted
over the methods compared with the best (the family: every method against the best, per
dataset and figure), and whether it falls below 0.05 (the chance of calling any method
different when none is stays at most 5 %); its trainable parameters and compute seconds per
fold. With one seed, the intervals cover which subjects were tested, not training randomness,
and the table says so. On the MEGC composite, each source dataset's part too. The bootstrap's
seed and resample count are written into the comparison file.

A method's configuration is the base configuration, then the method's own recipe (its
registry entry), then the user's ``--set``. When a method reads optical flow, every method's
shards carry it (``data.flow``, TV-L1 unless ``--flow`` says otherwise): one shard folder, the
same clips for all. The base configuration must be honest (``train.selection=validation``):
``--with-leaky`` adds the leaky protocol, each method also with ``train.selection=test`` (each
fold's epoch chosen on its test subject), shown beside its honest run with the difference (the
leak), marked LEAKY, and never the best nor compared with it (``integrity.py``).
``--with-controls`` adds each method with shuffled training labels (CONTROL), shown after them
against its honest run (on CD6ME: against the constant predictor), never the best.
With ``--protocol cd6me`` the rows are scored as action-unit detectors (``au_compare.py``).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import ExperimentConfig
from ..data.choice import DataChoice
from ..data.labels import is_multilabel
from ..data.shards import Shards
from ..integrity import best, is_ranked, marked, refuse_leaky, row_flags
from ..methods import METHODS, load_with_recipe, method_named
from ..metrics import bootstrap_interval, holm, paired_difference
from ..storage import Storage
from ..train.folder import RunFolder
from ..train.jobs import loso_jobs
from ..train.runner import run_planned
from .compare_text import ALPHA, show_table, table_notes
from .loso import LosoRun, RunOptions, plan_loso, planned, refuse_clashes, settle
from .names import run_name, seed_names, seeded
from .summary import subject_predictions, summarise_run, write_grid_file

RESAMPLES = 1000  # bootstrap resamples of every interval and difference


@dataclass(frozen=True)
class CompareSpec:
    """What a comparison is, resolved from the command's options before Ray starts."""

    methods: tuple[str, ...]
    data: dict[str, DataChoice]  # dataset -> its data
    base_file: Path | None = None
    settings: dict = field(default_factory=dict)  # the user's, parsed at the door
    user_set: frozenset[str] = frozenset()
    name: str = "compare"
    with_leaky: bool = False
    seeds: int = 1
    with_controls: bool = False  # also each method with shuffled training labels


@dataclass
class Entry:
    """One run of the comparison: a method (honest or leaky) on a dataset, with one seed."""

    dataset: str
    method: str
    leaky: bool
    seed: int
    exp: ExperimentConfig
    name: str
    seeded: bool = False  # one of several seeds' runs
    control: bool = False  # a shuffled-label control (train.shuffle_labels)
    run: LosoRun | None = None
    summary: dict | None = None
    storage: Storage | None = None  # a stored run's (``stored_entries``): where it lives
    group: int | None = None  # stored runs: which table row (the seeds of one row share it)

    @property
    def store(self) -> Storage:
        return self.storage if self.storage is not None else self.run.folder.storage

    @property
    def tag(self) -> str:
        """The entry's part of its folds' job keys and progress lines: the method, leaky or
        not, and the seed when there are several (keys never repeat across entries)."""
        tag = self.method + ("-leaky" if self.leaky else "") + ("-control" if self.control
                                                                else "")
        return seeded(tag, self.seed) if self.seeded else tag


@dataclass
class Group:
    """An entry's runs over the seeds: what one table row is made of."""

    entries: list[Entry] = field(default_factory=list)

    @property
    def first(self) -> Entry:
        return self.entries[0]


def method_config(base_file, settings: dict, method: str, flow: str | None,
                  leaky: bool) -> ExperimentConfig:
    """Base file, then the method's recipe, then the user's settings; the flow every method's
    shards carry, and the leaky protocol for a leaky entry."""
    extra = {"model.method": method, **({"data.flow": flow} if flow else {}),
             **({"train.selection": "test"} if leaky else {})}
    return load_with_recipe(base_file, settings, extra)


def _flow(spec: CompareSpec) -> str | None:
    """The flow every method's shards carry: the configuration's, else TV-L1 when a method
    reads flow, else none."""
    base = load_with_recipe(spec.base_file, spec.settings)
    if base.data.flow is None and any(method_named(m).needs_flow for m in spec.methods):
        return "tvl1"
    return base.data.flow


def plan_entries(spec: CompareSpec, storage: Storage, max_folds: int | None) -> list[Entry]:
    """Every (dataset, method, protocol, seed) run, checked and named, its name refused when
    the folder holds another run; before Ray starts. A leaky base configuration is refused:
    the honest rows must be honest."""
    unknown = [m for m in spec.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; registered: {', '.join(METHODS)}")
    refuse_leaky(load_with_recipe(spec.base_file, spec.settings), "mer-ray compare",
                 "remove it from --set / --config, and add --with-leaky to show the leaky "
                 "protocol beside each method's honest run")
    flow = _flow(spec)
    entries = []
    kinds = [(False, False), *([(True, False)] if spec.with_leaky else []),
             *([(False, True)] if spec.with_controls else [])]
    for ds, choice in spec.data.items():
        for method in spec.methods:
            for leaky, control in kinds:
                exp = settle(choice, method_config(spec.base_file, spec.settings,
                                                   method, flow, leaky), set(spec.user_set))
                if control:
                    exp = exp.with_values({"train.shuffle_labels": True})
                tag = method + ("-leaky" if leaky else "") + ("-control" if control else "")
                name = run_name(choice, exp, max_folds, prefix=f"{spec.name}-{tag}-")
                runs = seed_names(name, exp.train.seed, spec.seeds)
                for seed, run in zip(range(exp.train.seed, exp.train.seed + len(runs)), runs):
                    seeded_exp = exp.with_values({"train.seed": seed})
                    refuse_clashes(choice, seeded_exp, storage, [run])
                    entries.append(Entry(ds, method, leaky, seed, seeded_exp, run,
                                         spec.seeds > 1, control=control))
    return entries


def groups(entries: list[Entry]) -> list[Group]:
    """The entries by (dataset, method, protocol), seeds in order."""
    out: dict[tuple, Group] = {}
    for e in entries:
        out.setdefault((e.dataset, e.method, e.leaky, e.control, e.group),
                       Group()).entries.append(e)
    return list(out.values())


def train_entries(entries: list[Entry], shards: dict[str, Shards], opts: RunOptions,
                  folder: RunFolder) -> None:
    """Every entry's folds through the runner at once (their keys carry the entry's tag): one
    slot pool, the paper model's trunk tokens made once per shards and configuration."""
    for e in entries:
        e.run = plan_loso(shards[e.dataset], e.exp, opts.storage, e.name, opts.max_folds)
    runs = []
    for e in entries:
        plan = planned(e.run)
        runs.append(replace(plan, jobs=lambda tokens, e=e: loso_jobs(e.run.plan(tokens),
                                                                     e.run.folds, tag=e.tag)))
    run_planned(runs, local=opts.local, folder=folder,
                title=f"{folder.name}: {len(entries)} run(s)")


def _predictions(g: Group) -> list[dict]:
    return [subject_predictions(x.store, x.name) for x in g.entries]


def _figures(g: Group, seed: int) -> dict:
    """A group's figures: per seed, their mean and spread, and the interval of the mean
    (subjects and seeds resampled together)."""
    sums = [e.summary for e in g.entries]
    classes = range(len(sums[0]["class_names"]))
    ci = bootstrap_interval(_predictions(g), classes, RESAMPLES, seed, resample_runs=True)
    out = {}
    for key in ("uf1", "uar", "per_fold_mean_uf1", "per_fold_mean_uar"):
        vals = [s["metrics"][key] for s in sums]
        out[key] = statistics.mean(vals)
        out[f"{key}_per_seed"] = vals
        out[f"{key}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
    out["uf1_ci95"], out["uar_ci95"] = ci["uf1"], ci["uar"]
    parts: dict[str, dict] = {}
    for s in sums:
        for ds, d in (s["metrics"].get("per_dataset") or {}).items():
            parts.setdefault(ds, []).append(d)
    out["per_dataset"] = {ds: {"uf1": statistics.mean(d["uf1"] for d in got),
                               "uar": statistics.mean(d["uar"] for d in got),
                               "n_clips": got[0]["n_clips"]}
                          for ds, got in parts.items()} or None
    return out


def _row(g: Group, seed: int) -> dict:
    """A table row: the group's figures, marks and costs (its difference is added later)."""
    e, s = g.first, g.first.summary
    return {"dataset": e.dataset, "method": e.method, **row_flags(s),
            "runs": [x.name for x in g.entries], "run": e.name,
            "seeds": [x.seed for x in g.entries], **_figures(g, seed),
            "parameters": parameters(e.method, e.exp, len(s["class_names"])),
            "seconds_per_fold": statistics.mean(f["worker_seconds"] for x in g.entries
                                                for f in x.summary["folds"])
            if all(f["worker_seconds"] is not None for x in g.entries
                   for f in x.summary["folds"]) else None,
            "synthetic": s["synthetic"], "pretrained": s["pretrained"]}


_COUNTED: dict[str, int] = {}


def parameters(method: str, exp: ExperimentConfig | None, classes: int) -> int | None:
    """A method's trainable parameters (None for a scored file: mer-ray did not build it),
    counted once per model and frame settings (the paper model's count builds the model)."""
    if exp is None or method not in METHODS:
        return None
    key = json.dumps([method, exp.to_dict()["model"], exp.to_dict()["data"], classes],
                     sort_keys=True, default=str)
    if key not in _COUNTED:
        _COUNTED[key] = method_named(method).parameters(exp, classes)
    return _COUNTED[key]


def _difference(g: Group, other: Group, seed: int) -> dict:
    classes = range(len(g.first.summary["class_names"]))
    diff = paired_difference(_predictions(g), _predictions(other), classes, RESAMPLES, seed)
    return {k: diff[k] for k in ("uf1", "uar")}


def compare_rows(entries: list[Entry], seed: int = 0) -> list[dict]:
    """The table's rows: per dataset, the honest methods (the best first compared with none;
    the others' differences from it, Holm-adjusted over them), then the leaky runs, each
    against its method's honest run (the leak), never against the best."""
    rows = []
    for ds in dict.fromkeys(e.dataset for e in entries):
        gs = [g for g in groups(entries) if g.first.dataset == ds]
        made = [(g, _row(g, seed)) for g in gs]
        # a control is never the best beside methods (a table of controls only ranks them)
        top = best([r for _, r in made if not r["control"]] or [r for _, r in made])
        top_group = next((g for g, r in made if r is top), None)
        family = []
        for g, r in made:
            r["best"] = r is top
            own = next((h for h, hr in made if h.first.method == g.first.method
                        and not hr["leaky"] and not hr["control"]), None)
            if r["leaky"] or (r["control"] and own is not None):
                if own is not None:
                    r["versus"] = f"{g.first.method} (honest)"
                    r["difference"] = _difference(g, own, seed)
                    r["difference_kind"] = "the leak: this leaky run minus its honest run" \
                        if r["leaky"] else "this control minus its method's honest run"
            elif top is not None and r is not top and is_ranked(r):
                r["versus"] = top["method"]
                r["difference"] = _difference(g, top_group, seed)
                r["difference_kind"] = "this method minus the best honest method"
                family.append(r)
        for key in ("uf1", "uar"):
            adjusted = holm([r["difference"][key]["p"] for r in family])
            for r, p in zip(family, adjusted):
                r["difference"][key].update(p_holm=p, differs=p < ALPHA)
        rows += [r for _, r in made if not r["leaky"] and not r["control"]] \
            + [r for _, r in made if r["leaky"]] + [r for _, r in made if r["control"]]
    return rows


def compare_identity(spec: CompareSpec, entries: list[Entry]) -> dict:
    """What makes a comparison this comparison: its runs (their names carry each method's
    configuration and data), seeds and protocols."""
    return {"methods": list(spec.methods), "datasets": list(spec.data),
            "with_leaky": spec.with_leaky, "seeds": spec.seeds,
            **({"with_controls": True} if spec.with_controls else {}),
            "runs": sorted(e.name for e in entries)}


def refuse_other_comparison(store: Storage, spec: CompareSpec, entries: list[Entry]) -> None:
    """A comparison file of this name that holds another comparison is refused (as a run
    folder that holds another run): a second comparison never replaces the first."""
    file = f"{spec.name}.json"
    if not store.exists(file):
        return
    try:
        old = json.loads(store.read_bytes(file)).get("identity")
    except ValueError:
        old = None
    if old != compare_identity(spec, entries):
        raise ValueError(f"{store.where(file)} holds another comparison (other methods, data, "
                         f"configuration or seeds): use another --name, or remove that file "
                         f"and its runs to replace it")


def compare_command(spec: CompareSpec, opts: RunOptions, start_ray) -> list[dict]:
    """Everything checked and every run named before ``start_ray``; then the shards, every
    run's folds at once, their summaries, and the table (``<storage>/<name>.json`` for
    ``mer-ray report``)."""
    entries = plan_entries(spec, opts.storage, opts.max_folds)
    refuse_other_comparison(opts.storage, spec, entries)
    start_ray()
    shards = {ds: spec.data[ds].prepare(next(e.exp for e in entries if e.dataset == ds).data)
              for ds in spec.data}
    folder = RunFolder.open(opts.storage, spec.name)
    train_entries(entries, shards, opts, folder)
    for e in entries:
        partial = {"partial": e.run.partial} if e.run.partial else {}
        e.summary = summarise_run(e.run.view(), {**opts.extra, **partial,
                                                 "compare": spec.name})
    seed = entries[0].exp.train.seed
    multilabel = is_multilabel(next(iter(spec.data.values())).described()[1])
    if multilabel:  # CD6ME: action-unit figures in MEB's layout
        from .au_compare import au_compare_rows, au_table_notes, show_au_tables

        rows = au_compare_rows(groups(entries), seed, RESAMPLES, parameters)
        kind, written_notes = "compare_aus", au_table_notes(rows, spec.seeds)
    else:
        rows = compare_rows(entries, seed)
        kind, written_notes = "compare", table_notes(rows, spec.seeds)
    synthetic = rows and rows[0]["synthetic"]
    partial = next((r["partial"] for r in rows if r["partial"]), None)
    title = (f"{spec.name}: {len(spec.methods)} method(s) on the same folds"
             + (f", {spec.seeds} training seeds" if spec.seeds > 1 else "")
             + (" (SYNTHETIC data)" if synthetic else "")
             + (f" [PARTIAL: {partial}]" if partial else ""))
    write_grid_file(
        folder.storage, f"{spec.name}.json", kind, title, rows, methods=list(spec.methods),
        datasets=list(spec.data), with_leaky=spec.with_leaky, seeds=spec.seeds, partial=partial,
        with_controls=spec.with_controls,
        bootstrap={"seed": seed, "resamples": RESAMPLES, "level": 0.95,
                   "unit": "test subject" + (" and training seed" if spec.seeds > 1 else "")},
        multiple_comparisons=f"Holm over the methods compared with the best, per dataset and "
                             f"figure; differs: adjusted p < {ALPHA:g}",
        identity=compare_identity(spec, entries), notes=written_notes)
    if multilabel:
        show_au_tables(rows, title, spec.seeds)
        return rows
    show_table(rows, title, spec.seeds)
    for r in rows:
        for part, d in (r.get("per_dataset") or {}).items():
            print(f"  {marked(r['method'], r)} on the {part} part: "
                  f"UF1 {100 * d['uf1']:.1f}, UAR {100 * d['uar']:.1f} ({d['n_clips']} clips)")
    return rows
