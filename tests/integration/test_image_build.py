"""Real image builds: homec build and push against podman's Docker API and a local registry, then the
images run and return a prediction over HTTP.

The setup follows the user's loop: a real ``mlflow server`` on 127.0.0.1 serves runs and artifacts,
``homec train iris`` trains and registers the model, and ``homec render`` renders an environment whose
registry is the local one. Python packages come from a wheelhouse downloaded on the host, because pip
inside a container cannot verify TLS on the test machines.

- FastAPI: ``homec build iris --flavor fastapi --push`` through the CLI; the container loads the model
  from the tracking server at start-up.
- BentoML: the Build and Push stage commands of the rendered Jenkinsfile, with the run's experiment id,
  run id and the server's artifact folder as storage root; then ``homec build --push`` with the pinned
  model, fetched through MLflow. The model is packed, so that container gets no tracking server.

Timings of each step are written to ``image-build-timings.json`` in the test cache folder.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import copy_example
from tests.support.containers import LocalRegistry, PodmanService, build_wheelhouse, default_cache_dir
from tests.support.validators import groovy_call_trees, require_tool

pytestmark = pytest.mark.integration

IRIS_CLASSES = {"setosa", "versicolor", "virginica"}
SETOSA_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
# An app description with quotes, interpolation and control characters, to check that the image's
# description label reads back literally (line breaks and tabs become spaces).
DESCRIPTION = "Iris \"species\" classifier: it's ${HOME} $(id) `id` ''' a\\b\nsecond line\tend\\"
TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "true"}
READY_TIMEOUT_SECONDS = 180.0
TIMINGS: dict[str, float | str] = {}


def free_port() -> int:
    from homec.commands.mlflow_server import free_port as pick

    return pick()


def homec(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the homec CLI in a subprocess, as a user or a pipeline stage does."""
    return subprocess.run(
        [sys.executable, "-m", "homec", "-C", str(repo), *args],
        # MLflow writes ./mlflow.db when it falls back to its default store, so the repository is the cwd.
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def timed(name: str, started: float) -> None:
    TIMINGS[name] = round(time.monotonic() - started, 1)


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    path = default_cache_dir() / "image-build-timings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(TIMINGS, indent=2) + "\n")
    print(f"\nimage build timings (seconds), also in {path}:\n{json.dumps(TIMINGS, indent=2)}")


# --- MLflow, repository, wheelhouse -----------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A tracking server on 127.0.0.1 that also serves artifacts, so containers can download models.

    Yields its URL and its artifact folder, which plays the storage root ("NAS").
    """
    work = tmp_path_factory.mktemp("mlflow")
    storage_root = work / "nas"
    storage_root.mkdir()
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
        "--artifacts-destination", str(storage_root),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    started = time.monotonic()
    with open(work / "server.log", "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **TELEMETRY}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/health", process=process, what="mlflow server")
        timed("mlflow server ready", started)
        yield url, storage_root
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(
    url: str, *, process: subprocess.Popen[bytes] | None = None, container: Any = None, what: str
) -> None:
    """Poll ``url`` until it returns 200; fail early when the process or container exits."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what} exited with code {process.returncode} before {url} answered")
        if container is not None:
            container.reload()
            if container.status == "exited":
                pytest.fail(
                    f"{what} exited before {url} answered; logs:\n{container.logs().decode()[-3000:]}"
                )
        time.sleep(0.5)
    pytest.fail(f"{what} did not answer 200 on {url} within {READY_TIMEOUT_SECONDS:g} s")


@pytest.fixture(scope="module")
def engine_env(
    podman: PodmanService, base_image: str, registry: LocalRegistry, docker_client: Any
) -> Iterator[dict[str, str]]:
    """Environment of homec subprocesses: DOCKER_HOST names the podman service, telemetry is off.

    At the end, the images these tests tagged (for 127.0.0.1 registries) are removed. Untagged images
    of the dependencies and bento stages stay as the engine's layer cache, which makes later runs faster.
    """
    yield {**os.environ, **podman.env, **TELEMETRY}
    for image in docker_client.images.list():
        for reference in image.tags:
            if reference.startswith("127.0.0.1:") and (
                "/homec-fastapi:" in reference or "/homec-bentoml:" in reference
            ):
                docker_client.images.remove(reference)


