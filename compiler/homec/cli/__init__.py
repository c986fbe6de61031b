"""Command-line interface. Each command turns options into an options object, calls one core function
and reports; no YAML, Jinja or file-system work happens here.

Exit codes: 0 success; 1 invalid configuration, stale rendered/ or a failed step; 2 usage error;
3 internal error (a bug; the traceback is saved to a log); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import click

from homec.cli.app import cli
from homec.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, HomecError

# Importing these modules registers their commands on ``cli``.
from homec.cli import core as _core  # noqa: F401  isort: skip
from homec.cli import training as _training  # noqa: F401  isort: skip
from homec.cli import serving as _serving  # noqa: F401  isort: skip
from homec.cli import images as _images  # noqa: F401  isort: skip


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with homec's documented exit codes."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    try:
        code = cli.main(args=argv, prog_name="homec", standalone_mode=False)
    except HomecError as exc:
        click.echo(f"error: {exc.format()}", err=True)
        code = exc.exit_code
    except click.exceptions.Abort:
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code if exc.exit_code else EXIT_USAGE
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except Exception:
        code = _report_bug()
    sys.exit(code if isinstance(code, int) else 0)


def _report_bug() -> int:
    log = Path(tempfile.gettempdir()) / "homec-crash.log"
    log.write_text(traceback.format_exc(), encoding="utf-8")
    click.echo(
        f"error: homec failed with an internal error; the traceback is in {log}\n"
        "    hint: this is a bug in homec; please report it with that file",
        err=True,
    )
    return EXIT_INTERNAL
