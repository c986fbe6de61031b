"""Tracking helper for training scripts: send runs, models and artifacts to the environment's MLflow store.

Call ``configure()`` at the top of ``training/<app>/train.py``::

    from homec.tracking import configure

    tracking = configure()
    with tracking.start_run():
        ...
        mlflow.sklearn.log_model(model, name="model", registered_model_name=tracking.registered_model_name)

``configure`` finds the repository (``root``, else ``HOMEC_REPO``, else the nearest folder containing
``apps.yaml`` at or above the working directory or the script), the app (``app``, else ``HOMEC_APP``, else
the app whose ``training.entrypoint`` is the running script) and the environment (``environment``,
else ``HOMEC_ENV``, else ``localhost``). It then sets MLflow's tracking and registry URI to that
environment's store (the embedded SQLite store under ``.homec/mlflow/`` when the environment names no
server), creates the app's experiment if needed with the environment's artifact root, and makes it
MLflow's active experiment. ``homec train`` sets the three variables for the script it runs.

Runs started with ``Tracking.start_run`` carry the tags ``homec.app``, ``homec.environment`` and, inside
a git checkout, ``homec.git_commit`` and ``homec.git_dirty``. ``homec train`` adds those tags itself to
runs a script starts with plain ``mlflow.start_run()``.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homec.config.project import APPS_FILE, load_project
from homec.config.schema import AppSpec
from homec.errors import HomecError, UsageError
from homec.mlflow_client import ensure_experiment, open_client
from homec.tracking_store import (
    DEFAULT_ENVIRONMENT,
    TAG_APP,
    TAG_ENVIRONMENT,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    TAG_TRAIN_ID,
    git_state,
    registered_model_name,
    resolve_store,
)

logger = logging.getLogger(__name__)

# Variables ``homec train`` sets for the training script; ``configure`` reads them.
ENV_REPO = "HOMEC_REPO"
ENV_APP = "HOMEC_APP"
ENV_ENVIRONMENT = "HOMEC_ENV"
ENV_TRAIN_ID = "HOMEC_TRAIN_ID"
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "true"}


@dataclass(frozen=True)
class Tracking:
    """The MLflow settings ``configure`` applied: store, experiment, registered model and run tags."""

    root: Path
    app: str
    environment: str
    tracking_uri: str
    experiment_id: str
    experiment_name: str
    artifact_location: str
    registered_model_name: str
    model_alias: str | None
    tags: dict[str, str] = field(default_factory=dict)

    def start_run(
        self, run_name: str | None = None, tags: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        """Start an MLflow run in the app's experiment with homec's tags (plus ``tags``); see ``mlflow.start_run``."""
        import mlflow

        return mlflow.start_run(
            experiment_id=self.experiment_id, run_name=run_name, tags={**self.tags, **(tags or {})}, **kwargs
        )

    def copy_model_to_run(self, model_uri: str, artifact_path: str = "model") -> None:
        """Copy a logged model's files into the active run's artifacts under ``artifact_path``.

        MLflow 3 keeps a logged model apart from its run, under ``<experiment location>/models/<model id>/``.
        A consumer given only the storage root, experiment id and run id (such as a Jenkins job reading
        ``<root>/<experiment id>/<run id>/artifacts/model``) finds the copy there.
        """
        import tempfile

        import mlflow

        with tempfile.TemporaryDirectory(prefix="homec-model-") as scratch:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch)
            mlflow.log_artifacts(local, artifact_path=artifact_path)


def configure(
    app: str | None = None, environment: str | None = None, root: Path | str | None = None
) -> Tracking:
    """Point MLflow at the environment's store and the app's experiment; return what was set up.

    When the repository, app or environment cannot be found or the configuration is invalid, it
    raises ``SystemExit`` with homec's error message (exit code 1), as the homec CLI reports it.
    """
    try:
        return _configure(app, environment, root)
    except HomecError as exc:
        raise SystemExit(f"error: {exc.format()}") from exc


def _configure(app: str | None, environment: str | None, root: Path | str | None) -> Tracking:
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)
    repository = find_repository(root)
    project = load_project(repository)
    env_name = environment or os.environ.get(ENV_ENVIRONMENT) or DEFAULT_ENVIRONMENT
    if env_name not in project.environments:
        known = ", ".join(sorted(project.environments))
        raise UsageError(f"unknown environment {env_name!r}", f"known environments: {known}")
    app_name = app or os.environ.get(ENV_APP) or _app_of_script(repository, project.apps.values())
    if app_name not in project.apps:
        raise UsageError(f"unknown app {app_name!r}", f"apps in apps.yaml: {', '.join(sorted(project.apps))}")
    spec = project.app(env_name, app_name)
    if spec.training is None:
        raise UsageError(
            f"app {app_name!r} has no training section",
            "add training: {entrypoint: training/APP/train.py, experiment: APP} to apps.yaml",
        )

    store = resolve_store(repository, env_name, project.environments[env_name])
    client = open_client(store, create=True)
    experiment, warning = ensure_experiment(client, store, spec.training.experiment)
    if warning:
        logger.warning(warning)

    import mlflow

    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.tracking_uri)
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    return Tracking(
        root=repository,
        app=app_name,
        environment=env_name,
        tracking_uri=store.tracking_uri,
        experiment_id=experiment.experiment_id,
        experiment_name=experiment.name,
        artifact_location=experiment.artifact_location,
        registered_model_name=registered_model_name(spec),
        model_alias=spec.model.alias if spec.model is not None else None,
        tags=run_tags(repository, app_name, env_name),
    )


def run_tags(root: Path, app: str, environment: str) -> dict[str, str]:
    """Return the tags homec puts on a run: app, environment, git commit and state, and ``homec train``'s id."""
    tags = {TAG_APP: app, TAG_ENVIRONMENT: environment}
    commit, dirty = git_state(root)
    if commit is not None:
        tags[TAG_GIT_COMMIT] = commit
        tags[TAG_GIT_DIRTY] = "true" if dirty else "false"
    train_id = os.environ.get(ENV_TRAIN_ID)
    if train_id:
        tags[TAG_TRAIN_ID] = train_id
    return tags


def find_repository(root: Path | str | None = None) -> Path:
    """Return the repository root: ``root``, else ``HOMEC_REPO``, else the nearest folder containing apps.yaml."""
    if root is not None:
        return Path(root).resolve()
    if os.environ.get(ENV_REPO):
        return Path(os.environ[ENV_REPO]).resolve()
    starts = [Path.cwd()]
    if sys.argv and sys.argv[0]:
        starts.append(Path(sys.argv[0]).resolve().parent)
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / APPS_FILE).is_file():
                return folder.resolve()
    raise HomecError(
        f"no {APPS_FILE} found in {Path.cwd()} or above",
        "run the script inside the homec repository, or call configure(root=...)",
    )


def _app_of_script(root: Path, apps: Any) -> str:
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    candidates: list[AppSpec] = [app for app in apps if app.training is not None]
    for app in candidates:
        assert app.training is not None
        if script is not None and (root / app.training.entrypoint).resolve() == script:
            return str(app.name)
    names = ", ".join(sorted(app.name for app in candidates)) or "none"
    raise UsageError(
        f"cannot tell which app {script or 'this script'} trains",
        f"call configure(app=NAME) or set {ENV_APP}; apps with a training section: {names}",
    )
