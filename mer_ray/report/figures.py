"""The report's figures (matplotlib's Agg backend), each as PNG and, for papers, SVG beside it:
a run's confusion matrix and per-fold UF1 (titled with the method), a sensitivity grid's
curves, and a comparison's UF1 intervals per method."""

from __future__ import annotations

from pathlib import Path


def save(fig, out: Path, dpi: int = 90) -> list[Path]:
    """``out`` (PNG) and the same figure as SVG beside it; the figure is closed."""
    import matplotlib.pyplot as plt

    out = Path(out)
    fig.savefig(out, dpi=dpi)
    fig.savefig(out.with_suffix(".svg"))
    plt.close(fig)
    return [out, out.with_suffix(".svg")]


def intervals_png(rows: list[dict], out: Path, title: str) -> list[Path]:
    """Each row's UF1 with its 95 % interval: rows that may be ranked in blue, the others
    (LEAKY, ...) grey and marked; the comparison at a glance."""
    import matplotlib.pyplot as plt

    from ..integrity import is_ranked, labels

    shown = sorted(rows, key=lambda r: (not is_ranked(r), -r["uf1"]))
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.36 * len(shown)))
    for y, r in enumerate(reversed(shown)):
        lo, hi = r.get("uf1_ci95") or (r["uf1"], r["uf1"])
        ax.errorbar(100 * r["uf1"], y, xerr=[[100 * (r["uf1"] - lo)], [100 * (hi - r["uf1"])]],
                    fmt="o", color="tab:blue" if is_ranked(r) else "0.55", capsize=3)
    ax.set_yticks(range(len(shown)),
                  [" ".join([r["method"], *labels(r)]) for r in reversed(shown)], fontsize=8)
    seeds = any(len(r.get("seeds") or []) > 1 for r in rows)
    ax.set_xlabel("UF1 % over all folds' predictions, 95 % interval (bootstrap over test "
                  "subjects" + (" and seeds)" if seeds else ")"), fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save(fig, out, dpi=110)


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
    ax.set_title(f"{summary.get('method', 'mer')}: UF1 {m['uf1']:.3f}, UAR {m['uar']:.3f} "
                 f"(all folds)", fontsize=9)
    fig.tight_layout()
    save(fig, out)


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
    ax.set_title(f"{summary.get('method', 'mer')}: UF1 per test subject", fontsize=9)
    fig.tight_layout()
    save(fig, out)


def _override(row: dict, key: str) -> float | None:
    """The value a grid row set for ``key`` (grid files of earlier versions kept them as
    ``section.field=value`` strings)."""
    given = row.get("settings")
    if given is None:
        given = dict(o.split("=", 1) for o in row.get("overrides", []))
    return float(given[key]) if key in given else None


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
    save(fig, out)
