"""``homec render``, ``homec check`` and ``homec diff``: load, render in memory, then write or compare."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from homec.config.project import Project, load_project
from homec.errors import HomecError, UsageError
from homec.render import RenderResult, render_project
from homec.writer import Plan, Scope, apply, plan_write


@dataclass(frozen=True)
class RenderOptions:
    root: Path
    environments: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    confirm_removal: bool = False
    dry_run: bool = False


@dataclass
class RenderOutcome:
    plan: Plan
    project: Project
    result: RenderResult
    written: bool = False
    diffs: dict[str, str] = field(default_factory=dict)


class RemovalNotConfirmedError(HomecError):
    """Rendering would delete every file of an app; the user must confirm."""


def _scope(project: Project, options: RenderOptions) -> Scope:
    for name in options.environments:
        if name not in project.environments:
            raise UsageError(
                f"unknown environment {name!r}",
                f"known environments: {', '.join(sorted(project.environments))}",
            )
    for name in options.apps:
        if name not in project.apps:
            raise UsageError(f"unknown app {name!r}", f"apps in apps.yaml: {', '.join(sorted(project.apps))}")
    return Scope(frozenset(options.environments), frozenset(options.apps))


def prepare(options: RenderOptions) -> RenderOutcome:
    """Load and render the project and plan the write, without touching the disk."""
    project = load_project(options.root)
    result = render_project(project)
    plan = plan_write(options.root, result, _scope(project, options))
    return RenderOutcome(plan, project, result)


def render(options: RenderOptions) -> RenderOutcome:
    outcome = prepare(options)
    if outcome.plan.removed_apps and not options.confirm_removal and not options.dry_run:
        names = ", ".join(f"{o.app} ({o.environment})" for o in outcome.plan.removed_apps)
        raise RemovalNotConfirmedError(
            f"rendering would delete every file of {names}; nothing was written",
            "review the removed files with homec diff, then run homec render --yes",
        )
    if not options.dry_run:
        apply(options.root, outcome.plan)
        outcome.written = not outcome.plan.is_empty
    return outcome


def diff(options: RenderOptions) -> RenderOutcome:
    """Plan a render and attach a unified diff per changed, added or removed file."""
    outcome = prepare(options)
    root = options.root
    plan = outcome.plan
    for path, data in sorted({**plan.added, **plan.changed}.items()):
        old = (root / path).read_text(encoding="utf-8") if path in plan.changed else ""
        outcome.diffs[path] = _unified(path, old, data.decode("utf-8"), path in plan.added)
    for path in plan.removed:
        outcome.diffs[path] = _unified(
            path, (root / path).read_text(encoding="utf-8"), "", False, removed=True
        )
    return outcome


def _unified(path: str, old: str, new: str, added: bool, removed: bool = False) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile="/dev/null" if added else f"a/{path}",
        tofile="/dev/null" if removed else f"b/{path}",
    )
    return "".join(lines)
