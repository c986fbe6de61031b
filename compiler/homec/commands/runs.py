"""``homec runs APP``: the app's recent runs in an environment, with their metrics and which one is pinned."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homec.commands.promote import app_spec
from homec.config.project import load_project
from homec.config.schema import ModelRef
from homec.errors import UsageError
from homec.mlflow_client import Experiment, ModelReferenceError, fetch_or_raise, find_experiment, open_client
from homec.tracking_store import TAG_GIT_COMMIT, TrackingStore, registered_model_name, resolve_store

PINNED_MARK = "*"


@dataclass(frozen=True)
class RunsOptions:
    root: Path
    app: str
    environment: str
    limit: int = 10


@dataclass(frozen=True)
class RunRow:
    run_id: str
    started: str
    status: str
    metrics: dict[str, float]
    versions: tuple[int, ...]
    commit: str
    pinned: bool


@dataclass
class RunsOutcome:
    app: str
    store: TrackingStore
    experiment: Experiment | None
    rows: list[RunRow] = field(default_factory=list)
    pinned_uri: str | None = None
    pinned_run_id: str | None = None
    pinned_problem: str | None = None


def list_runs(options: RunsOptions) -> RunsOutcome:
    """Return the ``limit`` most recent runs of the app's experiment, newest first."""
    if options.limit < 1:
        raise UsageError(f"invalid --limit {options.limit}", "give a positive number of runs")
    project = load_project(options.root)
    spec = app_spec(project, options.app, options.environment)
    if spec.training is None:
        raise UsageError(
            f"app {options.app!r} has no training section, so it has no experiment", "add training:"
        )
    store = resolve_store(options.root, options.environment, project.environments[options.environment])
    client = open_client(store)
    experiment = find_experiment(client, spec.training.experiment)
    outcome = RunsOutcome(options.app, store, experiment)
    if experiment is None:
        return outcome
    if spec.model is not None:
        outcome.pinned_uri = spec.model.uri
        outcome.pinned_run_id, outcome.pinned_problem = _pinned_run(client, store, spec.model)
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=options.limit
    )
    versions = _versions_by_run(client, registered_model_name(spec))
    outcome.rows = [_row(run, versions, outcome.pinned_run_id) for run in runs]
    return outcome


def format_runs(outcome: RunsOutcome) -> list[str]:
    """Return the table ``homec runs`` prints: one line per run, metrics as columns, ``*`` on the pinned run."""
    if outcome.experiment is None:
        return [
            f"no experiment of app {outcome.app} on {outcome.store.describe()} yet; homec train {outcome.app} creates it"
        ]
    header = f"experiment {outcome.experiment.name} (id {outcome.experiment.experiment_id}) on {outcome.store.describe()}"
    if not outcome.rows:
        return [header, "no runs yet"]
    metric_names = sorted({name for row in outcome.rows for name in row.metrics})
    columns = ["", "run_id", "started (UTC)", "status", *metric_names, "version", "commit"]
    table = [columns]
    for row in outcome.rows:
        cells = [PINNED_MARK if row.pinned else "", row.run_id, row.started, row.status]
        cells += [f"{row.metrics[name]:.4f}" if name in row.metrics else "-" for name in metric_names]
        cells += [",".join(str(version) for version in row.versions) or "-", row.commit or "-"]
        table.append(cells)
    widths = [max(len(line[index]) for line in table) for index in range(len(columns))]
    lines = [header]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    lines.append(_pinned_line(outcome))
    return lines


def _pinned_line(outcome: RunsOutcome) -> str:
    if outcome.pinned_uri is None:
        return "pinned: nothing (the app has no model: yet; homec promote pins one)"
    if outcome.pinned_problem is not None:
        return f"pinned: {outcome.pinned_uri}, which does not resolve here: {outcome.pinned_problem}"
    shown = any(row.pinned for row in outcome.rows)
    where = "marked *" if shown else "not among the runs shown"
    return f"pinned: {outcome.pinned_uri} (run {outcome.pinned_run_id}, {where})"


def _pinned_run(client: Any, store: TrackingStore, model: ModelRef) -> tuple[str | None, str | None]:
    """Return the run the pinned model comes from, or the reason it cannot be found."""
    if model.registered_name is None or (model.version is None and model.alias is None):
        return model.run_id, None
    name, alias, version = model.registered_name, model.alias, str(model.version)
    try:
        found = fetch_or_raise(
            (lambda: client.get_model_version_by_alias(name, alias))
            if alias is not None
            else (lambda: client.get_model_version(name, version)),
            f"{model.uri} not found on {store.describe()}",
            "",
            also_not_found={"INVALID_PARAMETER_VALUE"},
        )
    except ModelReferenceError as exc:
        return None, exc.message
    return found.run_id or None, None


def _versions_by_run(client: Any, name: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.run_id:
            found.setdefault(version.run_id, []).append(int(version.version))
    return {run_id: sorted(numbers) for run_id, numbers in found.items()}


def _row(run: Any, versions: dict[str, list[int]], pinned_run_id: str | None) -> RunRow:
    started = datetime.datetime.fromtimestamp(run.info.start_time / 1000, tz=datetime.UTC)
    return RunRow(
        run_id=run.info.run_id,
        started=started.strftime("%Y-%m-%d %H:%M"),
        status=str(run.info.status),
        metrics=dict(run.data.metrics),
        versions=tuple(versions.get(run.info.run_id, [])),
        commit=run.data.tags.get(TAG_GIT_COMMIT, "")[:8],
        pinned=run.info.run_id == pinned_run_id,
    )
