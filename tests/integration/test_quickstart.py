"""README's first command, ``make demo``, runs green: fresh venv, train, promote, render, serve, predict, stop.

It takes about two minutes on a 2-core machine, most of it installing homec's ml extra into the new
virtual environment (pip's cache helps on a second run). The venv and the scratch repository go to the
test's temporary folder instead of ``.homec/venv`` and ``build/quickstart``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.conftest import REPO_ROOT, require_tool
from tests.support.serving import server_env

pytestmark = pytest.mark.integration


def test_make_demo_runs_green(tmp_path: Path) -> None:
    require_tool(shutil.which("make") is not None, "make is not installed; apt-get install make")
    env = server_env(HOMEC_DEMO_VENV=str(tmp_path / "venv"), HOMEC_DEMO_DIR=str(tmp_path / "quickstart"))

    result = subprocess.run(
        ["make", "--no-print-directory", "demo"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert re.search(r"^run_id: [0-9a-f]{32}$", result.stdout, re.MULTILINE), output[-6000:]
    assert "ready after" in result.stdout
    accuracy = re.search(
        r"accuracy of the served model on 30 held-out rows: ([0-9.]+) \(logged: ([0-9.]+)\)", output
    )
    assert accuracy is not None, output[-6000:]
    assert accuracy.group(1) == accuracy.group(2)
    assert result.stdout.rstrip().endswith("quickstart: done")
    assert (tmp_path / "quickstart/signatures/iris.json").is_file()
    assert (tmp_path / "quickstart/rendered/localhost/build/iris-fastapi/app.py").is_file()
