"""Where results live: a local folder or any pyarrow filesystem URI (s3://, gs://, file://, ...).

Everything the project writes as a result goes through ``write_atomic``: the bytes land under a
temporary name and are moved into place, so a reader never sees half a file and a killed writer
leaves nothing that looks finished.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Storage:
    fs: pafs.FileSystem
    root: str  # path inside fs
    uri: str  # what the user gave (absolute for local folders): Ray's storage_path

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as fh:
            return fh.read()

    def write_atomic(self, data: bytes, *parts: str) -> str:
        target = self.path(*parts)
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
        return self.path(*parts) if isinstance(self.fs, pafs.LocalFileSystem) else None

    def listdir(self, *parts: str) -> list[str]:
        sel = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(sel))


def open_storage(uri: str | Path) -> Storage:
    """A local folder (made absolute) or a URI pyarrow understands."""
    text = str(uri)
    if "://" in text:
        fs, root = pafs.FileSystem.from_uri(text)
        return Storage(fs, root, text)
    local = str(Path(text).expanduser().resolve())
    Path(local).mkdir(parents=True, exist_ok=True)
    return Storage(pafs.LocalFileSystem(), local, local)
