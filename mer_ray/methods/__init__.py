"""Methods: what a fold trains, chosen by ``model.method``, one registry.

Every method trains through the same fold runner, on the same splits (the folds of the shards,
drawn from the seed), with the same selection (validation subjects' UF1, or the leaky test
selection when ``train.selection=test``), and its predictions go through the same metrics,
intervals and report. A method is a subclass of ``Method``: its name, what it reads from the
shards, a ``fit`` that turns a fold job into a fold result (``fitting/job.py``; a network
method hands its parts to the shared fold loop, ``fitting/loop.py``) and its parameter count.
Adding one is registering an instance (``register``), in this package or anywhere before the
run starts; the tests register a toy method in a few lines (``tests/test_methods.py``).
Methods import ``fitting/`` only, never the trainer (``train/``) or the protocols.

- ``mer``: the paper's model (LoRA DinoV2, SFA, DGAT, fusion; ``mer/``), the default;
- ``lbptop_svm``: LBP-TOP histograms and a linear SVM (``lbptop_svm.py``);
- ``ststnet``: the three-stream shallow CNN on optical flow and strain (``ststnet.py``);
- ``offapexnet``: the two-stream CNN on onset-apex optical flow (``offapexnet.py``).
"""

# Each module registers its method when imported.
from . import lbptop_svm, mer, offapexnet, ststnet  # noqa: E402,F401,I001
from .registry import (
    METHODS,
    Method,
    Recipe,
    caches_trunk,
    load_with_recipe,
    method_named,
    method_of,
    register,
)

__all__ = ["METHODS", "Method", "Recipe", "caches_trunk", "load_with_recipe", "method_named", "method_of",
           "register"]
