"""Every invalid input gets a positioned message with a fix, and nothing is written.

Each directory under ``cases/invalid/`` contains the files that differ from ``cases/base/`` and an
``expected.txt`` with the exact error output. Regenerate with ``pytest --update-golden`` and review the diff.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_homec, snapshot

CASES = Path(__file__).parent / "cases"
INVALID = sorted(path.name for path in (CASES / "invalid").iterdir() if path.is_dir())


def build_case(name: str, destination: Path) -> Path:
    shutil.copytree(CASES / "base", destination)
    case = CASES / "invalid" / name
    for path in case.rglob("*"):
        if path.is_file() and path.name != "expected.txt":
            target = destination / path.relative_to(case)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return destination


def test_enough_invalid_cases() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize("name", INVALID)
def test_invalid_case(name: str, tmp_path: Path, update_golden: bool) -> None:
    repo = build_case(name, tmp_path / "repo")
    before = snapshot(repo)

    check_code, check_out, check_err = run_homec("-C", repo, "check")
    render_code, _, render_err = run_homec("-C", repo, "render")

    expected_file = CASES / "invalid" / name / "expected.txt"
    if update_golden:
        expected_file.write_text(check_err, encoding="utf-8")
    assert check_code == 1
    assert render_code == 1
    assert check_out == ""
    assert check_err == expected_file.read_text(encoding="utf-8")
    assert render_err == check_err
    assert snapshot(repo) == before


@pytest.mark.parametrize("name", INVALID)
def test_invalid_case_names_position(name: str, tmp_path: Path) -> None:
    repo = build_case(name, tmp_path / "repo")
    _, _, err = run_homec("-C", repo, "check")
    first = err.removeprefix("error: ").splitlines()[0]
    file, line, column = first.split(":")[:3]
    assert (repo / file).exists() or file.endswith("/"), first
    assert int(line) >= 1
    assert int(column) >= 1
    assert "hint:" in err or "expected" in err or "invalid" in err, err
