"""``homec serve`` without a model: choosing the target, the server's environment, readiness and stopping.

The servers here are small Python processes; the integration tests run the real services.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from homec.commands.serve import (
    SERVE_DIR,
    ServeOptions,
    Service,
    check_port,
    follow_output,
    serve_target,
    server_environment,
    stop,
    wait_ready,
    write_context,
)
from homec.errors import EXIT_INVALID, EXIT_USAGE, ExternalToolError, UsageError
from homec.tracking_store import EMBEDDED_DATABASE, sqlite_uri
from tests.conftest import run_homec


def test_target_needs_flavor_when_app_has_two(example_repo: Path) -> None:
    with pytest.raises(UsageError) as raised:
        serve_target(ServeOptions(example_repo, "iris"))

    assert "serves bentoml and fastapi" in raised.value.message
    assert "--flavor" in raised.value.hint


def test_target_rejects_unknown_app(example_repo: Path) -> None:
    with pytest.raises(UsageError) as raised:
        serve_target(ServeOptions(example_repo, "roses", "fastapi"))

    assert raised.value.message == "unknown app 'roses'"
    assert "iris" in raised.value.hint


def test_target_rejects_unknown_environment(example_repo: Path) -> None:
    with pytest.raises(UsageError) as raised:
        serve_target(ServeOptions(example_repo, "iris", "fastapi", environment="staging"))

    assert raised.value.message == "unknown environment 'staging'"


def test_target_rejects_undeclared_flavor(example_repo: Path) -> None:
    apps = example_repo / "apps.yaml"
    text = apps.read_text(encoding="utf-8")
    start = text.index("      bentoml:")
    end = text.index("      fastapi:")
    apps.write_text(text[:start] + text[end:], encoding="utf-8")

    with pytest.raises(UsageError) as raised:
        serve_target(ServeOptions(example_repo, "iris", "bentoml"))
    only = serve_target(ServeOptions(example_repo, "iris"))

    assert "does not serve bentoml" in raised.value.message
    assert only.target.flavor == "fastapi"


def test_target_defaults_to_localhost(example_repo: Path) -> None:
    chosen = serve_target(ServeOptions(example_repo, "iris", "fastapi"))

    assert chosen.target.env_name == "localhost"
    assert {"app.py", "homec_serving.py", "requirements.txt", "start.py"} <= set(chosen.context)


def test_server_environment_uses_embedded_store(example_repo: Path) -> None:
    target = serve_target(ServeOptions(example_repo, "iris", "fastapi")).target

    env = server_environment(example_repo, target, "127.0.0.1", 8123, None)

    assert env["MODEL_URI"] == "models:/iris-classifier@champion"
    assert (
        env["MLFLOW_TRACKING_URI"] == "sqlite:///" + (example_repo / EMBEDDED_DATABASE).resolve().as_posix()
    )
    assert env["PORT"] == "8123"
    assert env["HOST"] == "127.0.0.1"
    assert env["HOMEC_FLAVOR"] == "fastapi"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["BENTOML_DO_NOT_TRACK"] == "true"
    assert "BENTOML_HOME" not in env


def test_write_context_replaces_old_files(example_repo: Path) -> None:
    chosen = serve_target(ServeOptions(example_repo, "iris", "fastapi"))
    folder = example_repo / SERVE_DIR / "localhost" / "iris-fastapi"
    folder.mkdir(parents=True)
    (folder / "stale.py").write_text("old", encoding="utf-8")

    write_context(folder, chosen)

    assert not (folder / "stale.py").exists()
    assert (folder / "app.py").read_bytes() == chosen.context["app.py"]


def fake_service(example_repo: Path, tmp_path: Path, code: str) -> Service:
    target = serve_target(ServeOptions(example_repo, "iris", "fastapi")).target
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    service = Service(target, tmp_path, "http://127.0.0.1:9", {"rows": []}, process, tmp_path / "server.log")
    service.tail.extend(["first line\n", "last line\n"])
    return service


def process_alive(pid: int, timeout: float = 10.0) -> bool:
    """Return whether ``pid`` still runs after ``timeout`` seconds; a zombie no longer runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.1)
    return True


def test_wait_ready_reports_early_exit(example_repo: Path, tmp_path: Path) -> None:
    service = fake_service(example_repo, tmp_path, "raise SystemExit(3)")

    with pytest.raises(ExternalToolError) as raised:
        wait_ready(service, timeout=30)

    assert "exited with code 3 before it was ready" in raised.value.message
    assert "last line" in raised.value.message


def test_wait_ready_times_out(example_repo: Path, tmp_path: Path) -> None:
    service = fake_service(example_repo, tmp_path, "import time; time.sleep(60)")
    try:
        with pytest.raises(ExternalToolError) as raised:
            wait_ready(service, timeout=1)
    finally:
        stop(service)

    assert raised.value.message.startswith("timed out after 1 s waiting for the fastapi server")
    assert "--ready-timeout" in raised.value.hint


