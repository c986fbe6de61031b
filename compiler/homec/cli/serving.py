"""Command ``homec serve``: run an app's BentoML or FastAPI service locally."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import click

from homec.cli.app import cli
from homec.commands import serve as serve_command
from homec.config.schema import FLAVORS
from homec.errors import EXIT_OK

# Seconds to wait for the model's input example once the server is ready.
_EXAMPLE_WAIT_SECONDS = 20.0


def _interrupt(number: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@cli.command()
@click.argument("app")
@click.option(
    "--flavor", type=click.Choice(FLAVORS), help="Serving flavor; needed when the app declares both."
)
@click.option(
    "--env",
    "environment",
    metavar="ENV",
    help="Environment whose settings and MLflow store to use.  [default: localhost]",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the server listens on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port to listen on.  [default: the flavor's port in apps.yaml]",
)
@click.option(
    "--ready-timeout",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds to wait until the model is loaded and the server is ready.",
)
@click.pass_obj
def serve(
    root: Path,
    app: str,
    flavor: str | None,
    environment: str | None,
    host: str,
    port: int | None,
    ready_timeout: float,
) -> int:
    """Run APP's service locally against the model apps.yaml pins, until Ctrl-C.

    The port and the pinned model are checked first. The service is rendered as homec render would
    render it; BentoML builds the bento first. Once the model is loaded, the URL and an example request
    are printed. Server output goes to .homec/serve/<env>/<app>-<flavor>.log, and to standard error
    once the server is ready; a failed start shows its last lines.
    """
    options = serve_command.ServeOptions(root, app, flavor, environment, host, port, ready_timeout)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        service = serve_command.start(options, progress=lambda message: click.echo(message, err=True))
    except BaseException:
        signal.signal(signal.SIGTERM, previous)
        raise
    try:
        seconds = serve_command.wait_ready(service, ready_timeout)
        service.echo_output()
        click.echo(f"ready after {seconds:.1f} s: {service.url}")
        click.echo(
            f"API documentation: {service.url}{'/docs' if service.target.flavor == 'fastapi' else '/'}"
        )
        service.example_looked_up.wait(_EXAMPLE_WAIT_SECONDS)
        if service.example_note:
            click.echo(f"note: {service.example_note}", err=True)
        click.echo(f"example request:\n  {service.example_curl()}")
        click.echo("press Ctrl-C to stop")
        exit_code = service.process.wait()
        raise service.failure(
            f"the server exited with code {exit_code}",
            f"read the server output above or in {service.log_path}",
        )
    except KeyboardInterrupt:
        stopped = serve_command.stop(service)
        click.echo("stopped" if stopped is not None else "stopped (the server had to be killed)")
        return EXIT_OK
    finally:
        serve_command.stop(service)
        signal.signal(signal.SIGTERM, previous)
