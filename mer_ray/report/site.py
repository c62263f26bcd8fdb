"""``mer-ray leaderboard``: a static site over stored runs that works offline (no CDN, no
script, no server: open ``index.html``).

- ``index.html``: every benchmark (a dataset, protocol and set of clips) with its best honest
  method, and the critical-difference diagram over benchmarks (or over training seeds when
  there is one benchmark with three or more), with the Friedman and Nemenyi figures under it.
- one page per benchmark: the methods ranked by UF1 over all folds' predictions (the mean over
  training seeds) with 95 % subject-bootstrap intervals, UAR, the fold mean, the paired
  difference from the best with Holm-adjusted p-values, seeds, trainable parameters and seconds
  per fold (``protocols.compare.compare_rows``: the numbers ``mer-ray compare`` prints); runs
  that may not be ranked (LEAKY, SELECTION UNDECLARED, SEARCH-INFORMED) in a table of their own
  below, each leaky row with its leak; shuffled-label controls in a third.
- one page per run: its figures, marks and provenance, the confusion matrix, UF1 / UAR per
  test subject, and its files (summary, predictions, folds) copied beside it.

Runs are grouped into one row when they differ only in ``train.seed`` (the seeds of one
method); a scored file (``mer-ray score``) is a row of its own.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..integrity import flags, is_ranked, labels, notes
from .critical import cd_diagram, friedman_nemenyi, summary_text
from .figures import intervals_png
from .inputs import Node, find_inputs

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222;
       padding: 0 1rem; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8rem 0 1.4rem; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child, td.name { text-align: left; }
td.name { white-space: nowrap; }
.mark { font-size: 0.75rem; font-weight: 600; color: #a11; margin-left: 0.3rem; }
.note { font-size: 0.85rem; color: #555; max-width: 60rem; }
.banner { background: #fff4d6; border: 1px solid #e6c46b; padding: 0.5rem 0.8rem; }
img.figure { max-width: 100%; border: 1px solid #eee; }
nav a { margin-right: 1rem; }
"""


@dataclass
class Board:
    """A benchmark: one dataset, protocol and set of test clips (and their labels)."""

    key: str
    dataset: str
    protocol: str
    data: str  # the data folder's name (or the scored truth's)
    runs: list[tuple[Node, dict]] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return f"{self.dataset}-{self.protocol}-{self.key[:8]}"

    @property
    def title(self) -> str:
        return f"{self.dataset} {self.protocol} ({self.data})"

    @property
    def synthetic(self) -> bool:
        return any(s.get("synthetic") for _, s in self.runs)


def _clips_key(node: Node) -> str:
    preds = (node / "predictions.parquet").read_parquet()
    rows = sorted(zip(preds["subject"].cast(str), preds["clip"].cast(str),
                      preds["label"].to_list()))
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def boards_of(paths: list) -> list[Board]:
    from ..protocols.au_summary import holds_au_figures

    runs, _, _ = find_inputs(paths)
    boards: dict[str, Board] = {}
    for node in runs:
        s = (node / "summary.json").read_json()
        if holds_au_figures(s):
            continue  # CD6ME runs: `mer-ray compare --protocol cd6me` and the report show them
        data = Path(str((s.get("data") or {}).get("root") or s.get("shards") or "data")).name
        # synthetic sets rendered with other seeds share clip ids and labels, not frames: their
        # folder's name (which carries the seed) tells them apart; real data by its clips only
        rendered = data if s.get("synthetic") else ""
        key = hashlib.sha256(f"{s['dataset']}|{s['protocol']}|{_clips_key(node)}|{rendered}"
                             .encode()).hexdigest()
        boards.setdefault(key, Board(key, s["dataset"], s["protocol"], data)).runs.append(
            (node, s))
    return sorted(boards.values(), key=lambda b: (b.dataset, b.protocol, b.data))


def _row_key(s: dict) -> str:
    """Runs that differ only in their training seed share a row."""
    if s.get("scored"):
        return f"scored:{s['name']}"
    config = json.loads(json.dumps(s.get("config") or {}))
    (config.get("train") or {}).pop("seed", None)
    return json.dumps([s.get("method"), config, sorted(flags(s))], sort_keys=True)


