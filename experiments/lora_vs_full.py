"""LoRA vs full fine-tuning (paper Table 7): trainable parameters, GFLOPs per clip, training
memory, and UF1/UAR from a LOSO of each under the same configuration.

    python experiments/lora_vs_full.py --data-root /data/CASME2
    python experiments/lora_vs_full.py --max-folds 1 --set train.max_epochs=1 --local   # smoke

Both rows train from pixels (the frozen-trunk cache does not apply to full fine-tuning, so it is
off for both). Memory, for a training step on one clip: on a GPU the CUDA allocator's peak; on a
CPU the count of parameters + grads + Adam state + saved activations (torch keeps no CPU
allocator statistics), and beside it the peak RSS of a fresh process that builds the model and
takes two training steps (what the operating system sees, torch's own few hundred MB included).
Without --data-root it runs on a synthetic CASME II-layout set and says so.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.experiment import build_parser, grid_main  # noqa: E402

ROWS = [("LoRA", ["model.finetune=lora", "train.cache_trunk=false"]),
        ("full fine-tuning", ["model.finetune=full", "train.cache_trunk=false"])]

if __name__ == "__main__":
    import torch

    from mer_ray.console import show
    from mer_ray.model.accounting import model_stats
    from mer_ray.train.config import load_experiment

    p = build_parser("casme2", __doc__)
    args = p.parse_args()
    # The accounting does not depend on training: measured first, stored with each grid row
    # (for mer-ray report) and printed beside the LOSO figures.
    stats = []
    for label, overrides in ROWS:
        cfg = load_experiment(args.config, args.overrides + overrides).model
        stats.append(model_stats(label, cfg, args.frames, rss=not torch.cuda.is_available()))
    extras = [{"accounting": {
        "trainable_params": st.trainable_params, "total_params": st.total_params,
        "gflops_forward": st.gflops_forward, "gflops_train": st.gflops_train,
        "training_memory_mb": st.peak_memory_mb, "memory_kind": st.memory_kind,
        "peak_rss_mb": st.peak_rss_mb, "frames": args.frames, "image_size": cfg.image_size}}
        for st in stats]
    rows = grid_main("casme2", __doc__, ROWS, "lora_vs_full", "LoRA vs full fine-tuning",
                     parser=p, row_extras=extras)
    table = [(st.name, f"{st.trainable_params / 1e6:.2f}", f"{st.total_params / 1e6:.2f}",
              f"{st.gflops_forward:.1f}", f"{st.gflops_train:.1f}",
              f"{st.peak_memory_mb:.0f} ({st.memory_kind})",
              "-" if st.peak_rss_mb is None else f"{st.peak_rss_mb:.0f}",
              f"{100 * r['uf1']:.2f}", f"{100 * r['uar']:.2f}") for st, r in zip(stats, rows)]
    show(["", "trainable (M)", "params (M)", "GFLOPs/clip fwd", "GFLOPs/clip train",
          "training memory MB", "peak RSS MB (CPU process)", "UF1 % (all folds)",
          "UAR % (all folds)"], table,
         title=f"Table 7 layout, S={cfg.image_size}, T={args.frames}")
