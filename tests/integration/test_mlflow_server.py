"""Training, promotion and the online check against a real ``mlflow server`` on 127.0.0.1, and ``homec mlflow``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from tests.conftest import run_homec
from tests.support.training import RunningServer, TrainedRepo, clone

from homec.commands.mlflow_server import free_port, healthy, port_in_use
from homec.yamledit import set_mapping

pytestmark = pytest.mark.integration

MISSING_RUN = "0123456789abcdef0123456789abcdef"


def test_train_on_server_promotes_run(server_repo: TrainedRepo, mlflow_server: RunningServer) -> None:
    summary = server_repo.summary
    apps = (server_repo.root / "apps.yaml").read_text()

    assert summary["tracking_uri"] == mlflow_server.url
    assert summary["model_version"] == "1"
    assert (
        "    model:\n      registered_name: iris-classifier\n      version: 1\n"
        f"      experiment_id: '{summary['experiment_id']}'\n      run_id: {server_repo.run_id}\n"
    ) in apps
    assert "model_uri: models:/iris-classifier/1" in server_repo.output
    signature = json.loads((server_repo.root / "signatures/iris.json").read_text())
    assert signature["model_uri"] == "models:/iris-classifier/1"
    assert run_homec("-C", server_repo.root, "check")[0] == 0


def test_server_experiment_uses_artifact_root(server_repo: TrainedRepo, mlflow_server: RunningServer) -> None:
    run_artifacts = mlflow_server.artifact_root / server_repo.experiment_id / server_repo.run_id / "artifacts"

    assert (run_artifacts / "data/heldout.csv").is_file()
    assert (run_artifacts / "model/MLmodel").is_file()
    assert "warning:" not in server_repo.output
    assert not (server_repo.root / ".homec/mlflow/mlflow.db").exists()


def test_check_online_against_server(server_repo: TrainedRepo) -> None:
    code, out, err = run_homec("-C", server_repo.root, "check", "--online", "--env", "cluster")

    assert code == 0, err
    assert (
        f"ok: cluster: iris: models:/iris-classifier/1 resolves to iris-classifier version 1 → "
        f"run {server_repo.run_id} (experiment {server_repo.experiment_id})"
    ) in out


def test_check_online_server_missing_run(
    server_repo: TrainedRepo, tmp_path: Path, mlflow_server: RunningServer
) -> None:
    repo = clone(server_repo.root, tmp_path / "repo")
    apps = repo / "apps.yaml"
    apps.write_text(
        set_mapping(apps.read_text(), ("apps", 0, "model"), {"experiment_id": "1", "run_id": MISSING_RUN})
    )
    assert run_homec("-C", repo, "render")[0] == 0

    code, _, err = run_homec("-C", repo, "check", "--online", "--env", "cluster")

    assert code == 1
    assert (
        f"apps[0].model: environment 'cluster': run {MISSING_RUN} not found on tracking server {mlflow_server.url}"
        in err
    )
    assert "1 model reference failed the online check." in err


def test_check_online_unreachable_server(server_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(server_repo.root, tmp_path / "repo")
    cluster = repo / "environments/cluster.yaml"
    dead = f"http://127.0.0.1:{free_port()}"
    cluster.write_text(re.sub(r"tracking_uri: .*", f"tracking_uri: {dead}", cluster.read_text()))
    assert run_homec("-C", repo, "render")[0] == 0

    code, _, err = run_homec("-C", repo, "check", "--online", "--env", "cluster")

    assert code == 1
    assert f"environment 'cluster': tracking server {dead} is not reachable" in err
    assert "homec mlflow starts a local one" in err


def test_promote_alias_on_server(server_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(server_repo.root, tmp_path / "repo")

    code, out, err = run_homec("-C", repo, "promote", "iris", "--env", "cluster", "--alias", "champion")

    assert code == 0, err
    assert (
        f"resolved: iris-classifier alias champion → version 1 → run {server_repo.run_id} "
        f"(experiment {server_repo.experiment_id})"
    ) in out
    assert (
        "    model:\n      registered_name: iris-classifier\n      alias: champion\n    serving:\n"
        in (repo / "apps.yaml").read_text()
    )
    assert run_homec("-C", repo, "check", "--online", "--env", "cluster")[0] == 0


def test_runs_on_server(server_repo: TrainedRepo, mlflow_server: RunningServer) -> None:
    code, out, err = run_homec("-C", server_repo.root, "runs", "iris", "--env", "cluster")

    assert code == 0, err
    lines = out.splitlines()
    assert (
        lines[0] == f"experiment iris (id {server_repo.experiment_id}) on tracking server {mlflow_server.url}"
    )
    assert lines[2].split()[:2] == ["*", server_repo.run_id]
    assert lines[-1] == f"pinned: models:/iris-classifier/1 (run {server_repo.run_id}, marked *)"


def test_mlflow_command_serves_embedded_store(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "homec", "-C", str(repo), "mlflow", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith(("ready:", "error:")):
                break
        assert lines[-1] == f"ready: {url} (Ctrl-C stops it)\n", "".join(lines)
        with urllib.request.urlopen(
            f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=iris"
        ) as answer:
            experiment = json.load(answer)["experiment"]
        with urllib.request.urlopen(
            f"{url}/api/2.0/mlflow/registered-models/alias?name=iris-classifier&alias=champion"
        ) as answer:
            version = json.load(answer)["model_version"]

        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, rest
    assert rest.strip().splitlines()[-1] == "stopped"
    assert experiment["artifact_location"] == str(trained_repo.root / ".homec/mlflow/artifacts/1")
    assert version["run_id"] == trained_repo.run_id
    assert not healthy(url)
    assert not port_in_use("127.0.0.1", port)
    assert (repo / ".homec/mlflow/server-localhost.log").is_file()
