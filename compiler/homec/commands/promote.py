"""``homec promote APP``: pin a run, registered model version or alias in apps.yaml, then re-render.

The reference is resolved on the environment's tracking store first (alias → version → run); the model
must exist and carry a signature. Then the app's ``model:`` mapping is rewritten in place, changing only
its own lines, the signature goes to ``signatures/<app>.json``, and ``rendered/`` is rendered again.

What is written for each request:

- ``--run-id R``: ``experiment_id`` and ``run_id`` (what the Jenkins BentoML job takes). When R's model
  is also a version of the app's registered model, ``registered_name`` and ``version`` too, so the
  model URI is the immutable ``models:/NAME/VERSION``.
- ``--version N``: ``registered_name`` and ``version``, plus the version's ``experiment_id`` and ``run_id``.
- ``--alias A``: ``registered_name`` and ``alias``. An alias can move to another version later, so no
  run is recorded with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from homec.commands import render as render_command
from homec.config.project import Project, load_project
from homec.config.schema import AppEntry, AppSpec, ModelRef
from homec.errors import HomecError, UsageError
from homec.mlflow_client import (
    ModelReferenceError,
    ResolvedModel,
    fetch_or_raise,
    open_client,
    registered_versions_of_run,
    resolve_model,
)
from homec.signatures import ModelSignature, signature_path, write_atomically
from homec.tracking_store import TrackingStore, registered_model_name, resolve_store
from homec.yamledit import KeyPath, compose, find_node, set_mapping

# Order of the keys of a written model reference. Experiment ids are strings to MLflow, so they are
# written quoted even though they look like numbers.
MODEL_KEYS = ("registered_name", "version", "alias", "experiment_id", "run_id", "artifact_path")
QUOTED_KEYS = frozenset({"experiment_id"})


class PromoteRenderError(HomecError):
    """The model was pinned, but rendering afterwards failed."""


@dataclass(frozen=True)
class PromoteOptions:
    root: Path
    app: str
    environment: str
    run_id: str | None = None
    version: int | None = None
    alias: str | None = None
    registered_name: str | None = None


@dataclass(frozen=True)
class ModelLocation:
    """The file and key path where an app's model reference for one environment is written."""

    file: str
    path: KeyPath


@dataclass
class PromoteOutcome:
    resolved: ResolvedModel
    reference: ModelRef
    location: ModelLocation
    apps_file_changed: bool
    signature_file: str
    signature_changed: bool
    render: render_command.RenderOutcome


def promote(options: PromoteOptions) -> PromoteOutcome:
    """Resolve the requested model, rewrite the app's model reference, record the signature and render."""
    _check_request(options)
    project = load_project(options.root)
    spec = app_spec(project, options.app, options.environment)
    store = resolve_store(options.root, options.environment, project.environments[options.environment])
    client = open_client(store)
    resolved = resolve_model(client, store, _requested(client, store, options, spec), options.app)
    reference = _pinned(client, resolved, options, spec)
    signature = ModelSignature.from_mlflow(reference.uri, resolved.signature)

    location = model_location(project, options.app, options.environment)
    values = _written_values(project.apps[options.app], reference, location)
    apps_changed, signature_changed = _write(options.root, options.app, location, values, signature)
    try:
        rendered = render_command.render(render_command.RenderOptions(options.root))
    except HomecError as exc:
        raise PromoteRenderError(
            f"pinned {reference.uri} in {location.file}, but rendering failed: {exc.message}",
            exc.hint or "fix that and run homec render",
        ) from exc
    return PromoteOutcome(
        resolved, reference, location, apps_changed, signature_path(options.app), signature_changed, rendered
    )


def app_spec(project: Project, app: str, environment: str) -> AppSpec:
    """Return the effective app for ``environment``; raise ``UsageError`` for unknown names."""
    if environment not in project.environments:
        raise UsageError(
            f"unknown environment {environment!r}",
            f"known environments: {', '.join(sorted(project.environments))}",
        )
    if app not in project.apps:
        raise UsageError(
            f"unknown app {app!r}", f"apps in apps.yaml: {', '.join(sorted(project.apps)) or 'none'}"
        )
    return project.app(environment, app)


def model_location(project: Project, app: str, environment: str) -> ModelLocation:
    """Return where the model of ``app`` in ``environment`` comes from: its override, else the app entry."""
    file = project.app_files[app]
    text = (project.root / file).read_bytes().decode("utf-8")
    index = app_index(text, app)
    override = project.apps[app].overrides.get(environment)
    if isinstance(override, dict) and "model" in override:
        return ModelLocation(file, ("apps", index, "overrides", environment, "model"))
    return ModelLocation(file, ("apps", index, "model"))


def app_index(text: str, app: str) -> int:
    """Return the position of ``app`` in the ``apps:`` list of an apps file's text."""
    apps = find_node(compose(text), ("apps",))
    for index, item in enumerate(getattr(apps, "value", None) or []):
        name = find_node(item, ("name",))
        if name is not None and name.value == app:
            return index
    raise UsageError(f"app {app!r} not found in the apps list", "check the app name")


