"""End to end, as a user on a cluster: ray start --head, ray job submit, a driver killed and the
job submitted again, results, stop.

It starts a second Ray (its own temp dir, ports and process group) and takes it down again
without touching the test session's Ray.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mer_ray.config import ExperimentConfig
from tests.helpers.ports import free_port
from tests.helpers.resume import (
    committed_epoch,
    hold,
    no_partial_files,
    reference,
    same_predictions,
    train_workers,
    wait_for,
)
from tests.helpers.tiny import FAULT, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent


def agent_start_timed_out(tmpdir: str) -> bool:
    """Whether the newest Ray session under ``tmpdir`` ended because its raylet gave up
    waiting for the dashboard agent's port file (Ray's wait is fixed; on a busy 2-core
    machine the agent's start-up can take longer)."""
    log = Path(tmpdir) / "ray" / "session_latest" / "logs" / "raylet.err"
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return False
    return "Timed out waiting for file" in text and "agent" in text


def start_head(bin_dir: str, env: dict) -> tuple[subprocess.Popen, str]:
    """``ray start --head`` on free ports, up once ``ray job list`` answers. A head whose
    raylet aborted while starting because its dashboard agent came up after Ray's fixed wait
    is started again (at most three times): that happens before anything of the test has
    run, and any other way the head fails fails the test."""
    for attempt in range(3):
        gcs, dash = free_port(), free_port()
        # Every fixed-default port gets a free one: the test session's own Ray already holds
        # the defaults (its dashboard agent on 52365 among them), and a head whose job agent
        # cannot bind answers every submission with "No available agent".
        ports = {name: free_port() for name in (
            "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
            "metrics-export-port", "ray-client-server-port", "node-manager-port",
            "object-manager-port")}
        head = subprocess.Popen(
            [f"{bin_dir}/ray", "start", "--head", "--block", f"--port={gcs}",
             f"--dashboard-port={dash}", "--num-cpus=2", "--object-store-memory=300000000",
             "--disable-usage-stats", *(f"--{k}={v}" for k, v in ports.items())],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        address = f"http://127.0.0.1:{dash}"
        deadline = time.time() + 120
        probe = {**env, "RAY_AUTH_MODE": "token"}  # the head runs with a token (HOME's)
        while subprocess.run([f"{bin_dir}/ray", "job", "list", "--address", address],
                             env=probe, capture_output=True).returncode != 0:
            assert time.time() < deadline, "the head node did not come up"
            if head.poll() is not None:  # `ray start --block` exits when a Ray process dies
                break
            time.sleep(2)
        else:
            return head, address
        stop_head(head)
        assert agent_start_timed_out(env["RAY_TMPDIR"]), "ray start exited"
        # the next attempt reads its own session log
        shutil.rmtree(Path(env["RAY_TMPDIR"]) / "ray", ignore_errors=True)
        print(f"head start {attempt + 1}: its dashboard agent came up too late; again")
    raise AssertionError("the head node's dashboard agent never came up in time")


def stop_head(head: subprocess.Popen) -> None:
    """Take the head down: every process of its Ray (all started under ``ray start``'s own
    session, never the test session's) is killed. ``ray start --block``'s own stop on SIGTERM
    waits for its processes to exit gracefully, 40 s here; nothing of this Ray is kept."""
    try:
        procs = [head, *psutil.Process(head.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    for proc in procs:  # a Ray process that left the process group
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            proc.kill()
    psutil.wait_procs([p for p in procs if isinstance(p, psutil.Process)], timeout=30)
    head.wait(timeout=30)


def job_driver(work: Path):
    """The job's driver process (``ray job`` runs the entrypoint as a process of its own)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if any("loso_samm.py" in c for c in cmd) and str(work) in cmd:
            return proc
    return None


def test_job_killed_and_submitted_again_resumes(tmp_path):
    """The cluster guide's local check, as written, then a fault: `ray start --head` (token
    authentication on, as Ray 2.60 turns it on wherever a token file exists: any earlier
    local Ray made one), `cluster/submit.sh experiments/loso_samm.py` of a 2-fold LOSO with no
    auth setting of the user's; the job's driver is killed (SIGKILL) while the second fold is
    held at its first epoch checkpoint; the same job submitted again keeps the finished fold
    as it was, continues the second from its checkpoint and succeeds, with the predictions of
    an undisturbed run; then the head stops."""
    bin_dir = str(Path(sys.executable).parent)
    home = tmp_path / "home"  # the user's home: Ray's token file goes there
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home),
           "RAY_TMPDIR": f"/tmp/merjob{os.getpid()}"}
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    Path(env["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([f"{bin_dir}/ray", "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True)  # what any earlier local ray.init() leaves behind
    assert (home / ".ray" / "auth_token").is_file()
    head, address = start_head(bin_dir, env)
    work = tmp_path / "work"
    config = write_config(tmp_path / "fault.yaml", tuple(FAULT + ["train.max_concurrent_folds=1"]))
    results = work / "results" / "job"
    folds = results / "folds"
    gate = hold(results / "train" / "fold-007")  # the second fold waits at its first checkpoint
    try:
        deadline = time.time() + 90

        def submit(*flags):  # as cluster/README.md's local check has it
            return subprocess.run(
                ["cluster/submit.sh", "experiments/loso_samm.py", "--workdir", str(work),
                 "--storage-path", str(work / "results"), "--name", "job",
                 "--synthetic-subjects", "3", "--synthetic-clips-per-class", "1",
                 "--max-folds", "2", "--frames", "4", "--config", str(config)],
                cwd=REPO, env={**env, "RAY_ADDRESS": address, "MER_RAY_RUNTIME_ENV": "0",
                               "RAY_SUBMIT_OPTS": " ".join(flags)},
                capture_output=True, text=True, timeout=600)

        first = submit("--no-wait")
        # The job agent can come up a little after the dashboard answers: it says so; retry.
        while first.returncode != 0 and "No available agent" in first.stdout + first.stderr:
            assert time.time() < deadline + 60, "the job agent never came up"
            time.sleep(3)
            first = submit("--no-wait")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        wait_for(lambda: (folds / "006" / "fold.json").exists(), "the first fold", timeout=300,
                 poll=0.2)
        wait_for(lambda: committed_epoch(results / "train" / "fold-007"),
                 "an epoch checkpoint of the second fold", timeout=300)
        driver = wait_for(lambda: job_driver(work), "the job's driver process", timeout=30)
        driver.kill()  # SIGKILL: no clean-up handler runs
        driver.wait(timeout=60)
        # Ray ends the dead driver's actors (owner death), usually within seconds but not on
        # a promise; the held fold worker must be gone before the gate opens, or it could
        # finish the fold on its own. One still there after a minute is killed here, as a
        # node failure would.
        grace = time.time() + 60
        while train_workers(head.pid) and time.time() < grace:
            time.sleep(0.2)
        for proc in train_workers(head.pid):
            proc.kill()
        wait_for(lambda: not train_workers(head.pid), "the killed job's fold worker to end",
                 timeout=60, poll=0.2)
        gate.unlink()
        assert not (folds / "007" / "fold.json").exists()  # the second fold had not finished
        assert not (results / "summary.json").exists()
        finished = (folds / "006" / "fold.json").read_text()
        mtime = (folds / "006" / "fold.json").stat().st_mtime_ns
        no_partial_files(work / "results")

        again = submit()
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        logs = again.stdout + again.stderr
        assert "succeeded" in logs
        assert "1 fold(s) already had results and were not retrained" in logs
    finally:
        stop_head(head)
    assert (folds / "006" / "fold.json").read_text() == finished
    assert (folds / "006" / "fold.json").stat().st_mtime_ns == mtime
    attempts = json.loads((folds / "007" / "fold.json").read_text())["attempts"]
    assert len(attempts) == 2 and attempts[1]["start_epoch"] >= 1  # from its checkpoint
    summary = json.loads((results / "summary.json").read_text())
    assert summary["n_folds"] == 2 and summary["synthetic"] is True
    assert (results / "predictions.parquet").is_file()
    record = json.loads((results / "experiment.json").read_text())
    ref = reference(record["shards"], ExperimentConfig.from_dict(record["config"]),
                    tmp_path / "ref", 2)
    for subject in ("006", "007"):
        same_predictions(json.loads((folds / subject / "predictions.json").read_text()),
                         ref[subject])
    no_partial_files(work / "results")
