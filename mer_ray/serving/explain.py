"""Why a model decided: one figure from one forward and one backward pass on one clip.

Panels: the sampled aligned frames; input-gradient saliency of the predicted class's logit on
each frame (which face regions moved the decision); DGAT attention between frames (mean over
heads); SFA's per-frame high-frequency weight w; SFA's expert weights (low and high band); the
fusion's kernel weights and the class probabilities. Every value is taken from the same forward
pass that produced the prediction, not from a separate approximation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..model.inputs import clips_to_tensor

PANELS = ("frames", "saliency", "dgat_attention", "sfa_w", "sfa_experts", "probabilities")


def attributions(net, frames: np.ndarray) -> dict:
    """Forward and backward on one aligned clip (T, S, S, 3) uint8: numpy arrays of every
    explanatory output, saliency (T, S, S) in [0, 1] on one scale for the whole clip."""
    import cv2

    net.eval()
    x = clips_to_tensor(frames[None]).requires_grad_(True)
    out = net(x, trunk_grad=True)
    probs = torch.softmax(out["logits"].float(), -1)[0]
    k = int(probs.argmax())
    out["logits"][0, k].backward()
    grad = x.grad[0].abs().amax(dim=1).numpy()  # (T, S, S): strongest channel per pixel
    size = grad.shape[-1]
    sigma = max(size / 48.0, 0.5)
    sal = np.stack([cv2.GaussianBlur(g, (0, 0), sigma) for g in grad])
    sal = sal / max(float(sal.max()), 1e-12)
    res = {"prediction": k, "probabilities": probs.detach().numpy(), "saliency": sal,
           "kernel_weights": out["kernel_weights"][0].detach().numpy()}
    if "w" in out:
        res["w"] = out["w"][0].detach().numpy()
        res["alpha_low"] = out["alpha_low"][0].detach().numpy()
        res["alpha_high"] = out["alpha_high"][0].detach().numpy()
    if "attention" in out:
        res["attention"] = out["attention"][0].detach().numpy()  # (H, T, T)
    return res


def summary_values(att: dict) -> dict:
    """The explanatory values as JSON-ready lists (saliency left out: it is the picture)."""
    out = {"prediction": att["prediction"],
           "kernel_weights": att["kernel_weights"].round(6).tolist()}
    for key in ("w", "alpha_low", "alpha_high"):
        if key in att:
            out[key] = att[key].round(6).tolist()
    if "attention" in att:
        out["attention_mean_over_heads"] = att["attention"].mean(0).round(6).tolist()
    return out


def _frame_rows(fig, grid, frames: np.ndarray, att: dict, frame_numbers: list[int]) -> None:
    """The top two rows: each aligned frame, and its saliency over it in grey."""
    for i in range(frames.shape[0]):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(frames[i])
        ax.set_title(f"frame {frame_numbers[i]}", fontsize=8)
        ax.axis("off")
        ax2 = fig.add_subplot(grid[1, i])
        ax2.imshow(frames[i].mean(-1), cmap="gray")
        ax2.imshow(att["saliency"][i], cmap="inferno", alpha=0.55, vmin=0, vmax=1)
        ax2.axis("off")
        if i == 0:
            ax.text(-0.08, 0.5, "aligned frames", transform=ax.transAxes, rotation=90,
                    va="center", ha="right", fontsize=9)
            ax2.text(-0.08, 0.5, "saliency |d logit / d pixel|", transform=ax2.transAxes,
                     rotation=90, va="center", ha="right", fontsize=9)


def _attention_panel(fig, ax, att: dict, labels: list[str]) -> list[str]:
    t = len(labels)
    if "attention" not in att:
        ax.text(0.5, 0.5, "DGAT is off in this model", ha="center", va="center")
        ax.axis("off")
        return []
    im = ax.imshow(att["attention"].mean(0), cmap="viridis", vmin=0)
    ax.set_xticks(range(t), labels, fontsize=7, rotation=90)
    ax.set_yticks(range(t), labels, fontsize=7)
    ax.set_xlabel("attended frame")
    ax.set_ylabel("frame")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(f"DGAT attention (mean of {att['attention'].shape[0]} heads)", fontsize=9)
    return ["dgat_attention"]


def _sfa_panels(ax, ax_experts, att: dict, labels: list[str]) -> list[str]:
    if "w" not in att:
        ax.text(0.5, 0.5, "SFA is off in this model", ha="center", va="center")
        ax.axis("off")
        ax_experts.axis("off")
        return []
    t = len(labels)
    ax.bar(range(t), att["w"], color="tab:orange")
    ax.set_xticks(range(t), labels, fontsize=7, rotation=90)
    ax.set_ylim(0, max(1e-6, float(att["w"].max())) * 1.15)
    ax.set_title("SFA high-frequency weight w per frame", fontsize=9)
    pos = np.arange(len(att["alpha_low"]))
    ax_experts.bar(pos - 0.2, att["alpha_low"], 0.4, label="low band")
    ax_experts.bar(pos + 0.2, att["alpha_high"], 0.4, label="high band")
    ax_experts.set_xticks(pos, [f"expert {i}" for i in pos], fontsize=7)
    ax_experts.set_ylim(0, 1)
    ax_experts.legend(fontsize=7)
    ax_experts.set_title("SFA expert weights alpha", fontsize=9)
    return ["sfa_w", "sfa_experts"]


def _probability_panel(ax, att: dict, class_names: list[str]) -> list[str]:
    colours = ["tab:green" if i == att["prediction"] else "tab:gray"
               for i in range(len(class_names))]
    ax.barh(range(len(class_names)), att["probabilities"], color=colours)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    kw = ", ".join(f"{v:.2f}" for v in att["kernel_weights"])
    ax.set_title("class probabilities", fontsize=9)
    ax.set_xlabel(f"fusion kernel weights: {kw}", fontsize=7)
    return ["probabilities"]


def explain_figure(frames: np.ndarray, att: dict, class_names: list[str],
                   frame_numbers: list[int], out: str | Path, title: str = "") -> list[str]:
    """Write the PNG; returns the panels drawn (also stored in the PNG's text chunk
    ``mer_ray_panels``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = frames.shape[0]
    fig = plt.figure(figsize=(max(2.0 * t, 12), 8.5), constrained_layout=True)
    grid = fig.add_gridspec(3, max(t, 4), height_ratios=[1, 1, 1.2])
    _frame_rows(fig, grid, frames, att, frame_numbers)
    bottom = grid[2, :].subgridspec(1, 4)
    labels = [str(n) for n in frame_numbers]
    drawn = ["frames", "saliency"]
    drawn += _attention_panel(fig, fig.add_subplot(bottom[0, 0]), att, labels)
    drawn += _sfa_panels(fig.add_subplot(bottom[0, 1]), fig.add_subplot(bottom[0, 2]), att,
                         labels)
    drawn += _probability_panel(fig.add_subplot(bottom[0, 3]), att, class_names)
    fig.suptitle(title, fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, metadata={"mer_ray_panels": json.dumps(drawn),
                                       "Software": "mer-ray"})
    plt.close(fig)
    return drawn
