"""LOSO on the MEGC 2019 composite (SAMM + CASME II + SMIC-HS, 3 classes, 68 subjects), the
field's standard cross-database benchmark. UF1/UAR are reported over all 442 predictions and
over each dataset's part.

    python experiments/loso_megc.py --data-root /data/MEGC2019
    python experiments/loso_megc.py --data-root /data/MEGC2019 \\
        --annotations /data/MEGC2019/combined_3class_gt.csv
    ray job submit --working-dir . -- python experiments/loso_megc.py --data-root /shared/MEGC

--data-root holds samm/, casme2/ and smic/ (each a dataset root) and, optionally, the
organisers' combined_3class_gt.csv, which then decides membership and labels. Without
--data-root it runs on a synthetic composite (three synthetic sets in the three layouts) and
says so.

The same as `mer-ray train --dataset megc ...`: every option of `mer-ray train --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["train", *sys.argv[1:]], script=Path(__file__).name,
                fixed={"dataset": "megc"}, about=__doc__)
    if code:
        sys.exit(code)
