"""``pip install .`` into a fresh virtual environment gives a working homec, used from another directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO_ROOT, copy_example

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    installed = subprocess.run(
        [str(root / "bin/pip"), "install", "--quiet", str(REPO_ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    return root


def run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin/homec"), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_installed_homec_checks_copy_from_elsewhere(venv: Path, tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "repo")

    result = run(venv, "-C", str(repo), "check", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")


def test_installed_templates_come_from_package(venv: Path, tmp_path: Path) -> None:
    probe = "from homec.templating import builtin_templates_dir as d; from homec.commands.init import example_dir as e; print(d()); print(e())"
    result = subprocess.run(
        [str(venv / "bin/python"), "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    templates, example = result.stdout.split()

    assert str(venv) in templates
    assert str(venv) in example
    assert Path(templates).is_dir()


def test_installed_init_render_check(venv: Path, tmp_path: Path) -> None:
    created = run(venv, "init", "fresh", cwd=tmp_path)
    rendered = run(venv, "-C", "fresh", "render", cwd=tmp_path)
    checked = run(venv, "-C", "fresh", "check", cwd=tmp_path)

    assert created.returncode == 0, created.stderr
    assert rendered.returncode == 0, rendered.stderr
    assert checked.returncode == 0, checked.stderr