@pytest.fixture(scope="module")
def repo(
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_server: tuple[str, Path],
    registry: LocalRegistry,
    engine_env: dict[str, str],
) -> Path:
    """The example repository, pointed at the test's tracking server and registry, trained and rendered."""
    url, _ = mlflow_server
    root = copy_example(tmp_path_factory.mktemp("image-build") / "repo")
    environment = root / "environments/localhost.yaml"
    text = environment.read_text()
    text = text.replace("mlflow: {}", f"mlflow: {{tracking_uri: {json.dumps(url)}}}", 1)
    text = text.replace("registry: 127.0.0.1:5000", f"registry: {registry.address}", 1)
    environment.write_text(text)
    apps = root / "apps.yaml"
    text = apps.read_text().replace(
        "description: Iris species classifier", f"description: {json.dumps(DESCRIPTION)}", 1
    )
    # The BentoML server listens on the port in apps.yaml; a free one avoids clashes on the host network.
    text = text.replace("        replicas: 1\n", f"        replicas: 1\n        port: {free_port()}\n", 1)
    apps.write_text(text)

    started = time.monotonic()
    rendered = homec(root, engine_env, "render")
    assert rendered.returncode == 0, rendered.stderr
    timed("homec render", started)
    return root


@pytest.fixture(scope="module")
def trained(repo: Path, engine_env: dict[str, str]) -> dict[str, str]:
    """Train and register the iris model; return homec train's ``key: value`` summary."""
    started = time.monotonic()
    result = homec(repo, engine_env, "train", "iris", "--env", "localhost")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    timed("homec train iris", started)
    summary = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert len(summary["run_id"]) == 32, summary
    return summary


@pytest.fixture(scope="module")
def wheelhouse(repo: Path) -> Path:
    """Wheels for both images' requirements, downloaded on the host and cached between runs."""
    requirements: set[str] = set()
    build = repo / "rendered/localhost/build"
    for path in [*build.glob("*/requirements.txt"), *build.glob("*/bento-build-requirements.txt")]:
        requirements.update(
            line for line in path.read_text().splitlines() if line and not line.startswith("#")
        )
    started = time.monotonic()
    folder = build_wheelhouse(sorted(requirements))
    timed("wheelhouse (cached after the first run)", started)
    wheels = list(folder.glob("*.whl"))
    TIMINGS["wheelhouse size MiB"] = round(sum(wheel.stat().st_size for wheel in wheels) / 2**20, 1)
    TIMINGS["wheelhouse wheels"] = len(wheels)
    return folder


def deployment(repo: Path, target: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        (repo / f"rendered/localhost/apps/{target}/deployment.yaml").read_text()
    )
    return document


def container_spec(repo: Path, target: str) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(repo, target)["spec"]["template"]["spec"]["containers"][0]
    return spec


def spaced(text: str) -> str:
    return "".join(" " if ord(character) < 32 else character for character in text)


