"""LOSO on SMIC-HS (paper Table 4), 3-class.

    python experiments/loso_smic.py --data-root /data/SMIC

Without --data-root it runs on a synthetic SMIC-layout set and says so.

The same as `mer-ray train --dataset smic ...`: every option of `mer-ray train --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["train", *sys.argv[1:]], script=Path(__file__).name,
                fixed={"dataset": "smic"}, about=__doc__)
    if code:
        sys.exit(code)
