"""Error family of homec.

Every error a user can cause is a ``HomecError``. Its data (file, line, column, key path, hint) is
kept apart from the text so that reporters can format it. The CLI maps the family to exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, order=True)
class Problem:
    """One finding in a user's file, with the position of the offending node (1-based)."""

    file: str
    line: int
    column: int
    key_path: str
    message: str
    hint: str = ""

    def format(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        text = f"{where}: {self.key_path}: {self.message}" if self.key_path else f"{where}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class HomecError(Exception):
    """Base of every error that homec reports to the user instead of a traceback."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def format(self) -> str:
        return f"{self.message}\n    hint: {self.hint}" if self.hint else self.message


class ConfigError(HomecError):
    """All problems found in a run's configuration files, reported together."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"{len(self.problems)} {noun} in the configuration")

    def format(self) -> str:
        # Every problem starts with "error: " (the CLI adds the first), so each is easy to find in a long report.
        lines = [problem.format() for problem in self.problems]
        lines.append(f"{self.message}; nothing was written.")
        return "\nerror: ".join(lines[:-1]) + "\n" + lines[-1]


class StaleRenderError(HomecError):
    """The committed ``rendered/`` tree differs from what the configuration renders to."""


class UsageError(HomecError):
    exit_code = EXIT_USAGE


class ExternalToolError(HomecError):
    """A real tool homec drives (MLflow, bentoml, a container engine, a registry) failed."""
