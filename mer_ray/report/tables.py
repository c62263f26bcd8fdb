"""Tables in a report: Markdown, and the same tables for papers as LaTeX ``tabular`` and as CSV
(numbers as numbers: a figure and its interval in columns of their own)."""

from __future__ import annotations

import re


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80]


class Figure(str):
    """A figure in % as a table shows it ("75.08 ± 1.20 [63.5, 83.3]"), keeping its numbers
    for CSV: ``value``, ``std``, ``ci`` (fractions). ``best``: shown in bold."""

    value: float
    std: float | None
    ci: tuple[float, float] | None
    best: bool


class Num(str):
    """A number as a table shows it ("1,683", "29.5"); CSV gets ``value`` as a number."""

    value: float | int


def num(value: float | int, fmt: str = ",") -> Num:
    cell = Num(format(value, fmt))
    cell.value = value
    return cell


class Named(str):
    """A run's or method's name with its integrity marks (``integrity.flags``): each format
    shows them its own way (bold words in Markdown, a marker macro with a footnote in LaTeX,
    a column per mark in CSV)."""

    name: str
    marks: dict


def named(name: str, row: dict) -> Named:
    from ..integrity import flags

    cell = Named(name)
    cell.name, cell.marks = name, flags(row)
    return cell


def md(cell: str) -> str:
    if isinstance(cell, Named):
        from ..integrity import labels

        return " ".join([cell.name, *(f"**{m}**" for m in labels(cell.marks))])
    return f"**{cell}**" if getattr(cell, "best", False) else str(cell)


def md_table(header: list[str], rows: list[list[str]], export: list | None = None,
             name: str | None = None) -> list[str]:
    """A Markdown table; with ``export`` and ``name``, also kept for the LaTeX / CSV files."""
    if export is not None and name:
        export.append((name, header, rows))
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(md(c) for c in r) + " |" for r in rows]]


def pct(v: float, best: bool, ci=None, std=None) -> Figure:
    text = f"{100 * v:.2f}"
    if std is not None:
        text += f" ± {100 * std:.2f}"
    text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""
    cell = Figure(text)
    cell.value, cell.std, cell.ci, cell.best = v, std, tuple(ci) if ci else None, best
    return cell


LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "±": r"$\pm$", "→": r"$\rightarrow$"}


def latex_text(text: str) -> str:
    text = str(text).replace("`", "")
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in text)


# A LaTeX marker per integrity mark: a superscript after the name, explained under the table.
LATEX_MARKS = {"leaky": ("merleaky", "L"), "search_informed": ("mersearch", "S"),
               "selection_unknown": ("merundeclared", "U"),
               "partial": ("merpartial", "P"), "control": ("mercontrol", "C")}


def _latex_cell(c) -> str:
    if isinstance(c, Named):
        return latex_text(c.name) + "".join(f"\\{LATEX_MARKS[k][0]}{{}}" for k in c.marks)
    return rf"\textbf{{{latex_text(c)}}}" if getattr(c, "best", False) else latex_text(c)


def latex_table(header: list[str], rows: list[list[str]], caption: str) -> str:
    r"""A LaTeX ``tabular`` with booktabs rules (the preamble needs ``\usepackage{booktabs}``),
    the best figures in bold, and each integrity mark a superscript macro defined in the file
    (``\providecommand``: a paper may define its own) and explained under the table."""
    from ..integrity import MARK

    used = [k for k in LATEX_MARKS if any(isinstance(c, Named) and k in c.marks
                                          for r in rows for c in r)]
    lines = ["% needs \\usepackage{booktabs} (\\toprule, \\midrule, \\bottomrule)",
             *(f"\\providecommand{{\\{LATEX_MARKS[k][0]}}}{{\\textsuperscript{{"
               f"{LATEX_MARKS[k][1]}}}}}" for k in used),
             r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_text(caption)}}}",
             r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(latex_text(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_cell(c) for c in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if used:
        lines.append(r"\par\footnotesize " + " ".join(
            f"\\{LATEX_MARKS[k][0]}{{}} {latex_text(MARK[k].label)}: "
            f"{latex_text(MARK[k].note)}." for k in used))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _csv_columns(name: str, cells: list) -> list[tuple[str, list]]:
    """One table column as CSV columns: a figure's value, standard deviation and interval
    bounds each in a numeric column of its own (in %), a number as a number, a name with its
    integrity marks as the name and a column per mark (True / False; partial: its text),
    anything else as text."""
    if any(isinstance(c, Named) for c in cells):
        from ..integrity import MARKS

        out = [(name, [getattr(c, "name", str(c)).replace("`", "") for c in cells])]
        for m in MARKS:
            out.append((m.key, [(getattr(c, "marks", {}).get(m.key) or "")
                                if m.key == "partial" else bool(getattr(c, "marks", {})
                                                                .get(m.key))
                                for c in cells]))
        return out
    if cells and all(isinstance(c, Num) for c in cells):
        return [(name, [c.value for c in cells])]
    if not any(isinstance(c, Figure) for c in cells):
        return [(name, [str(c).replace("`", "") for c in cells])]
    base = re.sub(r"\s*\[95 % CI\]", "", name)
    out = [(base, [round(100 * c.value, 4) if isinstance(c, Figure) else "" for c in cells])]
    if any(isinstance(c, Figure) and c.std is not None for c in cells):
        out.append((f"{base} std", [round(100 * c.std, 4) if getattr(c, "std", None) is not None
                                    else "" for c in cells]))
    if any(isinstance(c, Figure) and c.ci for c in cells):
        for i, end in enumerate(("low", "high")):
            out.append((f"{base} 95 % CI {end}",
                        [round(100 * c.ci[i], 4) if getattr(c, "ci", None) else ""
                         for c in cells]))
    return out


def csv_table(header: list[str], rows: list[list[str]]) -> str:
    """The table as CSV: a figure and its interval in columns of their own, as numbers."""
    import csv
    import io

    columns = [col for j, h in enumerate(header) for col in _csv_columns(h, [r[j] for r in rows])]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([name for name, _ in columns])
    w.writerows(zip(*(values for _, values in columns)))
    return buf.getvalue()
