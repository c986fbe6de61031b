"""Commands of the core: render, check, diff, schema, init."""

from __future__ import annotations

from pathlib import Path

import click

from homec.cli.app import cli
from homec.commands import render as render_command
from homec.commands.init import init_repository
from homec.commands.online_check import OnlineCheckError, check_online
from homec.commands.schema import write_schemas
from homec.config.jsonschema import SCHEMA_FILES, schema_documents
from homec.config.project import Project
from homec.errors import EXIT_INVALID, EXIT_OK, StaleRenderError
from homec.writer import Plan

_ENV_OPTION = click.option(
    "--env", "environments", multiple=True, metavar="ENV", help="Only this environment (repeatable)."
)
_APP_OPTION = click.option("--app", "apps", multiple=True, metavar="APP", help="Only this app (repeatable).")


def _summary(plan: Plan) -> str:
    return f"{len(plan.added)} added, {len(plan.changed)} changed, {len(plan.removed)} removed, {plan.unchanged} unchanged"


@cli.command()
@_ENV_OPTION
@_APP_OPTION
@click.option(
    "--yes", "confirm_removal", is_flag=True, help="Confirm deleting the files of apps that were removed."
)
@click.pass_obj
def render(root: Path, environments: tuple[str, ...], apps: tuple[str, ...], confirm_removal: bool) -> int:
    """Compile apps.yaml and environments/ into rendered/."""
    options = render_command.RenderOptions(root, environments, apps, confirm_removal=confirm_removal)
    outcome = render_command.render(options)
    for path in outcome.plan.removed:
        click.echo(f"removed {path}")
    click.echo(f"rendered: {_summary(outcome.plan)}")
    return EXIT_OK


@cli.command()
@_ENV_OPTION
@_APP_OPTION
@click.option(
    "--online",
    is_flag=True,
    help="Then also check on each environment's MLflow store that every pinned model exists "
    "and has an MLmodel with a signature.",
)
@click.pass_obj
def check(root: Path, environments: tuple[str, ...], apps: tuple[str, ...], online: bool) -> int:
    """Validate the configuration and fail if rendered/ is stale. Contacts no server without --online."""
    outcome = render_command.diff(render_command.RenderOptions(root, environments, apps, dry_run=True))
    plan = outcome.plan
    if plan.is_empty:
        click.echo(f"ok: configuration valid, rendered/ current ({plan.unchanged} files)")
        if online:
            _check_online(outcome.project, environments, apps)
        return EXIT_OK
    if not (root / "rendered").is_dir():
        raise StaleRenderError("rendered/ does not exist yet", "run homec render and commit the result")
    for path in sorted(plan.added):
        click.echo(f"  missing  {path}", err=True)
    for path in sorted(plan.changed):
        changed = sum(
            1
            for line in outcome.diffs[path].splitlines()
            if line[:1] in "+-" and line[:3] not in {"+++", "---"}
        )
        click.echo(f"  stale    {path} ({changed} lines differ)", err=True)
    for path in plan.removed:
        click.echo(f"  extra    {path}", err=True)
    raise StaleRenderError(
        f"rendered/ is stale: {_summary(plan)}",
        "run homec render, then git add rendered/ (homec diff shows the changes)",
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _check_online(project: Project, environments: tuple[str, ...], apps: tuple[str, ...]) -> None:
    report = check_online(project, environments, apps)
    for model in report.verified:
        click.echo(
            f"ok: {model.environment}: {model.app}: {model.model_uri} resolves to {model.chain}; "
            f"signature: {_count(model.inputs, 'input')}, {_count(model.outputs, 'output')}"
        )
    if report.problems:
        raise OnlineCheckError(report.problems)


@cli.command()
@_ENV_OPTION
@_APP_OPTION
@click.pass_obj
def diff(root: Path, environments: tuple[str, ...], apps: tuple[str, ...]) -> int:
    """Show what homec render would change in rendered/, as a unified diff. Exit 1 when it differs."""
    outcome = render_command.diff(render_command.RenderOptions(root, environments, apps, dry_run=True))
    for text in outcome.diffs.values():
        click.echo(text, nl=False)
    return EXIT_OK if outcome.plan.is_empty else EXIT_INVALID


@cli.command()
@click.option("--kind", type=click.Choice(sorted(SCHEMA_FILES)), help="Print one schema to standard output.")
@click.option(
    "--output", type=click.Path(file_okay=False, path_type=Path), help="Write both schemas into this folder."
)
def schema(kind: str | None, output: Path | None) -> int:
    """Print or write the JSON Schemas of apps.yaml and environment files (for yaml-language-server)."""
    if output is not None:
        for path in write_schemas(output):
            click.echo(f"wrote {path}")
        return EXIT_OK
    click.echo(schema_documents()[SCHEMA_FILES[kind or "apps"]].decode(), nl=False)
    return EXIT_OK


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> int:
    """Create a new homec repository in DIRECTORY with an example app and both environments."""
    for path in init_repository(directory):
        click.echo(f"created {path}")
    click.echo(
        f"next: cd {directory} && git init && pre-commit install && homec render"
        " && git add -A && git commit -m 'Start homec repository'"
    )
    return EXIT_OK
