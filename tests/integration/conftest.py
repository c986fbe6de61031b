"""Session fixtures for MLflow tests: a real ``mlflow server`` on 127.0.0.1, and the iris app trained once.

Training takes about 10 s and a server start 10 to 16 s on a 2-core machine, so each is done once
per session and tests work on clones of the trained repositories.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from tests.conftest import copy_example
from tests.support.training import RunningServer, TrainedRepo, git_repository, train_in

from homec.commands.mlflow_server import LocalServer, free_port
from homec.tracking_store import sqlite_uri


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real ``mlflow server`` with a SQLite store and a local artifact root, on a free 127.0.0.1 port."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    artifacts = folder / "artifacts"
    server = LocalServer(
        sqlite_uri(folder / "mlflow.db"), str(artifacts), folder / "server.log", port=free_port()
    )
    with server.start():
        yield RunningServer(server.url, artifacts, server)


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory: pytest.TempPathFactory) -> TrainedRepo:
    """The example, committed to git and trained once with ``homec train iris`` on the embedded store."""
    root = tmp_path_factory.mktemp("trained") / "repo"
    copy_example(root)
    git_repository(root)
    return train_in(root)


@pytest.fixture(scope="session")
def server_repo(tmp_path_factory: pytest.TempPathFactory, mlflow_server: RunningServer) -> TrainedRepo:
    """The example with environment cluster pointed at ``mlflow_server``, trained there with ``--promote``."""
    root = tmp_path_factory.mktemp("server") / "repo"
    copy_example(root)
    cluster = root / "environments/cluster.yaml"
    text = cluster.read_text(encoding="utf-8")
    text = re.sub(r"tracking_uri: .*", f"tracking_uri: {mlflow_server.url}", text)
    text = re.sub(r"artifact_root: .*", f"artifact_root: {mlflow_server.artifact_root}", text)
    cluster.write_text(text, encoding="utf-8")
    return train_in(root, "--env", "cluster", "--promote")
