"""A search's experiment files on a local disk appear whole: a process killed while writing one leaves the
file as it was (or absent), never cut short. Tune rewrites its experiment state in place after every event,
and a driver SIGKILLed in that copy had left an empty ``callback-states-*.pkl`` that ``tunekit resume``
could not read."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.fs

from tunekit.storage import tune_filesystem

CHUNK = 1 << 20

# writes CHUNK-sized blocks of "new" into argv[1] through the filesystem Tune would be given (or the plain
# local one), says so after the first block, then waits to be killed before the last
WRITER = textwrap.dedent(
    f"""
    import sys, time
    import pyarrow.fs
    from tunekit.storage import tune_filesystem
    fs = tune_filesystem(sys.argv[1]) if sys.argv[2] == "whole" else pyarrow.fs.LocalFileSystem()
    with fs.open_output_stream(sys.argv[1]) as out:
        out.write(b"n" * {CHUNK})
        out.flush()
        print("written", flush=True)
        time.sleep(60)
        out.write(b"n" * {CHUNK})
    """
)


def killed_while_writing(path: Path, kind: str) -> None:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), kind], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "written"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)


def test_a_write_killed_midway_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "callback-states-2026-12-05_13-57-01.pkl"
    target.write_bytes(pickle.dumps({"runs": {"a": "b"}}))
    killed_while_writing(target, "whole")
    assert pickle.loads(target.read_bytes()) == {"runs": {"a": "b"}}
    # what the kill left is one stray file beside it, hidden, that no pattern Tune globs for matches
    (stray,) = (p for p in tmp_path.iterdir() if p != target)
    assert stray.name.startswith(f".{target.name}.partial-")
    assert stray.stat().st_size == CHUNK
    assert sorted(p.name for p in tmp_path.glob("callback-states-*.pkl")) == [target.name]


def test_the_plain_local_filesystem_would_have_cut_it_short(tmp_path: Path) -> None:
    """The same kill through pyarrow's LocalFileSystem (Ray's default for a local folder): the bug the handler removes."""
    target = tmp_path / "callback-states.pkl"
    target.write_bytes(pickle.dumps({"runs": {}}))
    killed_while_writing(target, "local")
    assert target.stat().st_size == CHUNK  # neither the old pickle nor the new one


def test_a_first_write_killed_midway_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "experiment_state-2026-12-05_13-57-01.json"
    killed_while_writing(target, "whole")
    assert not target.exists()


def test_an_experiment_state_copied_half_written_is_not_put_in_place(tmp_path: Path) -> None:
    """Tune writes experiment_state-*.json in place in its staging folder while its background copy may be reading
    it (a clean-clone CI run read one cut at character 107 098): that copy leaves the last whole one in place."""
    fs = tune_filesystem(str(tmp_path))
    target = tmp_path / "experiment_state-2026-12-05_14-00-00.json"
    whole = json.dumps({"trial_data": [["{}", "{}"]] * 100})
    target.write_text(whole)
    with fs.open_output_stream(str(target)) as out:
        out.write(whole[: len(whole) // 2].encode())
    assert target.read_text() == whole
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # the half copy is gone too
    other = tmp_path / "result.json"  # any other file is put in place as written (a JSON-lines file's last line may be cut)
    with fs.open_output_stream(str(other)) as out:
        out.write(b'{"epoch": 1}\n{"epo')
    assert other.read_bytes() == b'{"epoch": 1}\n{"epo'
    with fs.open_output_stream(str(target)) as out:
        out.write(b'{"trial_data": []}')
    assert json.loads(target.read_text()) == {"trial_data": []}


def test_copies_and_reads_as_the_local_filesystem(tmp_path: Path) -> None:
    """What Ray does with it: copy a staging folder over, list, read, delete; pickled to the trials' processes."""
    staging, storage = tmp_path / "staging", tmp_path / "storage"
    (staging / "trial_1").mkdir(parents=True)
    (staging / "experiment_state.json").write_text('{"trial_data": []}')
    (staging / "trial_1" / "result.json").write_text('{"epoch": 1}\n')
    fs = pickle.loads(pickle.dumps(tune_filesystem(str(storage))))
    fs.create_dir(str(storage))
    pyarrow.fs.copy_files(str(staging), str(storage), destination_filesystem=fs)
    (staging / "experiment_state.json").write_text('{"trial_data": [1]}')  # the next sync rewrites it
    pyarrow.fs.copy_files(str(staging), str(storage), destination_filesystem=fs)
    assert (storage / "experiment_state.json").read_text() == '{"trial_data": [1]}'
    listed = fs.get_file_info(pyarrow.fs.FileSelector(str(storage), recursive=True))
    assert sorted(os.path.relpath(i.path, storage) for i in listed) == ["experiment_state.json", "trial_1", "trial_1/result.json"]
    with fs.open_input_stream(str(storage / "trial_1" / "result.json")) as fh:
        assert fh.read() == b'{"epoch": 1}\n'
    fs.delete_dir(str(storage / "trial_1"))
    assert not (storage / "trial_1").exists()
    assert tune_filesystem("s3://bucket/runs") is None  # object storage: Ray's own, an object appears whole anyway
