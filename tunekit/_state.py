"""Save/restore for Ray plug-ins whose state is plain data (``get_state``/``set_state``)."""

from __future__ import annotations

import pickle
from typing import Any


class PickledState:
    """Ray's ``save(path)``/``restore(path)`` in terms of ``get_state()``/``set_state(state)``."""

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.get_state(), fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.set_state(pickle.load(fh))
