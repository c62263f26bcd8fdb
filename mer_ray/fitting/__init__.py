"""What every method fits a fold with, below the methods and the trainer that runs them: the
fold job and its result (``job.py``), the one device rule (``device.py``) and the fold loop
the network methods share (``loop.py``)."""
