"""Talking to an environment's MLflow store: opening a client, experiments, and resolving model references.

MLflow is imported inside the functions only, because importing it takes seconds and ``homec render``
and ``homec check`` must not pay for it. Every client here is bound to one store's URI explicitly, so
nothing depends on MLflow's process-wide tracking URI.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homec.config.schema import ModelRef
from homec.errors import ExternalToolError, HomecError
from homec.tracking_store import TrackingStore, under_artifact_root

# Seconds to wait for a tracking server's /health before calling it unreachable.
HEALTH_TIMEOUT = 5.0
# MLflow retries a failed HTTP request with exponential backoff for minutes by default. homec's own
# calls go to a server it has just found healthy, so a few quick retries are enough.
_HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


class TrackingStoreError(HomecError):
    """An environment's tracking store is missing or its server is unreachable."""


class ModelReferenceError(HomecError):
    """A model reference does not resolve on the tracking store, or the model lacks what serving needs."""


class ModelNotFoundError(ModelReferenceError):
    """The tracking store has no registered model, alias, version or run that a model reference names."""


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference followed on the tracking store: alias → version → run, and the model's signature.

    ``signature`` is MLflow's ``ModelSignature.to_dict()`` of the model's MLmodel file.
    """

    registered_name: str | None
    version: int | None
    alias: str | None
    run_id: str | None
    experiment_id: str | None
    artifact_path: str
    storage_uri: str
    signature: dict[str, Any]

    def chain(self) -> str:
        """Return how the reference resolved, such as ``alias champion → version 3 → run 0a1b… (experiment 1)``."""
        steps: list[str] = []
        if self.alias is not None:
            steps.append(f"alias {self.alias}")
        if self.version is not None:
            steps.append(f"version {self.version}")
        if self.run_id is not None:
            steps.append(f"run {self.run_id} (experiment {self.experiment_id})")
        named = self.registered_name is not None and (self.alias is not None or self.version is not None)
        prefix = f"{self.registered_name} " if named else ""
        return prefix + " → ".join(steps)


def check_server(tracking_uri: str, timeout: float = HEALTH_TIMEOUT) -> None:
    """Raise ``TrackingStoreError`` unless the tracking server's ``/health`` returns 200 within ``timeout``."""
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"answered HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        problem = f"answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        problem = f"is not reachable ({reason})"
    raise TrackingStoreError(
        f"tracking server {tracking_uri} {problem}",
        "start it (homec mlflow starts a local one), or forward its port, then try again",
    )


def open_client(store: TrackingStore, *, create: bool = False) -> Any:
    """Return an ``MlflowClient`` bound to ``store``.

    A SQLite store that does not exist yet is created only when ``create`` is true. Otherwise it is
    an error, so that reading commands never leave an empty database behind.
    """
    database = store.sqlite_path
    if database is not None and not create and not database.is_file():
        raise TrackingStoreError(
            f"no MLflow store at {database} yet",
            f"run homec train APP --env {store.environment} first; it creates the store",
        )
    if store.is_http:
        check_server(store.tracking_uri)
        for name, value in _HTTP_SETTINGS.items():
            os.environ.setdefault(name, value)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)

    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.tracking_uri)


