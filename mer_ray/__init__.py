"""mer-ray: micro-expression recognition on Ray.

From Python: ``import mer_ray as mr``, then ``mr.loso``, ``mr.load_run``, ``mr.score`` and
``mr.compare`` (``api.py``). They are imported when first used, so that importing the package
(as every Ray worker does) stays light."""
from .version import VERSION as __version__  # noqa: F401 (the package version)

_API = ("Run", "compare", "load_run", "loso", "score")


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'mer_ray' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
