"""``mer-ray compare --protocol cd6me``: methods on the same leave-one-dataset-out folds,
scored as action-unit detectors, in MEB's layout.

Per method (the mean over training seeds): the mean AU F1 over all folds' predictions pooled,
with a 95 % bootstrap interval over test subjects (and seeds); each AU's F1 (AUs as columns);
the mean AU F1 of each held-out dataset (datasets as columns) and their mean. The constant
predictor (every AU present in every clip, MEB's reference row) is scored on the same clips and
shown in every comparison: a detector that does not clear it has learnt nothing usable.

Ranking as in every comparison (``integrity.py``): honest rows only; each other honest method's
paired bootstrap difference from the best, Holm-adjusted; a leaky row (each fold's epoch
chosen on its held-out dataset) against its own honest run, the leak; a shuffled-label control
against the constant predictor, since a control must not beat it by more than chance.
"""

from __future__ import annotations

import statistics

from ..au_metrics import au_interval, au_paired, constant_masks
from ..console import show
from ..integrity import best, marked, notes, row_flags
from ..metrics import holm
from .summary import subject_predictions

ALPHA = 0.05
CONSTANT = "constant (every AU)"


def _predictions(g) -> list[dict]:
    return [subject_predictions(x.store, x.name) for x in g.entries]


def _mean(values):
    values = list(values)
    return statistics.mean(values) if values else None


def _figures(g, read: list[dict], n: int, seed: int, resamples: int) -> dict:
    """A group's figures: the mean over its seeds, each seed's, and the interval of the mean
    (subjects and seeds resampled together)."""
    ms = [e.summary["metrics"] for e in g.entries]
    vals = [m["mean_au_f1"] for m in ms]
    ci = au_interval(read, n, resamples, seed)
    datasets = list(ms[0]["per_dataset"])
    return {"mean_au_f1": statistics.mean(vals), "mean_au_f1_per_seed": vals,
            "mean_au_f1_std": statistics.stdev(vals) if len(vals) > 1 else None,
            "mean_au_f1_ci95": ci["mean_f1"],
            "per_fold_mean_au_f1": _mean(m["per_fold_mean_au_f1"] for m in ms),
            "per_au_f1": {a: _mean(m["per_au_f1"][a] for m in ms) for a in ms[0]["per_au_f1"]},
            "per_dataset": {d: _mean(m["per_dataset"][d]["mean_au_f1"] for m in ms)
                            for d in datasets}}


def _row(g, read: list[dict], n: int, seed: int, resamples: int, parameters) -> dict:
    e, s = g.first, g.first.summary
    secs = [f["worker_seconds"] for x in g.entries for f in x.summary["folds"]]
    return {"dataset": e.dataset, "method": e.method, **row_flags(s),
            "runs": [x.name for x in g.entries], "run": e.name,
            "seeds": [x.seed for x in g.entries], **_figures(g, read, n, seed, resamples),
            "parameters": parameters(e.method, e.exp, len(s["class_names"])),
            "seconds_per_fold": statistics.mean(secs) if secs and None not in secs else None,
            "synthetic": s["synthetic"], "pretrained": s["pretrained"]}


def constant_predictions(truth: dict, n: int) -> dict:
    """The constant predictor on a run's test clips: (true masks, every-AU masks) per subject."""
    return {s: (y, constant_masks(n, len(y))) for s, (y, _) in truth.items()}


def constant_row(g, truth: dict, seed: int, resamples: int) -> tuple[dict, dict]:
    """The constant predictor's row on the clips ``g``'s first run tested (``truth``: that
    run's predictions per subject), and its predictions."""
    from ..au_metrics import au_scores

    s = g.first.summary
    names = s["class_names"]
    preds = constant_predictions(truth, len(names))
    pooled_y = [y for ys, _ in preds.values() for y in ys]
    pooled = au_scores(pooled_y, constant_masks(len(names), len(pooled_y)), names)
    from ..data.adapters.cd6me import part_of

    per_dataset = {}
    for d in s["metrics"]["per_dataset"]:
        ys = [y for subj, (yy, _) in preds.items() if part_of(subj) == d for y in yy]
        per_dataset[d] = au_scores(ys, constant_masks(len(names), len(ys)), names)["mean_f1"]
    ci = au_interval(preds, len(names), resamples, seed)
    row = {"dataset": g.first.dataset, "method": CONSTANT, **row_flags({}), "runs": [],
           "run": None, "seeds": [], "mean_au_f1": pooled["mean_f1"],
           "mean_au_f1_per_seed": [pooled["mean_f1"]], "mean_au_f1_std": None,
           "mean_au_f1_ci95": ci["mean_f1"],
           "per_fold_mean_au_f1": _mean(per_dataset.values()),
           "per_au_f1": pooled["per_au"], "per_dataset": per_dataset, "parameters": 0,
           "seconds_per_fold": 0.0, "synthetic": s["synthetic"], "pretrained": None,
           "best": False,  # a reference, never the best
           "reference": "predicts every AU present in every clip (MEB's constant row)"}
    return row, preds