def mlflow_error_code(exc: BaseException) -> str | None:
    """Return the error code of an ``MlflowException``, or ``None`` for any other exception."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return str(exc.error_code)
    return None


def find_experiment(client: Any, name: str) -> Experiment | None:
    found = client.get_experiment_by_name(name)
    if found is None:
        return None
    if found.lifecycle_stage == "deleted":
        raise TrackingStoreError(
            f"experiment {name!r} (id {found.experiment_id}) is deleted",
            f"restore it with: mlflow experiments restore --experiment-id {found.experiment_id}",
        )
    return Experiment(str(found.experiment_id), name, str(found.artifact_location))


def ensure_experiment(client: Any, store: TrackingStore, name: str) -> tuple[Experiment, str | None]:
    """Return the experiment ``name``, creating it if needed, and a warning about its artifact location.

    A new experiment on a directly opened SQL store gets ``<artifact_root>/<experiment id>`` as its
    artifact location, the same layout ``mlflow server --default-artifact-root`` gives. On a tracking
    server the server chooses the location, and the warning names one outside the environment's
    artifact root.
    """
    experiment = find_experiment(client, name)
    if experiment is None:
        experiment = _create_experiment(client, store, name)
    warning = None
    if store.artifact_root is not None and not under_artifact_root(
        experiment.artifact_location, store.artifact_root
    ):
        warning = (
            f"experiment {name!r} keeps its artifacts at {experiment.artifact_location}, "
            f"outside the artifact root {store.artifact_root} of environment {store.environment!r}"
        )
    return experiment, warning


def _create_experiment(client: Any, store: TrackingStore, name: str) -> Experiment:
    try:
        if store.direct:
            from mlflow.store.tracking import sqlalchemy_store

            # MlflowClient.create_experiment takes a whole location, which would need the id before it
            # exists. The SQL store that mlflow server runs on places a new experiment at <root>/<id>.
            sql_store: Any = sqlalchemy_store.SqlAlchemyStore
            sql_store(store.tracking_uri, store.artifact_root).create_experiment(name)
        else:
            client.create_experiment(name)
    except Exception as exc:
        # Another process may have created it in the meantime. Any other failure is an error.
        if mlflow_error_code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise ExternalToolError(
                f"creating experiment {name!r} on {store.describe()} failed: {exc}"
            ) from exc
    created = find_experiment(client, name)
    assert created is not None, "the experiment was just created"
    return created


def resolve_model(client: Any, store: TrackingStore, reference: ModelRef, app: str = "APP") -> ResolvedModel:
    """Follow ``reference`` on the store and load its MLmodel; raise ``ModelReferenceError`` when anything is missing.

    Checks that the registered model, alias, version and run exist, that a recorded run and experiment
    match what the store has, that the model has an MLmodel file, and that the MLmodel has a signature.
    """
    if reference.registered_name is not None and (
        reference.version is not None or reference.alias is not None
    ):
        return _resolve_version(client, store, reference, app)
    return _resolve_run(client, store, reference, app)


def _resolve_version(client: Any, store: TrackingStore, reference: ModelRef, app: str) -> ResolvedModel:
    name = reference.registered_name
    assert name is not None
    version = _registered_version(client, store, reference, app)
    number = int(version.version)

    run_id = version.run_id or None
    experiment_id = None
    if run_id is not None:
        source_run = fetch_or_raise(
            lambda: client.get_run(run_id),
            f"run {run_id}, the source of version {number} of {name!r}, not found on {store.describe()}",
            "pin another version, or restore the run",
        )
        experiment_id = str(source_run.info.experiment_id)
    if reference.run_id is not None and reference.run_id != run_id:
        raise ModelReferenceError(
            f"version {number} of {name!r} comes from run {run_id}, but apps.yaml records run {reference.run_id}",
            f"run homec promote {app} --version {number} again to record its run",
        )
    if reference.experiment_id is not None and reference.experiment_id != experiment_id:
        raise ModelReferenceError(
            f"run {run_id} belongs to experiment {experiment_id}, but apps.yaml records experiment {reference.experiment_id}",
            f"run homec promote {app} --version {number} again to record its experiment",
        )

    storage_uri = str(client.get_model_version_download_uri(name, str(number)))
    return ResolvedModel(
        registered_name=name,
        version=number,
        alias=reference.alias,
        run_id=run_id,
        experiment_id=experiment_id,
        artifact_path=reference.artifact_path,
        storage_uri=storage_uri,
        signature=_signature(store, storage_uri, f"version {number} of {name!r}"),
    )


def _registered_version(client: Any, store: TrackingStore, reference: ModelRef, app: str) -> Any:
    """Return the ``ModelVersion`` that a version or alias reference names."""
    name = reference.registered_name
    assert name is not None
    fetch_or_raise(
        lambda: client.get_registered_model(name),
        f"registered model {name!r} not found on {store.describe()}",
        f"train the app first (homec train {app} --env {store.environment} registers it), or fix registered_name",
    )
    if reference.alias is not None:
        alias = reference.alias
        return fetch_or_raise(
            lambda: client.get_model_version_by_alias(name, alias),
            f"registered model {name!r} has no alias {alias!r} on {store.describe()}",
            f"set it with MlflowClient().set_registered_model_alias({name!r}, {alias!r}, VERSION), or pin a version",
            also_not_found={"INVALID_PARAMETER_VALUE"},
        )
    number = str(reference.version)
    return fetch_or_raise(
        lambda: client.get_model_version(name, number),
        f"registered model {name!r} has no version {number} on {store.describe()}",
        f"homec runs {app} --env {store.environment} lists the runs and their versions; pin an existing version",
    )


def _resolve_run(client: Any, store: TrackingStore, reference: ModelRef, app: str) -> ResolvedModel:
    run_id = reference.run_id
    assert run_id is not None, "the schema requires run_id when no version or alias is given"
    run = fetch_or_raise(
        lambda: client.get_run(run_id),
        f"run {run_id} not found on {store.describe()}",
        f"homec runs {app} --env {store.environment} lists the runs there; train again or pin an existing run",
    )
    if run.info.lifecycle_stage == "deleted":
        raise ModelReferenceError(
            f"run {run_id} is deleted on {store.describe()}",
            "restore it with: mlflow runs restore --run-id RUN",
        )
    experiment_id = str(run.info.experiment_id)
    if reference.experiment_id is not None and reference.experiment_id != experiment_id:
        raise ModelReferenceError(
            f"run {run_id} belongs to experiment {experiment_id}, but apps.yaml records experiment {reference.experiment_id}",
            f"set experiment_id: '{experiment_id}' (homec promote writes both)",
        )
    storage_uri = logged_model_location(client, experiment_id, run_id, reference.artifact_path)
    where = f"model {reference.artifact_path!r} of run {run_id}"
    if storage_uri is None:
        # Runs logged before MLflow 3 keep the model among the run's own artifacts.
        storage_uri = f"{str(run.info.artifact_uri).rstrip('/')}/{reference.artifact_path}"
    return ResolvedModel(
        registered_name=reference.registered_name,
        version=None,
        alias=None,
        run_id=run_id,
        experiment_id=experiment_id,
        artifact_path=reference.artifact_path,
        storage_uri=storage_uri,
        signature=_signature(store, storage_uri, where),
    )


def logged_model_location(client: Any, experiment_id: str, run_id: str, name: str) -> str | None:
    """Return the artifact location of the model ``name`` that run ``run_id`` logged, or ``None``.

    MLflow 3 stores a logged model apart from its run, under ``<experiment location>/models/<model id>``.
    """
    token = None
    while True:
        page = client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"name = '{name}'", page_token=token
        )
        for model in page:
            if model.source_run_id == run_id:
                return str(model.artifact_location)
        token = page.token
        if not token:
            return None


def registered_versions_of_run(client: Any, name: str, run_id: str) -> list[Any]:
    """Return the versions of registered model ``name`` created from run ``run_id``, newest first."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except Exception as exc:
        if mlflow_error_code(exc) in _NOT_FOUND:
            return []
        raise
    return sorted(versions, key=lambda version: int(version.version), reverse=True)


