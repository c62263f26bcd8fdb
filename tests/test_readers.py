"""Nothing is lost and nothing is read twice: readers that check what they read (empty
partitions, token folders' counts and shards, shards prepared again under a run, two token
passes at once), credentials never printed, and bad input or stops as a new user meets them."""

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mer_ray.cli import main
from mer_ray.config import ExperimentConfig
from mer_ray.data.shards import ShardsChanged, SubjectReader
from mer_ray.methods.mer.tokens import ensure_trunk_tokens
from mer_ray.model.encoder import RANDOM
from mer_ray.protocols.loso import plan_loso
from mer_ray.train.jobs import loso_jobs
from mer_ray.train.runner import run_jobs
from tests.helpers.shardfolder import write_shards
from tests.helpers.tiny import TINY
from tests.test_first_hour import no_ray  # noqa: F401  (a fixture)

EXP = ExperimentConfig().with_overrides(TINY + ["train.cache_trunk=true"])


def plan(shards, tmp_path, exp=EXP, name="r", folds=1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-init warning
        return plan_loso(shards, exp, tmp_path / "runs", name=name, max_folds=folds)


# -- 2: readers that check what they read ------------------------------------------------------

def test_a_subject_partition_without_files_is_an_error_naming_it(tmp_path):
    shards = write_shards(tmp_path / "s")
    for f in (Path(shards.clips) / "subject=s2").glob("*.parquet"):
        f.unlink()  # the folder stays, its clips are gone
    with pytest.raises(FileNotFoundError, match=r"subject=s2: no clips in this subject"):
        shards.subject_labels()
    with pytest.raises(FileNotFoundError, match=r"subject=s2"):
        SubjectReader(shards.clips, ("s1", "s2"))


def tokens_here(shards):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ensure_trunk_tokens(shards, EXP, RANDOM, where="here")


def test_a_token_folder_records_its_clips_and_shards_and_readers_check_both(tmp_path):
    shards = write_shards(tmp_path / "s")
    found = tokens_here(shards)
    marker = json.loads((Path(found.root) / "tokens.json").read_text())
    assert marker["clips"] == shards.meta.clips == 12
    assert marker["per_subject"] == {"s1": 3, "s2": 3, "s3": 3, "s4": 3}
    assert marker["shards_id"] == shards.meta.shards_id
    run = plan(shards, tmp_path)
    # a partition that lost a clip since its pass: the fold refuses it (it read 3 before)
    part = next((Path(found.root) / "subject=s2").glob("*.parquet"))
    pq.write_table(pq.read_table(part).slice(0, 2), part)
    [job] = loso_jobs(run.plan(found), run.folds)
    with pytest.raises(Exception, match=r"subject=s2 holds 2 clip\(s\), its pass wrote 3"):
        run_jobs([job], EXP.train, local=True, title=None)
    # a pointer whose clip count is not the shards' is not a finished folder
    pointer = Path(found.root).parent / "tokens.json"
    pointer.write_text(json.dumps({**json.loads(pointer.read_text()), "clips": 11}))
    assert ensure_trunk_tokens(shards, EXP, RANDOM, compute=False) is None


def test_a_fold_refuses_tokens_of_other_shards(tmp_path):
    shards = write_shards(tmp_path / "s")
    found = tokens_here(shards)
    run = plan(shards, tmp_path)
    marker = Path(found.root) / "tokens.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "shards_id": "other"}))
    [job] = loso_jobs(run.plan(found), run.folds)
    with pytest.raises(Exception, match=r"made from shards other, but this run was planned"):
        run_jobs([job], EXP.train, local=True, title=None)


@pytest.mark.parametrize("stamped", [True, False])
def test_shards_prepared_again_under_a_run_are_refused_not_read(tmp_path, stamped):
    """A `prepare --overwrite` of the run's shard folder while the run goes: the fold reads
    other clips than its run was planned (and named) on, so it refuses them. Rows that carry
    their shards_id are checked by it, even while the new prepare.json is not written yet
    (prepare writes it last); shards from before that column, by their prepare.json."""
    shards = write_shards(tmp_path / "s", stamped=stamped)
    exp = EXP.with_values({"train.cache_trunk": False})
    run = plan(shards, tmp_path, exp)
    [job] = loso_jobs(run.plan(), run.folds)
    write_shards(tmp_path / "s", seed=5, stamped=stamped)  # the same folder, other data
    if stamped:
        (tmp_path / "s" / "prepare.json").unlink()  # a prepare half-way: its marker not yet
    with pytest.raises(ShardsChanged, match=r"made from shards test5, but this run was "
                                            r"planned on shards test0: the folder was prepared "
                                            r"again while the run was going"):
        SubjectReader(shards.clips, ["s1"], made_from=job.sources["train"].made_from)
    with pytest.raises(Exception, match=r"prepared again while the run was going"):
        run_jobs([job], exp.train, local=True, title=None)


def test_two_token_passes_at_once_compute_once(tmp_path, monkeypatch):
    """Two runs that need the same tokens at the same moment: one takes the pass's lease and
    computes, the other waits and reads its result; neither deletes the other's files."""
    from tests.helpers.trunk_pass import two_passes_at_once

    shards = write_shards(tmp_path / "s")
    got, computed = two_passes_at_once(shards.root, EXP, monkeypatch)
    assert computed == 1  # one pass computed
    assert got[0].root == got[1].root  # the other read its result
    SubjectReader(got[0].root, ("s1", "s2", "s3", "s4"), ("clip", "tokens"))  # whole
    assert not (Path(got[0].root).parent / "pass.lease").exists()  # released


def test_a_clip_whose_apex_is_its_onset_gets_a_note(tmp_path):
    from mer_ray.data.frames import index_frames
    from mer_ray.data.manifest import build_manifest, included
    from mer_ray.data.prepare import ZERO_FLOW, PrepareConfig, clip_flow
    from mer_ray.data.synth import generate

    generate(tmp_path / "syn", "samm", 1, 1, "3class", seed=3, progress=False)
    row = included(build_manifest("samm", tmp_path / "syn", "3class")).row(0, named=True)
    index = index_frames(row["source"])
    span = index.span(row["onset"], row["offset"])
    got = clip_flow(index, span, row["onset"], PrepareConfig(frames=4, size=56, flow="dis"))
    assert ZERO_FLOW in got["flow_note"] and np.abs(got["flow_u"]).max() < 1e-3
    assert ZERO_FLOW not in clip_flow(index, span, row["apex"],
                                      PrepareConfig(frames=4, size=56, flow="dis"))["flow_note"]


# -- 3: credentials never printed ------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["train", "--storage-path", "s3://AKIAEXAMPLE:SeCrEt123@bucket/runs"],
    ["train", "--shards", "s3://bucket/shards?access_key=AKIAEXAMPLE&secret_key=SeCrEt123"],
    ["report", "s3://AKIAEXAMPLE:SeCrEt123@bucket/runs"],
    ["train", "--data-root", "s3://AKIAEXAMPLE:SeCrEt123@bucket/SAMM"],
])
def test_a_uri_with_credentials_is_refused_and_never_printed(no_ray, tmp_path, capsys,  # noqa: F811
                                                             argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    assert "SeCrEt123" not in text and "AKIAEXAMPLE" not in text
    assert "***" in text and len(out.err.strip().splitlines()) == 1


# -- 4: bad input and stops, as a new user meets them ---------------------------------------

def a_run(tmp_path):
    shards = write_shards(tmp_path / "s")
    exp = ExperimentConfig().with_overrides(TINY + ["model.method=lbptop_svm"])
    run = plan(shards, tmp_path, exp, folds=None)
    run_jobs(loso_jobs(run.plan(), run.folds), exp.train, local=True, title=None)
    from mer_ray.protocols.summary import summarise_run

    summarise_run(run.view())
    return tmp_path / "runs" / "r"


@pytest.mark.parametrize("damaged", ["predictions.parquet", "summary.json"])
def test_a_damaged_result_file_is_one_line_naming_it(tmp_path, capsys, damaged):
    run = a_run(tmp_path)
    (run / damaged).write_bytes(b"PAR1 not really")
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert str(run / damaged) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_unwritable_storage_path_names_the_option(no_ray, tmp_path, capsys):  # noqa: F811
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", "--storage-path", str(blocker / "runs")]) == 2
    err = capsys.readouterr().err
    assert "--storage-path" in err and "[Errno" not in err


def test_a_failed_fold_says_what_failed_without_the_traceback(tmp_path):
    from dataclasses import replace

    from mer_ray.fitting.job import SplitSource
    from mer_ray.train.slots import FoldFailed

    shards = write_shards(tmp_path / "s")
    exp = ExperimentConfig().with_overrides(TINY + ["model.method=lbptop_svm"])
    run = plan(shards, tmp_path, exp, folds=2)
    bad, good = loso_jobs(run.plan(), run.folds)
    bad = replace(bad, sources={**bad.sources, "test": SplitSource(
        bad.sources["test"].root, ("nobody",))})
    with pytest.raises(FoldFailed) as failed:
        run_jobs([bad, good], exp.train, local=True, title=None)
    message = str(failed.value)
    assert "Traceback" not in message and "fold s1: FileNotFoundError" in message
    assert "subject=nobody" in message and "--debug" in message
    assert "Traceback" in failed.value.details


def frames_set(tmp_path):
    from mer_ray.data.synth import generate

    generate(tmp_path / "syn", "samm", 1, 1, "3class", seed=3, progress=False)
    return tmp_path / "syn"


def test_a_clip_with_most_of_its_span_missing_is_excluded_and_any_gap_noted(tmp_path, capsys):
    from mer_ray.data.frames import index_frames
    from mer_ray.data.manifest import SPAN_MOSTLY_MISSING, build_manifest

    root = frames_set(tmp_path)
    rows = build_manifest("samm", root, "3class").sort("clip").to_dicts()
    mostly, one = rows[0], rows[1]
    for row, drop in ((mostly, None), (one, 1)):
        index = index_frames(row["source"])
        span = index.span(row["onset"], row["offset"])
        keep = {span[0], span[-1]} if drop is None else set(span) - {span[1]}
        for p in span:
            if p not in keep:
                Path(index.files[p]).unlink()
    m = {r["clip"]: r for r in build_manifest("samm", root, "3class").to_dicts()}
    gone = mostly["offset"] - mostly["onset"] - 1
    assert m[mostly["clip"]]["excluded_reason"] == SPAN_MOSTLY_MISSING
    assert f"{gone} of {gone + 2} frames" in m[mostly["clip"]]["notes"]
    assert "the apex" in m[mostly["clip"]]["notes"]
    assert m[one["clip"]]["excluded_reason"] is None
    assert "1 of" in m[one["clip"]]["notes"] and "missing on disk" in m[one["clip"]]["notes"]
    assert main(["manifest", "--dataset", "samm", "--data-root", str(root), "--out",
                 str(tmp_path / "m.parquet"), "--strict"]) == 3
    assert SPAN_MOSTLY_MISSING in capsys.readouterr().out


def test_report_says_it_is_working_before_it_is_done(tmp_path, capsys):
    run = a_run(tmp_path)
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("writing the report of") and lines[-1].startswith("report:")