def predict(port: int) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps({"rows": [SETOSA_ROW]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def run_until_ready(docker_client: Any, image: str, port: int, env: dict[str, str], what: str) -> Any:
    """Start ``image`` as Kubernetes would (read-only root, writable /tmp, its own non-root user)."""
    container = docker_client.containers.run(
        image,
        detach=True,
        network_mode="host",
        environment=env,
        read_only=True,
        tmpfs={"/tmp": "rw,size=512m"},
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", container=container, what=what)
    except BaseException:
        container.remove(force=True)
        raise
    return container


# --- FastAPI through the CLI --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry_password() -> str:
    return "homec-test-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def fastapi_build(
    repo: Path, wheelhouse: Path, engine_env: dict[str, str], registry_password: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **engine_env,
        "HOMEC_REGISTRY_USERNAME": "homec-test",
        "HOMEC_REGISTRY_PASSWORD": registry_password,
    }
    started = time.monotonic()
    result = homec(
        repo, env, "build", "iris", "--flavor", "fastapi", "--push", "--wheelhouse", str(wheelhouse)
    )
    timed("homec build --push, FastAPI", started)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    return result


def test_fastapi_pushed_tag_is_rendered_tag(
    repo: Path, fastapi_build: subprocess.CompletedProcess[str], registry: LocalRegistry
) -> None:
    image = container_spec(repo, "iris-fastapi")["image"]
    repository, _, tag = image.rpartition(":")
    jenkinsfile = (repo / "rendered/localhost/jenkins/iris-fastapi.Jenkinsfile").read_text()

    assert repository == f"{registry.address}/homec-fastapi"
    assert registry.list_tags("homec-fastapi") == [tag]
    assert f"HOMEC_RENDERED_IMAGE_TAG = '{tag}'" in jenkinsfile
    assert f"pushed {image}" in fastapi_build.stdout
    assert "COMMIT" in fastapi_build.stdout or "Successfully tagged" in fastapi_build.stdout


def healthcheck(podman: PodmanService, image: str) -> Any:
    """Return the image's HEALTHCHECK; podman 4.3's Docker API leaves it out of image inspection."""
    result = subprocess.run(
        ["podman", "image", "inspect", image],
        env={**os.environ, **podman.env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)[0]["Healthcheck"]


def test_fastapi_image_config(
    repo: Path, fastapi_build: subprocess.CompletedProcess[str], docker_client: Any, podman: PodmanService
) -> None:
    image = container_spec(repo, "iris-fastapi")["image"]
    config = docker_client.images.get(image).attrs["Config"]
    environment = dict(item.split("=", 1) for item in config["Env"])

    assert config["User"] == "10001:10001"
    assert "/readyz" in " ".join(healthcheck(podman, image)["Test"])
    assert config["Labels"]["org.opencontainers.image.description"] == spaced(DESCRIPTION)
    assert config["Labels"]["io.homec.model-uri"] == "models:/iris-classifier@champion"
    assert {name: environment.get(name) for name in TELEMETRY} == TELEMETRY


def test_no_credential_in_build_output_or_image(
    repo: Path, fastapi_build: subprocess.CompletedProcess[str], docker_client: Any, registry_password: str
) -> None:
    image = docker_client.images.get(container_spec(repo, "iris-fastapi")["image"])
    history = json.dumps(image.history())

    assert registry_password not in fastapi_build.stdout
    assert registry_password not in fastapi_build.stderr
    assert registry_password not in json.dumps(image.attrs)
    assert registry_password not in history
    for path in (repo / "rendered").rglob("*"):
        if path.is_file():
            assert registry_password.encode() not in path.read_bytes(), path


def test_fastapi_image_from_registry_predicts(
    repo: Path,
    fastapi_build: subprocess.CompletedProcess[str],
    docker_client: Any,
    mlflow_server: tuple[str, Path],
    trained: dict[str, str],
) -> None:
    spec = container_spec(repo, "iris-fastapi")
    repository, _, tag = spec["image"].rpartition(":")
    docker_client.images.remove(spec["image"])
    started = time.monotonic()
    docker_client.images.pull(repository, tag=tag)
    timed("pull FastAPI image from registry", started)
    port = free_port()
    env = {item["name"]: item["value"] for item in spec["env"] if "value" in item}
    env.update(PORT=str(port), MLFLOW_TRACKING_URI=mlflow_server[0])

    started = time.monotonic()
    container = run_until_ready(docker_client, spec["image"], port, env, "FastAPI container")
    timed("FastAPI container start to ready", started)
    try:
        answer = predict(port)
    finally:
        logs = container.logs().decode()
        container.remove(force=True)

    assert answer["predictions"][0] in IRIS_CLASSES, logs
    assert answer["predictions"] == ["setosa"]


def test_push_with_docker_config_credentials(
    repo: Path, fastapi_build: subprocess.CompletedProcess[str], engine_env: dict[str, str], tmp_path: Path
) -> None:
    registry_host = container_spec(repo, "iris-fastapi")["image"].split("/", 1)[0]
    token = base64.b64encode(b"homec-config:config-" + secrets.token_hex(8).encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {registry_host: {"auth": token}}}))
    env = {key: value for key, value in engine_env.items() if not key.startswith("HOMEC_REGISTRY_")}
    env["DOCKER_CONFIG"] = str(tmp_path)

    result = homec(repo, env, "push", "iris", "--flavor", "fastapi")

    assert result.returncode == 0, result.stderr
    assert "pushed " in result.stdout
    assert token not in result.stdout + result.stderr


def test_push_to_unreachable_registry(
    repo: Path, fastapi_build: subprocess.CompletedProcess[str], engine_env: dict[str, str], wheelhouse: Path
) -> None:
    closed = f"127.0.0.1:{free_port()}"

    result = homec(
        repo, engine_env, "build", "iris", "--flavor", "fastapi", "--push",
        "--wheelhouse", str(wheelhouse), "--image-repository", f"{closed}/homec-fastapi",
    )  # fmt: skip

    assert result.returncode == 1
    assert f"error: push of {closed}/homec-fastapi:" in result.stderr
    assert f"check that the registry {closed} is reachable" in result.stderr


def test_push_of_image_never_built(repo: Path, engine_env: dict[str, str]) -> None:
    result = homec(
        repo, engine_env, "push", "iris", "--flavor", "fastapi", "--image-repository", "127.0.0.1:9/nothing"
    )

    assert result.returncode == 1
    assert "not found in the container engine" in result.stderr
    assert "build it first with homec build" in result.stderr


# --- BentoML through the Jenkinsfile's stage commands ---------------------------------------------


def stage_scripts(jenkinsfile: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Return the pipeline's environment block and each stage's sh scripts, read by Groovy's parser."""
    require_tool("groovy")
    (result,) = groovy_call_trees([jenkinsfile]).values()
    pipeline = result["statements"][0]["args"][0]["closure"]
    environment: dict[str, str] = {}
    scripts: dict[str, list[str]] = {}
    for node in pipeline:
        block = node["args"][-1].get("closure", []) if node.get("args") else []
        if node.get("call") == "environment":
            environment = {entry["assign"]["var"]: entry["value"]["const"] for entry in block}
        if node.get("call") == "stages":
            for stage in block:
                scripts[stage["args"][0]["const"]] = list(_sh_scripts(stage))
    return environment, scripts


def _sh_scripts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("call") == "sh":
            yield node["args"][0]["const"] if node["args"] else node["named"]["script"]["const"]
        for value in node.values():
            yield from _sh_scripts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _sh_scripts(item)


@pytest.fixture(scope="module")
def pipeline_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the pipeline's virtual environment: bin/homec runs this checkout's homec."""
    venv = tmp_path_factory.mktemp("pipeline-venv")
    (venv / "bin").mkdir()
    launcher = venv / "bin/homec"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m homec "$@"\n')
    launcher.chmod(0o755)
    return venv


@pytest.fixture(scope="module")
def bentoml_pipeline(
    repo: Path,
    trained: dict[str, str],
    mlflow_server: tuple[str, Path],
    wheelhouse: Path,
    engine_env: dict[str, str],
    pipeline_venv: Path,
    registry: LocalRegistry,
) -> dict[str, Any]:
    """Run the Resolve tag, Build and Push stages of the BentoML Jenkinsfile with the trained run."""
    environment, scripts = stage_scripts(repo / "rendered/localhost/jenkins/iris-bentoml.Jenkinsfile")
    parameters = {
        "APP_NAME": "iris",
        "EXPERIMENT_ID": trained["experiment_id"],
        "RUN_ID": trained["run_id"],
        "STORAGE_ROOT": str(mlflow_server[1]),
        "BENTOML_IMAGE_REPOSITORY": f"{registry.address}/homec-bentoml",
    }
    env = {**engine_env, **environment, **parameters, "HOMEC_VENV": str(pipeline_venv)}
    env["HOMEC_WHEELHOUSE"] = str(wheelhouse)
    outcome: dict[str, Any] = {"environment": environment}
    for stage in ("Resolve tag", "Build", "Push"):
        if stage == "Push":
            env.update(
                HOMEC_REGISTRY_USERNAME="homec-test",
                HOMEC_REGISTRY_PASSWORD="pipeline-" + secrets.token_hex(8),
            )
        (script,) = scripts[stage]
        started = time.monotonic()
        result = subprocess.run(
            ["sh", "-e", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=1800
        )
        timed(f"Jenkinsfile stage {stage}, BentoML", started)
        assert result.returncode == 0, f"stage {stage}:\n{result.stdout[-5000:]}\n{result.stderr[-3000:]}"
        outcome[stage] = result
    return outcome


def test_bentoml_pipeline_pushes_run_tag(
    bentoml_pipeline: dict[str, Any], registry: LocalRegistry, repo: Path
) -> None:
    tag = bentoml_pipeline["Resolve tag"].stdout.strip()

    assert tag in registry.list_tags("homec-bentoml")
    assert tag != bentoml_pipeline["environment"]["HOMEC_RENDERED_IMAGE_TAG"]
    assert "from the storage root" in bentoml_pipeline["Build"].stdout
    assert f"pushed {registry.address}/homec-bentoml:{tag}" in bentoml_pipeline["Push"].stdout


def test_bentoml_image_predicts_without_mlflow(
    bentoml_pipeline: dict[str, Any],
    registry: LocalRegistry,
    repo: Path,
    docker_client: Any,
    trained: dict[str, str],
) -> None:
    tag = bentoml_pipeline["Resolve tag"].stdout.strip()
    spec = container_spec(repo, "iris-bentoml")
    port = spec["ports"][0]["containerPort"]
    # The model is packed into the image, so the tracking server address leads nowhere.
    env = {item["name"]: item["value"] for item in spec["env"] if "value" in item}
    env.update(MLFLOW_TRACKING_URI="http://127.0.0.1:9")

    started = time.monotonic()
    container = run_until_ready(
        docker_client, f"{registry.address}/homec-bentoml:{tag}", port, env, "BentoML container"
    )
    timed("BentoML container start to ready", started)
    try:
        answer = predict(port)
        config = docker_client.images.get(f"{registry.address}/homec-bentoml:{tag}").attrs["Config"]
    finally:
        logs = container.logs().decode()
        container.remove(force=True)

    assert answer["predictions"] == ["setosa"], logs
    assert config["User"] == "10001:10001"
    assert config["Labels"]["io.homec.model-uri"] == f"runs:/{trained['run_id']}/model"


def test_bentoml_pinned_model_through_mlflow(
    repo: Path, trained: dict[str, str], wheelhouse: Path, engine_env: dict[str, str], registry: LocalRegistry
) -> None:
    started = time.monotonic()
    result = homec(
        repo, engine_env, "build", "iris", "--flavor", "bentoml", "--push", "--wheelhouse", str(wheelhouse)
    )
    timed("homec build --push, BentoML, pinned model through MLflow", started)
    tag = container_spec(repo, "iris-bentoml")["image"].rpartition(":")[2]

    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert "fetching model models:/iris-classifier@champion from tracking server" in result.stdout
    assert tag in registry.list_tags("homec-bentoml")
