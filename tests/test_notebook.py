"""The walkthrough notebook runs top to bottom (tiny settings), so it never rots."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_walkthrough_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEKIT_WALKTHROUGH_QUICK", "1")
    monkeypatch.setenv("TUNEKIT_WALKTHROUGH_STORAGE", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # range test, momentum curves, bisection
    text = "".join(o.get("text", "") for o in outputs)
    assert "test accuracy" in text
    assert (tmp_path / "walkthrough" / "search.json").is_file()


def test_the_committed_notebook_is_what_the_generator_writes(tmp_path: Path) -> None:
    """notebooks/make_walkthrough.py is the source; the .ipynb must not drift from it."""
    import runpy
    import shutil

    generator = NOTEBOOK.with_name("make_walkthrough.py")
    shutil.copy(generator, tmp_path / "make_walkthrough.py")
    runpy.run_path(str(tmp_path / "make_walkthrough.py"), run_name="__main__")
    assert (tmp_path / "walkthrough.ipynb").read_text() == NOTEBOOK.read_text()
