"""Helpers for tests of training, promotion and online checks against real MLflow stores."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from homec.commands.mlflow_server import LocalServer
from tests.conftest import run_homec

GIT_IDENTITY = ["-c", "user.name=homec tests", "-c", "user.email=tests@example.invalid"]


@dataclass(frozen=True)
class RunningServer:
    """A ``mlflow server`` started for the test session."""

    url: str
    artifact_root: Path
    server: LocalServer


@dataclass(frozen=True)
class TrainedRepo:
    """A scratch repository whose iris app was trained once; ``summary`` contains homec train's key: value lines."""

    root: Path
    output: str
    summary: dict[str, str]

    @property
    def run_id(self) -> str:
        return self.summary["run_id"]

    @property
    def experiment_id(self) -> str:
        return self.summary["experiment_id"]


def parse_summary(output: str) -> dict[str, str]:
    """Return the ``key: value`` lines of homec train's output; a later line wins, as documented."""
    summary: dict[str, str] = {}
    for line in output.splitlines():
        key, separator, value = line.partition(": ")
        if separator and key and " " not in key:
            summary[key] = value
    return summary


def git_repository(root: Path) -> str:
    """Make ``root`` a git repository with one commit of its files; return the commit id."""
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), *GIT_IDENTITY, "commit", "-q", "-m", "Example"], check=True)
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    )
    return head.stdout.strip()


def train_in(root: Path, *args: str) -> TrainedRepo:
    code, out, err = run_homec("-C", root, "train", "iris", *args)
    assert code == 0, f"homec train failed ({code}):\n{out}\n{err}"
    return TrainedRepo(root, out, parse_summary(out))


def clone(source: Path, destination: Path) -> Path:
    """Copy a whole scratch repository, its MLflow store included.

    The copied database still names the source's artifact folder in its experiments, so the clone
    reads the source's artifacts. Tests that log new runs should train in a fresh copy instead.
    """
    shutil.copytree(source, destination, symlinks=True)
    return destination