def _check_request(options: PromoteOptions) -> None:
    """Reject a request that names no reference, several, or one the schema would not accept."""
    chosen = [value for value in (options.run_id, options.version, options.alias) if value is not None]
    if len(chosen) != 1:
        raise UsageError(
            "give exactly one of --run-id, --version and --alias", "homec promote --help shows them"
        )
    # The experiment id and registered model name are placeholders: only the given values are checked.
    fields = {"run_id": options.run_id, "version": options.version, "alias": options.alias}
    given: dict[str, Any] = {key: value for key, value in fields.items() if value is not None}
    given.update({"experiment_id": "0"} if options.run_id is not None else {"registered_name": "placeholder"})
    if options.registered_name is not None:
        given["registered_name"] = options.registered_name
    try:
        ModelRef.model_validate(given)
    except ValidationError as exc:
        raise UsageError(
            f"invalid model reference: {_first_message(exc)}", "homec promote --help shows the options"
        ) from None


def _first_message(error: ValidationError) -> str:
    detail = error.errors(include_url=False)[0]
    return str(detail["msg"]).removeprefix("Value error, ")


def _requested(client: Any, store: TrackingStore, options: PromoteOptions, spec: AppSpec) -> ModelRef:
    """Return the reference to resolve, as a model reference of the schema."""
    if options.run_id is not None:
        run = fetch_or_raise(
            lambda: client.get_run(options.run_id),
            f"run {options.run_id} not found on {store.describe()}",
            f"homec runs {spec.name} --env {store.environment} lists the runs there",
        )
        artifact_path = spec.model.artifact_path if spec.model is not None else "model"
        return _reference(
            experiment_id=str(run.info.experiment_id), run_id=options.run_id, artifact_path=artifact_path
        )
    name = options.registered_name or registered_model_name(spec)
    if options.version is not None:
        return _reference(registered_name=name, version=options.version)
    return _reference(registered_name=name, alias=options.alias)


def _pinned(client: Any, resolved: ResolvedModel, options: PromoteOptions, spec: AppSpec) -> ModelRef:
    """Return the reference to write for a resolved request."""
    if options.alias is not None:
        return _reference(registered_name=resolved.registered_name, alias=resolved.alias)
    if options.version is not None:
        return _reference(
            registered_name=resolved.registered_name,
            version=resolved.version,
            experiment_id=resolved.experiment_id,
            run_id=resolved.run_id,
        )
    assert resolved.run_id is not None
    name = options.registered_name or registered_model_name(spec)
    for version in registered_versions_of_run(client, name, resolved.run_id):
        location = str(client.get_model_version_download_uri(name, str(version.version)))
        if location.rstrip("/") == resolved.storage_uri.rstrip("/"):
            return _reference(
                registered_name=name,
                version=int(version.version),
                experiment_id=resolved.experiment_id,
                run_id=resolved.run_id,
            )
    return _reference(
        experiment_id=resolved.experiment_id, run_id=resolved.run_id, artifact_path=resolved.artifact_path
    )


def _reference(**fields: Any) -> ModelRef:
    given = {key: value for key, value in fields.items() if value is not None}
    try:
        return ModelRef.model_validate(given)
    except ValueError as exc:
        raise ModelReferenceError(
            f"the model reference {given} is not valid: {exc}", "report this as a bug in homec"
        ) from exc


def _written_values(entry: AppEntry, reference: ModelRef, location: ModelLocation) -> dict[str, Any]:
    values: dict[str, Any] = reference.model_dump(exclude_defaults=True)
    if "overrides" in location.path and entry.model is not None:
        # An override merges over the app's own model mapping, so keys of that mapping the new
        # reference does not use are removed with null.
        for key in entry.model.model_fields_set:
            values.setdefault(key, None)
    return values


def _write(
    root: Path, app: str, location: ModelLocation, values: dict[str, Any], signature: ModelSignature
) -> tuple[bool, bool]:
    """Write the apps file and the signature file, and put both back if the result does not load."""
    apps_path = root / location.file
    signature_file = root / signature_path(app)
    old_apps = apps_path.read_bytes()
    old_signature = signature_file.read_bytes() if signature_file.is_file() else None
    new_apps = set_mapping(old_apps.decode("utf-8"), location.path, values, MODEL_KEYS, QUOTED_KEYS).encode(
        "utf-8"
    )
    new_signature = signature.to_bytes()
    try:
        if new_signature != old_signature:
            write_atomically(signature_file, new_signature)
        if new_apps != old_apps:
            write_atomically(apps_path, new_apps)
        load_project(root)
    except BaseException:
        # Nothing half-done stays behind: an invalid result, a failed write or Ctrl-C restores both.
        write_atomically(apps_path, old_apps)
        if old_signature is None:
            signature_file.unlink(missing_ok=True)
        else:
            write_atomically(signature_file, old_signature)
        raise
    return new_apps != old_apps, new_signature != old_signature
