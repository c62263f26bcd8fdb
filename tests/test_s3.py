"""Shards, trunk tokens and results on an S3-compatible object store: moto's standalone server
on the loopback address, started and stopped by the tests (nothing outside this machine is
needed).

- ``mer-ray prepare --out s3://...``: Ray Data tasks write the clips to the store; they are the
  clips of the same set prepared locally.
- The trunk-token pass as Ray Data actors reading those clips from the store, writing tokens
  beside them; an object an unfinished pass left behind (no marker) is not taken for tokens.
- A LOSO on those shards whose results and fold checkpoints live on the store, reading the
  tokens without computing them again; its driver killed (SIGKILL)
  while the second fold is held at a committed epoch checkpoint; the same command again (on
  Ray's fold workers this time) keeps the finished fold as it was, resumes the second from its
  checkpoint, and gives the
  predictions of an undisturbed run; then ``mer-ray report s3://...`` reads it.
- Storage that cannot be used (a missing bucket, credentials the store refuses, an endpoint
  that does not answer), and data named by a URI: one line each, exit 2, nothing written.
"""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mer_ray.cli import main as cli
from mer_ray.config import ExperimentConfig
from tests.helpers.ports import free_port
from tests.helpers.resume import reference, same_predictions, wait_for
from tests.helpers.tiny import FAULT, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
boto3 = pytest.importorskip("boto3")  # moto[server] (a test dependency) brings it
REPO = Path(__file__).resolve().parent.parent
BUCKET = "mer-results"
SHARDS = f"s3://{BUCKET}/shards"
COMPUTING = "computing the frozen-trunk tokens"  # what a run prints when it makes tokens


class S3Server:
    """moto's server on a free loopback port; ``env`` points the AWS libraries at it."""

    def __init__(self, log: Path, enforce_auth: bool = False):
        self.port = free_port()
        self.log = log  # the server's request log: one line per request
        self.endpoint = f"http://127.0.0.1:{self.port}"
        extra = {"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if enforce_auth else {}
        with open(log, "w") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from moto.server import main; main()", "-H",
                 "127.0.0.1", "-p", str(self.port)], stdout=sink, stderr=subprocess.STDOUT,
                env={**os.environ, **extra}, start_new_session=True)
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint}
        wait_for(self.answers, "the S3 server", timeout=60, poll=0.2)

    def answers(self) -> bool:
        assert self.proc.poll() is None, "the S3 server exited"
        try:
            urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2)
            return True
        except OSError:
            return False

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def keys(client, prefix: str = "") -> dict[str, dict]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"]: o for page in pages for o in page.get("Contents", [])}


def read(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def mer_ray(*args: str, env: dict, log: Path | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", "mer_ray", *args]
    if wait:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=600)
    with open(log, "w") as sink:  # a pipe nobody reads can fill up and block the driver
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)


def joining(ray_session, s3) -> dict:
    """A subprocess's environment: the store's endpoint and keys, and the session's Ray."""
    return {**os.environ, **s3.env,
            "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}


@pytest.fixture(scope="module")
def s3_shards(ray_session, synth_samm, s3):
    """``mer-ray prepare --out s3://...`` of the session's synthetic set, with the frame
    settings of ``tiny_shards`` (a driver joining the session's Ray: its workers write)."""
    res = mer_ray("prepare", "--dataset", "samm", "--data-root", str(synth_samm), "--out",
                  SHARDS, "--frames", "4", "--size", "28", env=joining(ray_session, s3))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def s3_tokens(ray_session, s3_shards, s3, tmp_path_factory):
    """The trunk-token pass of the fault tests' configuration over the shards on the store,
    as Ray Data actors: (the pass's JSON line, its configuration file)."""
    config = write_config(tmp_path_factory.mktemp("s3tokens") / "fault.yaml", tuple(FAULT))
    res = subprocess.run([sys.executable, "-m", "tests.helpers.trunk_pass", SHARDS,
                          str(config)], cwd=REPO, env=joining(ray_session, s3),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1]), config


def test_prepare_writes_shards_to_the_store(s3_shards, s3, tiny_shards, monkeypatch):
    from mer_ray.data.shards import CLIP_COLUMNS, Shards, SubjectReader

    stored = keys(s3.client(), "shards/")
    assert {"shards/prepare.json", "shards/manifest.parquet", "shards/rejected.parquet"} \
        <= set(stored)
    assert not [k for k in stored if ".tmp-" in k]
    assert f"mer-ray train --shards {SHARDS}" in s3_shards.stdout
    for key, value in s3.env.items():  # this process reads the store too
        monkeypatch.setenv(key, value)
    remote = Shards.open(SHARDS)
    assert remote.root == SHARDS and remote.meta.shards_id == tiny_shards.meta.shards_id
    assert remote.subjects() == tiny_shards.subjects()
    assert remote.subject_labels() == tiny_shards.subject_labels()
    there = SubjectReader(remote.clips, remote.subjects(), CLIP_COLUMNS).columns
    here = SubjectReader(tiny_shards.clips, tiny_shards.subjects(), CLIP_COLUMNS).columns
    for column in CLIP_COLUMNS:
        assert (there[column] == here[column]).all(), column


