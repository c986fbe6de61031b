"""``homec serve APP``: run one serving flavor of an app locally, against the model the app pins.

The service is rendered in memory exactly as ``homec render`` would render it. FastAPI runs from its
build folder, written to ``.homec/serve/<env>/<app>-fastapi/``, with the folder's own ``start.py``.

BentoML rejects a build folder whose path has a hidden folder anywhere in it (bentoml 1.4.40 checks
every part of the path). So its build folder and a private model store (``BENTOML_HOME``) go to a fresh
temporary folder, which is removed when the server stops. There the model is imported, ``bentoml build``
builds the bento and ``bentoml serve`` serves it.

Before anything is written or built, the port is checked with a test bind, and the pinned model is
resolved on the environment's tracking store, so that a busy port or a missing model fails at once.

The server is a child process in its own process group, so that stopping it stops its workers too. Its
output goes to ``.homec/serve/<env>/<app>-<flavor>.log``, and to standard error once the server is ready.
A failed start shows the last lines of that output once, in the error message.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from homec.commands.render import RenderOptions, prepare
from homec.errors import ExternalToolError, UsageError
from homec.mlflow_client import ModelNotFoundError, ModelReferenceError, open_client, resolve_model
from homec.render import RENDERED_DIR, targets_of
from homec.render.kubernetes import TELEMETRY_OFF
from homec.render.serving import model_tag, service_types, start_command
from homec.render.target import READINESS_PATH, Target
from homec.tracking_store import DEFAULT_ENVIRONMENT, resolve_store

SERVE_DIR = ".homec/serve"
# Seconds a stopped server gets to finish requests and exit before it is killed.
STOP_GRACE_SECONDS = 15.0
# Lines of the server's output kept to explain a failed start.
_LOG_TAIL_LINES = 40
# Seconds to wait for the rest of an exited server's output before reporting the failure. Workers that
# outlive the server keep the pipe open, so the wait has a limit.
_OUTPUT_DRAIN_SECONDS = 2.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ServeOptions:
    root: Path
    app: str
    flavor: str | None = None
    environment: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    ready_timeout: float = 120.0


@dataclass
class Service:
    """A server started by ``start``: its process, its URL, and an example request for it."""

    target: Target
    folder: Path
    url: str
    example_request: dict[str, Any]
    process: subprocess.Popen[bytes]
    log_path: Path
    # A temporary folder that ``stop`` removes, or ``None``.
    scratch: Path | None = None
    # The last lines of server output that were not copied to standard error. A failure message shows them.
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=_LOG_TAIL_LINES))
    # Whether new server output is copied to standard error. ``echo_output`` turns it on.
    echo: bool = False
    output_lock: threading.Lock = field(default_factory=threading.Lock)
    # The thread that ``follow_output`` started, or ``None``.
    output_thread: threading.Thread | None = None
    # Set once the model's own input example was looked up; ``example_note`` explains why it is not used.
    example_looked_up: threading.Event = field(default_factory=threading.Event)
    example_note: str = ""

    def example_curl(self) -> str:
        """Return a curl command that sends the example request to ``/predict``."""
        body = json.dumps(self.example_request)
        return f"curl -X POST {self.url}/predict -H 'Content-Type: application/json' -d {shlex.quote(body)}"

    def echo_output(self) -> None:
        """Copy new server output to standard error from now on. The output so far stays in the log file."""
        with self.output_lock:
            self.echo = True
            self.tail.clear()

    def failure(self, message: str, hint: str) -> ExternalToolError:
        """Return an error with ``message`` and the last server output not yet shown on standard error."""
        if self.output_thread is not None and self.process.poll() is not None:
            self.output_thread.join(_OUTPUT_DRAIN_SECONDS)
        with self.output_lock:
            lines = "".join(self.tail).rstrip()
        detail = f"{message}\n--- last lines of {self.log_path} ---\n{lines}" if lines else message
        return ExternalToolError(detail, hint)


@dataclass(frozen=True)
class ServeTarget:
    """The target to serve and its rendered build folder, by path inside the folder."""

    target: Target
    context: dict[str, bytes]


def serve_target(options: ServeOptions) -> ServeTarget:
    """Render the project in memory and return the requested app flavor in the requested environment."""
    outcome = prepare(RenderOptions(options.root, dry_run=True))
    project = outcome.project
    env_name = _environment(options, sorted(project.environments))
    if options.app not in project.apps:
        raise UsageError(
            f"unknown app {options.app!r}", f"apps in apps.yaml: {', '.join(sorted(project.apps))}"
        )

    targets = [target for target in targets_of(project, env_name) if target.app.name == options.app]
    target = _choose_flavor(options, env_name, targets)

    prefix = f"{RENDERED_DIR}/{env_name}/{target.build_dir}/"
    rendered = outcome.result.files
    context = {path[len(prefix) :]: data for path, data in rendered.items() if path.startswith(prefix)}
    return ServeTarget(target, context)


def _choose_flavor(options: ServeOptions, env_name: str, targets: list[Target]) -> Target:
    served = [target.flavor for target in targets]
    if not targets:
        raise UsageError(
            f"app {options.app!r} declares no serving flavor in environment {env_name!r}",
            "add serving: {fastapi: {}} or serving: {bentoml: {}} to the app in apps.yaml",
        )
    flavor = options.flavor
    if flavor is None and len(targets) > 1:
        raise UsageError(
            f"app {options.app!r} serves {' and '.join(served)}",
            "choose one with --flavor bentoml or --flavor fastapi",
        )
    flavor = flavor or served[0]
    if flavor not in served:
        raise UsageError(
            f"app {options.app!r} does not serve {flavor} in environment {env_name!r}",
            f"it serves {', '.join(served)}; add serving: {{{flavor}: {{}}}} to the app in apps.yaml",
        )
    return next(target for target in targets if target.flavor == flavor)


def _environment(options: ServeOptions, known: list[str]) -> str:
    if options.environment is not None:
        if options.environment not in known:
            raise UsageError(
                f"unknown environment {options.environment!r}", f"known environments: {', '.join(known)}"
            )
        return options.environment
    if DEFAULT_ENVIRONMENT in known:
        return DEFAULT_ENVIRONMENT
    if len(known) == 1:
        return known[0]
    raise UsageError(
        "several environments and none is named localhost", f"choose one with --env ({', '.join(known)})"
    )


def log_path(root: Path, target: Target) -> Path:
    return root / SERVE_DIR / target.env_name / f"{target.name}.log"


def write_context(folder: Path, chosen: ServeTarget) -> None:
    """Write the target's build folder afresh into ``folder``."""
    if folder.exists():
        shutil.rmtree(folder)
    for relative, data in chosen.context.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def server_environment(
    root: Path, target: Target, host: str, port: int, bentoml_home: Path | None
) -> dict[str, str]:
    """Return the server's environment: the Deployment's variables, with the environment's MLflow store."""
    store = resolve_store(root, target.env_name, target.environment)
    env = dict(os.environ)
    env.update(TELEMETRY_OFF)
    env.update(
        HOMEC_APP=target.app.name,
        HOMEC_ENV=target.env_name,
        HOMEC_FLAVOR=target.flavor,
        MODEL_URI=target.model.uri,
        MLFLOW_TRACKING_URI=store.tracking_uri,
        HOST=host,
        PORT=str(port),
    )
    if bentoml_home is not None:
        env["BENTOML_HOME"] = str(bentoml_home)
    return env


