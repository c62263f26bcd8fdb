"""Action units: every dataset's AU cell read into one normalised set of AU numbers.

The datasets code the same facial actions (FACS) but spell them differently:

- side and intensity marks around the number: CASME II ``4+L10``, ``R12``; SAMM ``10A``,
  ``R14``; intensities ``A``-``E`` (``12B``, ``10A/B``: either of two intensities);
- alternatives: SAMM ``R14 or 4`` (the coder hesitated between two AUs);
- doubt: CASME II ``?`` or ``4?``; 4DME ``(k)`` after an AU the coders were not sure of;
- separators: ``+`` mostly, ``,`` or ``;`` in some rows, CAS(ME)^3 part C's full-width comma
  ``，``, spaces; an ``AU`` prefix in some cells (``AU4+AU7``).

The rule (the cross-dataset AU protocol's, as MEB applies it): an AU is present when its number
appears in the cell, whatever its side or intensity marks. Alternatives keep both numbers (each
was coded as possible). Doubtful AUs (``?``, ``(k)``) are left out of the set by default and
named in the note, so a user can see them; ``keep_doubtful=True`` keeps them. A cell with parts
that are not AUs keeps the AUs it has and names the rest in the note. An empty cell is the
empty set (the coders saw no AU); a dataset without an AU column gives None (not coded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The 12 AUs of the cross-dataset protocol (CD6ME): frequent enough in all six datasets.
CD6ME_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17)

_SPLIT = re.compile(r"\s*(?:\+|,|，|;|、|\band\b|\bor\b|/|\s)\s*", re.IGNORECASE)
_TOKEN = re.compile(r"^(?:AU)?\s*([LRBTU])?\s*(\d{1,2})\s*([A-E])?$", re.IGNORECASE)
_DOUBT = re.compile(r"\(\s*k\s*\)|\?", re.IGNORECASE)
_EMPTY = {"", "-", "/", "none", "n/a", "na", "nan"}


@dataclass(frozen=True)
class ParsedAUs:
    """A cell's AU numbers (sorted, each once) and what was noticed while reading it."""

    aus: tuple[int, ...]
    note: str | None = None
    doubtful: tuple[int, ...] = ()


def _pieces(text: str) -> list[str]:
    """The cell cut at its separators; a doubt mark stays with the AU before it."""
    text = re.sub(r"\s*\(\s*k\s*\)", "(k)", text, flags=re.IGNORECASE)
    return [p for p in _SPLIT.split(text) if p]


def parse_aus(cell, keep_doubtful: bool = False) -> ParsedAUs | None:
    """``cell`` (a sheet's AU cell: text, a number, or None) as a ``ParsedAUs``; None when the
    cell is None (the dataset or row codes no AUs)."""
    if cell is None:
        return None
    if isinstance(cell, float) and cell != cell:  # NaN: an empty spreadsheet cell
        return None
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        cell = str(int(cell)) if float(cell).is_integer() else str(cell)
    text = str(cell).strip()
    if text.lower() in _EMPTY:
        return ParsedAUs(())
    found, doubtful, odd = set(), set(), []
    for piece in _pieces(text):
        doubt = bool(_DOUBT.search(piece))
        core = _DOUBT.sub("", piece).strip()
        if not core:
            if doubt:
                odd.append(piece)  # a lone "?": the coders were unsure of something
            continue
        if re.fullmatch(r"[A-E]", core, re.IGNORECASE) and found:
            continue  # "10A/B": the second intensity of an AU already read
        m = _TOKEN.match(core)
        if m is None:
            odd.append(piece)
            continue
        number = int(m.group(2))
        (doubtful if doubt else found).add(number)
    notes = []
    if doubtful:
        notes.append(f"doubtful AU(s) {sorted(doubtful)} in {text!r} "
                     + ("kept" if keep_doubtful else "left out"))
    if odd:
        notes.append(f"part(s) of {text!r} that are not AUs: {odd}")
    if len(re.findall(r"\bor\b", text, re.IGNORECASE)):
        notes.append(f"alternatives in {text!r}: every AU named is kept")
    aus = found | (doubtful if keep_doubtful else set())
    return ParsedAUs(tuple(sorted(aus)), "; ".join(notes) or None,
                     tuple(sorted(doubtful)))


NOT_CODED = "not coded"


def aus_text(aus) -> str:
    """An AU set as the shards store it, plain text any Parquet reader takes: "4,10"; "" when
    the coders saw none; "not coded" when the dataset codes no AUs."""
    return NOT_CODED if aus is None else ",".join(str(int(a)) for a in aus)


def aus_from_text(text: str | None) -> tuple[int, ...] | None:
    """The inverse of ``aus_text`` (None: not coded)."""
    if text is None or text == NOT_CODED:
        return None
    return tuple(int(a) for a in text.split(",") if a.strip())


def au_vector(aus, wanted: tuple[int, ...] = CD6ME_AUS) -> list[int]:
    """0/1 per AU of ``wanted`` (a clip's multi-label target)."""
    have = set(aus or ())
    return [int(a in have) for a in wanted]


def au_mask(aus, wanted: tuple[int, ...] = CD6ME_AUS) -> int:
    """A clip's multi-label target as one integer (the shards' ``label_id`` under a
    multi-label protocol): bit i set when ``wanted[i]`` is among ``aus``."""
    return sum(1 << i for i, bit in enumerate(au_vector(aus, wanted)) if bit)


def au_numbers(names) -> tuple[int, ...]:
    """The AU numbers of a multi-label protocol's class names ("AU12" -> 12)."""
    return tuple(int(n[2:]) for n in names)


def mask_name(mask: int, names) -> str:
    """A target or prediction mask as text: "AU4+AU10"; "none" for the empty set."""
    got = [n for i, n in enumerate(names) if (int(mask) >> i) & 1]
    return "+".join(got) if got else "none"
