"""The package's shape, read from its source: no import cycles (deferred imports included),
serving never reaches the training loop or the experiments, and the experiment scripts use the
package's public front door only."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "mer_ray"


def modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imported(module: str, path: Path, known: dict) -> set[str]:
    """The package modules ``module`` imports anywhere in its source (functions included)."""
    deps = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else [])) if node.level \
                else node.module
            for alias in node.names:
                full = f"{name}.{alias.name}"
                deps.add(full if full in known else name)
        elif isinstance(node, ast.Import):
            deps.update(a.name for a in node.names)
    return {d for d in deps if d in known and d != module}


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return {m: imported(m, p, known) for m, p in known.items()}


def reach(graph: dict, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for d in graph[todo.pop()]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_no_import_cycles(graph):
    cycles = sorted(m for m in graph if m in reach(graph, m))
    assert not cycles, f"modules that import themselves through others: {cycles}"


def test_serving_does_not_import_training(graph):
    serving = [m for m in graph if m.startswith("mer_ray.serving")]
    assert {"mer_ray.serving.modelfile", "mer_ray.serving.predict", "mer_ray.serving.export",
            "mer_ray.serving.explain"} <= set(serving)
    for m in serving:
        bad = {d for d in reach(graph, m)
               if d.startswith(("mer_ray.train", "mer_ray.experiments", "mer_ray.cluster"))}
        assert not bad, f"{m} reaches {sorted(bad)}"


def test_training_does_not_import_experiments_or_the_cli(graph):
    for m in (m for m in graph if m.startswith(("mer_ray.train", "mer_ray.data",
                                                "mer_ray.model"))):
        bad = {d for d in reach(graph, m)
               if d.startswith(("mer_ray.experiments", "mer_ray.cli", "mer_ray.serving"))}
        assert not bad, f"{m} reaches {sorted(bad)}"


def test_experiment_scripts_use_the_front_door_only():
    scripts = sorted((REPO / "experiments").glob("*.py"))
    assert {s.name for s in scripts} >= {"loso_samm.py", "loso_casme2.py", "loso_smic.py",
                                         "loso_casme3.py", "loso_megc.py", "ablation.py",
                                         "sensitivity.py", "lora_vs_full.py",
                                         "cross_dataset.py", "sweep.py"}
    for script in scripts:
        names = []
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mer_ray"):
                names += [(node.module, a.name) for a in node.names]
        assert names == [("mer_ray.cli", "main")], (script.name, names)


@pytest.mark.parametrize("script,command", [
    ("loso_samm.py", ["train"]), ("ablation.py", ["grid"]), ("cross_dataset.py", ["transfer"]),
    ("sweep.py", ["sweep"])])
def test_scripts_take_their_cli_twins_options(script, command):
    """A script and its `mer-ray` twin parse the same options: one naming scheme for both
    doors."""
    def options(cmd):
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return {w.strip(",[]") for w in out.stdout.split() if w.startswith("--")}

    twin = options([sys.executable, "-m", "mer_ray", *command, "--help"])
    mine = options([sys.executable, f"experiments/{script}", "--help"])
    assert mine == twin and "--storage-path" in mine and "--set" in mine