def au_compare_rows(groups: list, seed: int, resamples: int, parameters) -> list[dict]:
    """The table's rows (above): honest methods and the constant predictor, then leaky rows,
    then controls."""
    rows = []
    for ds in dict.fromkeys(g.first.dataset for g in groups):
        gs = [g for g in groups if g.first.dataset == ds]
        n = len(gs[0].first.summary["class_names"])
        read = {id(g): _predictions(g) for g in gs}  # each run's predictions, read once
        made = [(g, _row(g, read[id(g)], n, seed, resamples, parameters)) for g in gs]
        const, const_preds = constant_row(gs[0], read[id(gs[0])][0], seed, resamples)
        top = best([r for _, r in made if not r["control"]], "mean_au_f1")
        top_group = next((g for g, r in made if r is top), None)
        family = []
        for g, r in made:
            r["best"] = r is top
            if r["leaky"]:
                own = next((h for h, hr in made if h.first.method == g.first.method
                            and not hr["leaky"] and not hr["control"]), None)
                if own is not None:
                    r.update(versus=f"{g.first.method} (honest)",
                             difference_kind="the leak: this leaky run minus its honest run",
                             difference={"mean_au_f1": au_paired(
                                 read[id(g)], read[id(own)], n, resamples, seed)})
            elif r["control"]:
                r.update(versus=CONSTANT,
                         difference_kind="this control minus the constant predictor",
                         difference={"mean_au_f1": au_paired(
                             read[id(g)], const_preds, n, resamples, seed)})
            elif top is not None and r is not top:
                r.update(versus=top["method"],
                         difference_kind="this method minus the best honest method",
                         difference={"mean_au_f1": au_paired(
                             read[id(g)], read[id(top_group)], n, resamples, seed)})
                family.append(r)
        if top is not None:
            const.update(versus=top["method"],
                         difference_kind="the constant predictor minus the best honest method",
                         difference={"mean_au_f1": au_paired(
                             const_preds, read[id(top_group)], n, resamples, seed)})
            family.append(const)
        adjusted = holm([r["difference"]["mean_au_f1"]["p"] for r in family])
        for r, p in zip(family, adjusted):
            r["difference"]["mean_au_f1"].update(p_holm=p, differs=p < ALPHA)
        honest = [r for _, r in made if not r["leaky"] and not r["control"]]
        rows += honest + [const] + [r for _, r in made if r["leaky"]] \
            + [r for _, r in made if r["control"]]
    return rows


def _pct(v, ci=None, std=None) -> str:
    if v is None:
        return "-"
    text = f"{100 * v:.1f}" + (f" +- {100 * std:.1f}" if std is not None else "")
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def difference_text(row: dict) -> str:
    d = (row.get("difference") or {}).get("mean_au_f1")
    if not d:
        return "(best)" if row.get("best") else "-"
    lo, hi = d["ci95"]
    text = f"{100 * d['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    if "p_holm" in d:
        text += f" p={d['p_holm']:.3f}" + (" *" if d["differs"] else "")
    return text


def au_tables(rows: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(name, header, cells) of the three tables: the summary, per AU, per held-out dataset."""
    aus = list(rows[0]["per_au_f1"])
    datasets = list(rows[0]["per_dataset"])
    summary = ("summary", ["method", "mean AU F1 % [95 % CI]", "mean over datasets %",
                           "diff [paired CI] Holm p", "versus", "params", "s/fold"],
               [[marked(r["method"], r), _pct(r["mean_au_f1"], r["mean_au_f1_ci95"],
                                             r["mean_au_f1_std"]),
                 _pct(r["per_fold_mean_au_f1"]), difference_text(r), r.get("versus", ""),
                 "-" if r["parameters"] is None else f"{r['parameters']:,}",
                 "-" if r["seconds_per_fold"] is None else f"{r['seconds_per_fold']:.1f}"]
                for r in rows])
    per_au = ("per_au", ["method", *aus, "mean"],
              [[marked(r["method"], r), *(_pct(r["per_au_f1"][a]) for a in aus),
                _pct(r["mean_au_f1"])] for r in rows])
    per_dataset = ("per_dataset", ["method", *datasets, "mean"],
                   [[marked(r["method"], r), *(_pct(r["per_dataset"].get(d)) for d in datasets),
                     _pct(r["per_fold_mean_au_f1"])] for r in rows])
    return [summary, per_au, per_dataset]


def au_table_notes(rows: list[dict], seeds: int) -> list[str]:
    out = ["Mean AU F1 (%): the F1 of each of the 12 AUs' presence, averaged over the AUs; "
           "'mean AU F1' pools all held-out datasets' predictions, 'mean over datasets' "
           "averages each held-out dataset's own figure" + (f"; the mean over {seeds} "
                                                             f"training seeds" if seeds > 1
                                                             else "") + ".",
           "95 % bootstrap intervals over test subjects" + (" and seeds" if seeds > 1 else "")
           + "; diff: this row minus 'versus' on the same subjects, paired bootstrap "
           "interval; p: two-sided bootstrap p, Holm-adjusted over the rows compared with the "
           f"best (the constant predictor among them); * below {ALPHA:g}.",
           f"{CONSTANT}: every AU predicted present in every clip (MEB's reference row); "
           f"a control is compared with it, a leaky row with its own honest run. A fold's test "
           f"subjects are its held-out dataset's: a LEAKY row chose each fold's epoch (or C) "
           f"on the held-out dataset."]
    absent = [a for a in rows[0]["per_au_f1"]
              if all((r["per_au_f1"].get(a) or 0) == 0 for r in rows)]
    if absent:
        out.append(f"{', '.join(absent)}: F1 0 in every row (no clip of the test data has it "
                   f"or no row detects it; an undefined F1 counts as 0, as MEB counts it).")
    return out + notes(rows)


def show_au_tables(rows: list[dict], title: str, seeds: int) -> None:
    for name, head, cells in au_tables(rows):
        show(head, cells, title=f"{title}: {name.replace('_', ' ')}")
    for line in au_table_notes(rows, seeds):
        print(line)
