"""LOSO on SAMM (paper Table 2), 3- or 5-class.

    python experiments/loso_samm.py --data-root /data/SAMM --protocol 5class
    ray job submit --working-dir . -- python experiments/loso_samm.py --data-root /shared/SAMM

Without --data-root it runs on a synthetic SAMM-layout set and says so.

The same as `mer-ray train --dataset samm ...`: every option of `mer-ray train --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["train", *sys.argv[1:]], script=Path(__file__).name,
                fixed={"dataset": "samm"}, about=__doc__)
    if code:
        sys.exit(code)
