"""LOSO on CASME II (paper Table 3), 3- or 5-class.

    python experiments/loso_casme2.py --data-root /data/CASME2 --protocol 3class

Without --data-root it runs on a synthetic set in the dataset's layout and says so.

The same as `mer-ray train --dataset casme2 ...`: every option of `mer-ray train --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["train", *sys.argv[1:]], script=Path(__file__).name,
                fixed={"dataset": "casme2"}, about=__doc__)
    if code:
        sys.exit(code)
