"""Optional tracking: each fold's per-epoch metrics and the run's summary, to a local MLflow
store (no server) and to TensorBoard event files."""

import pytest

from mer_ray.config import ExperimentConfig
from mer_ray.protocols.loso import RunOptions, run_loso
from tests.helpers.tiny import TINY

EXP = ExperimentConfig().with_overrides(TINY + ["train.max_epochs=2", "train.patience=2"])


def test_mlflow_local_store(tiny_shards, tmp_path, capfd):
    mlflow = pytest.importorskip("mlflow")
    opts = RunOptions(storage_path=str(tmp_path / "runs"), max_folds=2, local=True,
                      tracking="mlflow")
    summary = run_loso(EXP, tiny_shards, opts, "tracked")
    db = tmp_path / "runs" / "mlruns" / "mlflow.db"
    assert db.is_file()  # the local store, under the storage folder
    client = mlflow.tracking.MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("tracked")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"fold 006", "fold 007", "run summary"}
    fold = runs["fold 006"]
    history = client.get_metric_history(fold.info.run_id, "val_uf1")
    assert [h.step for h in history] == [0, 1]  # one point per epoch
    assert fold.data.params["train.max_epochs"] == "2" and "test_uf1" in fold.data.metrics
    assert runs["run summary"].data.metrics["uf1"] == pytest.approx(summary["metrics"]["uf1"])
    # MLflow's own set-up messages (its database tables, alembic's migrations) stay off the
    # console
    out, err = capfd.readouterr()
    assert "alembic" not in out + err and "Context impl" not in out + err


def test_tensorboard_event_files(tiny_shards, tmp_path):
    pytest.importorskip("tensorboardX")
    opts = RunOptions(storage_path=str(tmp_path / "runs"), max_folds=1, local=True,
                      tracking="tensorboard")
    run_loso(EXP, tiny_shards, opts, "tb")
    logs = tmp_path / "runs" / "tb" / "tensorboard"
    events = sorted(p.relative_to(logs).parts[0] for p in logs.rglob("events.out.tfevents.*"))
    assert events == ["006", "summary"]
    import struct

    from tensorboardX.proto import event_pb2  # the records, read back without tensorboard

    tags = set()
    data = next((logs / "006").glob("events.*")).read_bytes()
    i = 0
    while i < len(data):
        (length,) = struct.unpack("<Q", data[i:i + 8])
        event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
        tags.update(v.tag for v in event.summary.value)
        i += 12 + length + 4
    assert {"train_total", "val_uf1", "final/test_uf1"} <= tags


def test_the_tracking_extra_can_show_its_results():
    """The tracking extra installs MLflow with its UI (mlflow-skinny has none: `mlflow ui`
    fails on a missing module)."""
    import importlib.util
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    extra = re.search(r"^tracking = \[(.*)\]$", text, re.M).group(1)
    assert re.findall(r'"([A-Za-z0-9_.-]+)', extra) == ["mlflow"], extra
    assert importlib.util.find_spec("mlflow.server") is not None  # what `mlflow ui` runs
