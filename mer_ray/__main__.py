"""``python -m mer_ray``: the mer-ray command without installing the package (as under
``ray job submit --working-dir . -- python -m mer_ray train ...``)."""

import sys

from .cli import main

sys.exit(main())
