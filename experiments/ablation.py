"""Ablation (paper Table 6 and Table A2) as one grid of LOSO runs, CASME II 3-class by default.

    python experiments/ablation.py --data-root /data/CASME2
    python experiments/ablation.py --max-folds 2 --set train.max_epochs=1 --local   # smoke

Rows (cumulative, as in Table 6): baseline = frozen DinoV2, mean over frames, fusion head;
+LoRA; +LoRA +SFA; +LoRA +DGAT; all three. Table A2: all three with DGAT's LSTM removed.
Without --data-root it runs on a synthetic CASME II-layout set and says so.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.experiment import grid_main  # noqa: E402

ROWS = [
    ("baseline", ["model.finetune=frozen", "model.use_sfa=false", "model.use_dgat=false"]),
    ("+LoRA", ["model.use_sfa=false", "model.use_dgat=false"]),
    ("+LoRA+SFA", ["model.use_dgat=false"]),
    ("+LoRA+DGAT", ["model.use_sfa=false"]),
    ("all (LoRA+SFA+DGAT)", []),
    ("all, DGAT without LSTM (A2)", ["model.use_lstm=false"]),
]

if __name__ == "__main__":
    grid_main("casme2", __doc__, ROWS, "ablation", "Ablation, Table 6 / A2 layout")
