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
    default=Path("."),
    show_default=True,
    help="Repository root holding apps.yaml and environments/.",
)
@click.pass_context
def cli(context: click.Context, repo: Path) -> None:
    """homec: compile apps.yaml into Kubernetes, Argo CD, Jenkins, Docker and serving files."""
    context.obj = repo.resolve()