def test_stop_ends_process_group(example_repo: Path, tmp_path: Path) -> None:
    worker = "import time; time.sleep(60)"
    child = (
        "import subprocess, sys, time\n"
        f"worker = subprocess.Popen([sys.executable, '-c', {worker!r}])\n"
        "print(worker.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    service = fake_service(example_repo, tmp_path, child)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    service.scratch = scratch
    assert service.process.stdout is not None
    worker_pid = int(service.process.stdout.readline())

    code = stop(service)

    assert code == -15
    assert not scratch.exists()
    assert not process_alive(worker_pid)


def test_example_curl_quotes_body(example_repo: Path, tmp_path: Path) -> None:
    service = fake_service(example_repo, tmp_path, "pass")
    service.example_request = {"rows": [{"name": "it's"}]}

    curl = service.example_curl()

    assert curl == (
        "curl -X POST http://127.0.0.1:9/predict -H 'Content-Type: application/json' "
        '-d \'{"rows": [{"name": "it\'"\'"\'s"}]}\''
    )
    service.process.wait()


def test_cli_reports_unknown_app(example_repo: Path) -> None:
    code, _, err = run_homec("-C", example_repo, "serve", "roses", "--flavor", "fastapi")

    assert code == 2
    assert "unknown app 'roses'" in err


def test_cli_help_lists_options() -> None:
    code, out, _ = run_homec("serve", "--help")

    assert code == 0
    for option in ("--flavor", "--env", "--port", "--host", "--ready-timeout"):
        assert option in out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that a listening socket of this test holds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield int(listener.getsockname()[1])


def test_check_port_rejects_busy_port(busy_port: int) -> None:
    with pytest.raises(UsageError) as raised:
        check_port("127.0.0.1", busy_port)

    assert raised.value.message == f"port {busy_port} is already in use on 127.0.0.1"
    assert "choose another port with --port" in raised.value.hint


def test_check_port_accepts_free_port() -> None:
    check_port("127.0.0.1", free_port())


def test_cli_rejects_busy_port_before_start(example_repo: Path, busy_port: int) -> None:
    started = time.monotonic()
    code, _, err = run_homec(
        "-C", example_repo, "serve", "iris", "--flavor", "fastapi", "--port", busy_port, "--ready-timeout", 5
    )
    seconds = time.monotonic() - started

    assert code == EXIT_USAGE, err
    assert f"port {busy_port} is already in use" in err
    assert "--port" in err
    assert "starting" not in err
    assert seconds < 5
    assert not (example_repo / SERVE_DIR).exists()
    assert not (example_repo / EMBEDDED_DATABASE).exists()


def test_cli_reports_model_without_store(example_repo: Path) -> None:
    started = time.monotonic()
    code, _, err = run_homec(
        "-C",
        example_repo,
        "serve",
        "iris",
        "--flavor",
        "fastapi",
        "--port",
        free_port(),
        "--ready-timeout",
        5,
    )
    seconds = time.monotonic() - started

    assert code == EXIT_INVALID, err
    assert "model models:/iris-classifier@champion not found" in err
    assert "hint: run homec train iris, then homec promote iris --run-id RUN" in err
    assert "starting" not in err
    assert seconds < 5
    assert not (example_repo / EMBEDDED_DATABASE).exists()
    assert not (example_repo / SERVE_DIR).exists()


def test_cli_reports_unregistered_model(example_repo: Path) -> None:
    from mlflow import MlflowClient

    database = example_repo / EMBEDDED_DATABASE
    database.parent.mkdir(parents=True)
    MlflowClient(sqlite_uri(database)).search_experiments()

    code, _, err = run_homec(
        "-C",
        example_repo,
        "serve",
        "iris",
        "--flavor",
        "fastapi",
        "--port",
        free_port(),
        "--ready-timeout",
        5,
    )

    assert code == EXIT_INVALID, err
    assert "model models:/iris-classifier@champion not found: registered model 'iris-classifier'" in err
    assert "hint: run homec train iris, then homec promote iris --run-id RUN" in err
    assert "starting" not in err
    assert not (example_repo / SERVE_DIR).exists()


def test_failed_start_shows_output_once(
    example_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = "for number in range(1, 101): print(f'line {number:03d}')\nraise SystemExit(3)"
    service = fake_service(example_repo, tmp_path, code)
    service.tail.clear()
    follow_output(service)

    with pytest.raises(ExternalToolError) as raised:
        wait_ready(service, timeout=30)
    printed = capsys.readouterr().err + raised.value.format()

    assert printed.count("line 100") == 1
    assert "line 061" in printed
    assert "line 060" not in printed
    assert f"--- last lines of {service.log_path} ---" in raised.value.message
    assert str(service.log_path) in raised.value.hint
    assert service.log_path.read_text(encoding="utf-8").count("\n") == 100


def test_output_after_ready_goes_to_stderr(
    example_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    go = tmp_path / "go"
    code = (
        "import os, time\n"
        "print('before ready', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
        "print('after ready', flush=True)\n"
    )
    service = fake_service(example_repo, tmp_path, code)
    service.tail.clear()
    thread = follow_output(service)
    deadline = time.monotonic() + 10
    while not service.tail and time.monotonic() < deadline:
        time.sleep(0.05)

    service.echo_output()
    go.touch()
    service.process.wait()
    thread.join(10)
    failure = service.failure("the server exited with code 0", "read the output")

    assert capsys.readouterr().err == "after ready\n"
    assert failure.message == "the server exited with code 0"
    assert service.log_path.read_text(encoding="utf-8") == "before ready\nafter ready\n"
