"""End to end, as a user on a cluster: ray start --head, ray job submit, results, stop.

Named to run last: it starts a second Ray (its own temp dir, ports and process group) and takes
it down again without touching the test session's Ray.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_runs_loso(tmp_path):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
           "RAY_TMPDIR": f"/tmp/merjob{os.getpid()}"}
    Path(env["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([f"{bin_dir}/ray", "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True)
    gcs, dash = free_port(), free_port()
    # Every fixed-default port gets a free one: the test session's own Ray already holds the
    # defaults (its dashboard agent on 52365 among them), and a head whose job agent cannot
    # bind answers every submission with "No available agent".
    ports = {name: free_port() for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "ray-client-server-port", "node-manager-port",
        "object-manager-port")}
    head = subprocess.Popen(
        [f"{bin_dir}/ray", "start", "--head", "--block", f"--port={gcs}",
         f"--dashboard-port={dash}", "--num-cpus=2", "--object-store-memory=300000000",
         "--disable-usage-stats", *(f"--{k}={v}" for k, v in ports.items())],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 90
        while subprocess.run([f"{bin_dir}/ray", "job", "list", "--address", address], env=env,
                             capture_output=True).returncode != 0:
            assert time.time() < deadline, "the head node did not come up"
            assert head.poll() is None, "ray start exited"
            time.sleep(2)
        work = tmp_path / "work"
        submit = lambda: subprocess.run(  # noqa: E731
            [f"{bin_dir}/ray", "job", "submit", "--address", address, "--working-dir", ".",
             "--", "python", "experiments/loso_samm.py", "--workdir", str(work),
             "--storage-path", str(work / "results"), "--name", "job",
             "--synthetic-subjects", "3", "--synthetic-clips", "1", "--max-folds", "1",
             "--frames", "4", "--set", "model.image_size=28", "--set", "model.pretrained=false",
             "--set", "train.max_epochs=1", "--set", "train.val_subjects=1"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        job = submit()
        # The job agent can come up a little after the dashboard answers: it says so; retry.
        while job.returncode != 0 and "No available agent" in job.stdout + job.stderr:
            assert time.time() < deadline + 60, "the job agent never came up"
            time.sleep(3)
            job = submit()
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
        summary = json.loads((work / "results" / "job" / "summary.json").read_text())
        assert summary["n_folds"] == 1 and summary["synthetic"] is True
        assert (work / "results" / "job" / "predictions.parquet").is_file()
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops its cluster on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
