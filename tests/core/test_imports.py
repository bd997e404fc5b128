"""``tunekit.core`` must stay pure: importing it loads neither ray, torch nor mlflow."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_heavy_framework() -> None:
    code = "import sys, tunekit.core; bad = [m for m in ('ray', 'torch', 'mlflow', 'pydantic') if m in sys.modules]; print(','.join(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # the core decides with numbers alone
    assert out.stdout.strip() == ""
