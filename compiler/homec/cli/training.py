"""Training commands: train, promote, runs, mlflow. MLflow is imported only when one of them runs."""

from __future__ import annotations

from pathlib import Path

import click

from homec.cli.app import cli
from homec.commands import mlflow_server
from homec.commands import promote as promote_command
from homec.commands import runs as runs_command
from homec.commands import train as train_command
from homec.config.loader import format_key_path
from homec.errors import EXIT_OK, ExternalToolError
from homec.tracking_store import DEFAULT_ENVIRONMENT

_ENV_OPTION = click.option(
    "--env",
    "environment",
    envvar="HOMEC_ENV",
    default=DEFAULT_ENVIRONMENT,
    show_default=True,
    metavar="ENV",
    help="Environment whose MLflow store to use (also read from HOMEC_ENV).",
)


@cli.command()
@click.argument("app")
@_ENV_OPTION
@click.option(
    "--promote",
    "promote_run",
    is_flag=True,
    help="Pin the new run in apps.yaml and render, if training succeeds.",
)
@click.pass_obj
def train(root: Path, app: str, environment: str, promote_run: bool) -> int:
    """Run APP's training script against the environment's MLflow store.

    The script's output is streamed. Then homec prints `key: value` lines: experiment, experiment_id,
    run_id, registered_model and model_version (when the run registered one), metric.NAME for each
    metric, and tracking_uri.
    """
    outcome = train_command.train(train_command.TrainOptions(root, app, environment), click.echo)
    for warning in outcome.warnings:
        click.echo(f"warning: {warning}", err=True)
    for line in train_command.summary_lines(outcome):
        click.echo(line)
    if promote_run:
        # Promoted only after the summary is out, so a failed promotion still shows the run id.
        options = promote_command.PromoteOptions(root, app, environment, run_id=outcome.run_id)
        _echo_promotion(promote_command.promote(options))
    return EXIT_OK


@cli.command()
@click.argument("app")
@_ENV_OPTION
@click.option("--run-id", metavar="RUN", help="Pin this run's model (32 hex digits).")
@click.option(
    "--version", "version", type=click.IntRange(min=1), metavar="N", help="Pin this registered model version."
)
@click.option("--alias", metavar="ALIAS", help="Pin this alias of the registered model.")
@click.option(
    "--name",
    "registered_name",
    metavar="NAME",
    help="Registered model that --version and --alias name, and where --run-id looks for the run's version; "
    "defaults to the app's registered_name, else the app name.",
)
@click.pass_obj
def promote(
    root: Path,
    app: str,
    environment: str,
    run_id: str | None,
    version: int | None,
    alias: str | None,
    registered_name: str | None,
) -> int:
    """Pin a run, version or alias as APP's model in apps.yaml, record its signature and render.

    The reference is resolved on the environment's tracking store and must lead to a model with a
    signature. Only the lines of the app's model mapping change, and comments and layout stay as they
    are.
    """
    options = promote_command.PromoteOptions(root, app, environment, run_id, version, alias, registered_name)
    _echo_promotion(promote_command.promote(options))
    return EXIT_OK


@cli.command()
@click.argument("app")
@_ENV_OPTION
@click.option(
    "--limit",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Number of most recent runs to show.",
)
@click.pass_obj
def runs(root: Path, app: str, environment: str, limit: int) -> int:
    """List APP's recent runs with their metrics; * marks the run apps.yaml pins."""
    outcome = runs_command.list_runs(runs_command.RunsOptions(root, app, environment, limit))
    for line in runs_command.format_runs(outcome):
        click.echo(line)
    return EXIT_OK


@cli.command()
@_ENV_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server listens on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="TCP port; defaults to the port of a local tracking_uri, else 5000.",
)
@click.pass_obj
def mlflow(root: Path, environment: str, host: str, port: int | None) -> int:
    """Run a local MLflow server on the environment's backend store and artifact root until Ctrl-C.

    Without a tracking_uri in the environment that is the embedded store under .homec/mlflow/.
    """
    server, store = mlflow_server.server_for(mlflow_server.ServerOptions(root, environment, host, port))
    click.echo(
        f"starting MLflow for environment {environment}: backend {server.backend_store_uri}, artifacts {server.artifact_root}"
    )
    click.echo(f"log: {server.log_path}")
    with mlflow_server.interrupt_on_termination(), server.start():
        click.echo(f"ready: {server.url} (Ctrl-C stops it)")
        if not store.direct and store.tracking_uri.rstrip("/") != server.url:
            click.echo(
                f"note: clients of environment {environment} use {store.tracking_uri}, not this server",
                err=True,
            )
        try:
            code: int | None = server.wait()
        except KeyboardInterrupt:
            code = None
    if code is not None:
        tail = "\n".join(f"    | {line}" for line in server.log_tail())
        raise ExternalToolError(
            f"mlflow server exited on its own with code {code}; last lines of {server.log_path}:\n{tail}"
        )
    click.echo("stopped")
    return EXIT_OK


def _echo_promotion(outcome: promote_command.PromoteOutcome) -> None:
    click.echo(f"resolved: {outcome.resolved.chain()}")
    click.echo(f"model_uri: {outcome.reference.uri}")
    state = "updated" if outcome.apps_file_changed else "unchanged"
    click.echo(f"{state}: {outcome.location.file} ({format_key_path(outcome.location.path)})")
    click.echo(f"{'wrote' if outcome.signature_changed else 'unchanged'}: {outcome.signature_file}")
    plan = outcome.render.plan
    click.echo(
        f"rendered: {len(plan.added)} added, {len(plan.changed)} changed, {len(plan.removed)} removed, {plan.unchanged} unchanged"
    )
    click.echo(f"next: git add {outcome.location.file} {outcome.signature_file} rendered/ && git commit")
