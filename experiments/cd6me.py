"""The cross-dataset action-unit benchmark (CD6ME): CASME, CASME II, SAMM, 4DME, MMEW and
CAS(ME)^3 part A pooled, leave one dataset out, 12 AUs detected per clip; every registered
method on the same folds beside the constant predictor (every AU in every clip), in MEB's
layout (AUs as columns; held-out datasets as columns).

    python experiments/cd6me.py --data-root cd6me=/data/CD6ME
    python experiments/cd6me.py --with-leaky --with-controls \\
        --config experiments/configs/cd6me.yaml
    ray job submit --working-dir . -- python experiments/cd6me.py --data-root cd6me=/shared/CD6ME

The folder holds casme/, casme2/, samm/, 4dme/, mmew/ and casme3/, each a dataset root as its
own adapter reads it. Without --data-root it runs on the synthetic six (six sets in the six
layouts) and says so.

The same as `mer-ray compare --protocol cd6me ...`: every option of `mer-ray compare --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["compare", *sys.argv[1:]], script=Path(__file__).name,
                fixed={"protocol": "cd6me"}, about=__doc__)
    if code:
        sys.exit(code)
