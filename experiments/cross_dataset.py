"""Cross-dataset transfer (paper Table 5): train on SAMM, test on CASME II and on SMIC, 3-class,
without and with domain adaptation (unlabelled target clips in the consistency term).

    python experiments/cross_dataset.py --root samm=/data/SAMM --root casme2=/data/CASME2 \
        --root smic=/data/SMIC
    python experiments/cross_dataset.py --local --set train.max_epochs=1   # synthetic smoke

A dataset given no --root is a synthetic set in its layout, seeded differently per dataset
(SAMM 0, CASME II 1, SMIC 2), so the two sides of a transfer are different sets; the table says
when the data were synthetic. Early stopping uses validation subjects drawn from the source only.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.experiment import cross_main  # noqa: E402

if __name__ == "__main__":
    cross_main(__doc__)
