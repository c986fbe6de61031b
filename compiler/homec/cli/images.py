"""Image commands: image-tag, build, push."""

from __future__ import annotations

from pathlib import Path

import click

from homec.cli.app import cli
from homec.commands import build as build_command
from homec.config.schema import FLAVORS
from homec.errors import EXIT_OK

_FLAVOR_OPTION = click.option(
    "--flavor", type=click.Choice(FLAVORS), required=True, help="Serving flavor whose image to use."
)
_ENV_OPTION = click.option(
    "--env",
    "environment",
    metavar="ENV",
    help="Environment; defaults to localhost, or to the only environment.",
)
_EXPERIMENT_OPTION = click.option(
    "--experiment-id",
    default="",
    metavar="ID",
    help="MLflow experiment id of a run to pack instead of the model in apps.yaml (BentoML only; with --run-id).",
)
_RUN_OPTION = click.option(
    "--run-id",
    default="",
    metavar="ID",
    help="MLflow run id to pack instead of the model in apps.yaml (BentoML only; with --experiment-id).",
)
_REPOSITORY_OPTION = click.option(
    "--image-repository",
    default="",
    metavar="REGISTRY/NAME",
    help="Image repository to tag and push to; defaults to the environment's registry and repository.",
)


def _image_options(
    root: Path,
    app: str,
    flavor: str,
    environment: str | None,
    experiment_id: str,
    run_id: str,
    repository: str = "",
) -> build_command.ImageOptions:
    return build_command.ImageOptions(root, app, flavor, environment, experiment_id, run_id, repository)


@cli.command("image-tag")
@click.argument("app")
@_FLAVOR_OPTION
@_ENV_OPTION
@_EXPERIMENT_OPTION
@_RUN_OPTION
@click.pass_obj
def image_tag(
    root: Path, app: str, flavor: str, environment: str | None, experiment_id: str, run_id: str
) -> int:
    """Print the content-addressed tag of APP's image, computed offline from what goes into it."""
    image = build_command.resolve_image(_image_options(root, app, flavor, environment, experiment_id, run_id))
    click.echo(image.tag)
    if image.tag != image.rendered_tag:
        click.echo(
            f"note: the rendered manifests name tag {image.rendered_tag}; this one differs because it packs "
            f"{image.target.model.uri} (selected by --experiment-id and --run-id), not the model in apps.yaml, "
            f"{image.rendered_model_uri}",
            err=True,
        )
    return EXIT_OK


@cli.command()
@click.argument("app")
@_FLAVOR_OPTION
@_ENV_OPTION
@_EXPERIMENT_OPTION
@_RUN_OPTION
@click.option(
    "--storage-root",
    default="",
    metavar="URI",
    help='Storage root ("NAS") containing the run\'s artifacts, such as gs://bucket or a folder; BentoML only. '
    "Without it, the model comes through the environment's MLflow tracking server.",
)
@_REPOSITORY_OPTION
@click.option(
    "--wheelhouse",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="HOMEC_WHEELHOUSE",
    help="Folder of wheels that pip in the image installs from, without the package index "
    "(default: $HOMEC_WHEELHOUSE).",
)
@click.option("--push", is_flag=True, help="Push the image after building it.")
@click.pass_obj
def build(
    root: Path,
    app: str,
    flavor: str,
    environment: str | None,
    experiment_id: str,
    run_id: str,
    storage_root: str,
    image_repository: str,
    wheelhouse: Path | None,
    push: bool,
) -> int:
    """Build APP's image with the engine DOCKER_HOST names, streaming the build log.

    BentoML images pack the model: it is fetched from MLflow or the storage root and built into a bento
    first. Registry credentials for --push come from HOMEC_REGISTRY_USERNAME and HOMEC_REGISTRY_PASSWORD,
    or else from the Docker config (docker login).
    """
    image = _image_options(root, app, flavor, environment, experiment_id, run_id, image_repository)
    options = build_command.BuildOptions(image, storage_root=storage_root, wheelhouse=wheelhouse, push=push)
    outcome = build_command.build(options, click.echo)
    click.echo(f"built {outcome.image.reference} ({outcome.image_id})")
    if push:
        click.echo(f"pushed {outcome.image.reference}" + (f" ({outcome.digest})" if outcome.digest else ""))
    return EXIT_OK


@cli.command()
@click.argument("app")
@_FLAVOR_OPTION
@_ENV_OPTION
@_EXPERIMENT_OPTION
@_RUN_OPTION
@_REPOSITORY_OPTION
@click.pass_obj
def push(
    root: Path,
    app: str,
    flavor: str,
    environment: str | None,
    experiment_id: str,
    run_id: str,
    image_repository: str,
) -> int:
    """Push APP's image, built before by homec build with the same options.

    Registry credentials come from HOMEC_REGISTRY_USERNAME and HOMEC_REGISTRY_PASSWORD, or else from the
    Docker config (docker login).
    """
    image = _image_options(root, app, flavor, environment, experiment_id, run_id, image_repository)
    pushed, digest = build_command.push(image, click.echo)
    click.echo(f"pushed {pushed.reference}" + (f" ({digest})" if digest else ""))
    return EXIT_OK
