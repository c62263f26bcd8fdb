"""LOSO on SMIC-HS (paper Table 4), 3-class.

    python experiments/loso_smic.py --data-root /data/SMIC

Without --data-root it runs on a synthetic SMIC-layout set and says so.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.experiment import main  # noqa: E402

if __name__ == "__main__":
    main("smic", __doc__)
