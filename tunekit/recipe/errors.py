"""The two ways a search ends early: a request it refuses, and a Ctrl-C it can resume from."""

from __future__ import annotations


class SearchError(ValueError):
    """A search cannot start or resume as asked; the message names the option and the fix."""


class SearchInterrupted(RuntimeError):
    """The search was stopped (Ctrl-C) mid-phase; ``tunekit resume <directory>`` goes on."""

    def __init__(self, directory: str, phase: str) -> None:
        super().__init__(f"interrupted during phase {phase!r}; resume with: tunekit resume {directory}")
        self.directory = directory
        self.phase = phase