def _signature(store: TrackingStore, storage_uri: str, where: str) -> dict[str, Any]:
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="homec-mlmodel-") as scratch:
        try:
            local = download_artifacts(
                artifact_uri=f"{storage_uri.rstrip('/')}/MLmodel",
                dst_path=scratch,
                tracking_uri=store.tracking_uri,
            )
        except Exception as exc:
            # A missing file and an unreadable artifact store (no credentials, say) both end here.
            raise ModelReferenceError(
                f"cannot read the MLmodel file of {where} at {storage_uri}: {_first_line(exc)}",
                "check that the model was logged with mlflow.<flavor>.log_model(...) and that this "
                "machine can read the artifact store",
            ) from None
        model = Model.load(Path(local))
    if model.signature is None:
        raise ModelReferenceError(
            f"{where} has no signature in its MLmodel",
            "log the model with signature=infer_signature(X, predictions); homec needs it for typed services",
        )
    signature: dict[str, Any] = model.signature.to_dict()
    return signature


def fetch_or_raise(
    call: Any, message: str, hint: str, also_not_found: frozenset[str] | set[str] = frozenset()
) -> Any:
    """Return ``call()``; raise ``ModelNotFoundError(message, hint)`` when MLflow reports it not found.

    Other MLflow errors become ``ExternalToolError``; any other exception propagates unchanged.
    ``also_not_found`` adds error codes that mean "not found" for this call.
    """
    try:
        return call()
    except Exception as exc:
        code = mlflow_error_code(exc)
        if code is None:
            raise
        if code in _NOT_FOUND or code in also_not_found:
            raise ModelNotFoundError(message, hint) from None
        raise ExternalToolError(f"MLflow failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
