"""LoRA vs full fine-tuning (paper Table 7): trainable parameters, GFLOPs per clip, training
memory, and UF1/UAR from a LOSO of each under the same configuration.

    python experiments/lora_vs_full.py --data-root /data/CASME2
    python experiments/lora_vs_full.py --max-folds 1 --set train.max_epochs=1 --local   # smoke

Both rows train from pixels (the frozen-trunk cache does not apply to full fine-tuning, so it is
off for both). Memory is the CUDA allocator's peak on a GPU; on a CPU it is parameters + grads +
Adam state + saved activations for one clip (torch keeps no CPU allocator statistics).
Without --data-root it runs on a synthetic CASME II-layout set and says so.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.experiment import build_parser, grid_main  # noqa: E402

ROWS = [("LoRA", ["model.finetune=lora", "train.cache_trunk=false"]),
        ("full fine-tuning", ["model.finetune=full", "train.cache_trunk=false"])]

if __name__ == "__main__":
    from mer_ray.console import show
    from mer_ray.model.accounting import model_stats
    from mer_ray.train.config import load_experiment

    p = build_parser("casme2", __doc__)
    args = p.parse_args()
    rows = grid_main("casme2", __doc__, ROWS, "lora_vs_full", "LoRA vs full fine-tuning",
                     parser=p)
    table = []
    for (label, overrides), r in zip(ROWS, rows):
        cfg = load_experiment(args.config, args.overrides + overrides).model
        st = model_stats(label, cfg, args.frames)
        table.append((label, f"{st.trainable_params / 1e6:.2f}", f"{st.total_params / 1e6:.2f}",
                      f"{st.gflops_forward:.1f}", f"{st.gflops_train:.1f}",
                      f"{st.peak_memory_mb:.0f} ({st.memory_kind})",
                      f"{100 * r['uf1']:.2f}", f"{100 * r['uar']:.2f}"))
    show(["", "trainable (M)", "params (M)", "GFLOPs/clip fwd", "GFLOPs/clip train",
          "training memory MB", "UF1 % (all folds)", "UAR % (all folds)"], table,
         title=f"Table 7 layout, S={cfg.image_size}, T={args.frames}")
