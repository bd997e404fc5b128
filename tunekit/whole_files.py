"""A local disk on which every file Tune writes appears whole (see :class:`WholeFiles`)."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pyarrow
import pyarrow.fs

from tunekit.core.resume import EXPERIMENT_STATE


class WholeFiles(pyarrow.fs.FileSystemHandler):
    """A ``pyarrow.fs`` handler for a local disk on which every file written appears whole: it is written
    beside its place (``.<name>.partial-<random>``) and renamed there once complete.

    Tune saves an experiment's state (``experiment_state-*.json``, the searcher's and the callbacks' pickles,
    ``tuner.pkl``) in a staging folder and copies it to the storage folder after every event, rewriting each
    file in place. A driver killed during that copy left a file cut short (an empty ``callback-states-*.pkl``),
    and ``tunekit resume`` could not restore the phase. Through this handler a kill leaves each file as it
    was or as it was to be, and at most one stray ``.partial-`` file that no reader's pattern matches.

    One more guard: Tune writes ``experiment_state-*.json`` into its staging folder in place (every other
    state file there is written aside and renamed), and copies the staging folder in a background thread
    while the next event may be rewriting it — so a copy can carry half a JSON document. An experiment
    state that does not parse is not put in place: the last whole one stays until the next copy. Everything
    else is the local filesystem's.
    """

    def __init__(self) -> None:
        self.local = pyarrow.fs.LocalFileSystem()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WholeFiles)

    def __hash__(self) -> int:
        return hash(WholeFiles)

    def get_type_name(self) -> str:
        return "tunekit-whole-files"

    def normalize_path(self, path: str) -> str:
        return str(self.local.normalize_path(path))

    def get_file_info(self, paths: list[str]) -> Any:
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: Any) -> Any:
        return self.local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("tunekit does not delete the root folder's contents")

    def delete_file(self, path: str) -> None:
        self.local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.local.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        return self.local.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.local.open_input_file(path)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        return self.local.open_append_stream(path)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        return pyarrow.PythonFile(_WrittenAside(path), mode="w")


class _WrittenAside:
    """A binary file written beside ``path`` and renamed to it on close (a file object for ``pyarrow.PythonFile``)."""

    def __init__(self, path: str) -> None:
        folder, name = os.path.split(path)
        self.path, self.aside = path, os.path.join(folder, f".{name}.partial-{uuid.uuid4().hex[:12]}")
        # os.open's mode, as open()'s: the umask decides, as it does for the files Tune writes directly
        self.file = os.fdopen(os.open(self.aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")

    @property
    def closed(self) -> bool:
        return self.file.closed

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.file.tell()

    def write(self, data: Any) -> int:
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        if self.file.closed:
            return
        self.file.close()
        if is_experiment_state(self.path) and not _parses(self.aside):
            os.remove(self.aside)  # copied while Tune was rewriting it: the whole one in place stays
            return
        os.replace(self.aside, self.path)


def is_experiment_state(path: str) -> bool:
    """Tune's ``experiment_state-<session time>.json``: the state file it writes in place."""
    prefix, suffix = EXPERIMENT_STATE
    name = os.path.basename(path)
    return name.startswith(prefix) and name.endswith(suffix)


def _parses(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            json.load(fh)
    except ValueError:  # json.JSONDecodeError, and UnicodeDecodeError from a cut multi-byte character
        return False
    return True
