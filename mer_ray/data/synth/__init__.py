"""Synthetic micro-expression datasets in the real datasets' on-disk formats.

``generate`` renders ``subjects`` x classes x ``clips_per_class`` sequences (see ``render.py``),
writes them in the chosen layout (see ``layouts.py``) with an annotation file, and records what
it did in ``synth.json``. The same seed gives byte-identical frames and annotations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .actions import au_string
from .layouts import (
    WrittenClip,
    clip_name,
    emotion_words,
    render_emotions,
    spelled,
    subject_id,
    write_annotations,
    write_frames,
)
from .render import RenderConfig, make_subject, plan_clip, render_clip

LAYOUTS = ("samm", "casme2", "smic")
FIRST_SUBJECT = {"samm": 6, "casme2": 1, "smic": 1}  # SAMM's participants start at 006


@dataclass
class SynthResult:
    root: Path
    layout: str
    protocol: str
    clips: list[WrittenClip] = field(default_factory=list)
    annotation_file: Path | None = None
    preview: Path | None = None


def generate(
    out: str | Path,
    layout: str = "samm",
    subjects: int = 8,
    clips_per_class: int = 2,
    protocol: str = "3class",
    seed: int = 0,
    preview: str | Path | None = None,
    render: RenderConfig | None = None,
    progress: bool = True,
) -> SynthResult:
    """Write a synthetic dataset under ``out``; returns what was written."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if subjects < 1 or clips_per_class < 1:
        raise ValueError("subjects and clips-per-class must be at least 1")
    render = render or RenderConfig()
    words = emotion_words(layout, protocol)  # fails on a protocol the layout does not have
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    result = SynthResult(root, layout, protocol)
    examples: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    total = subjects * len(words) * clips_per_class
    bar = tqdm(total=total, desc=f"synth {layout}", unit="clip", disable=not progress)
    for si in range(subjects):
        number = FIRST_SUBJECT[layout] + si
        sid = subject_id(layout, number)
        subject = make_subject(np.random.default_rng([seed, si]), render)
        for ci, (label, label_words) in enumerate(words.items()):
            for k in range(clips_per_class):
                rng = np.random.default_rng([seed, si, ci, k])
                # Several emotion words pool into one class (3-class negative): take turns.
                word = label_words[(si + k) % len(label_words)]
                options = render_emotions(layout, word)
                rendered = options[(si + k) % len(options)]
                plan = plan_clip(rng, rendered, render)
                frames = render_clip(subject, plan, render, rng)
                first = int(rng.integers(1000, 9000)) if layout == "samm" else \
                    int(rng.integers(1, 100))
                clip = WrittenClip(
                    subject_number=number, subject=sid,
                    clip=clip_name(layout, sid, ci, word, k), emotion=spelled(layout, word),
                    render_emotion=rendered, label=label, first_frame=first,
                    onset=first + plan.onset, apex=first + plan.apex, offset=first + plan.offset,
                    au=au_string(rendered),
                )
                write_frames(root, layout, clip, word, frames)
                result.clips.append(clip)
                if label not in examples:
                    examples[label] = (frames[plan.onset], frames[plan.apex])
                bar.update(1)
    bar.close()
    result.annotation_file = write_annotations(root, layout, result.clips)
    meta = {
        "generator": "mer-ray synth",
        "synthetic": True,
        "layout": layout,
        "protocol": protocol,
        "subjects": subjects,
        "clips_per_class": clips_per_class,
        "seed": seed,
        "render": asdict(render),
        "clips": [asdict(c) for c in result.clips],
    }
    (root / "synth.json").write_text(json.dumps(meta, indent=1))
    if preview:
        from .preview import write_preview

        result.preview = write_preview(Path(preview), examples, layout, protocol)
    return result


def is_synthetic(root: str | Path) -> bool:
    """Whether a dataset root was written by ``generate``."""
    return (Path(root) / "synth.json").is_file()
