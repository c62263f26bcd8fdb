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


def floors(graph: dict) -> dict[str, set[str]]:
    """The package's folders (and top-level modules) as one graph: which imports which."""
    def floor(m: str) -> str:
        return m.split(".")[1] if "." in m else m
    out: dict[str, set[str]] = {}
    for m, deps in graph.items():
        out.setdefault(floor(m), set()).update(floor(d) for d in deps if floor(d) != floor(m))
    return out


def test_no_loops_between_folders(graph):
    """The floors stand on each other, never in a circle: data and model below fitting, the
    methods above it, the trainer above them, the experiments above the trainer."""
    f = floors(graph)
    loops = sorted(m for m in f if m in reach(f, m))
    assert not loops, f"folders that import themselves through others: {loops}"


def test_methods_sit_below_the_trainer(graph):
    """train/ runs any method it is handed and names none; a method imports the platform's
    small interfaces (fitting/, data/, model/), never the trainer or the experiments."""
    for m in (m for m in graph if m.startswith("mer_ray.train")):
        bad = {d for d in reach(graph, m) if d.startswith("mer_ray.methods")}
        assert not bad, f"{m} reaches {sorted(bad)}"
    for m in (m for m in graph if m.startswith(("mer_ray.methods", "mer_ray.fitting"))):
        bad = {d for d in reach(graph, m)
               if d.startswith(("mer_ray.train", "mer_ray.protocols", "mer_ray.cli"))}
        assert not bad, f"{m} reaches {sorted(bad)}"


def test_serving_does_not_import_training(graph):
    serving = [m for m in graph if m.startswith("mer_ray.serving")]
    assert {"mer_ray.serving.modelfile", "mer_ray.serving.predict", "mer_ray.serving.export",
            "mer_ray.serving.explain"} <= set(serving)
    for m in serving:
        bad = {d for d in reach(graph, m)
               if d.startswith(("mer_ray.train", "mer_ray.protocols", "mer_ray.cluster"))}
        assert not bad, f"{m} reaches {sorted(bad)}"


def test_training_does_not_import_experiments_or_the_cli(graph):
    for m in (m for m in graph if m.startswith(("mer_ray.train", "mer_ray.data",
                                                "mer_ray.model"))):
        bad = {d for d in reach(graph, m)
               if d.startswith(("mer_ray.protocols", "mer_ray.cli", "mer_ray.serving"))}
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
        listed = out.stdout.split("\noptions:\n", 1)[1]  # after the description
        return {w.strip(",[]") for w in listed.split() if w.startswith("--")}

    twin = options([sys.executable, "-m", "mer_ray", *command, "--help"])
    mine = options([sys.executable, f"experiments/{script}", "--help"])
    assert mine == twin and "--storage-path" in mine and "--set" in mine


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_rooms_stay_small():
    """Modules a newcomer reads in one sitting: no file over 400 lines, no function over 80."""
    long_files = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
                  if (n := len(p.read_text().splitlines())) > 400}
    assert not long_files
    long_functions = {f"{p.relative_to(REPO)}:{f.name}": f.end_lineno - f.lineno + 1
                      for p in PACKAGE.rglob("*.py") for f in _functions(p)
                      if f.end_lineno - f.lineno + 1 > 80}
    assert not long_functions


def _calls(path: Path, name: str):
    """Calls of ``name`` (a bare or dotted callee ending in it) in a source file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            callee = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
            if callee == name:
                yield node


def test_one_home_each():
    """A fold job is made in one module; the device is chosen by one function (no other
    module names "cuda" or "cpu" for torch); prepare.json is opened in one module; no module
    imports another's private names."""
    home = {"FoldJob": {"mer_ray/train/jobs.py"}, "TokenSource": {"mer_ray/methods/mer/tokens.py"}}
    for name, allowed in home.items():
        makers = {str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
                  if any(_calls(p, name))}
        assert makers <= allowed, (name, makers)
    for p in PACKAGE.rglob("*.py"):
        rel = str(p.relative_to(REPO))
        for call in _calls(p, "device"):
            literal = [a for a in call.args if isinstance(a, ast.Constant)]
            assert not literal or rel == "mer_ray/fitting/device.py", (rel, call.lineno)
        text = p.read_text()
        for node in ast.walk(ast.parse(text)):
            if rel != "mer_ray/data/shards.py":
                assert not (isinstance(node, ast.Constant) and node.value == "prepare.json"), rel
                assert not (isinstance(node, ast.Name) and node.id == "PREPARE_JSON"), rel
            if isinstance(node, ast.ImportFrom) and (node.level or "mer_ray" in (node.module
                                                                               or "")):
                private = [a.name for a in node.names
                           if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, (rel, node.module, private)


def test_the_shipped_configurations_load():
    """Every configuration file the project ships is one this version reads."""
    from mer_ray.config import load_experiment
    from mer_ray.protocols.search_space import read_space

    configs = REPO / "experiments" / "configs"
    for name in ("demo.yaml", "paper.yaml"):
        load_experiment(configs / name)
    assert load_experiment(configs / "paper.yaml").data.size == 224
    from mer_ray.cli_args import SPACE

    assert SPACE.is_relative_to(REPO / "mer_ray") and read_space(SPACE)  # inside the package


def test_every_cited_document_is_in_the_repository():
    """The code, the configurations and the READMEs cite documents by path (docs/method.md,
    section 3): each must exist, so a reader can follow every citation."""
    import re

    # documents: docs/<name>.md and capitalised ones (README.md, experiments/README.md, ...);
    # report.md and the like are outputs, not citations
    cited = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[A-Z][A-Z0-9_]*\.md|docs/[\w-]+\.md)\b")
    sources = [*PACKAGE.rglob("*.py"), *(REPO / "experiments").rglob("*.py"),
               *(REPO / "experiments").rglob("*.yaml"), *(REPO / "tests").rglob("*.py"),
               REPO / "README.md", *(REPO / "docs").rglob("*.md")]
    missing = sorted({(str(p.relative_to(REPO)), name) for p in sources
                      for name in cited.findall(p.read_text())
                      if not (REPO / name).is_file()})
    assert not missing, missing
