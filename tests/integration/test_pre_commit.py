"""The real pre-commit runs ``homec check`` on commit: a stale rendered/ blocks the commit."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.conftest import copy_example, require_tool

from homec.commands.init import PRE_COMMIT_CONFIG

pytestmark = pytest.mark.integration


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"),
    }
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def hooked_repo(tmp_path: Path) -> Path:
    require_tool(shutil.which("pre-commit") is not None, "pre-commit is not installed")
    require_tool(shutil.which("homec") is not None, "homec is not on PATH (pip install -e .)")
    repo = copy_example(tmp_path / "repo")
    (repo / ".pre-commit-config.yaml").write_text(PRE_COMMIT_CONFIG)
    assert git(repo, "init", "-q", "-b", "main").returncode == 0
    installed = subprocess.run(
        ["pre-commit", "install"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")},
    )
    assert installed.returncode == 0, installed.stderr
    git(repo, "add", "-A")
    first = git(repo, "commit", "-qm", "Start")
    assert first.returncode == 0, first.stdout + first.stderr
    return repo


def test_commit_blocked_when_rendered_stale(hooked_repo: Path) -> None:
    apps_yaml = hooked_repo / "apps.yaml"
    apps_yaml.write_text(apps_yaml.read_text().replace("replicas: 2", "replicas: 5"))
    git(hooked_repo, "add", "apps.yaml")

    blocked = git(hooked_repo, "commit", "-qm", "Scale fastapi")

    assert blocked.returncode != 0
    assert "rendered/ is stale" in blocked.stdout + blocked.stderr
    assert git(hooked_repo, "log", "--oneline").stdout.count("\n") == 1


def test_commit_blocked_when_config_invalid(hooked_repo: Path) -> None:
    apps_yaml = hooked_repo / "apps.yaml"
    apps_yaml.write_text(apps_yaml.read_text().replace("replicas: 2", "replicsa: 2"))
    git(hooked_repo, "add", "apps.yaml")

    blocked = git(hooked_repo, "commit", "-qm", "Typo")

    assert blocked.returncode != 0
    assert "did you mean 'replicas'?" in blocked.stdout + blocked.stderr


def test_commit_passes_after_render(hooked_repo: Path) -> None:
    apps_yaml = hooked_repo / "apps.yaml"
    apps_yaml.write_text(apps_yaml.read_text().replace("replicas: 2", "replicas: 5"))
    rendered = subprocess.run(
        ["homec", "render"], cwd=hooked_repo, capture_output=True, text=True, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    git(hooked_repo, "add", "-A")

    committed = git(hooked_repo, "commit", "-qm", "Scale fastapi")

    assert committed.returncode == 0, committed.stdout + committed.stderr
    assert git(hooked_repo, "status", "--porcelain").stdout == ""
