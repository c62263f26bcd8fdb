"""Where results live: a local folder or any pyarrow filesystem URI (s3://, gs://, file://, ...).

Everything the project writes as a result goes through ``write_atomic``, so a reader never sees
half a file and a killed writer leaves nothing that looks finished:

- on a local (or mounted shared) file system the bytes land under a temporary name and are
  renamed into place (a rename is atomic there);
- on an object store (S3, GCS) there is no rename (a "move" is a copy and a delete), but an
  object becomes visible only when its upload completes: the bytes are written to the final
  key directly, and a writer killed mid-upload leaves no object at all.

A set of files becomes finished by its marker, written last (a fold's ``fold.json``, a run's
``summary.json``): a reader, and a resume, go by the marker only, so a killed run's objects
without one are never taken for results.

A remote URI is checked when it is opened (``check_remote``): a missing bucket, credentials the
store refuses, or an endpoint that does not answer is one clear error, before any work.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")  # s3://b/x, and s3:/b/x (a Path made of one)


class StorageError(ValueError):
    """Remote storage that cannot be used as given: one line saying why and what to do."""


def is_uri(text: str | Path) -> bool:
    """Whether a path the user gave names remote storage (``s3://...``) rather than a folder."""
    return bool(_URI.match(str(text)))


# Where a URI can carry credentials: the user part (s3://KEY:SECRET@bucket/...) and query
# parameters such as pyarrow's ?access_key=...&secret_key=...&session_token=...
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:/+)([^/@?#]*@)")
_SECRET_QUERY = re.compile(r"([?&](?:access_key|secret_key|session_token|token|password|"
                           r"key|credential[s]?|signature|sig|X-Amz-[A-Za-z-]+)=)[^&#]*",
                           re.IGNORECASE)


def redact(text: str | Path) -> str:
    """``text`` with any credentials a URI in it carries replaced by ``***``."""
    out = _USERINFO.sub(r"\1***@", str(text))
    return _SECRET_QUERY.sub(r"\1***", out)


def refuse_credentials(text: str | Path, option: str) -> None:
    """A URI that carries credentials is refused (one line, the credentials left out): what is
    in a URI ends up in console lines, logs, run records and reports."""
    if redact(as_uri(text)) != as_uri(text):
        raise StorageError(
            f"{option} {redact(as_uri(text))}: this URI carries credentials, and URIs are "
            f"printed, logged and recorded with results; give them in the environment instead "
            f"(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; "
            f"GOOGLE_APPLICATION_CREDENTIALS for gs://)")


def as_uri(text: str | Path) -> str:
    """A URI as the user wrote it: ``s3://b/x`` (an option parsed as a Path reads ``s3:/b/x``)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)", r"\1://", str(text))


@dataclass(frozen=True)
class Storage:
    fs: pafs.FileSystem
    root: str  # path inside fs
    uri: str  # what the user gave (absolute for local folders): Ray's storage_path

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def where(self, *parts: str) -> str:
        """A path as the user would write it: a local path, or the URI (``s3://b/x/...``)."""
        if self.is_local:
            return self.path(*parts)
        return "/".join([self.uri.rstrip("/"), *parts])

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as fh:
            return fh.read()

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def write_atomic(self, data: bytes, *parts: str) -> str:
        target = self.path(*parts)
        if not self.is_local:  # an object appears whole when its upload completes, or never
            with self.fs.open_output_stream(target) as fh:
                fh.write(data)
            return target
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(tmp) as fh:
            fh.write(data)
        self.fs.move(tmp, target)
        return target

    def write_parquet(self, frame, *parts: str) -> str:
        """A polars DataFrame as Parquet, atomically."""
        import io

        buf = io.BytesIO()
        frame.write_parquet(buf)
        return self.write_atomic(buf.getvalue(), *parts)

    def delete(self, *parts: str) -> None:
        """Remove a file or a folder (and what it holds); nothing there is not an error."""
        info = self.fs.get_file_info(self.path(*parts))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(info.path)
        elif info.type != pafs.FileType.NotFound:
            self.fs.delete_file(info.path)

    def local_path(self, *parts: str) -> str | None:
        """The path on this machine's disk, for local storage; None for remote storage."""
        return self.path(*parts) if self.is_local else None

    def files(self, *parts: str, suffix: str = "") -> list[str]:
        """Paths (in ``fs``) of the files under a folder, at any depth, sorted; none when the
        folder does not exist."""
        sel = pafs.FileSelector(self.path(*parts), recursive=True, allow_not_found=True)
        return sorted(info.path for info in self.fs.get_file_info(sel)
                      if info.type == pafs.FileType.File and info.base_name.endswith(suffix))

    def listdir(self, *parts: str) -> list[str]:
        sel = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(sel))


def _why(exc: Exception) -> str:
    text = str(exc)
    if any(k in text for k in ("ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId",
                               "SignatureDoesNotMatch", "403", "credentials")):
        return ("the store refused these credentials: check AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE; GOOGLE_APPLICATION_CREDENTIALS for gs://)")
    if any(k in text for k in ("NETWORK_CONNECTION", "Could not connect", "Couldn't connect",
                               "Connection refused", "resolve host", "Timeout", "timed out")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the provider's default endpoint"
        return (f"no answer from {endpoint}: check AWS_ENDPOINT_URL (an S3-compatible server "
                f"such as MinIO) and that the server is up")
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def check_remote(fs: pafs.FileSystem, root: str, uri: str) -> None:
    """Raise ``StorageError`` unless the bucket of ``uri`` exists and these credentials reach
    it (``locate`` asks once per URI and process). ``file://`` URIs have no bucket."""
    if isinstance(fs, pafs.LocalFileSystem):
        return
    bucket = root.strip("/").split("/", 1)[0]
    try:
        info = fs.get_file_info(bucket)
    except OSError as exc:
        raise StorageError(f"{uri}: cannot use this storage: {_why(exc)}") from None
    if info.type == pafs.FileType.NotFound:
        raise StorageError(f"{uri}: the bucket {bucket!r} does not exist (or these credentials "
                           f"cannot see it): create it first, or check the URI") from None


_FILESYSTEMS: dict[str, tuple[pafs.FileSystem, str]] = {}


def locate(uri: str | Path) -> Storage:
    """A local folder (made absolute, not created) or a URI pyarrow understands (checked:
    ``check_remote``). Remote file systems are made once per URI and process."""
    text = str(uri)
    if not is_uri(text):
        local = str(Path(text).expanduser().resolve())
        return Storage(pafs.LocalFileSystem(), local, local)
    refuse_credentials(text, "storage")
    text = as_uri(text).rstrip("/")
    if text not in _FILESYSTEMS:
        try:
            fs, root = pafs.FileSystem.from_uri(text)
        except (OSError, ValueError) as exc:
            raise StorageError(f"{text}: not a storage URI mer-ray can open ({_why(exc)})") \
                from None
        check_remote(fs, root, text)
        _FILESYSTEMS[text] = fs, root
    fs, root = _FILESYSTEMS[text]
    return Storage(fs, root, text)


def open_storage(uri: str | Path) -> Storage:
    """Where results go: ``locate``, with a local folder created."""
    store = locate(uri)
    if store.is_local:
        try:
            Path(store.root).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{store.root}: cannot create this folder for results "
                               f"({exc.strerror or exc}); give --storage-path a folder you can "
                               f"write") from None
    return store


def check_writable(uri: str | Path) -> None:
    """Before any work: results can be written where ``--storage-path`` says (a local folder
    is created and a probe file written and removed; a URI's bucket is checked by
    ``locate``)."""
    store = open_storage(uri)
    if not store.is_local:
        return
    probe = Path(store.root) / f".mer-ray-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(f"{store.root}: cannot write results here ({exc.strerror or exc}); "
                           f"give --storage-path a folder you can write") from None
