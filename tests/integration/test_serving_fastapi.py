"""The generated FastAPI service under real uvicorn, against a real MLflow model, and ``homec serve``.

The server runs the build folder's own ``start.py`` with two workers, as the image does, with the
variables the Deployment sets. The model is the session's trained iris model in an embedded SQLite store.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.serving import (
    MODEL_URI,
    REGISTERED_NAME,
    Server,
    TrainedIris,
    free_port,
    http,
    post_json,
    refused,
    run_homec_serve,
    running,
    server_env,
    trained_iris,
)

from homec.commands.serve import ServeOptions, serve_target, write_context

pytestmark = pytest.mark.integration

# Seconds a server may take to start and load the model; about 6 s on a 2-core machine.
READY_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> TrainedIris:
    return trained_iris(tmp_path_factory.mktemp("served-iris"))


def fastapi_server(iris: TrainedIris, folder: Path, model_uri: str = MODEL_URI) -> Server:
    """Write the rendered FastAPI build folder to ``folder`` and return its server, not yet started."""
    chosen = serve_target(ServeOptions(iris.repo, "iris", "fastapi"))
    write_context(folder, chosen)
    port = free_port()
    env = server_env(
        MODEL_URI=model_uri,
        MLFLOW_TRACKING_URI=iris.tracking_uri,
        PORT=str(port),
        HOST="127.0.0.1",
        HOMEC_APP="iris",
    )
    # One quick attempt per load keeps the retry timing of the not-ready test short.
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    return Server([sys.executable, "start.py"], folder, env, port, folder.parent / "server.log")


@pytest.fixture(scope="module")
def server(iris: TrainedIris, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(fastapi_server(iris, tmp_path_factory.mktemp("fastapi") / "build")) as started:
        started.wait_for("/readyz", 200, READY_TIMEOUT)
        yield started


def metric_samples(text: str, name: str) -> list[float]:
    return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]


def test_heldout_accuracy_matches_logged(server: Server, iris: TrainedIris) -> None:
    code, answer = post_json(server.url + "/predict", {"rows": iris.heldout})

    assert code == 200, answer
    predictions = answer["predictions"]
    assert len(predictions) == len(iris.labels)
    accuracy = sum(p == label for p, label in zip(predictions, iris.labels, strict=True)) / len(iris.labels)
    assert accuracy == pytest.approx(iris.accuracy, abs=1e-9)


def test_one_row_requests_agree_with_batch(server: Server, iris: TrainedIris) -> None:
    _, batch = post_json(server.url + "/predict", {"rows": iris.heldout[:8]})

    singles = [
        post_json(server.url + "/predict", {"rows": [row]})[1]["predictions"][0] for row in iris.heldout[:8]
    ]

    assert singles == batch["predictions"]


ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BAD_REQUESTS: dict[str, tuple[bytes, str]] = {
    "malformed JSON": (b'{"rows": [', "application/json"),
    "empty body": (b"", "application/json"),
    "missing column": (json.dumps({"rows": [{k: v for k, v in ROW.items() if k != "petal_width"}]}).encode(), "application/json"),
    "extra column": (json.dumps({"rows": [{**ROW, "colour": 1.0}]}).encode(), "application/json"),
    "string for double": (json.dumps({"rows": [{**ROW, "sepal_length": "5.1"}]}).encode(), "application/json"),
    "boolean for double": (json.dumps({"rows": [{**ROW, "sepal_length": True}]}).encode(), "application/json"),
    "null for double": (json.dumps({"rows": [{**ROW, "sepal_length": None}]}).encode(), "application/json"),
    "NaN for double": (b'{"rows": [{"sepal_length": NaN, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}', "application/json"),
    "rows not a list": (json.dumps({"rows": ROW}).encode(), "application/json"),
    "no rows": (json.dumps({"rows": []}).encode(), "application/json"),
    "bare list": (json.dumps([ROW]).encode(), "application/json"),
    "unknown key": (json.dumps({"rows": [ROW], "explain": True}).encode(), "application/json"),
    "plain text": (json.dumps({"rows": [ROW]}).encode(), "text/plain"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_4xx(server: Server, case: str) -> None:
    body, content_type = BAD_REQUESTS[case]

    code, text = http("POST", server.url + "/predict", body, content_type)

    assert 400 <= code < 500, f"{case}: {code} {text}"
    assert json.loads(text)["detail"], text


def test_liveness_returns_alive(server: Server) -> None:
    code, text = http("GET", server.url + "/livez")

    assert code == 200
    assert json.loads(text)["status"] == "alive"


def test_metrics_cover_both_workers(server: Server, iris: TrainedIris) -> None:
    post_json(server.url + "/predict", {"rows": iris.heldout[:3]})
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        code, text = http("GET", server.url + "/metrics")
        ready = metric_samples(text, "homec_model_ready{")
        if ready == [1.0, 1.0] or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert code == 200
    assert ready == [1.0, 1.0], text
    assert sum(metric_samples(text, "homec_predicted_rows_total")) >= 3
    assert 'route="/predict"' in text
    assert "homec_http_request_duration_seconds_bucket" in text


def test_openapi_documents_typed_rows(server: Server) -> None:
    _, text = http("GET", server.url + "/openapi.json")
    schemas = json.loads(text)["components"]["schemas"]

    row = schemas["Row"]
    assert row["additionalProperties"] is False
    assert sorted(row["required"]) == sorted(ROW)
    assert {field["type"] for field in row["properties"].values()} == {"number"}
    assert schemas["PredictResponse"]["properties"]["predictions"]["items"] == {"type": "string"}
    assert schemas["PredictRequest"]["examples"][0]["rows"][0] == {name: 1.0 for name in ROW}


def test_not_ready_until_model_exists(iris: TrainedIris, tmp_path: Path) -> None:
    """A model that cannot be loaded keeps the service not ready and logged; once it exists, it loads."""
    from mlflow import MlflowClient

    alias_uri = f"models:/{REGISTERED_NAME}@candidate"
    with running(fastapi_server(iris, tmp_path / "build", model_uri=alias_uri)) as pending:
        pending.wait_for("/livez", 200, READY_TIMEOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while "(attempt 2)" not in pending.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        readiness, body = http("GET", pending.url + "/readyz")
        predict_code, _ = post_json(pending.url + "/predict", {"rows": [ROW]})
        log = pending.output()

        MlflowClient(iris.tracking_uri).set_registered_model_alias(REGISTERED_NAME, "candidate", "1")
        seen = pending.wait_for("/readyz", 200, READY_TIMEOUT)
        code, answer = post_json(pending.url + "/predict", {"rows": [ROW]})

    assert readiness == 503
    assert json.loads(body)["status"] == "failing"
    assert "candidate" in json.loads(body)["detail"]
    assert predict_code == 503
    assert f"failed to load model {alias_uri} (attempt 2)" in log
    assert "the service stays not ready" in log
    assert re.search(r"candidate.*(not found|does not exist)", log, re.IGNORECASE), log[-3000:]
    assert seen[-1] == 200
    assert code == 200
    assert answer == {"predictions": ["setosa"]}


def test_homec_serve_prints_url_and_stops(iris: TrainedIris, tmp_path: Path) -> None:
    port = free_port()

    run = run_homec_serve(iris.repo, "fastapi", port, tmp_path / "serve.err", READY_TIMEOUT)

    assert run.returncode == 0, run.output + run.errors
    assert "ready after" in run.output
    assert f"http://127.0.0.1:{port}/docs" in run.output
    assert run.status == 200, run.answer
    assert len(run.answer["predictions"]) == len(run.example["rows"]) == 2
    assert run.example["rows"][0] == {key: iris.heldout[0][key] for key in ROW}
    assert run.output.rstrip().endswith("stopped")
    assert (iris.repo / ".homec/serve/localhost/iris-fastapi.log").is_file()
    assert refused(f"http://127.0.0.1:{port}/livez")
