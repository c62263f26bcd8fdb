"""LOSO on CAS(ME)^3 part A, 3-, 4- or 7-class.

    python experiments/loso_casme3.py --data-root /data/CASME3 --protocol 7class
    ray job submit --working-dir . -- python experiments/loso_casme3.py \\
        --data-root /shared/CASME3

--data-root holds part_A/spNO.*/<recording>/color/ (or data/part_A/...) and the label sheet
cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx. Without --data-root it runs on a synthetic
CAS(ME)^3-layout set and says so.

The same as `mer-ray train --dataset casme3 ...`: every option of `mer-ray train --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["train", *sys.argv[1:]], script=Path(__file__).name,
                fixed={"dataset": "casme3"}, about=__doc__)
    if code:
        sys.exit(code)