def build_bento(folder: Path, env: dict[str, str], target: Target, progress: Progress) -> str:
    """Import the pinned model into a fresh private model store, build the bento and return its tag."""
    home = Path(env["BENTOML_HOME"])
    progress(f"importing model {target.model.uri} into the BentoML model store {home}")
    _run([sys.executable, "import_model.py"], folder, env, "importing the model into BentoML failed")
    progress(f"building the bento in {folder}")
    output = _run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag", "."],
        folder,
        env,
        "bentoml build failed",
    )
    tags = [line.split("__tag__:", 1)[1].strip() for line in output.splitlines() if "__tag__:" in line]
    if not tags:
        raise ExternalToolError(
            f"bentoml build printed no bento tag:\n{output}", "run bentoml build in that folder"
        )
    return tags[-1]


def _run(command: list[str], folder: Path, env: dict[str, str], message: str) -> str:
    completed = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()
        raise ExternalToolError(
            f"{message} (exit {completed.returncode}): {' '.join(command)}\n{output[-4000:]}",
            f"rerun the command in {folder} to investigate",
        )
    return completed.stdout


@dataclass(frozen=True)
class _Launch:
    """How to start a prepared server: command, working folder, environment, and a folder to remove."""

    command: list[str]
    folder: Path
    env: dict[str, str]
    scratch: Path | None = None


