"""LOSO on CASME II (paper Table 3), 3- or 5-class.

    python experiments/loso_casme2.py --data-root /data/CASME2 --protocol 3class

Without --data-root it runs on a synthetic CASME II-layout set and says so.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.experiment import main  # noqa: E402

if __name__ == "__main__":
    main("casme2", __doc__)
