"""Shared fixtures: a scratch copy of this repository, and telemetry switched off for every test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The files that make this repository a homec example; tests copy them instead of the whole checkout.
EXAMPLE_FILES = ("apps.yaml", "environments", "training", "serving", "signatures", "templates", "rendered")

os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", BENTOML_DO_NOT_TRACK="true")

pytest_plugins = ["tests.support.fixtures"] if (REPO_ROOT / "tests/support/fixtures.py").is_file() else []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite golden files and expected messages from the current output instead of comparing.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def snapshot(root: Path) -> dict[str, bytes]:
    """Return every file below ``root`` with its bytes, to show that a failed run wrote nothing."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def run_homec(*args: str | Path) -> tuple[int, str, str]:
    """Run the homec CLI in this process; return the exit code, standard output and standard error."""
    import contextlib
    import io

    from homec.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(arg) for arg in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:  # pragma: no cover - main always exits
            code = 0
    return code, out.getvalue(), err.getvalue()


def copy_example(destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.is_file():
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture
def example_repo(tmp_path: Path) -> Iterator[Path]:
    """A scratch copy of this repository's example (apps.yaml, environments/, rendered/, ...)."""
    yield copy_example(tmp_path / "repo")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_tool(available: bool, reason: str) -> None:
    """Skip locally when a tool is missing, but fail in CI, where every integration test must run."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI must run every integration test)")
    pytest.skip(reason)
