"""Where an environment's MLflow runs, models and artifacts live, worked out from its settings alone.

An environment either names a tracking server (``mlflow.tracking_uri``) or leaves it empty, and then its
clients use the *embedded store*: a SQLite database and an artifact folder inside the repository,
under ``.homec/mlflow/`` (git-ignored). Clients of the embedded store open the database directly, so no
step needs a running server. ``homec mlflow`` serves the same database and folder for the MLflow UI.

This module never imports MLflow.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from homec.config.schema import AppSpec, Environment

EMBEDDED_DIR = ".homec/mlflow"
EMBEDDED_DATABASE = f"{EMBEDDED_DIR}/mlflow.db"
EMBEDDED_ARTIFACTS = f"{EMBEDDED_DIR}/artifacts"
DEFAULT_ENVIRONMENT = "localhost"
# SQLAlchemy dialects of MLflow's SQL store. Clients open a tracking URI with one of them directly.
_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")

# Run tags homec sets on every run it tracks.
TAG_APP = "homec.app"
TAG_ENVIRONMENT = "homec.environment"
TAG_GIT_COMMIT = "homec.git_commit"
TAG_GIT_DIRTY = "homec.git_dirty"
TAG_TRAIN_ID = "homec.train_id"


@dataclass(frozen=True)
class TrackingStore:
    """The MLflow store of one environment, as clients and ``homec mlflow`` use it.

    ``direct`` is true when clients open a SQL database themselves instead of talking to a server (the
    embedded store is one). ``artifact_root`` is where homec creates new experiments' artifacts; ``None``
    leaves that to the tracking server's own default. ``server_backend_store_uri`` and
    ``server_artifact_root`` are what ``homec mlflow`` serves.
    """

    environment: str
    tracking_uri: str
    artifact_root: str | None
    direct: bool
    server_backend_store_uri: str
    server_artifact_root: str

    @property
    def is_http(self) -> bool:
        return urlparse(self.tracking_uri).scheme in {"http", "https"}

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a SQLite tracking URI, or ``None`` for other stores."""
        return sqlite_file(self.tracking_uri)

    def describe(self) -> str:
        if self.direct:
            return f"store {self.tracking_uri}"
        return f"tracking server {self.tracking_uri}"


def resolve_store(root: Path, env_name: str, environment: Environment) -> TrackingStore:
    """Return the store of ``environment``; relative artifact paths are taken from the repository root."""
    settings = environment.mlflow
    backend = settings.backend_store_uri or sqlite_uri(root / EMBEDDED_DATABASE)
    declared_root = local_or_uri(root, settings.artifact_root) if settings.artifact_root else None
    local_root = declared_root or str((root / EMBEDDED_ARTIFACTS).resolve())
    tracking_uri = settings.tracking_uri or backend
    direct = sql_scheme(tracking_uri)
    return TrackingStore(
        environment=env_name,
        tracking_uri=tracking_uri,
        # A client that opens a SQL store itself must name the artifact root, or MLflow picks ./mlruns in
        # the working directory. A tracking server applies its own default instead.
        artifact_root=local_root if direct else declared_root,
        direct=direct,
        server_backend_store_uri=backend,
        server_artifact_root=local_root,
    )


def sqlite_uri(path: Path) -> str:
    """Return the SQLAlchemy URI of a SQLite database file (four slashes for an absolute path)."""
    return "sqlite:///" + path.resolve().as_posix()


def sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def sql_scheme(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme.split("+", 1)[0] in _SQL_SCHEMES


def local_or_uri(root: Path, location: str) -> str:
    """Return ``location`` unchanged when it is a URI, else as an absolute path (relative to ``root``)."""
    if "://" in location or location.startswith("file:"):
        return location
    return str((root / location).resolve())


def under_artifact_root(location: str, artifact_root: str) -> bool:
    """Return whether an experiment's artifact ``location`` lies below ``artifact_root``.

    Local paths compare with and without a ``file://`` prefix.
    """
    return _normalized(location).startswith(_normalized(artifact_root).rstrip("/") + "/")


def _normalized(location: str) -> str:
    if location.startswith("file://"):
        return urlparse(location).path
    if location.startswith("file:"):
        return location.removeprefix("file:")
    return location


def registered_model_name(app: AppSpec) -> str:
    """Return the registered model an app's training registers to: the pinned name, else the app name."""
    if app.model is not None and app.model.registered_name is not None:
        return app.model.registered_name
    return app.name


def git_state(root: Path) -> tuple[str | None, bool]:
    """Return the commit checked out at ``root`` and whether tracked files differ from it.

    Returns ``(None, False)`` outside a git repository or without git.
    """
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, False
    return commit or None, bool(status.strip())