def test_trunk_tokens_are_written_beside_the_shards(s3_tokens, s3, tiny_shards):
    got, _ = s3_tokens
    assert got["reused"]  # finished: a second look finds the folder without computing
    prefix = got["root"].removeprefix(f"s3://{BUCKET}/")
    folder = got["folder"].removeprefix(f"s3://{BUCKET}/")
    stored = keys(s3.client(), folder + "/")
    assert f"{folder}/subject=006/stale.parquet" not in stored  # the unfinished pass's
    assert f"{folder}/pass.lease" not in stored  # released
    marker = json.loads(read(s3.client(), f"{prefix}/tokens.json"))
    assert marker["computed"] == "ray" and marker["clips"] == tiny_shards.meta.clips
    pointer = json.loads(read(s3.client(), f"{folder}/tokens.json"))
    assert f"{folder}/{pointer['pass']}" == prefix
    assert {k[len(prefix) + 1:].split("/")[0] for k in stored
            if k.startswith(prefix) and k.endswith(".parquet")} == \
        {f"subject={s}" for s in tiny_shards.subjects()}


def test_two_token_passes_on_the_store_at_once_compute_once(s3_shards, s3, monkeypatch):
    """Two runs needing the same tokens at once on the object store: one takes the lease
    object and computes, the other waits and reads its pass; nothing of either is deleted."""
    from mer_ray.data.shards import Shards, SubjectReader
    from tests.helpers.tiny import TINY
    from tests.helpers.trunk_pass import two_passes_at_once

    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    exp = ExperimentConfig().with_overrides(TINY + ["train.cache_trunk=true",
                                                    "train.seed=11"])  # tokens of its own
    got, computed = two_passes_at_once(SHARDS, exp, monkeypatch)
    assert computed == 1 and got[0].root == got[1].root
    shards = Shards.open(SHARDS)
    assert SubjectReader(got[0].root, shards.subjects(), ("clip", "tokens")).rows == \
        shards.meta.clips
    folder = got[0].root.rsplit("/", 1)[0].removeprefix(f"s3://{BUCKET}/")
    assert f"{folder}/pass.lease" not in keys(s3.client(), folder + "/")


