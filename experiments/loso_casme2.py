"""LOSO on CASME II (paper Table 3), 3- or 5-class.

    python experiments/loso_casme2.py --data-root /data/CASME2 --protocol 3class

Without --data-root it runs on a synthetic CASME II-layout set and says so.
"""

from mer_ray.experiment import main

if __name__ == "__main__":
    main("casme2", __doc__)
