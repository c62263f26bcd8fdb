"""A run's folder, ``<storage>/<name>/``: every path in it, and the claim that says what run it
holds.

::

    experiment.json          what the run is (written once; a later run of the same name
                             must be the same run, or it is refused)
    folds/<key>/             each finished fold's records (``records.py``)
    train/fold-<key>/        an unfinished fold's last epoch checkpoint
    train/ray/               Ray Train's own records of the fold slots
    logs/                    the fold workers' output (local storage only)
    search/<outer>.json      a nested search's choice for an outer fold, and
    search/<outer>/t<k>-<inner>.json   each inner evaluation it made
    summary.json, predictions.parquet  the run's figures (``experiments/summary.py``)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..records import EXPERIMENT_JSON, fold_done, read_result
from ..storage import Storage, open_storage


class ExperimentMismatch(ValueError):
    """A run name that already holds another run."""


@dataclass(frozen=True)
class RunFolder:
    storage: Storage
    name: str

    @classmethod
    def open(cls, storage: Storage | str | Path, name: str) -> RunFolder:
        """The run ``name`` in ``storage`` (an opened ``Storage``, or a folder or URI to open)."""
        return cls(storage if isinstance(storage, Storage) else open_storage(storage), name)

    def rel(self, *parts: str) -> str:
        """A path under this folder, relative to the storage root."""
        return "/".join([self.name, *parts])

    def where(self, *parts: str) -> str:
        """A path under this folder as the user would write it (a folder or a URI)."""
        return self.storage.where(self.name, *parts)

    def fold_dir(self, key: str) -> str:
        return self.rel("folds", key)

    def checkpoint_dir(self, key: str) -> str:
        return self.rel("train", f"fold-{key}")

    @property
    def ray_dir(self) -> str:
        """Where the fold slots' Train runs keep Ray's records (a folder or URI)."""
        return f"{self.storage.uri.rstrip('/')}/{self.name}/train/ray"

    @property
    def logs_dir(self) -> str | None:
        """Where the fold workers' output goes: ``logs/`` for local storage, else None."""
        return self.storage.local_path(self.name, "logs")

    def search_record(self, outer: str) -> str:
        return self.rel("search", f"{outer}.json")

    def inner_record(self, outer: str, trial: int, inner: str) -> str:
        return self.rel("search", outer, f"t{trial:03d}-{inner}.json")

    def fold_done(self, key: str) -> bool:
        return fold_done(self.storage, self.fold_dir(key))

    def read_fold(self, key: str):
        """(FoldRecord, Predictions) of a finished fold."""
        return read_result(self.storage, self.fold_dir(key))

    def exists(self, rel: str) -> bool:
        return self.storage.exists(rel)

    def read_json(self, rel: str) -> dict:
        return json.loads(self.storage.read_bytes(rel))

    def write_json(self, data: dict, rel: str) -> None:
        self.storage.write_atomic(json.dumps(data, indent=1, default=str).encode(), rel)

    def check_claim(self, identity: dict) -> None:
        """Refuse now (before any work) when the folder holds another run, judged by the keys
        of ``identity`` known so far; ``claim`` checks them all later."""
        rel = self.rel(EXPERIMENT_JSON)
        if self.storage.exists(rel):
            old = self.read_json(rel).get("identity") or {}
            self._refuse_if({k: old.get(k) for k in identity}, identity)

    def _refuse_if(self, old: dict, new: dict) -> None:
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if differ:
            said = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in differ)
            raise ExperimentMismatch(
                f"{self.where()} holds another run ({said}): its finished folds do not belong "
                f"to this one. Use another --name or remove that folder.")

    def claim(self, record: dict, identity: dict) -> None:
        """Write ``experiment.json`` (``record`` plus ``identity``), or, when the folder holds
        one already, refuse unless its identity is this one: the configuration, the data and
        anything else that makes a run this run (a search's space and budget). Stored folds
        are only ever reused by the run that made them."""
        rel = self.rel(EXPERIMENT_JSON)
        if not self.storage.exists(rel):
            self.write_json({"name": self.name, **record, "identity": identity}, rel)
            return
        self._refuse_if(self.read_json(rel).get("identity") or {}, identity)