def board_rows(board: Board) -> tuple[list[dict], list[dict]]:
    """(rows that compete, control rows): ``compare_rows`` over the board's runs grouped by
    seed; controls are scored apart so that they never join the ranking or its Holm family."""
    from ..protocols.stored import stored_rows

    groups: dict[str, list[tuple[Node, dict]]] = {}
    for node, s in board.runs:
        groups.setdefault(_row_key(s), []).append((node, s))
    ordered = [sorted(g, key=lambda x: x[1].get("seed") or 0) for g in groups.values()]
    out = []
    for wanted in (False, True):
        chosen = [g for g in ordered if bool(flags(g[0][1]).get("control")) == wanted]
        if not chosen:
            out.append([])
            continue
        rows = stored_rows([[s for _, s in g] for g in chosen],
                           [g[0][0].parent.as_storage() for g in chosen])
        paths = {s["name"]: str(n) for g in chosen for n, s in g}
        for r in rows:
            r["paths"] = [paths[name] for name in r["runs"]]
        out.append(rows)
    return out[0], out[1]


def _e(text) -> str:
    return html.escape(str(text))


def _pct(v, ci=None, std=None) -> str:
    if v is None:
        return "-"
    text = f"{100 * v:.1f}"
    if std is not None:
        text += f" ± {100 * std:.1f}"
    return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _marks(row: dict) -> str:
    return "".join(f'<span class="mark">{_e(x)}</span>' for x in labels(row))


def _diff(row: dict, key: str) -> str:
    from ..protocols.compare_text import difference_text

    return difference_text(row, key, best="best")  # "best" only ever marks a ranked row


def _table(head: list[str], rows: list[list[str]]) -> str:
    """``rows``' cells are HTML already."""
    return ("<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head)
            + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>"
                                       for c in r) + "</tr>" for r in rows)
            + "</tbody></table>")


def _page(title: str, body: str, depth: int = 0) -> str:
    up = "../" * depth
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title>"
            f'<link rel="stylesheet" href="{up}style.css"></head><body>'
            f'<nav><a href="{up}index.html">all benchmarks</a></nav>'
            f"<h1>{_e(title)}</h1>{body}</body></html>\n")


def _run_links(row: dict, depth: int) -> str:
    up = "../" * depth
    return " ".join(f'<a href="{up}runs/{_e(Path(p).name)}/index.html">'
                    f'{"run" if len(row["runs"]) == 1 else f"seed {s}"}</a>'
                    for p, s in zip(row["paths"], row["seeds"]))


def _params(row: dict) -> str:
    return f"{row['parameters']:,}" if row.get("parameters") is not None else "-"


def _seconds(row: dict) -> str:
    return f"{row['seconds_per_fold']:.1f}" if row.get("seconds_per_fold") is not None else "-"


