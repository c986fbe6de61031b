"""Session-scoped pytest fixtures for a real container engine and registry.

Load them with ``pytest_plugins = ["tests.support.fixtures"]`` in the top-level
conftest.py or in a test module. A missing tool skips the tests that need it.
When the ``CI`` environment variable is set to a true value (anything but
empty, ``0``, ``false`` or ``no``), a missing tool fails them instead, so a CI
machine without the tools cannot pass by skipping.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import containers
from tests.support.containers import LocalRegistry, PodmanService

INTEGRATION_MARKER = "integration: uses a real container engine and registry (podman, docker-registry)"


def pytest_configure(config: pytest.Config) -> None:
    registered = config.getini("markers")
    if not any(line.split(":", 1)[0].strip() == "integration" for line in registered):
        config.addinivalue_line("markers", INTEGRATION_MARKER)


def running_in_ci() -> bool:
    """Return whether the ``CI`` environment variable is set to a true value."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_tools(*names: str) -> None:
    """Skip the current test when a tool in ``names`` is missing, or fail it under CI."""
    reason = containers.missing_tools_reason(names)
    if reason is None and importlib.util.find_spec("docker") is None:
        reason = "the Python package `docker` (Docker SDK) is not installed; pip install docker"
    if reason is None:
        return
    if running_in_ci():
        pytest.fail(f"CI is set, so a missing container tool is an error: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def registry() -> Iterator[LocalRegistry]:
    """A running ``LocalRegistry``; ``registry.address`` is ``127.0.0.1:PORT``."""
    require_tools("docker-registry")
    with LocalRegistry() as running:
        yield running


@pytest.fixture(scope="session")
def podman(registry: LocalRegistry) -> Iterator[PodmanService]:
    """A running ``PodmanService`` that may push to ``registry`` over plain HTTP."""
    require_tools("podman", "runc")
    with PodmanService(insecure_registries=[registry.address]) as service:
        yield service


@pytest.fixture(scope="session")
def docker_client(podman: PodmanService) -> Iterator[Any]:
    """A ``docker.DockerClient`` connected to the ``podman`` service."""
    client = containers.docker_client(podman)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The tag of the Debian bookworm Python 3.11 base image in the ``podman`` engine."""
    require_tools("debootstrap")
    return containers.ensure_base_image(docker_client)
