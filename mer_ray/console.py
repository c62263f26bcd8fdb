"""Short summary tables printed at the end of each command."""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    fmt = [("  ".join(c.ljust(w) for c, w in zip(r, widths))).rstrip() for r in cells]
    out = ([title] if title else []) + [fmt[0], line] + fmt[1:]
    return "\n".join(out)


def show(headers, rows, title=None) -> None:
    print(table(headers, rows, title), flush=True)
