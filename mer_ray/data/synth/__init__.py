"""Synthetic micro-expression datasets in the real datasets' on-disk formats.

``generate`` renders ``subjects`` x classes x ``clips_per_class`` sequences (see ``render.py``),
writes them in the chosen layout (see ``layouts.py``) with an annotation file, and records what
it did in ``synth.json``. The same seed gives byte-identical frames and annotations.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .actions import au_string
from .layouts import (
    LAYOUTS,
    WrittenClip,
    clip_name,
    emotion_words,
    first_frame,
    render_emotions,
    spelled,
    subject_id,
    write_annotations,
    write_frames,
)
from .render import RenderConfig, make_subject, plan_clip, render_clip

PARALLEL_FROM = 24  # clips
FIRST_SUBJECT = {"samm": 6, "casme2": 1, "smic": 1, "casme3": 1, "casme": 1, "mmew": 1,
                 "4dme": 1}  # SAMM starts at 006


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
    progress=None,
    workers: int | None = None,
) -> SynthResult:
    """Write a synthetic dataset under ``out``; returns what was written.

    When Ray is initialised, subjects are rendered by up to ``workers`` Ray tasks at once (None:
    one per core of this machine), all on this process's node, since the files are written
    where this process writes them. Sets under ``PARALLEL_FROM`` clips, or without Ray, are
    rendered here. Every draw is seeded by (seed, subject, class, clip): the set is the same
    either way. ``progress(done, total)``: called as subjects' clips are written."""
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
    done = [0]

    def rendered(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], total)

    args = (str(root), layout, protocol, clips_per_class, seed, render)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers > 1 and total >= PARALLEL_FROM and _ray_running():
        parts = _render_on_ray(range(subjects), args, workers, rendered)
    else:
        parts = []
        for si in range(subjects):
            parts.append(_render_subject(si, *args))
            rendered(len(parts[-1][0]))
    for written, shown in parts:
        result.clips.extend(written)
        for label, pair in shown.items():
            examples.setdefault(label, pair)
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


def _ray_running() -> bool:
    import sys

    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def _render_on_ray(subjects, args: tuple, window: int, rendered) -> list:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    # No CPU is requested: this node may offer none to Ray (a cluster head), and the window
    # keeps the tasks to one per core.
    task = ray.remote(num_cpus=0, scheduling_strategy=here)(_render_subject)
    todo, running, parts = list(subjects), [], []
    while todo or running:
        while todo and len(running) < window:
            running.append(task.remote(todo.pop(0), *args))
        ready, running = ray.wait(running)
        for part in ray.get(ready):
            parts.append(part)
            rendered(len(part[0]))
    return sorted(parts, key=lambda p: p[0][0].subject_number)


def _render_subject(si: int, root: str, layout: str, protocol: str, clips_per_class: int,
                    seed: int, render: RenderConfig):
    """Render and write every clip of subject number ``si``: (written clips, one
    (onset, apex) frame pair per label for the preview)."""
    import cv2

    cv2.setNumThreads(1)
    root = Path(root)
    words = emotion_words(layout, protocol)
    number = FIRST_SUBJECT[layout] + si
    sid = subject_id(layout, number)
    subject = make_subject(np.random.default_rng([seed, si]), render)
    written, examples = [], {}
    for ci, (label, label_words) in enumerate(words.items()):
        for k in range(clips_per_class):
            rng = np.random.default_rng([seed, si, ci, k])
            # Several emotion words pool into one class (3-class negative): take turns.
            word = label_words[(si + k) % len(label_words)]
            options = render_emotions(layout, word)
            rendered = options[(si + k) % len(options)]
            plan = plan_clip(rng, rendered, render)
            frames = render_clip(subject, plan, render, rng)
            first = first_frame(layout, rng, ci, k, clips_per_class, render.sequence_length)
            clip = WrittenClip(
                subject_number=number, subject=sid,
                clip=clip_name(layout, sid, ci, word, k, clips_per_class),
                emotion=spelled(layout, word),
                render_emotion=rendered, label=label, first_frame=first,
                onset=first + plan.onset, apex=first + plan.apex, offset=first + plan.offset,
                au=au_string(rendered, layout),
            )
            write_frames(root, layout, clip, word, frames)
            written.append(clip)
            examples.setdefault(label, (frames[plan.onset], frames[plan.apex]))
    return written, examples


COMPOSITE_PARTS = ("samm", "casme2", "smic")


def generate_composite(out: str | Path, subjects: int = 3, clips_per_class: int = 2,
                       seed: int = 0, render: RenderConfig | None = None,
                       progress=None) -> list[SynthResult]:
    """A synthetic MEGC 2019 composite under ``out``: ``samm/``, ``casme2/`` and ``smic/``, each
    a 3-class set of ``subjects`` subjects in that dataset's layout, seeded apart (seed, seed +
    1, seed + 2), and a ``synth.json`` that marks the whole folder synthetic."""
    root = Path(out)
    results = [generate(root / part, part, subjects, clips_per_class, "3class", seed=seed + i,
                        render=render, progress=progress)
               for i, part in enumerate(COMPOSITE_PARTS)]
    (root / "synth.json").write_text(json.dumps({
        "generator": "mer-ray synth", "synthetic": True, "layout": "megc",
        "protocol": "3class", "parts": list(COMPOSITE_PARTS), "subjects_per_part": subjects,
        "clips_per_class": clips_per_class, "seed": seed,
    }, indent=1))
    return results


# The CD6ME parts: (layout, the emotion protocol its clips are drawn from, frame size,
# frames per recorded sequence). Each part has its own look, as the real six do: grey-scale
# (SAMM, 4DME) or colour, its own resolution, and its own sequence length for its frame rate
# (SAMM's 200 fps the longest).
CD6ME_PARTS = (("casme", "3class", 224, 36), ("casme2", "5class", 256, 44),
               ("samm", "5class", 288, 56), ("4dme", "5class", 240, 40),
               ("mmew", "7class", 256, 44), ("casme3", "7class", 208, 32))


def generate_cd6me(out: str | Path, subjects: int = 2, clips_per_class: int = 1,
                   seed: int = 0, render: RenderConfig | None = None,
                   progress=None) -> list[SynthResult]:
    """A synthetic CD6ME root under ``out``: one folder per part (``CD6ME_PARTS``), each
    ``subjects`` subjects in that dataset's layout, its clips drawn from the part's emotion
    classes (each clip's AU cell written in the part's spelling), seeded apart, and a
    ``synth.json`` that marks the whole folder synthetic."""
    from dataclasses import replace

    root, render = Path(out), render or RenderConfig()
    results = [generate(root / part, part, subjects, clips_per_class, protocol, seed=seed + i,
                        render=replace(render, frame_size=size, sequence_length=length),
                        progress=progress)
               for i, (part, protocol, size, length) in enumerate(CD6ME_PARTS)]
    (root / "synth.json").write_text(json.dumps({
        "generator": "mer-ray synth", "synthetic": True, "layout": "cd6me",
        "protocol": "cd6me", "parts": [p[0] for p in CD6ME_PARTS],
        "subjects_per_part": subjects, "clips_per_class": clips_per_class, "seed": seed,
    }, indent=1))
    return results


def is_synthetic(root: str | Path) -> bool:
    """Whether a dataset root was written by ``generate``."""
    return (Path(root) / "synth.json").is_file()
