"""LOSO on SAMM (paper Table 2), 3- or 5-class.

    python experiments/loso_samm.py --data-root /data/SAMM --protocol 5class
    ray job submit --working-dir . -- python experiments/loso_samm.py --data-root /shared/SAMM

Without --data-root it runs on a synthetic SAMM-layout set and says so.
"""

from mer_ray.experiment import main

if __name__ == "__main__":
    main("samm", __doc__)
