"""What a comparison prints and writes under its table: the emotion figures' console table,
its notes, and a row's difference as text (the console and the leaderboard write it so)."""

from __future__ import annotations

from ..console import show
from ..integrity import marked, notes

ALPHA = 0.05  # the family-wise level of the Holm-adjusted "differs" column


def _pct(v: float, ci=None, std=None) -> str:
    text = f"{100 * v:.1f}"
    if std is not None:
        text += f" +- {100 * std:.1f}"
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def difference_text(row: dict, key: str, best: str = "(best)") -> str:
    """A compare row's paired difference as text: "+1.2 [-3.4, +5.6] p=0.123 *" (``best`` for
    the best honest row, "-" for a row compared with nothing); the console table and the
    leaderboard write it so."""
    d = row.get("difference")
    if not d:
        return best if row.get("best") else "-"
    lo, hi = d[key]["ci95"]
    text = f"{100 * d[key]['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    if "p_holm" in d[key]:
        return text + f" p={d[key]['p_holm']:.3f}" + (" *" if d[key]["differs"] else "")
    return text


def show_table(rows: list[dict], title: str, seeds: int) -> None:
    many = seeds > 1
    show(["dataset", "method", "UF1 %" + (" mean +- sd" if many else "") + " [95 % CI]",
          "UAR %" + (" mean +- sd" if many else "") + " [95 % CI]",
          *(["UF1 % per seed"] if many else []),
          "UF1 diff [paired CI] Holm p", "UAR diff [paired CI] Holm p", "versus", "params",
          "s/fold"],
         [(r["dataset"], marked(r["method"], r),
           _pct(r["uf1"], r["uf1_ci95"], r["uf1_std"]),
           _pct(r["uar"], r["uar_ci95"], r["uar_std"]),
           *([" ".join(f"{100 * v:.1f}" for v in r["uf1_per_seed"])] if many else []),
           difference_text(r, "uf1"), difference_text(r, "uar"), r.get("versus", ""),
           f"{r['parameters']:,}", f"{r['seconds_per_fold']:.1f}") for r in rows],
         title=title)
    for line in table_notes(rows, seeds):
        print(line)


def table_notes(rows: list[dict], seeds: int) -> list[str]:
    """What the comparison's table says under it (the console and the report alike)."""
    out = ["UF1/UAR over all folds' predictions" + (f", the mean over {seeds} training seeds "
                                                     f"(+- their standard deviation)"
                                                     if seeds > 1 else "")
           + "; 95 % bootstrap intervals over test subjects"
           + (" and seeds" if seeds > 1 else "") + ".",
           "diff: this row minus 'versus' on the same test subjects"
           + (" and seeds" if seeds > 1 else "") + ", with its paired bootstrap interval; "
           f"p: two-sided bootstrap p-value, Holm-adjusted over the methods compared with the "
           f"best (per dataset and figure); * below {ALPHA:g}: differs from the best with a "
           f"family-wise error of at most {ALPHA:g}. A leaky row's diff is the leak (its "
           f"honest run as 'versus'), not a comparison with the best."]
    if seeds <= 1:
        out.append("One training seed: the intervals cover which subjects were tested, not "
                   "training randomness; no method is called worse on them without that "
                   "caveat (--seeds N trains every method with N seeds).")
    return out + notes(rows)
