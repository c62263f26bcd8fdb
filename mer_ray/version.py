"""The package version, in a module of its own so that any module can read it without
importing the package front door (``__init__``, which offers the Python API)."""

VERSION = "0.1.0"