def test_loso_on_s3_resumes_after_its_driver_is_killed(ray_session, tiny_shards, s3_tokens,
                                                       s3, tmp_path):
    client = s3.client()
    env = joining(ray_session, s3)
    tokens, config = s3_tokens
    tokens = tokens["root"].removeprefix(f"s3://{BUCKET}/")
    made = {k: o["ETag"] for k, o in keys(client, tokens + "/").items()}
    run = "runs/loso"
    cmd = ["train", "--shards", SHARDS, "--storage-path", f"s3://{BUCKET}/runs",
           "--name", "loso", "--config", str(config), "--max-folds", "2", "--local"]
    # the second fold waits at its first committed checkpoint until the pause object goes
    client.put_object(Bucket=BUCKET, Key=f"{run}/train/fold-007/pause", Body=b"")
    first = mer_ray(*cmd, env=env, log=tmp_path / "first.log", wait=False)

    def alive():
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]

    wait_for(lambda: f"{run}/folds/006/fold.json" in keys(client, run), "the first fold",
             timeout=300, poll=0.5, alive=alive)
    wait_for(lambda: f"{run}/train/fold-007/state.pt" in keys(client, run),
             "the second fold's first checkpoint", timeout=300, poll=0.5, alive=alive)
    os.killpg(first.pid, signal.SIGKILL)  # no clean-up handler runs
    first.wait(timeout=60)
    client.delete_object(Bucket=BUCKET, Key=f"{run}/train/fold-007/pause")
    stored = keys(client, run)
    assert f"{run}/folds/007/fold.json" not in stored  # unfinished: no marker
    assert f"{run}/summary.json" not in stored
    finished = read(client, f"{run}/folds/006/fold.json")
    etag = stored[f"{run}/folds/006/fold.json"]["ETag"]

    # again on Ray's fold workers: they read the shards, tokens and checkpoint on the store
    again = mer_ray(*[c for c in cmd if c != "--local"], env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # both runs read the tokens the pass left on the store; neither made them again
    assert COMPUTING not in (tmp_path / "first.log").read_text() + again.stdout
    assert {k: o["ETag"] for k, o in keys(client, tokens + "/").items()} == made
    assert "1 fold(s) already had results and were not retrained" in again.stdout
    stored = keys(client, run)
    assert read(client, f"{run}/folds/006/fold.json") == finished
    assert stored[f"{run}/folds/006/fold.json"]["ETag"] == etag  # not written again
    resumed = json.loads(read(client, f"{run}/folds/007/fold.json"))
    attempts = resumed["attempts"]
    assert len(attempts) == 2 and attempts[1]["start_epoch"] >= 1  # from its checkpoint
    assert resumed["node_id"] not in (None, "local")  # trained by a Ray worker
    assert f"{run}/train/fold-007/state.pt" not in stored  # done: its records say all
    assert not [k for k in stored if ".tmp-" in k]  # nothing half-written, nothing moved
    summary = json.loads(read(client, f"{run}/summary.json"))
    assert summary["n_folds"] == 2
    record = json.loads(read(client, f"{run}/experiment.json"))
    ref = reference(tiny_shards, ExperimentConfig.from_dict(record["config"]),
                    tmp_path / "ref", 2)
    for subject in ("006", "007"):
        same_predictions(json.loads(read(client, f"{run}/folds/{subject}/predictions.json")),
                         ref[subject])

    report = mer_ray("report", f"s3://{BUCKET}/runs", "--out", str(tmp_path / "report"),
                     env=env)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| `loso`" in text and f"{100 * summary['metrics']['uf1']:.2f}" in text


def test_a_run_on_shards_in_the_store_reads_their_prepare_json_once(ray_session, s3_shards, s3,
                                                                    tmp_path):
    """The driver opens the shards once at the door and passes the handle down; the folds
    (on Ray's workers, reading clips, not tokens) check what they read in the rows' own
    shards_id, not by fetching prepare.json again: one GET of it for the whole run, counted
    in the store's request log."""
    config = write_config(tmp_path / "tiny.yaml", ("train.cache_trunk=false",))
    before = len(s3.log.read_text().splitlines())
    res = mer_ray("train", "--shards", SHARDS, "--storage-path", str(tmp_path / "runs"),
                  "--name", "once", "--config", str(config), "--max-folds", "2",
                  env=joining(ray_session, s3))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    requests = [re.sub(r"\x1b\[[0-9;]*m", "", r)  # the server colours some status codes
                for r in s3.log.read_text().splitlines()[before:]]
    gets = [r for r in requests if f'"GET /{BUCKET}/shards/prepare.json' in r]
    clips = [r for r in requests if f'"GET /{BUCKET}/shards/clips/' in r]
    assert clips, requests[-20:]  # the folds did read the clips on the store
    assert len(gets) == 1, gets
    summary = json.loads((tmp_path / "runs" / "once" / "summary.json").read_text())
    assert summary["n_folds"] == 2


@pytest.fixture(scope="module")
def strict_s3(tmp_path_factory):
    """A server that checks credentials: the test's keys are not among its users'."""
    server = S3Server(tmp_path_factory.mktemp("s3auth") / "moto.log", enforce_auth=True)
    yield server
    server.stop()


@pytest.mark.parametrize("case", ["missing bucket", "refused credentials", "no server"])
def test_unusable_storage_is_one_line_and_writes_nothing(s3, strict_s3, tmp_path, case,
                                                         monkeypatch, capsys):
    env = {**os.environ, **s3.env}
    env.pop("RAY_ADDRESS", None)
    uri, expect = f"s3://{BUCKET}/runs", ""
    if case == "missing bucket":
        uri, expect = "s3://no-such-bucket/runs", "the bucket 'no-such-bucket' does not exist"
    elif case == "refused credentials":
        env["AWS_ENDPOINT_URL"], expect = strict_s3.endpoint, "refused these credentials"
    else:
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        expect = f"no answer from {env['AWS_ENDPOINT_URL']}"
    before = set(keys(s3.client()))
    work = tmp_path / "work"
    # a real process once (its exit status and stderr), then the other commands in this one
    res = mer_ray("train", "--storage-path", uri, "--workdir", str(work), env=env)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and uri in lines[0], res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for cmd, where in ((["report", uri, "--out", str(tmp_path / "report")], uri),
                       (["prepare", "--data-root", str(work), "--out", f"{uri}/shards"],
                        f"{uri}/shards")):
        assert cli(cmd) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert expect in line and where in line, line
    assert not work.exists() and not (tmp_path / "report").exists()
    assert set(keys(s3.client())) == before


def test_raw_data_on_an_object_store_is_refused(s3, tmp_path, monkeypatch, capsys):
    """Data roots, manifests and annotation files are read as local files: a URI there is one
    line, exit 2, nothing written; shards that are not there are named."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    where = f"s3://{BUCKET}/raw"
    for cmd, expect in (
            (["train", "--data-root", where], "needs a folder on this machine"),
            (["prepare", "--dataset", "samm", "--data-root", where, "--out", str(tmp_path)],
             "needs a folder on this machine"),
            (["train", "--shards", f"s3://{BUCKET}/nothing"], "not a shard folder")):
        assert cli(cmd) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert expect in line and ("s3://" in line), line
    assert not keys(s3.client(), "raw") and not keys(s3.client(), "nothing")
    assert not list(tmp_path.iterdir()) and not (REPO / "s3:").exists()
