"""pytest in a project of its own, as a user runs it: the plugin from the installed provider."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_user_pytest(directory: Path, timeout: float, **environment: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``directory`` with a user's environment: none of this session's Airflow settings,
    nothing of this repository on the path, plus ``environment``."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    inherited.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=directory,
        env={**inherited, **environment},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
