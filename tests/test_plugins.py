"""A method of the user's own, in a file outside the package, given with --plugin: it trains a
LOSO on Ray's fold workers (which never see the file); a plugin that cannot be used is one line
naming it."""

import json
import textwrap

import pytest

from mer_ray.cli import main
from mer_ray.methods import METHODS
from tests.helpers.shardfolder import write_shards

# What a user writes: a method that always predicts the training split's most frequent class.
PLUGIN = '''
import numpy as np

from mer_ray.fitting.job import FoldResult
from mer_ray.methods import Method, register
from mer_ray.records import FoldRecord, Predictions


class Majority(Method):
    name = "majority"
    summary = "the training split's most frequent class"

    def fit(self, job, device, resume=None, on_epoch=None, cache=None, every_epoch=None):
        labels = [int(y) for b in job.sources["train"].reader(job.columns)
                  .iter_batches(batch_size=64) for y in b["label_id"]]
        counts = np.bincount(labels, minlength=len(job.class_names))
        test = job.sources["test"].reader(job.columns).columns
        keys = [f"{s}/{c}" for s, c in zip(test["subject"], test["clip"])]
        probs = [list(np.eye(len(counts))[counts.argmax()])] * len(keys)
        rec = FoldRecord(job.split.test, list(job.split.val), list(job.split.train), 0, -1,
                         -1.0, False, [], 0.0, "cpu", False, None, False, False, None, [],
                         False, method=self.name)
        return FoldResult(job.key, rec, Predictions(keys, test["label_id"].tolist(), probs), b"")

    def parameters(self, exp, classes):
        return 0


register(Majority())
'''


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("plugin"), per_class=2)


@pytest.mark.ray
def test_the_new_method_template_trains_on_ray_as_written(shards, tmp_path, ray_session,
                                                         capsys):
    """``mer-ray new-method`` writes a file outside the package; given with --plugin, it
    trains a LOSO on Ray's fold workers (which never see the file) through the platform's fold
    loop: epochs, selection on the validation subjects, records."""
    plugin = tmp_path / "elsewhere" / "my_method.py"
    assert main(["new-method", "my_net", "--out", str(plugin)]) == 0
    assert "class MyNet(NetworkMethod)" in plugin.read_text()
    runs = tmp_path / "runs"
    try:
        rc = main(["train", "--shards", str(shards.root), "--plugin", str(plugin), "--set",
                   "model.method=my_net", "--set", "train.max_epochs=2", "--storage-path",
                   str(runs), "--name", "mine", "--max-folds", "1"])
    finally:
        METHODS.pop("my_net", None)
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((runs / "mine" / "summary.json").read_text())
    assert summary["method"] == "my_net" and summary["n_folds"] == 1
    assert all(f["node_ip"] != "local" for f in summary["folds"])  # on Ray's workers
    for fold in summary["folds"]:
        rec = json.loads((runs / "mine" / "folds" / fold["test_subject"] / "fold.json")
                         .read_text())
        assert rec["method"] == "my_net" and rec["epochs_run"] == 2
        assert len(rec["history"]) == 2  # the platform's fold loop ran its epochs


def test_a_method_written_against_the_method_interface_trains_from_its_file(shards, tmp_path,
                                                                           capsys, monkeypatch):
    """The lower-level way: a ``Method`` with its own ``fit`` (here the majority class). On
    prepared shards with --local nothing needs Ray, and none is started."""
    import mer_ray.cli

    def no_ray(*args):
        raise AssertionError("train --local on prepared shards started Ray")

    monkeypatch.setattr(mer_ray.cli, "_start_ray", no_ray)

    plugin = tmp_path / "majority.py"
    plugin.write_text(PLUGIN)
    runs = tmp_path / "runs"
    try:
        rc = main(["train", "--shards", str(shards.root), "--plugin", str(plugin), "--set",
                   "model.method=majority", "--storage-path", str(runs), "--name", "mine",
                   "--local"])
    finally:
        METHODS.pop("majority", None)
    assert rc == 0
    assert "--local on prepared shards: no Ray started" in capsys.readouterr().out
    summary = json.loads((runs / "mine" / "summary.json").read_text())
    assert summary["method"] == "majority" and summary["n_folds"] == 4
    assert summary["metrics"]["uar"] == pytest.approx(1 / 3)  # one class for every clip


def test_new_method_refuses_a_taken_name_or_an_existing_file(tmp_path, capsys):
    assert main(["new-method", "ststnet", "--out", str(tmp_path / "a.py")]) == 2
    assert "registered method already" in capsys.readouterr().err
    (tmp_path / "b.py").write_text("x = 1\n")
    assert main(["new-method", "fresh", "--out", str(tmp_path / "b.py")]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["new-method", "Bad-Name", "--out", str(tmp_path / "c.py")]) == 2
    assert (tmp_path / "b.py").read_text() == "x = 1\n"


@pytest.mark.parametrize("text, says", [
    (None, "no such file"),
    ("raise ImportError('needs mylab')", "importing it failed: ImportError: needs mylab"),
    ("x = 1\n", "registers no method"),
])
def test_a_plugin_that_cannot_be_used_is_one_line_naming_it(tmp_path, capsys, text, says):
    plugin = tmp_path / "bad.py"
    if text is not None:
        plugin.write_text(textwrap.dedent(text))
    rc = main(["train", "--shards", str(tmp_path / "none"), "--plugin", str(plugin),
               "--storage-path", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert f"--plugin {plugin}" in err[0] and says in err[0], err
    assert not (tmp_path / "runs").exists()
