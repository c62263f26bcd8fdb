"""The README's Python example, run as written: ``import mer_ray as mr``, a LOSO on Ray from
Python, a scored DataFrame and the compare table; what it prints is what the README shows."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def block_after(marker: str, fence: str) -> str:
    text = README.read_text()
    start = text.index(marker)
    body = text.index(f"```{fence}\n", start) + len(fence) + 4
    return text[body:text.index("```", body)]


def test_the_readme_python_example_runs_as_written(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # its data/ and results/ land here, as in a fresh notebook
    code = block_after("<!-- example: python api -->", "python")
    exec(compile(code, "README.md example", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    shown = block_after("It prints (after the run's own progress lines", "text")
    printed = [re.sub(r"\s+", " ", line).strip() for line in out.splitlines()]
    for line in shown.strip().splitlines():  # every line the README shows, printed
        assert re.sub(r"\s+", " ", line).strip() in printed, line
    import mer_ray as mr

    run = mr.load_run(tmp_path / "results" / "api-example")
    assert run.summary["method"] == "lbptop_svm" and run.summary["n_folds"] == 4
    assert all(f["node_ip"] != "local" for f in run.summary["folds"])  # Ray's fold workers
    scored = [p.name for p in (tmp_path / "results").iterdir() if p.name.startswith("scored")]
    assert len(scored) == 1 and mr.load_run(tmp_path / "results" / scored[0]).folds["hash"] \
        == run.folds["hash"]
