"""Loss-weight sensitivity (paper Figure 3): UF1/UAR against lambda1 with lambda2 = 0.5, and
against lambda2 with lambda1 = 0.1. CASME II 3-class by default.

    python experiments/sensitivity.py --data-root /data/CASME2
    python experiments/sensitivity.py --values 0 0.1 1 --max-folds 2 --local   # smoke

Without --data-root it runs on a synthetic CASME II-layout set and says so.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.experiment import build_parser, grid_main  # noqa: E402

VALUES = [0.0, 0.05, 0.1, 0.3, 0.5, 1.0]

if __name__ == "__main__":
    p = build_parser("casme2", __doc__)
    p.add_argument("--values", type=float, nargs="+", default=VALUES)
    values = p.parse_known_args()[0].values
    rows = [(f"lambda1={v:g} (lambda2=0.5)", [f"loss.lambda1={v}", "loss.lambda2=0.5"])
            for v in values]
    rows += [(f"lambda2={v:g} (lambda1=0.1)", ["loss.lambda1=0.1", f"loss.lambda2={v}"])
             for v in values]
    grid_main("casme2", __doc__, rows, "sensitivity", "Loss-weight sensitivity (Figure 3)",
              parser=p)
