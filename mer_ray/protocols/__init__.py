"""Protocols on top of the fold runner, one module each: LOSO runs with seeds (``loso``), grids
of runs (``grid``), cross-dataset transfer (``transfer``), method comparisons (``compare``),
hyper-parameter searches (``flat_search``; ``nested_search``: nested LOSO), summaries and run
names (``summary``, ``names``). The ``mer-ray`` command and the ``experiments/*.py`` scripts
call these."""
