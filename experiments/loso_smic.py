"""LOSO on SMIC-HS (paper Table 4), 3-class.

    python experiments/loso_smic.py --data-root /data/SMIC

Without --data-root it runs on a synthetic SMIC-layout set and says so.
"""

from mer_ray.experiment import main

if __name__ == "__main__":
    main("smic", __doc__)
