"""Experiments on top of the fold runner, one module each: the data a run trains on
(``data``), LOSO runs with seeds (``loso``), grids of runs (``grid``), cross-dataset transfer
(``transfer``), and hyper-parameter searches (``sweep``: flat; ``nested``: nested LOSO). The
``mer-ray`` command and the ``experiments/*.py`` scripts call these."""
