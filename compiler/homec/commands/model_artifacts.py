"""Fetch the files of an app's MLflow model into a BentoML build context, on the host.

The image build then imports the model from that folder, so it needs neither MLflow nor a credential.
Two sources:

- the storage root ("NAS") containing run artifacts, for a run reference: MLflow keeps a run's artifacts
  under ``<root>/<experiment id>/<run id>/artifacts/``, and homec's training helper copies the logged
  model there (``<artifact path>``, ``model`` by default);
- otherwise the environment's MLflow tracking server, which resolves ``runs:/`` and ``models:/`` URIs.

MLflow is imported only here, when a BentoML image is built.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from homec.errors import ExternalToolError, UsageError
from homec.render.target import Target
from homec.tracking_store import local_or_uri, resolve_store

MLMODEL_FILE = "MLmodel"


def fetch_model(
    target: Target, destination: Path, storage_root: str | None, progress: Callable[[str], None]
) -> None:
    """Put the MLflow model of ``target`` into ``destination``, a folder that must not exist yet."""
    model = target.model
    if storage_root and model.run_id is not None and model.experiment_id is not None:
        location = run_artifact_location(target.project.root, storage_root, model.experiment_id, model.run_id)
        source = f"{location}/{model.artifact_path}"
        progress(f"fetching model {model.uri} from the storage root: {source}")
        _copy_from_storage(source, destination)
    else:
        if storage_root:
            progress(
                f"model {model.uri} is not a run reference, so it comes through MLflow, not the storage root"
            )
        store = resolve_store(target.project.root, target.env_name, target.environment)
        progress(f"fetching model {model.uri} from {store.describe()}")
        _download_with_mlflow(model.uri, store.tracking_uri, destination)
    if not (destination / MLMODEL_FILE).is_file():
        raise ExternalToolError(
            f"the files fetched for {model.uri} contain no {MLMODEL_FILE}, so they are not an MLflow model",
            f"check model.artifact_path ({model.artifact_path!r}) in apps.yaml",
        )


def run_artifact_location(root: Path, storage_root: str, experiment_id: str, run_id: str) -> str:
    """Return where MLflow keeps the artifacts of a run under ``storage_root`` (a URI or a local folder)."""
    base = local_or_uri(root, storage_root).rstrip("/")
    return f"{base}/{experiment_id}/{run_id}/artifacts"


def _copy_from_storage(source: str, destination: Path) -> None:
    local = _local_path(source)
    if local is not None:
        if not local.is_dir():
            raise ExternalToolError(
                f"model folder {local} not found in the storage root",
                "check the storage root, the experiment id and the run id",
            )
        shutil.copytree(local, destination)
        return
    _download_with_mlflow(source, None, destination)


def _local_path(location: str) -> Path | None:
    if location.startswith("file://"):
        return Path(location.removeprefix("file://"))
    if location.startswith("file:"):
        return Path(location.removeprefix("file:"))
    if "://" in location:
        return None
    return Path(location)


def _download_with_mlflow(uri: str, tracking_uri: str | None, destination: Path) -> None:
    """Download ``uri`` (a model URI, or an artifact URI such as ``gs://...``) into ``destination``."""
    import mlflow
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    if tracking_uri is not None:
        # models:/ URIs resolve through the model registry, whose URI MLflow otherwise takes from the
        # environment or defaults to a SQLite file in the working directory.
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    scratch = destination.with_name(destination.name + ".download")
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    try:
        downloaded = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(scratch), tracking_uri=tracking_uri
        )
    except MlflowException as exc:
        raise ExternalToolError(
            f"MLflow could not fetch {uri}: {exc.message}",
            "check that the model exists and that the tracking server or storage is reachable "
            "(credentials: MLFLOW_TRACKING_USERNAME/PASSWORD, GOOGLE_APPLICATION_CREDENTIALS, AWS_*)",
        ) from None
    except OSError as exc:
        raise ExternalToolError(f"fetching {uri} failed: {exc}") from None
    shutil.move(downloaded, destination)
    shutil.rmtree(scratch, ignore_errors=True)


def require_run_reference(target: Target, storage_root: str | None) -> None:
    """Reject a storage root for a FastAPI image, which packs no model."""
    if storage_root and target.flavor != "bentoml":
        raise UsageError(
            "--storage-root applies to BentoML images only",
            "a FastAPI image loads the model named by MODEL_URI when it starts",
        )
