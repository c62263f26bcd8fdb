"""mer-ray checkpoint / predict / export: a tiny trained fold, predicted again from its raw clip."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import polars as pl
import pytest
import torch

from mer_ray.cli import main as cli
from mer_ray.config import ExperimentConfig
from mer_ray.data.frames import index_frames, read_frames
from mer_ray.protocols.loso import plan_loso, train_folds
from mer_ray.protocols.summary import summarise_run
from mer_ray.serving.explain import PANELS
from mer_ray.serving.modelfile import (
    CheckpointError,
    checkpoint_from_run,
    load_checkpoint,
    save_checkpoint,
)
from mer_ray.serving.predict import predict_clip
from tests.helpers.tiny import TINY

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(tiny_shards, tmp_path_factory):
    """One fold (test subject 006) trained for two epochs in process, and its model file."""
    root = tmp_path_factory.mktemp("predict")
    exp = ExperimentConfig().with_overrides(TINY + ["train.max_epochs=2"])
    setup = plan_loso(tiny_shards, exp, root / "runs", name="tiny", max_folds=1)
    train_folds(setup, local=True)
    summarise_run(setup.view())
    run = root / "runs" / "tiny"
    model = save_checkpoint(checkpoint_from_run(str(run)), root / "model.pt")
    manifest = pl.read_parquet(Path(tiny_shards.root) / "manifest.parquet")
    preds = pl.read_parquet(run / "predictions.parquet").join(
        manifest.select("subject", "clip", "source", "onset", "offset"), on=["subject", "clip"])
    return {"root": root, "run": run, "model": model, "preds": preds}


def test_predict_returns_what_the_trained_fold_predicted(trained):
    model = load_checkpoint(trained["model"])
    assert model.meta["source"]["fold"] == "006" and model.meta["pretrained"] is False
    assert model.preprocess.frames == 4 and model.preprocess.size == 28
    assert trained["preds"].height == 3
    for row in trained["preds"].iter_rows(named=True):
        result, clip = predict_clip(model, row["source"], row["onset"], row["offset"])
        got = [result["probabilities"][n] for n in model.class_names]
        np.testing.assert_allclose(got, row["probabilities"], atol=1e-5)
        assert result["label_id"] == row["prediction"]
        assert len(result["frame_numbers"]) == 4
        assert result["frame_numbers"][0] == row["onset"]
        assert result["frame_numbers"][-1] == row["offset"]


def test_cli_predict_json_and_explain_png(trained, tmp_path, capsys):
    from PIL import Image

    row = trained["preds"].row(0, named=True)
    out_json, out_png = tmp_path / "p.json", tmp_path / "p.png"
    rc = cli(["predict", "--checkpoint", str(trained["model"]), row["source"], "--onset",
              str(row["onset"]), "--offset", str(row["offset"]), "--json", str(out_json),
              "--explain", str(out_png)])
    assert rc == 0
    res = json.loads(out_json.read_text())
    assert res["label"] == row["prediction_name"]
    assert res["label"] in capsys.readouterr().out
    ex = res["explanation"]
    assert ex["panels"] == list(PANELS)
    img = Image.open(out_png)
    assert json.loads(img.text["mer_ray_panels"]) == list(PANELS)
    assert img.size[0] > 600 and img.size[1] > 400
    # the explanation's values are those of the prediction's forward pass
    assert ex["prediction"] == res["label_id"]
    assert len(ex["w"]) == 4 and all(0.0 <= w <= 1.0 for w in ex["w"])
    att = np.array(ex["attention_mean_over_heads"])
    assert att.shape == (4, 4)
    np.testing.assert_allclose(att.sum(1), 1.0, atol=1e-4)
    for key in ("alpha_low", "alpha_high", "kernel_weights"):
        assert abs(sum(ex[key]) - 1.0) < 1e-4


def test_video_input_gives_the_frames_folder_result(trained, tmp_path):
    """The same frames written losslessly into a video: same aligned clip, same prediction."""
    row = trained["preds"].row(1, named=True)
    index = index_frames(row["source"])
    span = index.span(row["onset"], row["offset"])
    frames = read_frames(index, span)
    video = tmp_path / "clip.avi"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 25, (w, h))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write FFV1 video")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    model = load_checkpoint(trained["model"])
    from_video, _ = predict_clip(model, video)
    from_folder, _ = predict_clip(model, row["source"], row["onset"], row["offset"])
    assert from_video["span"] == [0, len(span) - 1]
    np.testing.assert_allclose(list(from_video["probabilities"].values()),
                               list(from_folder["probabilities"].values()), atol=1e-5)


def test_export_runs_without_the_training_code(trained, tmp_path):
    out = tmp_path / "model.pt2"
    assert cli(["export", "--checkpoint", str(trained["model"]), "--out", str(out)]) == 0
    model = load_checkpoint(trained["model"])
    row = trained["preds"].row(2, named=True)
    _, clip = predict_clip(model, row["source"], row["onset"], row["offset"])
    np.save(tmp_path / "frames.npy", clip["frames"][None])
    script = (
        "import sys, json, numpy as np, torch\n"
        "for m in ('mer_ray', 'timm', 'peft', 'ray'): sys.modules[m] = None\n"
        "extra = {'mer_ray.json': ''}\n"
        "mod = torch.export.load(sys.argv[1], extra_files=extra).module()\n"
        "out = mod(torch.from_numpy(np.load(sys.argv[2])))\n"
        "print(json.dumps({'p': out['probabilities'][0].tolist(),\n"
        "                  'classes': json.loads(extra['mer_ray.json'])['class_names']}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "frames.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["classes"] == model.class_names
    np.testing.assert_allclose(got["p"], row["probabilities"], atol=1e-5)


def _err(capsys):
    return capsys.readouterr().err


def test_bad_inputs_fail_with_a_named_reason(trained, tmp_path, capsys):
    ckpt = str(trained["model"])
    row = trained["preds"].row(0, named=True)
    # no face: grey frames
    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(5):
        cv2.imwrite(str(blank / f"img{i:03d}.png"), np.full((120, 120, 3), 128, np.uint8))
    assert cli(["predict", "--checkpoint", ckpt, str(blank)]) == 2
    err = _err(capsys)
    assert "no face" in err and str(blank) in err
    # unreadable video
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    assert cli(["predict", "--checkpoint", ckpt, str(bad)]) == 2
    assert str(bad) in _err(capsys)
    # a span outside the recording
    assert cli(["predict", "--checkpoint", ckpt, row["source"], "--onset", "1",
                "--offset", "3"]) == 2
    err = _err(capsys)
    assert "outside" in err and row["source"] in err
    # not there
    assert cli(["predict", "--checkpoint", ckpt, str(tmp_path / "nothing")]) == 2
    assert "no such file" in _err(capsys)


def test_incompatible_checkpoints_are_refused(trained, tmp_path, capsys):
    data = torch.load(trained["model"], map_location="cpu", weights_only=True)
    row = trained["preds"].row(0, named=True)
    newer = tmp_path / "newer.pt"
    torch.save({**data, "format_version": 99, "code_version": "9.0.0"}, newer)
    assert cli(["predict", "--checkpoint", str(newer), row["source"]]) == 2
    err = _err(capsys)
    assert "format 99" in err and "9.0.0" in err and str(newer) in err
    changed = tmp_path / "changed.pt"
    state = dict(data["state_dict"])
    state.pop(next(k for k in state if k.startswith("classifier")))
    torch.save({**data, "state_dict": state}, changed)
    assert cli(["predict", "--checkpoint", str(changed), row["source"]]) == 2
    assert "does not fit" in _err(capsys)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    assert cli(["predict", "--checkpoint", str(other), row["source"]]) == 2
    assert "not a mer-ray model checkpoint" in _err(capsys)


def test_checkpoint_from_run_checks_fold_and_backbone(trained, tmp_path):
    with pytest.raises(CheckpointError, match="no finished fold for test subject '999'"):
        checkpoint_from_run(str(trained["run"]), fold="999")
    # a backbone other than the one the fold trained on is refused, not silently used
    import timm

    torch.manual_seed(123)
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=28,
                            num_classes=0)
    wfile = tmp_path / "other_backbone.pt"
    torch.save(vit.state_dict(), wfile)
    with pytest.raises(CheckpointError, match="differs from the one this fold trained with"):
        checkpoint_from_run(str(trained["run"]), backbone_weights=str(wfile))