def start(options: ServeOptions, progress: Progress) -> Service:
    """Check the port and the pinned model, prepare the build folder (and bento), and start the server."""
    chosen = serve_target(options)
    target = chosen.target
    port = options.port or target.port
    check_port(options.host, port)
    check_model(options.root, target, progress)
    if target.flavor == "bentoml":
        launch = _prepare_bentoml(options, chosen, port, progress)
    else:
        launch = _prepare_fastapi(options, chosen, port)

    log = log_path(options.root, target)
    progress(f"starting {' '.join(launch.command)} in {launch.folder}")
    progress(f"server output goes to {log} until the server is ready")
    try:
        process = subprocess.Popen(
            launch.command,
            cwd=launch.folder,
            env=launch.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        _remove(launch.scratch)
        raise

    url = f"http://{_url_host(options.host)}:{port}"
    types = service_types(target)
    service = Service(target, launch.folder, url, types.example_request(), process, log, launch.scratch)
    follow_output(service)

    if types.kind == "tensors":
        service.example_note = "the model takes tensors, so the example request uses placeholder values"
        service.example_looked_up.set()
    else:
        columns = [column.name for column in types.columns] if types.kind == "columns" else None
        arguments = (service, launch.env["MLFLOW_TRACKING_URI"], columns)
        threading.Thread(target=_look_up_example, args=arguments, daemon=True).start()
    return service


def check_port(host: str, port: int) -> None:
    """Raise ``UsageError`` unless a server can listen on ``host`` and ``port``, tested with a bind.

    The test binds as ``uvicorn.Config.bind_socket`` does (uvicorn 0.55): IPv6 for a host with a colon,
    else IPv4, with ``SO_REUSEADDR``, so a port with only closing connections (TIME_WAIT) counts as free.
    NOTE: another process can still take the port between this test and the server's own bind.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} is already in use on {host}",
                    "stop the process that listens on it, or choose another port with --port",
                ) from None
            raise UsageError(
                f"cannot listen on {host} port {port}: {exc.strerror or exc}",
                "choose another address with --host or another port with --port",
            ) from None


def check_model(root: Path, target: Target, progress: Progress) -> None:
    """Resolve the model the target pins on its environment's tracking store, as homec check --online does.

    Raises ``ModelNotFoundError`` when the store lacks the model, and ``ModelReferenceError`` when the
    model does not fit the reference. A SQLite store whose database file does not exist has no model, and
    this check does not create the file.
    """
    store = resolve_store(root, target.env_name, target.environment)
    uri = target.model.uri
    app = target.app.name
    env_option = "" if target.env_name == DEFAULT_ENVIRONMENT else f" --env {target.env_name}"
    hint = f"run homec train {app}{env_option}, then homec promote {app}{env_option} --run-id RUN"

    database = store.sqlite_path
    if database is not None and not database.is_file():
        raise ModelNotFoundError(
            f"model {uri} not found: environment {target.env_name!r} has no MLflow store at {database} yet",
            hint,
        )
    progress(f"looking up model {uri} on {store.describe()}")
    client = open_client(store)
    try:
        resolve_model(client, store, target.model, app)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"model {uri} not found: {exc.message}", hint) from None
    except ModelReferenceError as exc:
        raise ModelReferenceError(f"model {uri} cannot be served: {exc.message}", exc.hint) from None


def _prepare_fastapi(options: ServeOptions, chosen: ServeTarget, port: int) -> _Launch:
    target = chosen.target
    folder = options.root / SERVE_DIR / target.env_name / target.name
    env = server_environment(options.root, target, options.host, port, None)
    write_context(folder, chosen)
    return _Launch([sys.executable, *start_command(target)[1:]], folder, env)


def _prepare_bentoml(options: ServeOptions, chosen: ServeTarget, port: int, progress: Progress) -> _Launch:
    target = chosen.target
    scratch = Path(tempfile.mkdtemp(prefix=f"homec-serve-{target.name}-"))
    try:
        folder = scratch / target.name
        env = server_environment(options.root, target, options.host, port, scratch / "bentoml-home")
        write_context(folder, chosen)
        tag = build_bento(folder, env, target, progress)
    except BaseException:
        _remove(scratch)
        raise
    progress(f"built bento {tag} with model {model_tag(target)}")
    command = [sys.executable, "-m", "bentoml", "serve", tag, "--host", options.host, "--port", str(port)]
    return _Launch(command, folder, env, scratch)


def _remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _look_up_example(service: Service, tracking_uri: str, columns: list[str] | None) -> None:
    try:
        rows = model_example(tracking_uri, service.target.model.uri, columns)
    except Exception as exc:  # the example is a convenience, so any failure keeps the placeholder
        service.example_note = f"the model's input example could not be read ({type(exc).__name__}: {exc})"
    else:
        if rows:
            service.example_request = {"rows": rows}
        else:
            service.example_note = (
                "the model has no matching input example, so the example uses placeholder values"
            )
    finally:
        service.example_looked_up.set()


def model_example(
    tracking_uri: str, model_uri: str, columns: list[str] | None
) -> list[dict[str, Any]] | None:
    """Return the rows of the input example logged with the model, or ``None`` when there is none.

    Only a data frame example is used, and with a column signature (``columns``) only one with exactly
    those columns, because only that one is a valid request.
    """
    import mlflow
    import mlflow.artifacts
    from mlflow.models import Model

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    info = Model.load(model_uri).saved_input_example_info
    if not info or info.get("type") != "dataframe" or info.get("pandas_orient", "split") != "split":
        return None
    with tempfile.TemporaryDirectory(prefix="homec-example-") as folder:
        path = mlflow.artifacts.download_artifacts(f"{model_uri}/{info['artifact_path']}", dst_path=folder)
        example = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(example, dict) or not isinstance(example.get("columns"), list):
        return None
    names = example["columns"]
    if columns is not None and names != columns:
        return None
    return [dict(zip(names, row, strict=True)) for row in example.get("data", [])]


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def follow_output(service: Service) -> threading.Thread:
    """Start a thread that copies the server's output to its log file, and return the thread."""
    stream = service.process.stdout
    assert stream is not None, "the server's output must be a pipe"
    thread = threading.Thread(target=_pump, args=(stream, service), daemon=True)
    service.output_thread = thread
    thread.start()
    return thread


def _pump(stream: IO[bytes], service: Service) -> None:
    """Copy the server's output to the log file, and either to standard error or to the kept last lines."""
    service.log_path.parent.mkdir(parents=True, exist_ok=True)
    with service.log_path.open("w", encoding="utf-8") as log:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            log.write(line)
            log.flush()
            with service.output_lock:
                if service.echo:
                    sys.stderr.write(line)
                    sys.stderr.flush()
                else:
                    service.tail.append(line)


def wait_ready(service: Service, timeout: float) -> float:
    """Poll the readiness probe until it returns 200, and return the seconds that took.

    Raises ``ExternalToolError`` with the server's last output when the server exits or the timeout passes.
    """
    started = time.monotonic()
    url = service.url + READINESS_PATH
    while True:
        code = service.process.poll()
        if code is not None:
            raise service.failure(
                f"the {service.target.flavor} server exited with code {code} before it was ready",
                f"read the whole server output in {service.log_path}",
            )
        if _status(url) == 200:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise service.failure(
                f"timed out after {timeout:.0f} s waiting for the {service.target.flavor} server to be ready at {url}",
                "check that the MLflow store has the pinned model, or raise --ready-timeout",
            )
        time.sleep(0.25)


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def stop(service: Service) -> int | None:
    """Stop the server and its workers: SIGTERM to its process group, then SIGKILL after a grace period.

    Returns the server's exit code, or ``None`` when it had to be killed.
    """
    process = service.process
    code: int | None = process.poll()
    if code is None:
        _signal_group(process, signal.SIGTERM)
        try:
            code = process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    _remove(service.scratch)
    return code


def _signal_group(process: subprocess.Popen[bytes], number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, number)
