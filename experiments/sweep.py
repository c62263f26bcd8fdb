"""Hyper-parameter search (Optuna TPE) over lambda1, lambda2, LoRA rank and SFA experts, with a
figure that can be reported: nested leave-one-subject-out by default.

    python experiments/sweep.py --trials 8 --inner-folds 2            # nested (the default)
    python experiments/sweep.py --flat --num-samples 16 --sweep-folds 3 [--asha]
    ray job submit --working-dir . -- python experiments/sweep.py --dataset casme2 \\
        --data-root /shared/CASME2 --storage-path s3://bucket/mer-ray

Nested (the figure to report): for every outer test subject, a search over the other subjects
only (--trials configurations, each scored by its mean validation UF1 on --inner-folds inner
folds), then the chosen configuration trained on all other subjects and the outer subject
predicted once. The outer predictions give the reported UF1/UAR; each outer fold records its
chosen configuration and the subjects its search saw (never its own). Outer folds run
concurrently on the fold slots, like LOSO folds, on the shared trunk tokens.

--flat: one Ray Tune + Optuna search on a few folds (--sweep-folds) whose training and
validation subjects together cover most subjects, then the best configuration as a LOSO under
<name>-best. That LOSO's test subjects took part in choosing its configuration: its summary says
search_informed: true, and its figures are not an unbiased estimate (use them to pick settings
for a new dataset, not to report).

The search space is the package's mer_ray/protocols/sweep_space.yaml (--space to change it). Running the
same command again resumes: finished outer folds (or Tune trials) are kept. Without
--data-root it runs on a synthetic set and says so.

The same as `mer-ray sweep ...`: every option of `mer-ray sweep --help`.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the package arrives with the job, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mer_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    code = main(["sweep", *sys.argv[1:]], script=Path(__file__).name,
                fixed=None, about=__doc__)
    if code:
        sys.exit(code)
