"""The paper-table scripts in tiny mode: each runs end to end and writes its table."""

import json
import runpy
import sys
from pathlib import Path

import pytest
from tiny import write_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


def run_script(name, tmp_path, monkeypatch, *extra):
    write_config(tmp_path / "tiny.yaml", ("train.cache_trunk=true",))
    argv = [name, "--config", str(tmp_path / "tiny.yaml"), "--workdir", str(tmp_path / "w"),
            "--storage-path", str(tmp_path / "runs"), "--frames", "4", "--max-folds", "1",
            "--synthetic-subjects", "3", "--synthetic-clips", "1", "--local", *extra]
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
        for override in r["overrides"]:
            key, value = override.split("=")
            section, field = key.split(".")
            assert str(summary["config"][section][field]).lower() == value
    out = capsys.readouterr().out
    assert "Table 6" in out and "SYNTHETIC" in out and "random-init" in out


def test_sensitivity_curves(ray_session, tmp_path, monkeypatch):
    run_script("sensitivity.py", tmp_path, monkeypatch, "--values", "0.1", "0.5")
    grid = json.loads((tmp_path / "runs" / "sensitivity.json").read_text())
    runs = {r["row"]: r["run"] for r in grid["rows"]}
    assert list(runs) == ["lambda1=0.1 (lambda2=0.5)", "lambda1=0.5 (lambda2=0.5)",
                          "lambda2=0.1 (lambda1=0.1)", "lambda2=0.5 (lambda1=0.1)"]
    # lambda1 = 0.1 with lambda2 = 0.5 lies on both curves: one run serves both
    assert runs["lambda1=0.1 (lambda2=0.5)"] == runs["lambda2=0.5 (lambda1=0.1)"]
    assert len(set(runs.values())) == 3


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
