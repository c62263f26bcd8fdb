"""What a report reads: run folders, grid files and sweep files, found under folders, files or
URIs (s3://, gs://, file://) and read through the storage layer, as the runs were written."""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs

from ..storage import Storage, is_uri, open_storage


class Node:
    """A file or folder of stored results, local or behind a pyarrow URI (s3://...): the
    report reads through the storage layer, as the runs were written."""

    def __init__(self, storage: Storage, path: str):
        self.storage, self.path = storage, path.rstrip("/")

    def __truediv__(self, name: str) -> Node:
        return Node(self.storage, f"{self.path}/{name}")

    def __eq__(self, other) -> bool:
        return isinstance(other, Node) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __str__(self) -> str:
        return self.path if self.storage.local_path() else \
            f"{self.storage.uri.rstrip('/')}/{self.path[len(self.storage.root):].lstrip('/')}"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def parent(self) -> Node:
        return Node(self.storage, self.path.rsplit("/", 1)[0])

    def as_storage(self) -> Storage:
        """This folder as a storage root (run names under it read as in ``--storage-path``)."""
        return Storage(self.storage.fs, self.path, str(self))

    def _info(self):
        return self.storage.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def read_bytes(self) -> bytes:
        with self.storage.fs.open_input_stream(self.path) as fh:
            return fh.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def read_parquet(self) -> pl.DataFrame:
        try:
            return pl.read_parquet(io.BytesIO(self.read_bytes()))
        except Exception as exc:  # polars' errors for a damaged file are its own types
            raise ValueError(f"{self}: not a Parquet file mer-ray can read ({_first(exc)}); "
                             f"write it again (the run's summary step: run its command "
                             f"again) or leave this run out of the report") from None

    def read_json(self) -> dict:
        try:
            return json.loads(self.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self}: not a JSON file mer-ray can read ({_first(exc)}); "
                             f"write it again (run the command that made it again) or leave "
                             f"it out of the report") from None

    def files(self, suffix: str) -> list[Node]:
        """Every file below this folder whose name ends with ``suffix``, in a stable order."""
        sel = pafs.FileSelector(self.path, recursive=True)
        return sorted((Node(self.storage, i.path) for i in self.storage.fs.get_file_info(sel)
                       if i.type == pafs.FileType.File and i.path.endswith(suffix)),
                      key=lambda n: n.path)


def _first(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def open_node(path: str | Path) -> Node:
    """A local path or a URI as a Node (the storage opened at its folder)."""
    text = str(path)
    if is_uri(text):
        storage = open_storage(text)  # a missing bucket or refused credentials: one line
        return Node(storage, storage.root)
    local = str(Path(text).expanduser().resolve())
    return Node(Storage(pafs.LocalFileSystem(), local, local), local)


def find_inputs(paths: list[str | Path]) -> tuple[list[Node], list[Node], list[Node]]:
    """(run folders, grid files, sweep files) under ``paths`` (folders, files or URIs), each
    once, in a stable order."""
    runs, grids, sweeps = [], [], []
    for given in paths:
        p = open_node(given)
        if not p.exists():
            raise FileNotFoundError(f"{given}: no such file or folder")
        if p.is_file():
            candidates = [p]
        else:
            skip = {"folds", "train", "tune", "search", "logs", "mlruns", "tensorboard"}
            candidates = [c for c in p.files(".json")
                          if not skip & set(c.path[len(p.path):].split("/")[:-1])]
            candidates = [c for c in candidates if c.name == "summary.json"] + \
                [c for c in candidates if c.name != "summary.json"]
        for c in candidates:
            if c.name == "summary.json":
                if c.parent not in runs:
                    runs.append(c.parent)
            elif c.name == "sweep.json":
                if c not in sweeps:
                    sweeps.append(c)
            elif c.name.endswith(".json") and c not in grids and is_grid(c):
                grids.append(c)
    if not runs and not grids and not sweeps:
        raise FileNotFoundError(f"no results under {', '.join(map(str, paths))}: expected run "
                                f"folders with summary.json, grid files (ablation.json, ...) or "
                                f"sweep.json")
    return runs, grids, sweeps


def is_grid(path: Node) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "grid" in data and isinstance(data.get("rows"), list)


def load_runs(runs: list[Node]) -> pl.DataFrame:
    rows = []
    for r in runs:
        s = (r / "summary.json").read_json()
        if not isinstance(s.get("metrics"), dict) or "name" not in s:
            raise ValueError(f"{r / 'summary.json'}: not a run summary mer-ray can read (no "
                             f"name or metrics); write it again (run the run's command "
                             f"again) or leave this run out of the report")
        m = s["metrics"]
        rows.append({
            "run": s["name"], "path": str(r), "dataset": s.get("dataset"),
            "protocol": s.get("protocol"), "synthetic": bool(s.get("synthetic")),
            "pretrained": s.get("pretrained") is True,
            "random_init": s.get("pretrained") is False,
            "backbone": {True: "pretrained", False: "RANDOM INIT", None: "none"}.get(
                s.get("pretrained"), "mixed"),
            "method": s.get("method", "mer"), "leaky": bool(s.get("leaky")),
            "config_hash": s.get("config_hash"),
            "code_version": s.get("code_version"), "seed": s.get("seed"),
            "folds": s["n_folds"], "clips": s["n_clips"], "uf1": m["uf1"], "uar": m["uar"],
            "fold_mean_uf1": m["per_fold_mean_uf1"], "fold_mean_uar": m["per_fold_mean_uar"],
            "control": bool(s.get("control_shuffled_labels")),
            "uf1_ci95": m.get("uf1_ci95"), "uar_ci95": m.get("uar_ci95"),
            "search_informed": bool(s.get("search_informed")), "nested": "nested" in s,
            "selection_unknown": bool(s.get("selection_unknown")),
            "scored": bool(s.get("scored")),
            "partial": (f"{s['partial']['folds']} of {s['partial']['of']} folds"
                        if s.get("partial") else None),
        })
    return pl.DataFrame(rows)
