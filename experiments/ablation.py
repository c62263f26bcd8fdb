"""Ablation (paper Table 6 and Table A2) as one grid of LOSO runs, SAMM 3-class by default (--dataset for another).

    python experiments/ablation.py --dataset casme2 --data-root /data/CASME2
    python experiments/ablation.py --max-folds 2 --set train.max_epochs=1 --local   # smoke

Rows (cumulative, as in Table 6): baseline = frozen DinoV2, mean over frames, fusion head;
+LoRA; +LoRA +SFA; +LoRA +DGAT; all three. Table A2: all three with DGAT's LSTM removed.
Without --data-root it runs on a synthetic set in the dataset's layout and says so.

The same as `mer-ray grid ablation ...`: every option of `mer-ray grid --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["grid", "ablation", *sys.argv[1:]], script=Path(__file__).name,
                fixed={"grid": "ablation"}, about=__doc__)
    if code:
        sys.exit(code)
