"""The manifest: one row per annotated clip, included or excluded with the reason why.

``build_manifest`` runs a dataset's adapter, applies the protocol's label map and checks every clip
against the frames on disk. Nothing is dropped: a clip that cannot be used keeps its row with a
short ``excluded_reason`` (one of ``REASONS``, so they can be counted) and, where useful, a longer
``notes`` entry naming the file and what was found.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import polars as pl

from .adapters import get_adapter
from .adapters.base import SEVERAL_EMOTIONS, RawClip
from .frames import FrameError, index_frames
from .labels import PROTOCOLS, class_names, protocol

SCHEMA = {
    "dataset": pl.Utf8,
    "subject": pl.Utf8,
    "clip": pl.Utf8,
    "emotion": pl.Utf8,
    "label": pl.Utf8,
    "label_id": pl.Int64,
    "onset": pl.Int64,
    "apex": pl.Int64,
    "offset": pl.Int64,
    "n_frames": pl.Int64,
    "source": pl.Utf8,
    "excluded_reason": pl.Utf8,
    "notes": pl.Utf8,
    "annotation": pl.Utf8,
    "annotation_sha256": pl.Utf8,
    "action_units": pl.Utf8,  # the AU cell as the sheet writes it (null: not coded)
    "aus": pl.List(pl.Int64),  # the AU numbers it names (data/aus.py); null: not coded
}

# The short reasons a clip can be excluded for (the long story goes into ``notes``).
UNREADABLE_ROW = "unreadable annotation row"
DUPLICATE = "duplicate clip id"
OUTSIDE = "label outside protocol"
NO_EMOTION = "emotion missing"
NO_SPAN = "onset or offset not annotated"
NO_APEX = "apex missing (protocol needs it)"
ONSET_AFTER_OFFSET = "onset after offset"
FRAMES_MISSING = "frames missing on disk"
VIDEO_UNREADABLE = "video could not be opened"
SPAN_EMPTY = "no frames on disk in onset..offset"
# (ours) More than this share of an annotated span missing on disk excludes the clip: what is
# left cannot stand for the expression (T frames sampled from it would mostly repeat the few
# present). Any missing frame is noted.
MOSTLY_MISSING_SHARE = 0.5
SPAN_MOSTLY_MISSING = "most of onset..offset missing on disk"
ROW_FIX = "left out by a documented per-row fix"
NOT_IN_GT = "not in the ground-truth list"
GT_ONLY = "in the ground-truth list, not in the annotations"
NO_AUS = "AUs not coded"  # a multi-label (AU) protocol needs the clip's AU cell
REASONS = (UNREADABLE_ROW, DUPLICATE, OUTSIDE, NO_EMOTION, NO_SPAN, NO_APEX, ONSET_AFTER_OFFSET,
           FRAMES_MISSING, VIDEO_UNREADABLE, SPAN_EMPTY, SPAN_MOSTLY_MISSING, ROW_FIX,
           NOT_IN_GT, GT_ONLY, SEVERAL_EMOTIONS, NO_AUS)
# Not a reason: a note on included clips whose apex lies outside their span (the span is valid;
# the apex is left empty so nothing uses the bad value).
APEX_OUTSIDE = "apex outside onset..offset"


def _row(c: RawClip) -> dict:
    from .aus import parse_aus

    parsed = parse_aus(c.action_units)
    row = {
        "dataset": c.dataset, "subject": c.subject, "clip": c.clip, "emotion": c.emotion,
        "label": None, "label_id": None, "onset": c.onset, "apex": c.apex, "offset": c.offset,
        "n_frames": None, "source": c.source, "excluded_reason": None, "notes": c.note,
        "annotation": c.annotation, "annotation_sha256": c.annotation_sha256,
        "action_units": c.action_units, "aus": None if parsed is None else list(parsed.aus),
    }
    if parsed is not None and parsed.note:
        _add_note(row, f"AUs: {parsed.note}")
    return row


def _label(row: dict, c: RawClip, proto, names) -> bool:
    """Fill the row's label and label_id under ``proto``; False (the reason set) when the
    protocol cannot use the clip. A multi-label protocol's label is the AU set, whatever the
    emotion; an authoritative list's class (``c.label``) wins over the emotion word."""
    if proto.multilabel:
        if row["aus"] is None:
            row["excluded_reason"] = NO_AUS
            return False
        row["label"], row["label_id"] = _au_label(row["aus"], names)
        return True
    if c.label is not None:
        label = c.label
        word = proto.label_of(c.emotion) if c.emotion else None
        if c.emotion and word != label:
            _add_note(row, f"class {label} from the ground-truth list; the annotation says "
                           f"{c.emotion!r} ({word or 'outside the protocol'})")
    else:
        if not c.emotion:
            row["excluded_reason"] = NO_EMOTION
            return False
        label = proto.label_of(c.emotion)
        if label is None:
            row["excluded_reason"] = OUTSIDE
            return False
    row["label"], row["label_id"] = label, names.index(label)
    return True


