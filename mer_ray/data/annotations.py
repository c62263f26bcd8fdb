"""Reading annotation spreadsheets and the messy values inside them.

Shared by the dataset adapters: finding the header row (SAMM has 13 rows of preamble before it,
CASME II none), looking columns up by name whatever their spacing or case (CASME II leaves some
header cells empty), and parsing frame numbers and subject ids that arrive as ints, floats or
strings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl


class AnnotationError(Exception):
    """An annotation file that cannot be used at all; the message names the file and the fix."""


def _key(name: Any) -> str:
    return "".join(str(name).lower().split()) if name is not None else ""


@dataclass
class Table:
    file: Path
    header_row: int  # 1-based spreadsheet row of the header
    headers: list[str]
    rows: list[tuple[int, tuple[Any, ...]]]  # (1-based spreadsheet row, values)

    def optional(self, name: str) -> int | None:
        """0-based position of column ``name``, or None when the header lacks it (a column
        some copies of a sheet do not have)."""
        want = _key(name)
        return next((i for i, h in enumerate(self.headers) if _key(h) == want), None)

    def column(self, name: str) -> int:
        """0-based position of column ``name``; raises AnnotationError naming the file."""
        want = _key(name)
        for i, h in enumerate(self.headers):
            if _key(h) == want:
                return i
        found = ", ".join(repr(h) for h in self.headers if h)
        raise AnnotationError(
            f"{self.file}: column {name!r} not found in the header on row {self.header_row} "
            f"(found: {found}). Is this the right annotation file for this dataset?"
        )


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes: which version of an annotation file a manifest was built from."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_table(file: str | Path, must_have: tuple[str, ...], search_rows: int = 40,
               sheet: str | None = None) -> Table:
    """Read the sheet of an xlsx file whose header row holds all of ``must_have``.

    ``sheet``: the sheet to read (CAS(ME)^3's labels are on sheet ``label``, not the first);
    None reads the first. The header is the first row within ``search_rows`` that contains
    every name in ``must_have`` (compared without spaces or case). Rows that are entirely empty
    are skipped. Cells keep their type: text stays text (``'006'`` keeps its zeros).
    """
    file = Path(file)
    try:
        wb = openpyxl.load_workbook(file, read_only=True, data_only=True)
    except FileNotFoundError:
        raise AnnotationError(f"{file}: annotation file not found") from None
    except Exception as exc:  # openpyxl raises several types for a damaged file
        raise AnnotationError(f"{file}: not a readable xlsx file ({exc})") from exc
    try:
        if sheet is None:
            ws = wb.worksheets[0]
        else:
            names = {n.strip().lower(): n for n in wb.sheetnames}
            if sheet.lower() not in names:
                raise AnnotationError(
                    f"{file}: no sheet named {sheet!r} (sheets: "
                    f"{', '.join(map(repr, wb.sheetnames))}). Is this the right annotation "
                    f"file for this dataset?")
            ws = wb[names[sheet.lower()]]
        all_rows = list(ws.iter_rows(values_only=True))
    finally:
        wb.close()
    wanted = {_key(n) for n in must_have}
    for r, values in enumerate(all_rows[:search_rows], start=1):
        keys = {_key(v) for v in values}
        if wanted <= keys:
            headers = ["" if v is None else str(v).strip() for v in values]
            rows = [
                (i, tuple(v))
                for i, v in enumerate(all_rows[r:], start=r + 1)
                if any(x not in (None, "") for x in v)
            ]
            return Table(file, r, headers, rows)
    # Report the nearest candidate so a missing column is named, not just "no header".
    best_r, best = max(
        ((r, {_key(v) for v in vals} & wanted) for r, vals in enumerate(all_rows[:search_rows], 1)),
        key=lambda x: len(x[1]),
        default=(0, set()),
    )
    missing = [n for n in must_have if _key(n) not in best]
    where = f"row {best_r}" if best else f"the first {search_rows} rows"
    raise AnnotationError(
        f"{file}: header row not found: column(s) {', '.join(map(repr, missing))} missing "
        f"(looked in {where}). Check that this is the dataset's original annotation file."
    )


def parse_frame(value: Any) -> int | None:
    """A frame number from a cell: 46, 46.0, '46' -> 46; empty, '/', '-1' -> None (not annotated).

    Raises ValueError for anything else, so the caller can record the row.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a frame number: {value!r}")
    if isinstance(value, (int, float)):
        if float(value) == -1:
            return None
        if float(value) != int(value) or value < 0:
            raise ValueError(f"not a frame number: {value!r}")
        return int(value)
    text = str(value).strip()
    if text in ("", "/", "-", "-1", "n/a", "N/A"):
        return None
    try:
        return parse_frame(float(text))
    except ValueError:
        raise ValueError(f"not a frame number: {value!r}") from None


def parse_subject(value: Any, prefix: str, width: int) -> str:
    """Subject id in the dataset's folder spelling: (6, '', 3) -> '006'; (1, 'sub', 2) -> 'sub01'.

    Strings already in that spelling are kept ('sub01', '006'); '1' and 1.0 are treated as 1.
    """
    if value is None or str(value).strip() == "":
        raise ValueError("subject is empty")
    text = str(value).strip()
    if prefix and text.lower().startswith(prefix):
        text = text[len(prefix):]
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a subject id: {value!r}") from None
    if number != int(number) or number < 0:
        raise ValueError(f"not a subject id: {value!r}")
    return f"{prefix}{int(number):0{width}d}"
