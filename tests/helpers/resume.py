"""What the fault tests check after a kill: registered checkpoints, whole files, predictions
equal to an undisturbed in-process run."""

import contextlib
import json
import time
from pathlib import Path

import psutil
import pytest

from mer_ray.protocols.loso import plan_loso, train_folds
from mer_ray.records import PAUSE, STATE


def reference(shards, exp, where: Path, folds: int) -> dict:
    """Predictions of the same LOSO run undisturbed, in this process."""
    from mer_ray.data.shards import Shards

    shards = shards if isinstance(shards, Shards) else Shards.open(shards)
    setup = plan_loso(shards, exp, where, name="ref", max_folds=folds)
    train_folds(setup, local=True)
    return {f.test: json.loads((where / "ref" / "folds" / f.test / "predictions.json")
                               .read_text()) for f in setup.folds}


def same_predictions(a: dict, b: dict) -> None:
    assert a["keys"] == b["keys"] and a["labels"] == b["labels"]
    for p, q in zip(a["probs"], b["probs"]):
        assert p == pytest.approx(q, abs=1e-4)


def wait_for(cond, what: str, timeout: float = 240, poll: float = 0.05, alive=None):
    deadline = time.time() + timeout
    while True:
        got = cond()
        if got:
            return got
        if alive is not None:
            alive()
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def committed_epoch(train_dir: Path) -> bool:
    """Whether the fold has stored an epoch checkpoint (written atomically: a worker killed
    while writing one leaves only a temporary file, which nothing resumes from)."""
    return (train_dir / STATE).is_file()


def no_partial_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*.tmp-*")]
    assert not leftovers, leftovers
    for p in root.rglob("fold.json"):
        json.loads(p.read_text())  # every record that exists is whole


def hold(train_dir: Path) -> Path:
    """Make the fold whose checkpoints go to ``train_dir`` wait after each committed epoch
    checkpoint until the returned file is deleted: whatever the test kills meanwhile is killed
    while the fold is unfinished, however loaded the machine."""
    train_dir.mkdir(parents=True, exist_ok=True)
    gate = train_dir / PAUSE
    gate.touch()
    return gate


def train_workers(root_pid: int) -> list:
    """The Ray Train worker processes (Ray names actor processes "ray::<class>") among the
    descendants of ``root_pid``: the process that started a Ray, or ``ray start``. Only that
    Ray's: another Ray on the machine may be training folds of its own."""
    try:
        procs = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):  # ended meanwhile
            if any("ray::RayTrainWorker" in c for c in p.cmdline()):
                out.append(p)
    return out