def board_page(board: Board, rows: list[dict], controls: list[dict]) -> str:
    ranked = [r for r in rows if is_ranked(r)]
    ranked.sort(key=lambda r: -r["uf1"])
    others = [r for r in rows if not is_ranked(r)]
    head = ["rank", "method", "UF1 % [95 % CI]", "UAR % [95 % CI]", "UF1 % fold mean",
            "UF1 diff from best [paired CI], Holm p", "seeds", "trainable parameters",
            "s / fold", "runs"]
    body = []
    if board.synthetic:
        body.append('<p class="banner">SYNTHETIC data: rendered micro-expressions, not a MER '
                    'dataset.</p>')
    body.append(f"<p>{len(board.runs)} runs over one set of test clips "
                f"({board.runs[0][1]['n_clips']} clips, {board.runs[0][1]['n_folds']} test "
                f"subjects).</p>")
    body.append("<h2>Ranked (honest selection)</h2>")
    body.append(_table(head, [[str(i + 1), f'<td class="name">{_e(r["method"])}{_marks(r)}</td>',
                               _pct(r["uf1"], r["uf1_ci95"], r.get("uf1_std")),
                               _pct(r["uar"], r["uar_ci95"], r.get("uar_std")),
                               _pct(r["per_fold_mean_uf1"]), _diff(r, "uf1"),
                               str(len(r["seeds"])), _params(r), _seconds(r),
                               _run_links(r, 1)]
                              for i, r in enumerate(ranked)]))
    body.append(f'<img class="figure" src="{board.slug}-uf1.svg" alt="UF1 of each method with '
                f'its interval"> <p class="note">The figure: <a href="{board.slug}-uf1.svg">SVG'
                f'</a>, <a href="{board.slug}-uf1.png">PNG</a>.</p>')
    if others:
        body.append("<h2>Not ranked</h2><p class=\"note\">Their selection read their test "
                    "subjects, or was not declared, or a search saw them: shown, never ranked "
                    "with the table above. A leaky row's difference is its leak (itself minus "
                    "its method's honest row).</p>")
        body.append(_table(["method", "UF1 % [95 % CI]", "UAR % [95 % CI]",
                            "difference [paired CI]", "versus", "seeds", "runs"],
                           [[f'<td class="name">{_e(r["method"])}{_marks(r)}</td>',
                             _pct(r["uf1"], r["uf1_ci95"], r.get("uf1_std")),
                             _pct(r["uar"], r["uar_ci95"], r.get("uar_std")), _diff(r, "uf1"),
                             _e(r.get("versus", "")), str(len(r["seeds"])), _run_links(r, 1)]
                            for r in others]))
    if controls:
        body.append("<h2>Controls (shuffled training labels)</h2><p class=\"note\">Trained on "
                    "permuted labels: what each method scores by chance on these clips.</p>")
        body.append(_table(["method", "UF1 % [95 % CI]", "UAR % [95 % CI]", "runs"],
                           [[f'<td class="name">{_e(r["method"])}{_marks(r)}</td>',
                             _pct(r["uf1"], r["uf1_ci95"], r.get("uf1_std")),
                             _pct(r["uar"], r["uar_ci95"], r.get("uar_std")),
                             _run_links(r, 1)] for r in controls]))
    from ..protocols.compare_text import table_notes

    seeds = max((len(r["seeds"]) for r in rows), default=1)
    body.append("".join(f'<p class="note">{_e(n)}</p>'
                        for n in table_notes(rows + controls, seeds)))
    return _page(board.title, "".join(body), depth=1)


def run_page(node: Node, s: dict, board: Board) -> str:
    m = s["metrics"]
    names = s["class_names"]
    cm = m["confusion_matrix"]
    body = [f'<p>Benchmark: <a href="../../boards/{board.slug}.html">{_e(board.title)}</a>'
            f"{_marks(s)}</p>"]
    if s.get("synthetic"):
        body.append('<p class="banner">SYNTHETIC data.</p>')
    body.append(_table(["figure", "UF1 %", "UAR %"], [
        ["all folds' predictions (primary)", _pct(m["uf1"], m.get("uf1_ci95")),
         _pct(m["uar"], m.get("uar_ci95"))],
        ["mean over folds", _pct(m["per_fold_mean_uf1"]), _pct(m["per_fold_mean_uar"])]]))
    body.append("<h2>Confusion matrix</h2><p class=\"note\">Rows: true class; columns: "
                "predicted class.</p>")
    body.append(_table(["true \\ predicted", *names],
                       [[f'<td class="name">{_e(n)}</td>', *map(str, cm[i])]
                        for i, n in enumerate(names)]))
    body.append("<h2>Per test subject</h2>")
    body.append(_table(["test subject", "clips", "UF1 %", "UAR %", "best epoch"],
                       [[f'<td class="name">{_e(f["test_subject"])}</td>', str(f["n"]),
                         _pct(f["uf1"]), _pct(f["uar"]),
                         "-" if f.get("best_epoch") is None else str(f["best_epoch"])]
                        for f in s["folds"]]))
    prov = {"method": s.get("method"), "selection": s.get("selection"), "seed": s.get("seed"),
            "config hash": s.get("config_hash"), "code version": s.get("code_version"),
            "backbone pretrained": s.get("pretrained"), "folds hash": s.get("folds_hash"),
            "scored file": (s.get("scored") or {}).get("file")}
    body.append("<h2>What produced it</h2>")
    body.append(_table(["", ""], [[f'<td class="name">{_e(k)}</td>', _e(v)]
                                  for k, v in prov.items() if v is not None]))
    files = [f for f in ("summary.json", "predictions.parquet", "folds.json")
             if (node / f).exists()]
    body.append("<h2>Files</h2><ul>" + "".join(f'<li><a href="{f}">{f}</a></li>'
                                                for f in files) + "</ul>")
    return _page(s["name"], "".join(body), depth=2)


