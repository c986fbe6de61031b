"""Check the container test infrastructure with a real build, run and push.

The image mirrors what homec renders: a builder stage installs wheels from a
host-built wheelhouse into a venv without network, and the final stage copies
the venv and runs as a non-root user.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.containers import (
    LocalRegistry,
    PodmanService,
    build_image,
    build_log_text,
    build_wheelhouse,
    push_image,
)

pytest_plugins = ["tests.support.fixtures"]

pytestmark = pytest.mark.integration

TINY_IMAGE_TAG = "localhost/homec-test/tiny:latest"
APP_UID = 10001
# Every stage carries this label, so teardown also finds the builder stage's
# untagged images, which podman keeps after a multi-stage build.
BUILD_LABEL = "io.homec.test.build=container-infra"

APP_SOURCE = """\
import json
import os
import socket
import sys

import six

print(json.dumps({
    "uid": os.getuid(),
    "six_version": six.__version__,
    "prefix": sys.prefix,
    "interfaces": sorted(name for _, name in socket.if_nameindex()),
}))
"""

DOCKERFILE_TEMPLATE = """\
FROM {base} AS builder
LABEL {label}
COPY wheels /wheels
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-index --find-links /wheels six

FROM {base}
LABEL {label}
RUN useradd --create-home --uid {uid} app
COPY --from=builder /opt/venv /opt/venv
COPY app.py /app/app.py
ENV PATH=/opt/venv/bin:$PATH
USER app
CMD ["python", "/app/app.py"]
"""


def _six_wheel_version(wheels: Path) -> str:
    (wheel,) = wheels.glob("six-*.whl")
    return wheel.name.split("-")[1]


@pytest.fixture(scope="module")
def tiny_context(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Path:
    context = tmp_path_factory.mktemp("tiny-image")
    build_wheelhouse(["six"], dest=context / "wheels")
    (context / "app.py").write_text(APP_SOURCE)
    (context / "Dockerfile").write_text(
        DOCKERFILE_TEMPLATE.format(base=base_image, label=BUILD_LABEL, uid=APP_UID)
    )
    return context


@pytest.fixture(scope="module")
def tiny_image(docker_client: Any, tiny_context: Path) -> Iterator[Any]:
    # nocache makes every run execute the RUN steps, so a broken runtime
    # cannot pass on layers cached by an earlier run.
    image, log_text = build_image(docker_client, tiny_context, TINY_IMAGE_TAG, nocache=True)
    assert "Successfully tagged" in log_text, log_text
    yield image
    _remove_labelled_images(docker_client, BUILD_LABEL)


def _remove_labelled_images(client: Any, label: str) -> None:
    import docker

    for image in client.images.list(all=True, filters={"label": label}):
        # Removing a child image may already have removed this untagged parent.
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(image.id, force=True)


def test_wheelhouse_contains_pure_six_wheel(tiny_context: Path) -> None:
    wheels = sorted(path.name for path in (tiny_context / "wheels").glob("*.whl"))

    assert len(wheels) == 1, wheels
    assert wheels[0].startswith("six-")
    assert wheels[0].endswith("-py2.py3-none-any.whl")


def test_tiny_image_runs_as_non_root_without_network(
    docker_client: Any, tiny_image: Any, tiny_context: Path
) -> None:
    output = docker_client.containers.run(tiny_image.id, network_mode="none", remove=True)
    report = json.loads(output.decode())

    assert report["uid"] == APP_UID
    assert report["six_version"] == _six_wheel_version(tiny_context / "wheels")
    assert report["prefix"] == "/opt/venv"
    assert report["interfaces"] == ["lo"]


def test_tiny_image_final_stage_has_no_wheels(docker_client: Any, tiny_image: Any) -> None:
    container = docker_client.containers.run(
        tiny_image.id, ["test", "-e", "/wheels"], network_mode="none", detach=True
    )
    try:
        result = container.wait(timeout=60)
    finally:
        container.remove(force=True)

    assert result["StatusCode"] == 1


def test_container_exit_code_is_reported(docker_client: Any, tiny_image: Any) -> None:
    container = docker_client.containers.run(
        tiny_image.id,
        ["python", "-c", "import sys; print('exiting'); sys.exit(3)"],
        network_mode="none",
        detach=True,
    )
    try:
        result = container.wait(timeout=60)
        logs = container.logs().decode()
    finally:
        container.remove(force=True)

    assert result["StatusCode"] == 3
    assert "exiting" in logs


def test_tiny_image_push_lists_tag(docker_client: Any, tiny_image: Any, registry: LocalRegistry) -> None:
    repository = f"{registry.address}/homec-test/tiny"
    tag = "v1"
    assert tiny_image.tag(repository, tag)
    try:
        push_image(docker_client, repository, tag)
    finally:
        docker_client.images.remove(f"{repository}:{tag}")

    assert tag in registry.list_tags("homec-test/tiny")
    assert "homec-test/tiny" in registry.catalog()


def test_pushed_image_pulls_and_runs(docker_client: Any, tiny_image: Any, registry: LocalRegistry) -> None:
    repository = f"{registry.address}/homec-test/pulled"
    tag = "v1"
    tiny_image.tag(repository, tag)
    push_image(docker_client, repository, tag)
    docker_client.images.remove(f"{repository}:{tag}")

    pulled = docker_client.images.pull(repository, tag=tag)
    try:
        output = docker_client.containers.run(pulled.id, network_mode="none", remove=True)
    finally:
        docker_client.images.remove(f"{repository}:{tag}")

    assert json.loads(output.decode())["uid"] == APP_UID


def test_podman_cli_uses_service_env(podman: PodmanService) -> None:
    result = subprocess.run(
        ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        env={**os.environ, **podman.env},
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout.strip() == "runc"


def test_podman_cli_pushes_to_insecure_registry(
    podman: PodmanService, tiny_image: Any, registry: LocalRegistry
) -> None:
    destination = f"{registry.address}/homec-test/cli:v1"
    result = subprocess.run(
        ["podman", "push", tiny_image.id, f"docker://{destination}"],
        env={**os.environ, **podman.env},
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    assert registry.list_tags("homec-test/cli") == ["v1"]


def _external_container_ids(podman: PodmanService) -> set[str]:
    """Return the IDs of all containers in storage, including buildah's working containers."""
    result = subprocess.run(
        ["podman", "ps", "--all", "--external", "--quiet", "--no-trunc"],
        env={**os.environ, **podman.env},
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


def test_failing_build_reports_log_error(
    docker_client: Any, podman: PodmanService, base_image: str, tmp_path: Path
) -> None:
    import docker

    dockerfile = textwrap.dedent(
        f"""\
        FROM {base_image}
        RUN echo homec-marker-before-failure && exit 7
        """
    )
    (tmp_path / "Dockerfile").write_text(dockerfile)
    containers_before = _external_container_ids(podman)

    with pytest.raises(docker.errors.BuildError) as raised:
        build_image(docker_client, tmp_path, "localhost/homec-test/failing:latest", nocache=True)

    log_text = build_log_text(raised.value.build_log)
    assert "homec-marker-before-failure" in log_text
    assert "exit status 7" in raised.value.msg
    assert _external_container_ids(podman) - containers_before == set()


def test_short_base_name_resolves_locally(docker_client: Any, base_image: str, tmp_path: Path) -> None:
    short_name = base_image.removeprefix("localhost/")
    (tmp_path / "Dockerfile").write_text(f"FROM {short_name}\nRUN python --version\n")

    image, log_text = build_image(
        docker_client, tmp_path, "localhost/homec-test/short-name:latest", nocache=True
    )
    docker_client.images.remove(image.id, force=True)

    assert f"FROM {short_name}" in log_text
    assert "Python 3.11." in log_text
