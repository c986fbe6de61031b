"""The generated BentoML service: a real ``bentoml build`` of the rendered folder and a real ``bentoml serve``.

The build runs in a network namespace without any interface (``unshare --net``) where that is possible,
which shows that building the bento needs no package index. The model is the session's trained iris
model, imported into a private BentoML home by the folder's own ``import_model.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tests.conftest import require_tool
from tests.support.serving import (
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

READY_TIMEOUT = 90.0
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def network_namespace_available() -> bool:
    return (
        shutil.which("unshare") is not None
        and subprocess.run(["unshare", "--net", "true"], check=False).returncode == 0
    )


@dataclass(frozen=True)
class BuiltBento:
    folder: Path
    home: Path
    tag: str
    offline: bool
    import_seconds: float
    build_seconds: float
    iris: TrainedIris


def run(command: list[str], folder: Path, env: dict[str, str]) -> tuple[str, float]:
    started = time.monotonic()
    completed = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed.stdout, time.monotonic() - started


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> BuiltBento:
    iris = trained_iris(tmp_path_factory.mktemp("served-iris"))
    base = tmp_path_factory.mktemp("bentoml")
    folder = base / "build"
    home = base / "bentoml-home"
    write_context(folder, serve_target(ServeOptions(iris.repo, "iris", "bentoml")))
    env = server_env(BENTOML_HOME=str(home), MLFLOW_TRACKING_URI=iris.tracking_uri)

    imported, import_seconds = run([sys.executable, "import_model.py"], folder, env)
    offline = network_namespace_available()
    build = [sys.executable, "-m", "bentoml", "build", "--output", "tag", "."]
    output, build_seconds = run(["unshare", "--net", *build] if offline else build, folder, env)

    assert imported.strip().splitlines()[-1].startswith("iris-model:")
    tag = output.split("__tag__:", 1)[1].strip()
    return BuiltBento(folder, home, tag, offline, import_seconds, build_seconds, iris)


def bento_server(bento: BuiltBento, home: Path, log: Path) -> Server:
    port = free_port()
    env = server_env(BENTOML_HOME=str(home))
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        bento.tag,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return Server(command, bento.folder, env, port, log)


@pytest.fixture(scope="module")
def server(
    bento: BuiltBento, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, list[int | None]]]:
    log = tmp_path_factory.mktemp("bentoml-serve") / "server.log"
    with running(bento_server(bento, bento.home, log)) as started:
        seen = started.wait_for("/readyz", 200, READY_TIMEOUT)
        yield started, seen


def bento_folder(bento: BuiltBento) -> Path:
    name, version = bento.tag.split(":")
    return bento.home / "bentos" / name / version


def test_build_needs_no_network(bento: BuiltBento) -> None:
    require_tool(bento.offline, "unshare --net is not available, so the build ran with the network")

    assert bento.tag.startswith("iris-bentoml:")


def test_bento_is_unlocked_and_pins_model(bento: BuiltBento) -> None:
    folder = bento_folder(bento)
    info = yaml.safe_load((folder / "bento.yaml").read_text(encoding="utf-8"))
    requirements = (folder / "env/python/requirements.txt").read_text(encoding="utf-8")

    assert not (folder / "env/python/requirements.lock.txt").exists()
    assert "bentoml==1.4.40" in requirements
    assert info["service"] == "service:IrisService"
    models = info["services"][0]["models"]
    assert [model["tag"].split(":")[0] for model in models] == ["iris-model"]
    assert models[0]["module"] == "bentoml.mlflow"
    assert info["services"][0]["config"]["endpoints"] == {"livez": "/livez", "readyz": "/readyz"}


def test_exported_bento_carries_model(bento: BuiltBento, tmp_path: Path) -> None:
    archive = tmp_path / "iris.bento"
    run(
        [sys.executable, "-m", "bentoml", "export", bento.tag, str(archive)],
        bento.folder,
        server_env(BENTOML_HOME=str(bento.home)),
    )

    with tarfile.open(archive) as exported:
        names = [name.removeprefix("./") for name in exported.getnames()]

    assert any(name.startswith("models/iris-model/") and name.endswith("MLmodel") for name in names)
    assert "src/service.py" in names


def test_readiness_waits_for_model(server: tuple[Server, list[int | None]]) -> None:
    started, seen = server
    log = started.output()

    assert seen[-1] == 200
    assert 503 in seen, f"readiness answered {seen}"
    assert seen.index(503) < seen.index(200)
    assert log.index("loading model iris-model:latest") < log.index("loaded model iris-model:latest")


def test_heldout_accuracy_matches_logged(server: tuple[Server, list[int | None]], bento: BuiltBento) -> None:
    started, _ = server
    iris = bento.iris

    code, answer = post_json(started.url + "/predict", {"rows": iris.heldout})

    assert code == 200, answer
    hits = sum(p == label for p, label in zip(answer["predictions"], iris.labels, strict=True))
    assert hits / len(iris.labels) == pytest.approx(iris.accuracy, abs=1e-9)


def test_concurrent_requests_are_batched(server: tuple[Server, list[int | None]], bento: BuiltBento) -> None:
    started, _ = server
    rows = bento.iris.heldout
    _, whole = post_json(started.url + "/predict", {"rows": rows})

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda row: post_json(started.url + "/predict", {"rows": [row]}), rows))
    _, metrics = http("GET", started.url + "/metrics")

    assert [code for code, _ in answers] == [200] * len(rows)
    assert [answer["predictions"][0] for _, answer in answers] == whole["predictions"]
    batch_counts = [line for line in metrics.splitlines() if "adaptive_batch_size_count" in line]
    assert batch_counts, metrics[-2000:]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in batch_counts) >= 1


BAD_REQUESTS: dict[str, bytes] = {
    "malformed JSON": b'{"rows": [',
    "empty body": b"",
    "missing column": json.dumps({"rows": [{k: v for k, v in ROW.items() if k != "petal_width"}]}).encode(),
    "extra column": json.dumps({"rows": [{**ROW, "colour": 1.0}]}).encode(),
    "string for double": json.dumps({"rows": [{**ROW, "sepal_length": "5.1"}]}).encode(),
    "boolean for double": json.dumps({"rows": [{**ROW, "sepal_length": True}]}).encode(),
    "null for double": json.dumps({"rows": [{**ROW, "sepal_length": None}]}).encode(),
    "NaN for double": b'{"rows": [{"sepal_length": NaN, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}',
    "rows not a list": json.dumps({"rows": ROW}).encode(),
    "no rows": json.dumps({"rows": []}).encode(),
    "bare list": json.dumps([ROW]).encode(),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_4xx(server: tuple[Server, list[int | None]], case: str) -> None:
    started, _ = server

    code, text = http("POST", started.url + "/predict", BAD_REQUESTS[case])

    assert 400 <= code < 500, f"{case}: {code} {text}"
    assert json.loads(text)["error"], text


def test_probes_and_metrics(server: tuple[Server, list[int | None]]) -> None:
    started, _ = server
    post_json(started.url + "/predict", {"rows": [ROW]})

    live = http("GET", started.url + "/livez")
    _, metrics = http("GET", started.url + "/metrics")

    assert live[0] == 200
    assert any(
        line.startswith("homec_model_ready{") and line.endswith(" 1.0") for line in metrics.splitlines()
    )
    assert "homec_predicted_rows_total" in metrics
    assert 'endpoint="/predict"' in metrics


def test_unloadable_model_stays_not_ready(bento: BuiltBento, tmp_path: Path) -> None:
    """A packed model whose files are damaged keeps the service not ready, and the log gives the reason."""
    home = tmp_path / "bentoml-home"
    shutil.copytree(bento.home, home)
    for weights in home.glob("models/iris-model/*/mlflow_model/model.skops"):
        weights.unlink()

    with running(bento_server(bento, home, tmp_path / "server.log")) as broken:
        broken.wait_for("/livez", 200, READY_TIMEOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while "(attempt 2)" not in broken.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        readiness = http("GET", broken.url + "/readyz")[0]
        predict_code, answer = post_json(broken.url + "/predict", {"rows": [ROW]})
        log = broken.output()

    assert readiness == 503
    assert predict_code == 503
    assert "not loaded after" in answer["error"]
    assert "failed to load model iris-model:latest (attempt 2)" in log
    assert "model.skops" in log


def test_homec_serve_builds_and_serves_bento(bento: BuiltBento, tmp_path: Path) -> None:
    port = free_port()

    run = run_homec_serve(bento.iris.repo, "bentoml", port, tmp_path / "serve.err", READY_TIMEOUT)

    assert run.returncode == 0, run.output + run.errors
    assert "importing model models:/iris-classifier@champion into the BentoML model store" in run.errors
    assert re.search(r"built bento iris-bentoml:\w+ with model iris-model:latest", run.errors)
    assert run.status == 200, run.answer
    assert len(run.answer["predictions"]) == len(run.example["rows"]) == 2
    assert run.output.rstrip().endswith("stopped")
    scratch = re.search(r"building the bento in (\S+)", run.errors)
    assert scratch is not None
    assert not Path(scratch.group(1)).exists()
    assert refused(f"http://127.0.0.1:{port}/livez")