def _au_label(aus, names) -> tuple[str, int]:
    """A clip's multi-label target: its AU set among the protocol's AUs, as text and mask."""
    from .aus import au_mask, au_numbers, mask_name

    mask = au_mask(aus, au_numbers(names))
    return mask_name(mask, names), mask


def _add_note(row: dict, text: str) -> None:
    row["notes"] = text if not row["notes"] else f"{row['notes']}; {text}"


def _check_frames(row: dict, whole: bool) -> None:
    """Fill n_frames (and onset/offset for whole-folder clips) from disk, clamping the span."""
    src = Path(row["source"])
    if not src.exists():
        row["excluded_reason"] = FRAMES_MISSING
        _add_note(row, f"no frame folder or video at {src}")
        return
    try:
        index = index_frames(src)
    except FrameError as exc:
        row["excluded_reason"] = VIDEO_UNREADABLE if src.is_file() else FRAMES_MISSING
        _add_note(row, str(exc))
        return
    if index.unnumbered:
        _add_note(row, f"{len(index.unnumbered)} image(s) without a frame number ignored, "
                       f"e.g. {Path(index.unnumbered[0]).name}")
    if len(index) == 0:
        row["excluded_reason"] = FRAMES_MISSING
        _add_note(row, f"{src} holds no numbered frames")
        return
    first, last = index.numbers[0], index.numbers[-1]
    if whole:
        row["onset"], row["offset"] = first, last
    else:
        # Annotations occasionally point past the frames on disk: clamp and say so.
        if row["onset"] < first:
            _add_note(row, f"onset {row['onset']} clamped to {first} (first frame on disk)")
            row["onset"] = first
        if row["offset"] > last:
            _add_note(row, f"offset {row['offset']} clamped to {last} (last frame on disk)")
            row["offset"] = last
    n = len(index.span(row["onset"], row["offset"]))
    if n == 0:
        row["excluded_reason"] = SPAN_EMPTY
        _add_note(row, f"frames on disk run {first}..{last}")
        return
    row["n_frames"] = n
    annotated = row["offset"] - row["onset"] + 1
    if n < annotated:
        present = set(index.numbers)
        gone = [f for f in range(row["onset"], row["offset"] + 1) if f not in present]
        apex = row.get("apex")
        _add_note(row, f"{len(gone)} of {annotated} frames of {row['onset']}..{row['offset']} "
                       f"missing on disk (e.g. {', '.join(map(str, gone[:5]))})"
                       + (f", the apex {apex} among them" if apex in gone else ""))
        if len(gone) > MOSTLY_MISSING_SHARE * annotated:
            row["excluded_reason"] = SPAN_MOSTLY_MISSING


