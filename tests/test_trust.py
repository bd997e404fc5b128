"""The trust boundary of checkpoints: a poisoned ``state.pt`` is refused, and its code never runs.

tunekit reads a checkpoint with ``torch.load(..., weights_only=True)`` (``tunekit.trainable.load_state``):
a retry, ``Tuner.restore`` and every snapshot continuation (``restore_from``) go through it. These
tests write a checkpoint folder exactly as a trial leaves one (``checkpoint_000001/state.pt``, the
training loop's own state) with one extra entry whose unpickling would run a shell command, and
prove the real loaders raise before that command runs. A control loads the same file with plain
pickle semantics (``weights_only=False``) and sees the command run: the payload is live, so the
refusal is what keeps the marker file away. See docs/trust.md for what else a user must trust.
"""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import tiny_preset_dict
from tunekit.presets import load_preset
from tunekit.train.loop import Trainer
from tunekit.trainable import CHECKPOINT_FILE, _restore_point, load_state, save_state


class _RunsAShellCommand:
    """Unpickles into ``os.system(command)``: what a malicious checkpoint would smuggle in."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


@pytest.fixture(scope="module")
def trainer_state() -> dict[str, Any]:
    """The state a real tunekit training loop checkpoints (weights, optimizer, schedule, RNG, preset)."""
    return Trainer(load_preset(tiny_preset_dict()), "cpu").state_dict()


def poisoned_checkpoint(trial_dir: Path, state: dict[str, Any], marker: Path) -> Path:
    """A trial's checkpoint folder as Tune leaves it, its ``state.pt`` carrying a payload that touches ``marker``."""
    folder = trial_dir / "checkpoint_000001"
    folder.mkdir(parents=True)
    written = save_state({**state, "note": _RunsAShellCommand(f"touch {shlex.quote(str(marker))}")}, folder)
    assert written == folder / CHECKPOINT_FILE == folder / "state.pt"
    return folder


def test_a_genuine_checkpoint_loads_with_weights_only(tmp_path: Path, trainer_state: dict[str, Any]) -> None:
    """The refusal below is not a loader that refuses everything: the loop's own state loads intact."""
    save_state(trainer_state, tmp_path)
    loaded = load_state(tmp_path)
    assert set(loaded) == set(trainer_state)
    assert loaded["preset"] == trainer_state["preset"]
    assert all(torch.equal(loaded["model"][k], v) for k, v in trainer_state["model"].items())


def test_load_state_refuses_a_pickled_payload_and_does_not_run_it(tmp_path: Path, trainer_state: dict[str, Any]) -> None:
    """``load_state`` on a poisoned checkpoint raises ``UnpicklingError`` and the payload's marker never appears."""
    marker = tmp_path / "payload-ran"
    folder = poisoned_checkpoint(tmp_path / "trial", trainer_state, marker)

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_state(folder)
    assert not marker.exists()

    # control: without weights_only the same file runs its command — the payload is real
    torch.load(folder / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:`get_checkpoint` is meant to only be called:UserWarning")
def test_a_continuation_from_a_poisoned_snapshot_fails_before_the_payload_runs(
    tmp_path: Path, trainer_state: dict[str, Any]
) -> None:
    """A continuation trial's config (``restore_from`` a poisoned snapshot, as the snapshot searcher hands it out)
    goes through the trainable's restore step, which raises ``UnpicklingError`` and runs nothing.

    ``_restore_point`` is what ``train_fn`` calls first; ``train_fn`` itself needs a live Tune session.
    """
    marker = tmp_path / "payload-ran"
    snapshot = poisoned_checkpoint(tmp_path / "snapshots" / "base-epoch1", trainer_state, marker)

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        _restore_point({"preset": tiny_preset_dict(), "restore_from": str(snapshot)})
    assert not marker.exists()
