"""The paper-table scripts in tiny mode: each runs end to end and writes its table."""

import json
import runpy
import sys
from pathlib import Path

import pytest

from tests.helpers.tiny import write_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


def run_script(name, tmp_path, monkeypatch, *extra):
    write_config(tmp_path / "tiny.yaml", ("train.cache_trunk=true",))
    argv = [name, "--config", str(tmp_path / "tiny.yaml"), "--workdir", str(tmp_path / "w"),
            "--storage-path", str(tmp_path / "runs"), "--frames", "4", "--max-folds", "1",
            "--synthetic-subjects", "3", "--synthetic-clips-per-class", "1", "--local", *extra]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(REPO / "experiments" / name), run_name="__main__")


def test_ablation_grid(ray_session, tmp_path, monkeypatch, capsys):
    run_script("ablation.py", tmp_path, monkeypatch)
    grid = json.loads((tmp_path / "runs" / "ablation.json").read_text())
    assert [r["row"] for r in grid["rows"]] == [
        "baseline", "+LoRA", "+LoRA+SFA", "+LoRA+DGAT", "all (LoRA+SFA+DGAT)",
        "all, DGAT without LSTM (A2)"]
    assert len({r["run"] for r in grid["rows"]}) == 6  # six different configurations
    for r in grid["rows"]:
        assert 0 <= r["uf1"] <= 1 and 0 <= r["per_fold_mean_uar"] <= 1
        assert r["synthetic"] and not r["pretrained"]
        summary = json.loads((tmp_path / "runs" / r["run"] / "summary.json").read_text())
        for key, value in r["settings"].items():
            section, field = key.split(".")
            assert summary["config"][section][field] == value
    out = capsys.readouterr().out
    assert "Table 6" in out and "SYNTHETIC" in out and "random-init" in out
    # the report: one section per run, the grid in the paper's layout with the best in bold
    from mer_ray.cli import main as cli

    assert cli(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "report"),
                "--format", "md,latex,csv"]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "**SYNTHETIC**" in text and "**randomly initialised**" in text
    for r in grid["rows"]:
        assert f"### `{r['run']}`" in text
        assert (tmp_path / "report" / "figures" / f"{r['run']}_confusion.png").is_file()
        assert (tmp_path / "report" / "figures" / f"{r['run']}_folds.png").is_file()
    table = [line for line in text.splitlines() if line.startswith("| baseline")
             or line.startswith("| +LoRA") or line.startswith("| all")]
    assert len(table) == 6
    best = max(r["uf1"] for r in grid["rows"])
    for line, r in zip(table, grid["rows"]):
        cell = line.split("|")[2].strip()
        assert cell.startswith("**") == (r["uf1"] == best), (cell, r["uf1"], best)
    # the same table for papers: LaTeX tabular and CSV, best in bold in the LaTeX
    tex = (tmp_path / "report" / "tables" / "ablation.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\textbf{" in tex and r"+LoRA+SFA" in tex
    import csv

    rows = list(csv.DictReader((tmp_path / "report" / "tables" / "ablation.csv").open()))
    assert [r["row"] for r in rows] == [r["row"] for r in grid["rows"]]
    assert {r["leaky"] for r in rows} == {"False"}  # each mark a column of its own
    # numbers as numbers: the figure and its interval bounds in columns of their own
    columns = ["UF1 % (all folds)", "UF1 % (all folds) 95 % CI low",
               "UF1 % (all folds) 95 % CI high"]
    first = grid["rows"][0]
    assert [float(rows[0][c]) for c in columns] == pytest.approx(
        [100 * first["uf1"], *(100 * b for b in first["uf1_ci95"])], abs=1e-3)


def test_sensitivity_curves(ray_session, tmp_path, monkeypatch):
    run_script("sensitivity.py", tmp_path, monkeypatch, "--values", "0.1", "0.5")
    grid = json.loads((tmp_path / "runs" / "sensitivity.json").read_text())
    runs = {r["row"]: r["run"] for r in grid["rows"]}
    assert list(runs) == ["lambda1=0.1 (lambda2=0.5)", "lambda1=0.5 (lambda2=0.5)",
                          "lambda2=0.1 (lambda1=0.1)", "lambda2=0.5 (lambda1=0.1)"]
    # lambda1 = 0.1 with lambda2 = 0.5 lies on both curves: one run serves both
    assert runs["lambda1=0.1 (lambda2=0.5)"] == runs["lambda2=0.5 (lambda1=0.1)"]
    assert len(set(runs.values())) == 3
    from mer_ray.report import write_report

    report = write_report([tmp_path / "runs" / "sensitivity.json"], tmp_path / "report")
    assert "![sensitivity](figures/sensitivity_curves.png)" in report.read_text()
    assert (tmp_path / "report" / "figures" / "sensitivity_curves.png").stat().st_size > 5000


def test_lora_vs_full(ray_session, tmp_path, monkeypatch, capsys):
    run_script("lora_vs_full.py", tmp_path, monkeypatch)
    grid = json.loads((tmp_path / "runs" / "lora_vs_full.json").read_text())
    assert [r["row"] for r in grid["rows"]] == ["LoRA", "full fine-tuning"]
    out = capsys.readouterr().out
    assert "Table 7 layout" in out
    line = {row.split()[0]: row.split() for row in out.splitlines()
            if row.startswith(("LoRA ", "full "))}
    # the accounting table: LoRA trains far fewer parameters than full fine-tuning
    assert float(line["LoRA"][1]) < float(line["full"][2])
    # and the grid file carries it for the report, with the process RSS measured on a CPU
    acc = {r["row"]: r["accounting"] for r in grid["rows"]}
    assert acc["LoRA"]["trainable_params"] < acc["full fine-tuning"]["trainable_params"] / 10
    assert acc["full fine-tuning"]["peak_rss_mb"] > acc["LoRA"]["peak_rss_mb"] > 100
    from mer_ray.report import write_report

    text = write_report([tmp_path / "runs" / "lora_vs_full.json"], tmp_path / "report").read_text()
    assert "Table 7 columns" in text and f"| {acc['LoRA']['peak_rss_mb']:.0f} |" in text


def test_megc_composite_loso_scores_each_dataset(ray_session, tmp_path, monkeypatch, capsys):
    """The composite's LOSO summary, printed table and report carry UF1/UAR over all
    predictions and over each source dataset's part."""
    write_config(tmp_path / "tiny.yaml", ("train.cache_trunk=true",))
    monkeypatch.setattr(sys, "argv", [
        "loso_megc.py", "--config", str(tmp_path / "tiny.yaml"), "--workdir", str(tmp_path / "w"),
        "--storage-path", str(tmp_path / "runs"), "--frames", "4", "--name", "megc",
        "--synthetic-subjects", "1", "--synthetic-clips-per-class", "1", "--local"])
    runpy.run_path(str(REPO / "experiments" / "loso_megc.py"), run_name="__main__")
    summary = json.loads((tmp_path / "runs" / "megc" / "summary.json").read_text())
    assert summary["dataset"] == "megc" and summary["n_folds"] == 3
    per = summary["metrics"]["per_dataset"]
    assert sorted(per) == ["casme2", "samm", "smic"]
    assert all(d["n_clips"] == 3 and d["n_subjects"] == 1 and 0 <= d["uf1"] <= 1
               for d in per.values())
    import polars as pl

    from mer_ray.metrics import scores

    preds = pl.read_parquet(tmp_path / "runs" / "megc" / "predictions.parquet")
    part = preds.filter(pl.col("subject").str.starts_with("smic_"))
    assert per["smic"]["uf1"] == scores(part["label"], part["prediction"], [0, 1, 2]).uf1
    assert "each dataset's part" in capsys.readouterr().out
    from mer_ray.report import write_report

    text = write_report([tmp_path / "runs"], tmp_path / "report").read_text()
    assert "Composite (MEGC convention)" in text
    assert f"| smic | 1 | 3 | {100 * per['smic']['uf1']:.2f} |" in text


def test_script_and_its_cli_twin_predict_the_same(ray_session, tmp_path, monkeypatch):
    """experiments/loso_samm.py and `mer-ray train --dataset samm` are one door: the same
    options give the same predictions."""
    import polars as pl

    from mer_ray.cli import main as cli

    run_script("loso_samm.py", tmp_path, monkeypatch, "--name", "script")
    args = ["train", "--dataset", "samm", "--config", str(tmp_path / "tiny.yaml"), "--workdir",
            str(tmp_path / "w"), "--storage-path", str(tmp_path / "runs"), "--frames", "4",
            "--max-folds", "1", "--synthetic-subjects", "3", "--synthetic-clips-per-class", "1",
            "--local", "--name", "cli"]
    assert cli(args) == 0
    a = pl.read_parquet(tmp_path / "runs" / "script" / "predictions.parquet")
    b = pl.read_parquet(tmp_path / "runs" / "cli" / "predictions.parquet")
    assert a.height > 0 and a.equals(b)


def test_synth_prepare_then_train_on_the_shards(ray_session, tmp_path, capsys):
    """The README's pipeline: mer-ray synth, mer-ray prepare --out X, mer-ray train --shards X;
    a run whose data section disagrees with the shards' T and S is refused."""
    from mer_ray.cli import main as cli

    write_config(tmp_path / "tiny.yaml")
    assert cli(["synth", "--out", str(tmp_path / "syn"), "--layout", "casme2", "--subjects", "3",
                "--clips-per-class", "1", "--seed", "4"]) == 0
    assert cli(["prepare", "--dataset", "casme2", "--data-root", str(tmp_path / "syn"),
                "--out", str(tmp_path / "shards"), "--frames", "4", "--size", "28"]) == 0
    assert "mer-ray train --shards" in capsys.readouterr().out
    train = ["train", "--shards", str(tmp_path / "shards"), "--config", str(tmp_path / "tiny.yaml"),
             "--storage-path", str(tmp_path / "runs"), "--local", "--max-folds", "1"]
    assert cli(train + ["--name", "fromshards"]) == 0
    summary = json.loads((tmp_path / "runs" / "fromshards" / "summary.json").read_text())
    assert summary["dataset"] == "casme2" and summary["n_folds"] == 1
    assert summary["config"]["data"]["frames"] == 4 and summary["config"]["data"]["size"] == 28
    capsys.readouterr()
    assert cli(train + ["--frames", "8", "--name", "mismatch"]) == 2
    assert "prepared with T=4, S=28" in capsys.readouterr().err
