"""``homec mlflow``: run a local MLflow tracking server on an environment's backend store and artifact root.

For an environment without ``mlflow.tracking_uri`` that is the embedded store: the SQLite database and
artifact folder under ``.homec/mlflow/``.

The server runs with ``--no-serve-artifacts``, so an experiment it creates records the artifact
folder itself as its location. Clients that open the database directly record the same location. A
client on this machine therefore reads and writes artifacts in the folder whether the server runs or
not. With ``--serve-artifacts``, new experiments would get ``mlflow-artifacts:/`` locations that only
work through a running server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from urllib.parse import urlparse

from homec.config.project import load_project
from homec.errors import ExternalToolError, UsageError
from homec.tracking import TELEMETRY_OFF
from homec.tracking_store import EMBEDDED_DIR, TrackingStore, resolve_store, sqlite_file

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# A start took 9 to 16 s on a 2-core machine (longer when it creates the database tables). The limit
# leaves headroom for slower machines.
STARTUP_TIMEOUT = 180.0
# Seconds the server gets to exit after SIGTERM before it is killed.
STOP_GRACE = 15.0
# By default an MLflow 3.17 server also starts a job runner with seven task-queue consumer processes
# for its GenAI features (prompt optimization, trace roll-ups). Tracking and the model registry do not
# need them. A value set in the environment wins.
SERVER_ENVIRONMENT = {**TELEMETRY_OFF, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class ServerOptions:
    root: Path
    environment: str
    host: str = DEFAULT_HOST
    port: int | None = None


class LocalServer:
    """A ``mlflow server`` process: started by ``start``, healthy once ``start`` returns, stopped by ``stop``.

    The server runs in its own process group, so a Ctrl-C in the terminal reaches homec only, and
    ``stop`` ends the server with all its workers.
    """

    def __init__(
        self,
        backend_store_uri: str,
        artifact_root: str,
        log_path: Path,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
    ) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifact_root = artifact_root
        self.log_path = log_path
        self.host = host
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--default-artifact-root",
            self.artifact_root,
            "--no-serve-artifacts",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def start(self, timeout: float = STARTUP_TIMEOUT) -> LocalServer:
        """Start the server and wait until ``/health`` returns 200; raise ``ExternalToolError`` if it does not."""
        if port_in_use(self.host, self.port):
            raise UsageError(
                f"port {self.port} on {self.host} is in use", "stop what listens there, or pass --port"
            )
        database = sqlite_file(self.backend_store_uri)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        if "://" not in self.artifact_root:
            Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**SERVER_ENVIRONMENT, **os.environ, **TELEMETRY_OFF},
                start_new_session=True,
            )
        try:
            self._wait_until_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self) -> int:
        """Block until the server exits on its own; return its exit code."""
        assert self.process is not None, "start() first"
        return self.process.wait()

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after ``STOP_GRACE`` seconds."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tail(self, lines: int = 20) -> list[str]:
        if not self.log_path.is_file():
            return []
        with self.log_path.open(encoding="utf-8", errors="replace") as log:
            return list(deque((line.rstrip("\n") for line in log), maxlen=lines))

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_until_healthy(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ExternalToolError(
                    self._failure(f"mlflow server exited with code {self.process.returncode}")
                )
            if healthy(self.url):
                return
            time.sleep(0.25)
        raise ExternalToolError(
            self._failure(f"mlflow server did not answer {self.url}/health within {timeout:.0f} s")
        )

    def _failure(self, message: str) -> str:
        tail = "\n".join(f"    | {line}" for line in self.log_tail())
        return f"{message}; last lines of {self.log_path}:\n{tail}" if tail else message


@contextlib.contextmanager
def interrupt_on_termination() -> Iterator[None]:
    """Raise ``KeyboardInterrupt`` on SIGTERM and SIGHUP inside the block, so they stop the server like Ctrl-C.

    The server runs in its own process group and would outlive homec otherwise.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def server_for(options: ServerOptions) -> tuple[LocalServer, TrackingStore]:
    """Return a (not yet started) server for the environment's store, and that store."""
    project = load_project(options.root)
    if options.environment not in project.environments:
        known = ", ".join(sorted(project.environments))
        raise UsageError(f"unknown environment {options.environment!r}", f"known environments: {known}")
    store = resolve_store(options.root, options.environment, project.environments[options.environment])
    port = options.port or default_port(store.tracking_uri)
    log_path = options.root / EMBEDDED_DIR / f"server-{options.environment}.log"
    server = LocalServer(
        store.server_backend_store_uri, store.server_artifact_root, log_path, options.host, port
    )
    return server, store


def default_port(tracking_uri: str) -> int:
    """Return the port of a tracking URI on this machine (so clients find the server), else 5000."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme in {"http", "https"} and parsed.hostname in _LOOPBACK and parsed.port:
        return parsed.port
    return DEFAULT_PORT


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = DEFAULT_HOST) -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
