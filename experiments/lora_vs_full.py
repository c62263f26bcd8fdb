"""LoRA vs full fine-tuning (paper Table 7): trainable parameters, GFLOPs per clip, training
memory, and UF1/UAR from a LOSO of each under the same configuration.

    python experiments/lora_vs_full.py --dataset casme2 --data-root /data/CASME2
    python experiments/lora_vs_full.py --max-folds 1 --set train.max_epochs=1 --local   # smoke

Both rows train from pixels (the frozen-trunk cache does not apply to full fine-tuning, so it is
off for both). Memory, for a training step on one clip: on a GPU the CUDA allocator's peak; on a
CPU the count of parameters + grads + Adam state + saved activations (torch keeps no CPU
allocator statistics), and beside it the peak RSS of a fresh process that builds the model and
takes two training steps (what the operating system sees, torch's own few hundred MB included).
Without --data-root it runs on a synthetic set in the dataset's layout and says so.

The same as `mer-ray grid lora-vs-full ...`: every option of `mer-ray grid --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["grid", "lora-vs-full", *sys.argv[1:]], script=Path(__file__).name,
                fixed={"grid": "lora-vs-full"}, about=__doc__)
    if code:
        sys.exit(code)
