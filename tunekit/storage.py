"""Files under ``--storage``, on a local disk or on object storage, through one filesystem.

Every file tunekit itself reads or writes where the runs live (``search.json``, the run claim,
snapshot copies, range-test curves, checkpoints it loads) goes through these functions, which
resolve a location (:mod:`tunekit.core.storage`) to a ``pyarrow.fs`` filesystem and a path on it.
Nothing here calls ``open`` or ``shutil`` on a remote location; what a local library needs as a
local file (``torch.load``) is downloaded into a cache folder first (:func:`local_copy`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunekit.core.storage import is_remote, is_uri, join, name_of, split_query

__all__ = [
    "cache_root",
    "copy_tree",
    "delete_file",
    "exists",
    "filesystem",
    "is_dir",
    "join",
    "local_copy",
    "make_dirs",
    "move",
    "name_of",
    "names_in",
    "read_bytes",
    "read_text",
    "tune_filesystem",
    "write_bytes",
    "write_text",
]


def filesystem(location: str) -> tuple[Any, str]:
    """``(pyarrow filesystem, path on it)`` for a local path or a URI (its query string configures the filesystem)."""
    import pyarrow.fs

    if not is_uri(location):
        return pyarrow.fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))
    return pyarrow.fs.FileSystem.from_uri(location)


def _info(location: str) -> Any:
    fs, inner = filesystem(location)
    return fs.get_file_info(inner)


def exists(location: str) -> bool:
    """Whether a file or folder is there."""
    import pyarrow.fs

    return bool(_info(location).type != pyarrow.fs.FileType.NotFound)


def is_dir(location: str) -> bool:
    """Whether a folder is there (on object storage: anything under that prefix)."""
    import pyarrow.fs

    return bool(_info(location).type == pyarrow.fs.FileType.Directory)


def make_dirs(location: str) -> None:
    """Create a folder and its parents (a no-op on object storage, where folders are prefixes: the first
    object written under one makes it, and empty "folder" marker objects are refused by some servers)."""
    if is_remote(location):
        return
    fs, inner = filesystem(location)
    fs.create_dir(inner, recursive=True)


def read_bytes(location: str) -> bytes | None:
    """A small file's contents; None when it does not exist."""
    if not is_uri(location):
        p = Path(location)
        return p.read_bytes() if p.is_file() else None
    if not exists(location):
        return None
    fs, inner = filesystem(location)
    with fs.open_input_stream(inner) as fh:
        return bytes(fh.read())


def read_text(location: str) -> str | None:
    """A small text file's contents; None when it does not exist."""
    data = read_bytes(location)
    return None if data is None else data.decode()


def write_bytes(location: str, data: bytes) -> None:
    """Write a small file: atomically on a local disk (a killed process leaves the old file or the new
    one); on object storage one PUT, which is atomic per object."""
    if not is_uri(location):
        tmp = Path(f"{location}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, location)
        return
    fs, inner = filesystem(location)
    with fs.open_output_stream(inner) as fh:
        fh.write(data)


def write_text(location: str, text: str) -> None:
    """Write a small text file, as :func:`write_bytes` does."""
    write_bytes(location, text.encode())


def move(source: str, destination: str) -> None:
    """Rename a file (on object storage: copy, then delete)."""
    fs, inner = filesystem(source)
    fs.move(inner, filesystem(destination)[1])


def names_in(location: str) -> list[str]:
    """The names of the files and folders directly in a folder, sorted; [] when there is none."""
    import pyarrow.fs

    fs, inner = filesystem(location)
    selector = pyarrow.fs.FileSelector(inner, allow_not_found=True, recursive=False)
    return sorted(info.base_name for info in fs.get_file_info(selector))


def delete_file(location: str) -> None:
    """Remove one file; a missing one is not an error."""
    with contextlib.suppress(FileNotFoundError):
        fs, inner = filesystem(location)
        fs.delete_file(inner)


def copy_tree(source: str, destination: str) -> str:
    """Copy the folder ``source`` to ``destination`` (either local or a URI), replacing what was there.

    Returns ``destination``.
    """
    import pyarrow.fs

    if not is_uri(source) and not is_uri(destination):
        if os.path.exists(destination):
            shutil.rmtree(destination)
        shutil.copytree(source, destination)
        return destination
    src_fs, src_path = filesystem(source)
    dst_fs, dst_path = filesystem(destination)
    if is_dir(destination):
        dst_fs.delete_dir(dst_path)
    if not is_dir(source):
        raise FileNotFoundError(f"{source}: no such folder")
    make_dirs(destination)
    pyarrow.fs.copy_files(src_path, dst_path, source_filesystem=src_fs, destination_filesystem=dst_fs)
    return destination


def tune_filesystem(location: str) -> Any | None:
    """The filesystem Tune keeps a search's experiments in under ``location``: :class:`WholeFiles` for a local
    folder (:mod:`tunekit.whole_files`); None for a URI, which Ray resolves itself (an object on object storage appears whole anyway)."""
    import pyarrow.fs

    from tunekit.whole_files import WholeFiles

    return None if is_uri(location) else pyarrow.fs.PyFileSystem(WholeFiles())


def cache_root() -> Path:
    """Where remote files are cached on this machine: ``$TUNEKIT_CACHE``, else ``~/.cache/tunekit``."""
    return Path(os.environ.get("TUNEKIT_CACHE") or Path("~/.cache/tunekit").expanduser())


@contextlib.contextmanager
def local_copy(location: str) -> Iterator[Path]:
    """A local folder holding what ``location`` holds: the folder itself when local, else a download of it.

    Downloads go to :func:`cache_root` ``/storage/<hash>``, each into a temporary folder first and
    renamed into place, so two processes never read a half-written copy. Checkpoints are written once
    and never changed, so a cached copy stays valid.
    """
    if not is_remote(location):
        yield Path(location.removeprefix("file://"))
        return
    import pyarrow.fs

    key = hashlib.sha256(split_query(location)[0].encode()).hexdigest()[:16]
    target = cache_root() / "storage" / f"{key}-{name_of(location)}"
    if not target.is_dir():
        if not is_dir(location):
            raise FileNotFoundError(f"{location}: no such folder")
        fs, inner = filesystem(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".download-"))
        try:
            pyarrow.fs.copy_files(inner, str(tmp), source_filesystem=fs, destination_filesystem=pyarrow.fs.LocalFileSystem())
            with contextlib.suppress(OSError):  # another process put its copy there first: use that one
                os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    yield target
