"""mer-ray: micro-expression recognition on Ray."""
__version__ = "0.1.0"
