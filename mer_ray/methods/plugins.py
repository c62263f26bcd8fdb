"""Methods from outside the package: ``--plugin MODULE_OR_FILE`` and installed packages.

A plugin is a Python file (``my_method.py``) or an importable module (``mylab.methods``) that
registers one or more ``Method`` instances when imported. Installed packages can declare theirs
under the entry-point group ``mer_ray.methods`` (in pyproject.toml:
``[project.entry-points."mer_ray.methods"] mine = "mylab.methods"``); those load whenever a
command runs.

How a plugin's method reaches Ray's workers: a fold job carries the method object its planner
resolved, and the plugin's module is registered with Ray's serializer to travel by value (its
classes and functions are sent with the job), so the workers need neither the file nor the
module on their path. Anything the module imports itself (torch, numpy, another package) must
be installed on the workers, as for any Ray job.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

GROUP = "mer_ray.methods"


class PluginError(ValueError):
    """A plugin could not be loaded; the message names it and what to do."""


def _from_file(path: Path) -> ModuleType:
    path = path.resolve()
    # one module name per file, the same in every process that loads it
    name = f"mer_ray_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"--plugin {path}: not a Python file (give a .py file or a module "
                          f"name)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise PluginError(f"--plugin {path}: importing it failed: {type(exc).__name__}: {exc} "
                          f"(run with --debug for the traceback)") from exc
    return module


def _by_value(module: ModuleType) -> None:
    """Send what ``module`` defines to Ray's workers by value (see the module docstring)."""
    try:
        from ray import cloudpickle
    except ImportError:  # Ray is a dependency; without it nothing leaves this process anyway
        return
    cloudpickle.register_pickle_by_value(module)


def load_plugin(spec: str) -> ModuleType:
    """Import one plugin (a file path or a module name) and make its methods travel to Ray's
    workers."""
    from .registry import METHODS

    before = set(METHODS)
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            raise PluginError(f"--plugin {spec}: no such file")
        module = _from_file(path)
    else:
        try:
            module = importlib.import_module(spec)
        except ImportError as exc:
            raise PluginError(f"--plugin {spec}: neither a file nor an importable module "
                              f"({exc})") from exc
    _by_value(module)
    if not set(METHODS) - before and not any(
            getattr(m, "__module__", "") == module.__name__ for m in map(type, METHODS.values())):
        raise PluginError(f"--plugin {spec}: it registers no method (call "
                          f"mer_ray.methods.register(YourMethod()) in it)")
    return module


def load_plugins(specs: list[str] | tuple[str, ...] = ()) -> list[ModuleType]:
    """The installed packages' methods (entry-point group ``mer_ray.methods``), then each
    ``--plugin``, in order."""
    modules = []
    for ep in entry_points(group=GROUP):
        try:
            module = ep.load()
        except Exception as exc:
            raise PluginError(f"the installed method plugin {ep.name!r} ({ep.value}) failed "
                              f"to import: {type(exc).__name__}: {exc}") from exc
        if isinstance(module, ModuleType):  # installed: importable on the workers too
            modules.append(module)
    return modules + [load_plugin(s) for s in specs]
