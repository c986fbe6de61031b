"""``homec train APP``: run the app's training script against the environment's MLflow store.

The script runs in a subprocess from the repository root, with ``HOMEC_REPO``, ``HOMEC_APP``,
``HOMEC_ENV``, ``HOMEC_TRAIN_ID``, ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_ID`` set, so both
``homec.tracking.configure()`` and plain ``mlflow.start_run()`` log to the right place. Its standard
output and error are streamed line by line. Afterwards the runs it created are found by the
``homec.train_id`` tag, or, for runs started without ``configure()``, by their start time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homec.commands.promote import app_spec
from homec.config.project import load_project
from homec.errors import HomecError, UsageError
from homec.mlflow_client import Experiment, ensure_experiment, open_client, registered_versions_of_run
from homec.tracking import ENV_APP, ENV_ENVIRONMENT, ENV_REPO, ENV_TRAIN_ID, TELEMETRY_OFF, run_tags
from homec.tracking_store import TAG_APP, TAG_TRAIN_ID, TrackingStore, registered_model_name, resolve_store

# Lines of the script's output repeated in the error when it fails.
TAIL_LINES = 20
# Seconds a stopped script gets to exit after SIGTERM before it is killed.
_STOP_GRACE = 10


class TrainingFailedError(HomecError):
    """The training script exited with a non-zero code."""

    def __init__(self, script: str, exit_code: int, tail: list[str]) -> None:
        lines = "\n".join(f"    | {line}" for line in tail) or "    (no output)"
        super().__init__(
            f"training script {script} failed with exit code {exit_code}; its last lines:\n{lines}",
            "nothing was promoted; fix the script and run homec train again",
        )
        self.exit_code_of_script = exit_code
        self.tail = tail


class NoRunRecordedError(HomecError):
    """The training script succeeded but no MLflow run of it was found."""


@dataclass(frozen=True)
class TrainOptions:
    root: Path
    app: str
    environment: str


@dataclass
class TrainOutcome:
    store: TrackingStore
    experiment: Experiment
    run_id: str
    other_run_ids: list[str]
    metrics: dict[str, float]
    registered_model: str
    model_version: int | None
    warnings: list[str] = field(default_factory=list)


def train(options: TrainOptions, on_line: Callable[[str], None]) -> TrainOutcome:
    """Run the training script, passing each output line to ``on_line``; then report its run.

    Raises ``TrainingFailedError`` when the script fails.
    """
    project = load_project(options.root)
    spec = app_spec(project, options.app, options.environment)
    if spec.training is None:
        raise UsageError(
            f"app {options.app!r} has no training section", "add training: {entrypoint, experiment}"
        )
    script = options.root / spec.training.entrypoint
    if not script.is_file():
        raise UsageError(
            f"training script {spec.training.entrypoint} not found", "create it or fix training.entrypoint"
        )

    store = resolve_store(options.root, options.environment, project.environments[options.environment])
    client = open_client(store, create=True)
    experiment, warning = ensure_experiment(client, store, spec.training.experiment)
    train_id = uuid.uuid4().hex
    started_ms = int(time.time() * 1000)
    environment = _script_environment(options, store, experiment, train_id)
    exit_code, tail = _run_script(script, options.root, environment, on_line)
    if exit_code != 0:
        raise TrainingFailedError(spec.training.entrypoint, exit_code, tail)

    runs = _runs_of(client, experiment, train_id, started_ms)
    if not runs:
        raise NoRunRecordedError(
            f"training script {spec.training.entrypoint} finished, but no run was recorded in experiment "
            f"{experiment.name!r} on {store.describe()}",
            "call homec.tracking.configure() in the script and log inside tracking.start_run()",
        )
    _add_missing_tags(client, runs, run_tags(options.root, options.app, options.environment))
    primary = _primary(runs)
    name = registered_model_name(spec)
    versions = registered_versions_of_run(client, name, primary.info.run_id)
    return TrainOutcome(
        store=store,
        experiment=experiment,
        run_id=primary.info.run_id,
        other_run_ids=[run.info.run_id for run in runs if run is not primary],
        metrics=dict(sorted(primary.data.metrics.items())),
        registered_model=name,
        model_version=int(versions[0].version) if versions else None,
        warnings=[warning] if warning else [],
    )


def summary_lines(outcome: TrainOutcome) -> list[str]:
    """Return the ``key: value`` lines ``homec train`` prints after the script, for people and scripts."""
    lines = [
        f"experiment: {outcome.experiment.name}",
        f"experiment_id: {outcome.experiment.experiment_id}",
        f"run_id: {outcome.run_id}",
    ]
    if outcome.other_run_ids:
        lines.append(f"other_run_ids: {' '.join(outcome.other_run_ids)}")
    if outcome.model_version is not None:
        lines.append(f"registered_model: {outcome.registered_model}")
        lines.append(f"model_version: {outcome.model_version}")
    lines.extend(f"metric.{name}: {value!r}" for name, value in outcome.metrics.items())
    lines.append(f"tracking_uri: {outcome.store.tracking_uri}")
    return lines


def _script_environment(
    options: TrainOptions, store: TrackingStore, experiment: Experiment, train_id: str
) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(TELEMETRY_OFF)
    environment.update(
        {
            ENV_REPO: str(options.root),
            ENV_APP: options.app,
            ENV_ENVIRONMENT: options.environment,
            ENV_TRAIN_ID: train_id,
            "MLFLOW_TRACKING_URI": store.tracking_uri,
            "MLFLOW_REGISTRY_URI": store.tracking_uri,
            "MLFLOW_EXPERIMENT_ID": experiment.experiment_id,
            # Lines reach the terminal as the script prints them, not when its buffer fills.
            "PYTHONUNBUFFERED": "1",
        }
    )
    environment.pop("MLFLOW_EXPERIMENT_NAME", None)
    return environment


def _run_script(
    script: Path, root: Path, environment: dict[str, str], on_line: Callable[[str], None]
) -> tuple[int, list[str]]:
    """Run ``script`` with the Python running homec; return its exit code and last output lines."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    process = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=root,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    assert process.stdout is not None
    try:
        for raw in process.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            on_line(line)
        exit_code = process.wait()
    except BaseException:
        _stop(process)
        raise
    return exit_code, list(tail)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=_STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _runs_of(client: Any, experiment: Experiment, train_id: str, started_ms: int) -> list[Any]:
    """Return the runs the script created, oldest first."""
    order = ["attributes.start_time ASC"]
    tagged = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{TAG_TRAIN_ID}` = '{train_id}'", order_by=order
    )
    if tagged:
        return list(tagged)
    # NOTE: a run another process starts in the same experiment while the script runs is counted too.
    recent = client.search_runs(
        [experiment.experiment_id], filter_string=f"attributes.start_time >= {started_ms}", order_by=order
    )
    return list(recent)


def _add_missing_tags(client: Any, runs: list[Any], tags: dict[str, str]) -> None:
    for run in runs:
        if TAG_APP in run.data.tags:
            continue
        for key, value in tags.items():
            if key not in run.data.tags:
                client.set_tag(run.info.run_id, key, value)


def _primary(runs: list[Any]) -> Any:
    """Return the run to report and promote: the last one that logged a model, else the last one."""
    with_model = [run for run in runs if run.outputs is not None and run.outputs.model_outputs]
    return (with_model or runs)[-1]
