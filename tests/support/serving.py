"""Helpers of the serving tests: an iris model trained with MLflow, and servers run as real processes.

``trained_iris(base)`` trains once per test session, in a subprocess that runs this module
(``python -m tests.support.serving train REPO``), so MLflow's process-wide state stays out of the test
process. The model follows training/iris/train.py: a scaler and logistic regression, 20 % of the iris
rows held out with a fixed seed and stratified by species, species names as labels. It is registered as
``iris-classifier`` with the alias ``champion`` in the repository's embedded store
(``.homec/mlflow/``), and its signature is written to ``signatures/iris.json``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "true"}
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
REGISTERED_NAME = "iris-classifier"
ALIAS = "champion"
MODEL_URI = f"models:/{REGISTERED_NAME}@{ALIAS}"

APPS_YAML = """\
apps:
  - name: iris
    description: Iris species classifier
    training: {entrypoint: training/iris/train.py, experiment: iris}
    model: {registered_name: iris-classifier, alias: champion}
    serving:
      bentoml: {workers: 1, batching: {max_batch_size: 64, max_latency_ms: 200}}
      fastapi: {workers: 2}
"""


@dataclass(frozen=True)
class TrainedIris:
    """A scratch homec repository whose iris model is trained, registered and recorded in signatures/."""

    repo: Path
    tracking_uri: str
    run_id: str
    accuracy: float
    heldout: list[dict[str, float]]
    labels: list[str]


_TRAINED: dict[str, TrainedIris] = {}


def trained_iris(base: Path) -> TrainedIris:
    """Return the session's trained iris repository, training it under ``base`` on the first call.

    The result is cached in this module, so test modules share one training run per session.
    """
    if "iris" in _TRAINED:
        return _TRAINED["iris"]
    repo = base / "repo"
    for name in ("environments", "training"):
        _copy_tree(REPO_ROOT / name, repo / name)
    (repo / "apps.yaml").write_text(APPS_YAML, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "tests.support.serving", "train", str(repo)],
        cwd=REPO_ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, (
        f"training the test model failed:\n{completed.stdout}\n{completed.stderr}"
    )
    summary = json.loads((repo / "trained.json").read_text(encoding="utf-8"))
    _TRAINED["iris"] = TrainedIris(
        repo=repo,
        tracking_uri=summary["tracking_uri"],
        run_id=summary["run_id"],
        accuracy=summary["accuracy"],
        heldout=summary["heldout"],
        labels=summary["labels"],
    )
    return _TRAINED["iris"]


def _copy_tree(source: Path, destination: Path) -> None:
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            target = destination / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())


def _train(repo: Path) -> None:
    """Train, register and record the iris model in ``repo`` (runs in the training subprocess)."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from homec.signatures import ModelSignature
    from homec.tracking_store import EMBEDDED_ARTIFACTS, EMBEDDED_DATABASE, sqlite_uri

    tracking_uri = sqlite_uri(repo / EMBEDDED_DATABASE)
    (repo / EMBEDDED_DATABASE).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(
        "iris", artifact_location=str((repo / EMBEDDED_ARTIFACTS).resolve())
    )
    mlflow.set_experiment(experiment_id=experiment_id)

    iris = load_iris(as_frame=True)
    features = iris.data.copy()
    features.columns = FEATURES
    labels = iris.target.map(dict(enumerate(iris.target_names))).rename("species")
    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=0.2, random_state=42, stratify=labels
    )
    with mlflow.start_run() as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(train_x, train_y)
        accuracy = float((model.predict(test_x) == test_y).mean())
        mlflow.log_metric("accuracy", accuracy)
        signature = infer_signature(test_x, pd.Series(model.predict(test_x), name="species"))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=test_x.head(2),
            registered_model_name=REGISTERED_NAME,
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )
    client.set_registered_model_alias(REGISTERED_NAME, ALIAS, str(info.registered_model_version))
    recorded = ModelSignature.from_mlflow(MODEL_URI, signature.to_dict())
    (repo / "signatures").mkdir(exist_ok=True)
    (repo / "signatures/iris.json").write_bytes(recorded.to_bytes())
    summary = {
        "tracking_uri": tracking_uri,
        "run_id": run.info.run_id,
        "accuracy": accuracy,
        "heldout": test_x.to_dict(orient="records"),
        "labels": test_y.to_list(),
    }
    (repo / "trained.json").write_text(json.dumps(summary), encoding="utf-8")


