"""Loss-weight sensitivity (paper Figure 3): UF1/UAR against lambda1 with lambda2 = 0.5, and
against lambda2 with lambda1 = 0.1. SAMM 3-class by default (--dataset for another).

    python experiments/sensitivity.py --dataset casme2 --data-root /data/CASME2
    python experiments/sensitivity.py --values 0 0.1 1 --max-folds 2 --local   # smoke

Without --data-root it runs on a synthetic set in the dataset's layout and says so.

The same as `mer-ray grid sensitivity ...`: every option of `mer-ray grid --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["grid", "sensitivity", *sys.argv[1:]], script=Path(__file__).name,
                fixed={"grid": "sensitivity"}, about=__doc__)
    if code:
        sys.exit(code)
