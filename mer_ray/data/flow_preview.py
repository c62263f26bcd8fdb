"""``mer-ray flow``: one clip's onset and apex frames (aligned), the optical flow between them as
a colour wheel, and its optical strain, in one PNG: how the flow-based methods see a clip.

The clip comes from shards prepared with flow (``--shards``, the stored columns), or straight
from a dataset folder (``--data-root``: the clip is read, its onset and apex frames aligned and
the flow computed here, exactly as ``prepare --flow`` would).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from .flow import BACKENDS, FLOW_COLUMNS, flow_colours


def stored_flow(shards, clip: str | None) -> tuple[str, dict]:
    """(subject/clip, its flow columns) from shards prepared with flow; ``clip``: a clip
    name or subject/clip (default: the first clip)."""
    from .shards import SubjectReader

    if shards.meta.data.flow is None:
        raise ValueError(f"{shards.root}: prepared without flow; prepare them with --flow "
                         f"{'|'.join(BACKENDS)}, or give --data-root to compute it here")
    for subject in shards.subjects():
        r = SubjectReader(shards.clips, (subject,), ("subject", "clip", *FLOW_COLUMNS))
        for i, name in enumerate(r.columns["clip"]):
            if clip in (None, name, f"{subject}/{name}"):
                return f"{subject}/{name}", {k: r.columns[k][i] for k in FLOW_COLUMNS}
    raise ValueError(f"{shards.root}: no clip {clip!r}")


def computed_flow(row: dict, data, backend: str) -> dict:
    """The flow columns of one manifest row, computed as ``prepare --flow`` computes them."""
    from .frames import index_frames
    from .prepare import PrepareConfig, clip_flow

    index = index_frames(row["source"])
    span = index.span(int(row["onset"]), int(row["offset"]))
    if not span:
        raise ValueError(f"{row['source']}: no frames numbered {row['onset']}..{row['offset']}")
    cfg = PrepareConfig.from_data(replace(data, flow=backend))
    return clip_flow(index, span, row.get("apex"), cfg)


def flow_figure(columns: dict, out: str | Path, title: str) -> Path:
    """The PNG (and an SVG beside it): onset, apex, their difference, the flow as a colour wheel (with the wheel as a
    key), the horizontal and vertical flow, and the strain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u = np.asarray(columns["flow_u"], np.float32)
    v = np.asarray(columns["flow_v"], np.float32)
    strain = np.asarray(columns["strain"], np.float32)
    onset, apex = columns["onset_frame"], columns["apex_frame"]
    diff = np.abs(apex.astype(np.int16) - onset.astype(np.int16)).mean(-1)
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    wheel = flow_colours(xx, yy) * (np.hypot(xx, yy) <= 1)[..., None]
    top = float(np.percentile(np.hypot(u, v), 99.5) or 1.0)
    panels = [(onset, "onset (aligned)", None), (apex, "apex (aligned)", None),
              (diff, "|apex - onset|", "gray"), (flow_colours(u, v), f"flow (99.5 % below {top:.2f} px)",
                                                 None),
              (wheel.astype(np.uint8), "direction key", None), (u, "horizontal u", "RdBu_r"),
              (v, "vertical v", "RdBu_r"), (strain, "optical strain", "inferno")]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
    for ax, (img, label, cmap) in zip(axes, panels):
        if cmap == "RdBu_r":
            shown = ax.imshow(img, cmap=cmap, vmin=-top, vmax=top)
        else:
            shown = ax.imshow(img, cmap=cmap)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
        if cmap in ("RdBu_r", "inferno"):  # values with units: a colour bar says which
            bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            bar.ax.tick_params(labelsize=6)
            bar.set_label("px" if cmap == "RdBu_r" else "strain", fontsize=6)
    note = columns.get("flow_note") or ""
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, metadata={"mer_ray_panels": json.dumps([p[1] for p in panels])})
    fig.savefig(out.with_suffix(".svg"))  # vector, for a paper
    plt.close(fig)
    return out