def server_env(**extra: str) -> dict[str, str]:
    """Return this process's environment with telemetry off and ``extra`` added."""
    env = dict(os.environ)
    env.update(TELEMETRY_OFF)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http(
    method: str, url: str, body: bytes | None = None, content_type: str = "application/json"
) -> tuple[int, str]:
    """Send one request and return the status and body; error statuses are returned, not raised."""
    headers = {"Content-Type": content_type} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def status(url: str) -> int | None:
    """Return the status of ``GET url``, or ``None`` when nothing listens there."""
    try:
        return http("GET", url)[0]
    except (urllib.error.URLError, OSError):
        return None


def post_json(url: str, document: Any) -> tuple[int, Any]:
    code, text = http("POST", url, json.dumps(document).encode("utf-8"))
    return code, json.loads(text)


class Server:
    """A server run as a real child process in its own process group, with its output in a log file."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], port: int, log: Path) -> None:
        self.command = command
        self.cwd = cwd
        self.env = env
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started = time.monotonic()
        return self

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, path: str, expected: int, timeout: float) -> list[int | None]:
        """Poll ``GET path`` until it returns ``expected``, and return every status seen, in order."""
        assert self.process is not None
        seen: list[int | None] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.process.returncode}:\n{self.output()[-4000:]}"
                )
            code = status(self.url + path)
            if not seen or seen[-1] != code:
                seen.append(code)
            if code == expected:
                return seen
            time.sleep(0.1)
        raise AssertionError(
            f"{path} did not return {expected} within {timeout} s (saw {seen}):\n{self.output()[-4000:]}"
        )

    def stop(self) -> int | None:
        """Send SIGTERM to the server's process group; kill it if it has not exited after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return None


@dataclass(frozen=True)
class ServeRun:
    """Output of one ``homec serve`` run, the example request it printed, and the response to it."""

    output: str
    errors: str
    returncode: int
    example: dict[str, Any]
    status: int
    answer: Any


def run_homec_serve(repo: Path, flavor: str, port: int, errors: Path, ready_timeout: float) -> ServeRun:
    """Run ``homec serve`` until it is ready, send its example request, then stop it with SIGTERM."""
    command = [sys.executable, "-m", "homec", "-C", str(repo), "serve", "iris", "--flavor", flavor]
    command += ["--port", str(port), "--ready-timeout", str(ready_timeout)]
    with errors.open("wb") as error_stream:
        process = subprocess.Popen(
            command, env=server_env(), stdout=subprocess.PIPE, stderr=error_stream, text=True
        )
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("press Ctrl-C"):
                break
        curls = [line.strip() for line in lines if line.strip().startswith("curl ")]
        if not curls:
            process.kill()
            process.wait()
            log = errors.read_text(encoding="utf-8", errors="replace")
            raise AssertionError(f"homec serve printed no example request:\n{''.join(lines)}\n{log[-4000:]}")
        example = json.loads(curls[0].split(" -d ", 1)[1].strip("'"))
        code, answer = post_json(f"http://127.0.0.1:{port}/predict", example)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    output = "".join(lines) + rest
    return ServeRun(output, errors.read_text(encoding="utf-8"), process.returncode, example, code, answer)


def refused(url: str) -> bool:
    """Return whether nothing listens at ``url`` any more."""
    try:
        http("GET", url)
    except OSError:
        return True
    return False


@contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "train":
        sys.exit("usage: python -m tests.support.serving train REPO")
    _train(Path(sys.argv[2]))
