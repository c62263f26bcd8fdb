"""The prepared GPU benchmark in its CPU mode: every step runs and the JSON holds each figure
(the GPU figures themselves come from a GPU machine; see benchmarks/gpu.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


def test_gpu_benchmark_cpu_mode(ray_session, tmp_path):
    out = tmp_path / "gpu.json"
    log = tmp_path / "gpu.log"
    # the benchmark joins the test session's Ray (as it would join a cluster's) instead of
    # starting a second one on the same two cores
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    with open(log, "w") as sink:
        proc = subprocess.run([sys.executable, "benchmarks/gpu.py", "--cpu", "--out", str(out)],
                              cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, timeout=900,
                              env=env)
    assert proc.returncode == 0, log.read_text()[-3000:]
    res = json.loads(out.read_text())
    steps = {(r["finetune"], r["precision"], r["trunk"]): r for r in res["steps"]}
    assert len(steps) == 6 and all(r["clips_per_s"] > 0 for r in steps.values())
    lora, full = steps[("lora", "fp32", "recomputed")], steps[("full", "fp32", "recomputed")]
    assert lora["trainable_params"] < full["trainable_params"] / 10
    # without a GPU the two shares are the same computation: the second runs in this process
    # and its predictions are compared with the fold workers'
    assert [r["gpus_per_fold"] for r in res["loso"]] == [1.0, 0.25]
    assert res["determinism"]["compared"] == ["1 fold per GPU", "in this process"]
    assert [r["device"] for r in res["loso"]] == ["cpu", "cpu"]
    assert all(r["folds"] == 2 and r["folds_per_hour"] > 0 for r in res["loso"])
    assert res["determinism"]["identical"] is True
    assert res["predict"]["eager_ms"] > 0 and res["predict"]["exported_ms"] > 0
    text = log.read_text()
    assert "determinism" in text and "folds/hour" in text