def _critical(boards: list[tuple[Board, list[dict]]], out: Path) -> tuple[str, dict | None]:
    """The critical-difference section: over benchmarks when 3 or more share 3 or more
    honest methods, else over the seeds of a benchmark that has 3 or more for them all."""
    per_board = {b.title: {r["method"]: r for r in rows
                           if is_ranked(r) and not r.get("control")}
                 for b, rows in boards}
    common = set.intersection(*(set(v) for v in per_board.values())) if per_board else set()
    scores, unit = {}, ""
    if len([t for t, v in per_board.items() if common and common <= set(v)]) >= 3 \
            and len(common) >= 3:
        scores = {t: {m: v[m]["uf1"] for m in common} for t, v in per_board.items()}
        unit = "benchmarks (the mean UF1 over each method's training seeds)"
    else:
        for title, v in per_board.items():
            seeds = min((len(r["uf1_per_seed"]) for r in v.values()), default=0)
            if len(v) >= 3 and seeds >= 3:
                scores = {f"seed {i}": {m: r["uf1_per_seed"][i] for m, r in v.items()}
                          for i in range(seeds)}
                unit = f"training seeds on {title}"
                break
    if not scores:
        return ("<p class=\"note\">No critical-difference diagram: it needs three or more "
                "methods ranked on three or more benchmarks (or seeds).</p>", None)
    res = friedman_nemenyi(scores)
    cd_diagram(res, out / "critical_difference", f"Mean rank by UF1 over {res['n_blocks']} "
                                                 f"{unit.split(' (')[0]}")
    res["unit"] = unit
    return (f"<h2>Critical difference</h2><p>Blocks: {_e(unit)}.</p>"
            '<img class="figure" src="critical_difference.svg" alt="critical-difference '
            'diagram">'
            f"<p class=\"note\">{_e(summary_text(res))} Download: "
            '<a href="critical_difference.svg">SVG</a>, '
            '<a href="critical_difference.png">PNG</a>, '
            '<a href="critical_difference.json">JSON</a>.</p>', res)


def build_site(paths: list, out: str | Path, title: str = "mer-ray leaderboard") -> Path:
    """The site under ``out``; returns its ``index.html``."""
    out = Path(out)
    boards = boards_of(paths)
    if not boards:
        raise FileNotFoundError(f"no runs under {', '.join(map(str, paths))}")
    (out / "boards").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "style.css").write_text(CSS)
    made = []
    index_rows = []
    for board in boards:
        rows, controls = board_rows(board)
        made.append((board, rows))
        intervals_png(rows, out / "boards" / f"{board.slug}-uf1.png", board.title)
        (out / "boards" / f"{board.slug}.html").write_text(board_page(board, rows, controls))
        for node, s in board.runs:
            folder = out / "runs" / node.name
            folder.mkdir(parents=True, exist_ok=True)
            for f in ("summary.json", "predictions.parquet", "folds.json"):
                if (node / f).exists():
                    (folder / f).write_bytes((node / f).read_bytes())
            (folder / "index.html").write_text(run_page(node, s, board))
        top = next((r for r in sorted(rows, key=lambda r: -r["uf1"]) if is_ranked(r)), None)
        clips = board.runs[0][1]["n_clips"]
        index_rows.append([f'<td class="name"><a href="boards/{board.slug}.html">'
                           f"{_e(board.title)}</a></td>",
                           "yes" if board.synthetic else "no", str(clips),
                           str(sum(is_ranked(r) for r in rows)),
                           str(sum(not is_ranked(r) for r in rows)),
                           _e(top["method"]) if top else "-",
                           _pct(top["uf1"], top["uf1_ci95"]) if top else "-"])
    critical, res = _critical(made, out)
    if res is not None:
        (out / "critical_difference.json").write_text(json.dumps(res, indent=1))
    marks_used = notes([s for b in boards for _, s in b.runs])
    body = ("<p>Every figure is UF1 / UAR over all folds' predictions of a leave-one-subject-"
            "out evaluation, with 95 % bootstrap intervals over test subjects; each benchmark "
            "page ranks only runs whose selection never read their test subjects.</p>"
            + _table(["benchmark", "synthetic", "test clips", "ranked rows", "not ranked",
                      "best honest method", "its UF1 % [95 % CI]"], index_rows)
            + critical
            + "".join(f'<p class="note">{_e(n)}</p>' for n in marks_used))
    index = out / "index.html"
    index.write_text(_page(title, body))
    return index

