"""Cross-dataset transfer (paper Table 5): train on SAMM, test on CASME II and on SMIC, 3-class,
without and with domain adaptation (unlabelled target clips in the consistency term).

    python experiments/cross_dataset.py --root samm=/data/SAMM --root casme2=/data/CASME2 \
        --root smic=/data/SMIC
    python experiments/cross_dataset.py --local --set train.max_epochs=1   # synthetic smoke

A dataset given no --root is a synthetic set in its layout, seeded differently per dataset
(SAMM 0, CASME II 1, SMIC 2), so the two sides of a transfer are different sets; the table says
when the data were synthetic. Early stopping uses validation subjects drawn from the source only.

The same as `mer-ray transfer ...`: every option of `mer-ray transfer --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["transfer", *sys.argv[1:]], script=Path(__file__).name,
                fixed=None, about=__doc__)
    if code:
        sys.exit(code)