def build_manifest(
    dataset: str,
    root: str | Path,
    protocol_name: str,
    *,
    annotations: str | Path | None = None,
    check_frames: bool = True,
) -> pl.DataFrame:
    """One row per annotated clip of ``dataset`` under ``root`` (columns: ``SCHEMA``).

    ``annotations`` names the annotation file (the MEGC composite: its ground-truth CSV) when it
    is not found under ``root``. ``check_frames=False`` skips the disk checks (useful to inspect
    an annotation file before the frames are unpacked); ``n_frames`` then stays null.
    """
    root = Path(root)
    names = class_names(dataset, protocol_name)  # fails early on an unknown protocol
    adapter = get_adapter(dataset, annotations=Path(annotations) if annotations else None)
    rows, seen = [], {}
    for c in adapter.clips(root):
        row = _row(c)
        rows.append(row)
        key = (c.subject, c.clip)
        if c.problem:
            row["excluded_reason"] = UNREADABLE_ROW
            _add_note(row, f"{c.annotation}: {c.problem}")
            continue
        if key in seen:
            row["excluded_reason"] = DUPLICATE
            _add_note(row, f"{c.annotation} repeats {c.subject}/{c.clip} first seen at {seen[key]}")
            continue
        seen[key] = c.annotation
        if c.reason:
            row["excluded_reason"] = c.reason
            if c.label is not None:
                row["label"] = c.label
            continue
        # the composite's own protocol when it has one (cd6me), else the clip's dataset's
        proto = PROTOCOLS.get((dataset, protocol_name)) or protocol(c.dataset, protocol_name)
        if not _label(row, c, proto, names):
            continue
        if c.label is None and protocol_name in c.exclude_in:
            row["excluded_reason"] = ROW_FIX
            _add_note(row, f"{c.annotation}: {c.exclude_in[protocol_name]}")
            continue
        if not c.whole_source:
            if c.onset is None or c.offset is None:
                row["excluded_reason"] = NO_SPAN
                continue
            if c.onset > c.offset:
                row["excluded_reason"] = ONSET_AFTER_OFFSET
                _add_note(row, f"{c.annotation}: onset {c.onset} > offset {c.offset}")
                continue
            if proto.requires_apex and c.apex is None and c.label is None:
                row["excluded_reason"] = NO_APEX
                continue
            if c.apex is not None and not c.onset <= c.apex <= c.offset:
                # The span is valid, so the clip stays; the apex cannot be right.
                row["apex"] = None
                _add_note(row, f"{APEX_OUTSIDE} ({c.annotation}: onset {c.onset}, apex "
                               f"{c.apex}, offset {c.offset}); apex left empty")
        if c.unlisted:
            row["excluded_reason"] = NOT_IN_GT
            _add_note(row, c.unlisted)
            continue
        if check_frames:
            _check_frames(row, c.whole_source)
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)


def annotation_files(manifest: pl.DataFrame) -> list[tuple[str, str]]:
    """(file name, sha256) of every annotation file the manifest was built from. A row that two
    files describe (a MEGC clip: its sheet and the ground truth) lists both, "; "-separated, in
    ``annotation`` and ``annotation_sha256`` alike."""
    if "annotation_sha256" not in manifest.columns:
        return []
    found = set()
    for where, shas in manifest.select("annotation", "annotation_sha256").iter_rows():
        if not shas:
            continue
        for piece, sha in zip(where.split("; "), shas.split("; ")):
            if sha:
                found.add((re.sub(r":\d+$", "", piece), sha))
    return sorted(found)


def included(manifest: pl.DataFrame) -> pl.DataFrame:
    return manifest.filter(pl.col("excluded_reason").is_null())


def summary_counts(manifest: pl.DataFrame) -> tuple[Counter, Counter]:
    """(included clips per class, excluded clips per reason)."""
    inc = Counter(included(manifest)["label"].to_list())
    exc = Counter(manifest.filter(pl.col("excluded_reason").is_not_null())["excluded_reason"]
                  .to_list())
    return inc, exc


def read_manifest(path: str | Path) -> pl.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found; create it with 'mer-ray manifest'")
    df = pl.read_parquet(path)
    for c in ("action_units", "aus"):  # a manifest written before AUs were read: not coded
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=SCHEMA[c]).alias(c))
    missing = [c for c in SCHEMA if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a mer-ray manifest (missing columns: {', '.join(missing)})")
    return df
