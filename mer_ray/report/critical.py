"""Methods ranked over several benchmarks (or training seeds): the Friedman test, the Nemenyi
critical difference, and its diagram.

Each block (a benchmark: one dataset, protocol and set of clips; or one training seed) ranks the
methods by UF1, 1 the best, ties sharing their mean rank. The Friedman test asks whether the
mean ranks differ more than chance would make them; the Nemenyi critical difference is the
smallest difference of mean ranks that the post-hoc test calls significant at ``alpha``
(Demšar, JMLR 2006: CD = q_alpha * sqrt(k (k + 1) / (6 N)), q_alpha the studentized range
quantile for k methods over sqrt(2)). Methods joined by a bar in the diagram are not told
apart. Both use scipy's distributions; nothing is read off a printed table.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

ALPHA = 0.05


def friedman_nemenyi(scores: dict[str, dict[str, float]], alpha: float = ALPHA) -> dict:
    """``scores``: block -> method -> UF1, every block holding every method (at least 3
    methods and 3 blocks). Returns the mean ranks (best first), the Friedman statistic and
    p-value (chi-square and the Iman-Davenport F form), the Nemenyi CD and the groups of methods
    it does not tell apart."""
    from scipy import stats

    blocks = list(scores)
    methods = sorted({m for b in blocks for m in scores[b]})
    if len(methods) < 3 or len(blocks) < 3:
        raise ValueError(f"a Friedman test needs 3 or more methods over 3 or more blocks (got "
                         f"{len(methods)} over {len(blocks)})")
    missing = [(b, m) for b in blocks for m in methods if m not in scores[b]]
    if missing:
        raise ValueError(f"every block must score every method: {missing[:3]} missing")
    values = np.array([[scores[b][m] for m in methods] for b in blocks])
    ranks = np.array([stats.rankdata(-row) for row in values])  # 1: the best UF1
    mean = ranks.mean(axis=0)
    n, k = len(blocks), len(methods)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(mean ** 2) - k * (k + 1) ** 2 / 4)
    # ties within a block shrink the ranks' variance: the usual correction
    ties = sum(sum(t ** 3 - t for t in np.unique(row, return_counts=True)[1]) for row in ranks)
    correction = 1 - ties / (n * (k ** 3 - k))
    chi2 = float(chi2 / correction) if correction > 0 else float("nan")
    p = float(stats.chi2.sf(chi2, k - 1)) if not math.isnan(chi2) else float("nan")
    denominator = n * (k - 1) - chi2
    # every block ranking the methods alike makes the F form's denominator 0: undefined
    f = float((n - 1) * chi2 / denominator) if denominator > 0 else None
    p_f = float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))) if f is not None else None
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))
    cd = q * math.sqrt(k * (k + 1) / (6 * n))
    order = sorted(range(k), key=lambda i: (mean[i], methods[i]))
    ranked = [(methods[i], float(mean[i])) for i in order]
    return {"methods": [m for m, _ in ranked], "mean_ranks": [r for _, r in ranked],
            "blocks": blocks, "n_blocks": n, "k": k, "alpha": alpha,
            "friedman_chi2": chi2, "friedman_df": k - 1, "friedman_p": p,
            "iman_davenport_f": f, "iman_davenport_p": p_f,
            "nemenyi_q": q, "critical_difference": cd,
            "groups": _cliques([r for _, r in ranked], cd),
            "scores": {b: {m: float(scores[b][m]) for m in methods} for b in blocks}}


def _cliques(mean_ranks: list[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs (first, last index into the sorted ranks) whose spread is below the CD."""
    out = []
    for i in range(len(mean_ranks)):
        j = i
        while j + 1 < len(mean_ranks) and mean_ranks[j + 1] - mean_ranks[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in out):
            out.append((i, j))
    return out


def summary_text(res: dict) -> str:
    """The test's figures in one sentence, written under the diagram."""
    return (f"Friedman test over {res['n_blocks']} blocks and {res['k']} methods: chi-square "
            f"{res['friedman_chi2']:.2f} (df {res['friedman_df']}), p = {res['friedman_p']:.3g}; "
            + (f"Iman-Davenport F = {res['iman_davenport_f']:.2f}, p = "
               f"{res['iman_davenport_p']:.3g}" if res["iman_davenport_f"] is not None else
               "Iman-Davenport F undefined (every block ranks the methods in the same order)")
            + f". Nemenyi critical difference at alpha = "
            f"{res['alpha']:g}: {res['critical_difference']:.2f} mean ranks (q = "
            f"{res['nemenyi_q']:.3f}); methods joined by a bar are not told apart"
            + ("" if res["friedman_p"] < res["alpha"] else
               " (the Friedman test itself finds no difference at this alpha, so no pair is "
               "called different)") + ".")


def cd_diagram(res: dict, out: Path, title: str) -> list[Path]:
    """The critical-difference diagram as SVG (vector, for papers) and PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, ranks, names = res["k"], res["mean_ranks"], res["methods"]
    half = (k + 1) // 2
    height = 1.4 + 0.32 * half + 0.18 * len(res["groups"])
    fig, ax = plt.subplots(figsize=(7.0, height))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(half + 1.2 + 0.35 * len(res["groups"])) * 0.3, 1.45)
    ax.axis("off")
    ax.hlines(0.8, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0.8, 0.9, color="black", lw=1)
        ax.text(r, 0.95, str(r), ha="center", va="bottom", fontsize=9)
    for i, (name, rank) in enumerate(zip(names, ranks)):
        left = i < half
        row = i if left else k - 1 - i
        y = -0.3 * (row + 1) - 0.35 * 0.3 * len(res["groups"])
        x_text = 0.55 if left else k + 0.45
        ax.plot([rank, rank, x_text], [0.8, y, y], color="tab:blue", lw=1)
        ax.text(x_text + (-0.02 if left else 0.02), y, f"{name} ({rank:.2f})",
                ha="right" if left else "left", va="center", fontsize=9,
                transform=ax.transData)
    for g, (a, b) in enumerate(res["groups"]):
        y = 0.72 - 0.1 * (g + 1)
        ax.hlines(y, ranks[a] - 0.03, ranks[b] + 0.03, color="black", lw=3)
    cd = res["critical_difference"]
    ax.hlines(1.28, 1, 1 + cd, color="tab:red", lw=2)
    ax.vlines([1, 1 + cd], 1.24, 1.32, color="tab:red", lw=1)
    ax.text(1 + cd + 0.08, 1.28, f"critical difference {cd:.2f}", ha="left", va="center",
            fontsize=8, color="tab:red")
    ax.set_title(f"{title} (1 = highest UF1)", fontsize=10)
    fig.tight_layout()
    written = []
    for suffix in ("svg", "png"):
        path = out.with_suffix(f".{suffix}")
        fig.savefig(path, dpi=110)
        written.append(path)
    plt.close(fig)
    return written
