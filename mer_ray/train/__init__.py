"""Running folds: every experiment's fold jobs made in one place (``jobs.py``), the runner that
takes whole planned runs and runs their folds in this process or on Ray Train workers per fold
slot (``runner.py``, ``slots.py``), one fold's attempt wherever it runs (``attempt.py``), a
run's folder (``folder.py``) and the progress lines. It runs any method it is handed and
imports none."""
