"""The click group every command module registers on."""

from __future__ import annotations

from pathlib import Path

import click

from homec import __version__

EXIT_CODES_HELP = """
\b
Exit codes:
  0    success
  1    invalid configuration, stale rendered/, or a failed step
  2    usage error
  3    internal error (a bug; the traceback is saved to a log)
  130  interrupted (Ctrl-C)
"""


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="homec", message="%(prog)s %(version)s")
@click.option(
    "-C",
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Repository root containing apps.yaml and environments/; goes before the command. "
    "Default: the nearest folder upward from the current one that has an apps.yaml.",
)
@click.pass_context
def cli(context: click.Context, repo: Path | None) -> None:
    """homec: compile apps.yaml into Kubernetes, Argo CD, Jenkins, Docker and serving files."""
    context.obj = repo.resolve() if repo is not None else find_repository(Path.cwd())


def find_repository(start: Path) -> Path:
    """Return the nearest folder from ``start`` upward that has an apps.yaml, as git finds its top level."""
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / "apps.yaml").is_file():
            return folder
    return here
