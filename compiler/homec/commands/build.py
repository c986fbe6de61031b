"""``homec image-tag``, ``homec build`` and ``homec push``: the image of one app flavor.

``resolve_image`` is pure and offline: it renders the target's build context in memory and returns the
content-addressed tag, which equals the tag in the rendered manifests and Jenkinsfiles unless an
experiment id and run id select another model. ``build`` writes that context to a scratch folder,
``.homec/build/<env>/<app>-<flavor>/``. It builds the folder with the Docker-API engine that
``DOCKER_HOST`` names, such as Docker or podman's API service. ``push`` sends the image to its registry.

The docker SDK, MLflow and BentoML are imported inside the functions that use them, so ``homec render``
and ``homec check`` never load them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from homec.commands import model_artifacts
from homec.config.project import Project, load_project
from homec.config.schema import ModelRef
from homec.errors import ExternalToolError, UsageError
from homec.render import targets_of, with_image_tag
from homec.render.docker import MODEL_DIR
from homec.render.jenkins import REGISTRY_PASSWORD_VARIABLE, REGISTRY_USERNAME_VARIABLE
from homec.render.registry import Files
from homec.render.target import Target

SCRATCH_DIR = ".homec/build"
WHEELS_DIR = "wheels"
# Read timeout of the engine connection, in seconds. A build's log stream is read chunk by chunk, and a
# RUN step such as a pip install can print nothing for minutes.
ENGINE_TIMEOUT_SECONDS = 1800
# Environment variables ``push`` takes registry credentials from (the Jenkinsfiles bind them with
# withCredentials); without them, the Docker config applies.
REGISTRY_USERNAME_ENV = REGISTRY_USERNAME_VARIABLE
REGISTRY_PASSWORD_ENV = REGISTRY_PASSWORD_VARIABLE

Progress = Callable[[str], None]
_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
# A registry host (with an optional port) and one or more path components, as image references name them.
_IMAGE_REPOSITORY = re.compile(
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)+$"
)


@dataclass(frozen=True)
class ImageOptions:
    """The image to build or push: an app flavor in an environment, optionally with another run's model
    and another repository.

    Empty strings count as not given, because Jenkins passes empty parameters that way.
    """

    root: Path
    app: str
    flavor: str
    environment: str | None = None
    experiment_id: str | None = None
    run_id: str | None = None
    image_repository: str | None = None


@dataclass(frozen=True)
class BuildOptions:
    image: ImageOptions
    storage_root: str | None = None
    wheelhouse: Path | None = None
    push: bool = False


@dataclass(frozen=True)
class ResolvedImage:
    """A tagged target, its rendered build context and where the image goes."""

    target: Target
    context: Files
    repository: str
    rendered_tag: str
    # The model URI from apps.yaml, which the rendered manifests and tag use.
    rendered_model_uri: str

    @property
    def tag(self) -> str:
        return self.target.image_tag

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class BuildOutcome:
    image: ResolvedImage
    image_id: str
    context_dir: Path
    digest: str | None = None


# --- resolving the image, offline -----------------------------------------------------------------


def resolve_image(options: ImageOptions) -> ResolvedImage:
    """Load the project and return the image of the requested target, with its content-addressed tag."""
    project = load_project(options.root)
    env_name = _environment_name(project, options)
    target = _find_target(project, env_name, options)
    rendered_tag = with_image_tag(target)[0].image_tag
    rendered_model_uri = target.model.uri
    model = _model_override(target, options)
    if model is not None:
        target = dataclasses.replace(target, app=target.app.model_copy(update={"model": model}))
    tagged, context = with_image_tag(target)
    repository = _image_repository(options.image_repository) or tagged.image_repository
    return ResolvedImage(tagged, context, repository, rendered_tag, rendered_model_uri)


def _image_repository(value: str | None) -> str | None:
    repository = _optional(value)
    if repository is not None and not _IMAGE_REPOSITORY.match(repository):
        raise UsageError(
            f"invalid image repository {repository!r}",
            "give REGISTRY/NAME in lower case, such as docker.io/example/home-mlops-bentoml or 127.0.0.1:5000/homec",
        )
    return repository


def _environment_name(project: Project, options: ImageOptions) -> str:
    """Return the requested environment; without one, ``localhost`` or the only environment there is."""
    if options.environment:
        if options.environment not in project.environments:
            known = ", ".join(sorted(project.environments))
            raise UsageError(f"unknown environment {options.environment!r}", f"known environments: {known}")
        return options.environment
    if "localhost" in project.environments:
        return "localhost"
    if len(project.environments) == 1:
        return next(iter(project.environments))
    names = ", ".join(sorted(project.environments))
    raise UsageError(
        "no environment given and there is no localhost environment", f"pass --env, one of: {names}"
    )


def _find_target(project: Project, env_name: str, options: ImageOptions) -> Target:
    if options.app not in project.apps:
        raise UsageError(
            f"unknown app {options.app!r}", f"apps in apps.yaml: {', '.join(sorted(project.apps))}"
        )
    for target in targets_of(project, env_name):
        if target.app.name == options.app and target.flavor == options.flavor:
            return target
    served = sorted(project.app(env_name, options.app).serving.flavors())
    hint = f"it serves {', '.join(served)}" if served else "add serving.<flavor> to the app in apps.yaml"
    raise UsageError(
        f"app {options.app!r} does not serve flavor {options.flavor!r} in environment {env_name!r}", hint
    )


def _optional(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def _model_override(target: Target, options: ImageOptions) -> ModelRef | None:
    """Return the run reference that ``--experiment-id`` and ``--run-id`` select.

    Return ``None`` when they select nothing or the run that apps.yaml records.
    """
    experiment_id = _optional(options.experiment_id)
    run_id = _optional(options.run_id)
    if experiment_id is None and run_id is None:
        return None
    if target.flavor != "bentoml":
        raise UsageError(
            "--experiment-id and --run-id apply to BentoML images only",
            "a FastAPI image loads the model named by MODEL_URI when it starts",
        )
    try:
        selected = ModelRef(
            experiment_id=experiment_id, run_id=run_id, artifact_path=target.model.artifact_path
        )
    except ValidationError as exc:
        reasons = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise UsageError(
            f"invalid model selection: {reasons}", "give both --experiment-id and --run-id"
        ) from None
    pinned = target.model
    if (selected.experiment_id, selected.run_id) == (pinned.experiment_id, pinned.run_id):
        # The run recorded in apps.yaml, which the Jenkins job passes by default. When apps.yaml pins a
        # version with the run it came from, the image must keep the version's models:/ URI, or its tag
        # would differ from the rendered one.
        return None
    return selected


# --- build context --------------------------------------------------------------------------------


def write_context(image: ResolvedImage, wheelhouse: Path | None) -> Path:
    """Write the build context into a fresh scratch folder and return that folder.

    With ``wheelhouse``, its wheels go to ``wheels/`` so that pip in the image installs offline.
    """
    target = image.target
    folder = target.project.root / SCRATCH_DIR / target.env_name / target.name
    if folder.exists():
        shutil.rmtree(folder)
    prefix = f"{target.build_dir}/"
    for path, data in image.context.items():
        destination = folder / path.removeprefix(prefix)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)
    if wheelhouse is not None:
        _copy_wheels(wheelhouse, folder / WHEELS_DIR)
    return folder


def _copy_wheels(wheelhouse: Path, destination: Path) -> None:
    wheels = sorted(wheelhouse.glob("*.whl"))
    if not wheels:
        raise UsageError(f"no wheels (*.whl) found in {wheelhouse}", "fill it with pip download or pip wheel")
    destination.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        shutil.copy2(wheel, destination / wheel.name)


# --- engine ---------------------------------------------------------------------------------------


def connect_engine() -> Any:
    """Return a docker SDK client for the engine ``DOCKER_HOST`` names, after a successful ping."""
    import docker

    try:
        client = docker.from_env(timeout=ENGINE_TIMEOUT_SECONDS)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ExternalToolError(
            f"cannot reach the container engine at {_engine_address()}: {exc}",
            "start Docker, or podman's API service (podman system service), and set DOCKER_HOST to its "
            "socket, such as unix:///run/podman/podman.sock",
        ) from None
    return client


def _engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (DOCKER_HOST is not set)"


def build_image(client: Any, context_dir: Path, reference: str, progress: Progress) -> str:
    """Build ``context_dir`` as ``reference``, sending each log line to ``progress``; return the image id."""
    import docker

    try:
        stream = client.api.build(
            path=str(context_dir),
            tag=reference,
            rm=True,
            # Without forcerm, podman keeps the working container of a failed build.
            forcerm=True,
            # The engine pulls a missing base image itself; pull=True would also ask for a newer one,
            # which fails for a base image that exists only locally.
            pull=False,
            # RUN steps reach the package index (or nothing, with a wheelhouse) through the host's network.
            network_mode="host",
            decode=True,
        )
        log_tail = list(_stream_build_log(stream, progress))
    except docker.errors.APIError as exc:
        raise ExternalToolError(
            f"the engine rejected the build of {reference}: {exc.explanation or exc}"
        ) from None
    except docker.errors.DockerException as exc:
        raise ExternalToolError(
            f"lost the connection to the container engine while building {reference}: {exc}"
        ) from None
    errors = [line for line in log_tail if line.startswith("ERROR: ")]
    if errors:
        raise ExternalToolError(
            f"building {reference} failed: {errors[0].removeprefix('ERROR: ')}",
            "the build log above shows the failing step",
        )
    return str(client.images.get(reference).id)


def _stream_build_log(stream: Iterable[dict[str, Any]], progress: Progress) -> Iterator[str]:
    """Send build log lines to ``progress`` and yield errors as ``ERROR: <message>`` lines."""
    for chunk in stream:
        if "stream" in chunk:
            for line in str(chunk["stream"]).splitlines():
                if line.strip():
                    progress(line)
        if "error" in chunk or "errorDetail" in chunk:
            message = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
            progress(f"ERROR: {message}")
            yield f"ERROR: {message}"


def registry_credentials() -> dict[str, str] | None:
    """Return the registry credentials from the environment, or ``None`` to use the Docker config."""
    username = os.environ.get(REGISTRY_USERNAME_ENV)
    password = os.environ.get(REGISTRY_PASSWORD_ENV)
    if not username and not password:
        return None
    if not username or not password:
        raise UsageError(
            f"only one of {REGISTRY_USERNAME_ENV} and {REGISTRY_PASSWORD_ENV} is set",
            "set both, or neither to use the credentials of the Docker config",
        )
    return {"username": username, "password": password}


def push_image(client: Any, image: ResolvedImage, progress: Progress) -> str | None:
    """Push the image to its registry and return its digest when the engine reports one.

    Credentials come from ``registry_credentials`` or the Docker config; no message repeats them.
    """
    import docker

    credentials = registry_credentials()
    secrets = [credentials["password"]] if credentials else []
    try:
        client.images.get(image.reference)
    except docker.errors.ImageNotFound:
        raise ExternalToolError(
            f"image {image.reference} not found in the container engine",
            "build it first with homec build, with the same options",
        ) from None
    try:
        stream = client.api.push(
            image.repository, tag=image.tag, stream=True, decode=True, auth_config=credentials
        )
        digest = _follow_push(stream, image.reference, progress, secrets)
    except docker.errors.APIError as exc:
        raise ExternalToolError(
            f"push of {image.reference} failed: {_redact(str(exc.explanation or exc), secrets)}",
            _push_hint(image.repository),
        ) from None
    except docker.errors.DockerException as exc:
        raise ExternalToolError(
            f"lost the connection to the container engine while pushing {image.reference}: {_redact(str(exc), secrets)}"
        ) from None
    return digest


def _follow_push(
    stream: Iterable[dict[str, Any]], reference: str, progress: Progress, secrets: list[str]
) -> str | None:
    """Report push progress once per layer and status; raise on the first error in the stream."""
    digest: str | None = None
    seen: set[str] = set()
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            message = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
            repository = reference.rpartition(":")[0]
            raise ExternalToolError(
                f"push of {reference} failed: {_redact(str(message), secrets)}", _push_hint(repository)
            )
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
        status = str(chunk.get("status") or "").strip()
        # Docker reports the digest in "aux"; podman only in a status line "<tag>: digest: sha256:... size: N".
        found = _DIGEST.search(status)
        if digest is None and found:
            digest = found.group(1)
        # Byte counts of a layer upload arrive many times a second; only status changes are reported.
        if not status or chunk.get("progressDetail"):
            continue
        line = f"{chunk['id']}: {status}" if chunk.get("id") else status
        if line not in seen:
            seen.add(line)
            progress(_redact(line, secrets))
    return digest


def _push_hint(repository: str) -> str:
    registry = repository.split("/", 1)[0]
    return (
        f"check that the registry {registry} is reachable from the container engine and that the credentials "
        f"are valid ({REGISTRY_USERNAME_ENV}/{REGISTRY_PASSWORD_ENV} or docker login); a plain-HTTP registry "
        "must be listed as insecure in the engine's configuration"
    )


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    return text


# --- commands -------------------------------------------------------------------------------------


def build(options: BuildOptions, progress: Progress) -> BuildOutcome:
    """Build the image of one app flavor and, with ``options.push``, push it."""
    image = resolve_image(options.image)
    storage_root = _optional(options.storage_root)
    model_artifacts.require_run_reference(image.target, storage_root)
    if options.push:
        # Fail on half-given credentials before the build, not after it.
        registry_credentials()
    # The engine is checked first, so that an unreachable engine fails before a long model download.
    client = connect_engine()
    try:
        context_dir = write_context(image, options.wheelhouse)
        if image.target.flavor == "bentoml":
            model_artifacts.fetch_model(image.target, context_dir / MODEL_DIR, storage_root, progress)
        progress(f"building {image.reference} from {context_dir}")
        image_id = build_image(client, context_dir, image.reference, progress)
        digest = push_image(client, image, progress) if options.push else None
    finally:
        client.close()
    return BuildOutcome(image, image_id, context_dir, digest)


def push(options: ImageOptions, progress: Progress) -> tuple[ResolvedImage, str | None]:
    """Push the image that ``homec build`` built with the same options."""
    image = resolve_image(options)
    client = connect_engine()
    try:
        return image, push_image(client, image, progress)
    finally:
        client.close()
