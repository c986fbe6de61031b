"""Render: a pure function from a loaded project to ``{path: bytes}``.

Paths are relative to the repository root and start with ``rendered/<env>/``. Nothing here reads or
writes the file system beyond templates; the writer puts the result on disk and ``check`` compares it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from homec.config.project import Project
from homec.render.registry import ENVIRONMENT_OUTPUT_KINDS, OUTPUT_KINDS, Files
from homec.render.tags import image_tag
from homec.render.target import EnvironmentTarget, Target

RENDERED_DIR = "rendered"


@dataclass(frozen=True)
class Owner:
    """Environment and app that a rendered file belongs to; ``app`` is empty for environment-wide files."""

    environment: str
    app: str = ""


@dataclass
class RenderResult:
    files: dict[str, bytes] = field(default_factory=dict)
    owners: dict[str, Owner] = field(default_factory=dict)
    image_tags: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def add(self, env_name: str, app: str, files: Files) -> None:
        for relative, data in files.items():
            path = f"{RENDERED_DIR}/{env_name}/{relative}"
            if path in self.files:
                raise RuntimeError(f"two output kinds render {path}")
            self.files[path] = data
            self.owners[path] = Owner(env_name, app)


def targets_of(project: Project, env_name: str) -> list[Target]:
    environment = project.environments[env_name]
    return [
        Target(project, env_name, environment, spec, flavor)
        for (env, _), spec in sorted(project.effective.items())
        if env == env_name
        for flavor in spec.serving.flavors()
    ]


def with_image_tag(target: Target) -> tuple[Target, Files]:
    """Render the target's build context and return the target with its content-addressed tag set."""
    context: Files = {}
    for kind in OUTPUT_KINDS:
        if kind.stage == "context":
            context.update(kind.render(target))
    tag = image_tag(target.app.name, target.flavor, target.model.uri, target.environment.images.base, context)
    return dataclasses.replace(target, image_tag=tag), context


def render_project(project: Project) -> RenderResult:
    result = RenderResult()
    for env_name in sorted(project.environments):
        tagged: list[Target] = []
        for target in targets_of(project, env_name):
            target, context = with_image_tag(target)
            tagged.append(target)
            result.image_tags[(env_name, target.app.name, target.flavor)] = target.image_tag
            result.add(env_name, target.app.name, context)
            for kind in OUTPUT_KINDS:
                if kind.stage == "deploy":
                    result.add(env_name, target.app.name, kind.render(target))
        whole = EnvironmentTarget(project, env_name, project.environments[env_name], tuple(tagged))
        for environment_kind in ENVIRONMENT_OUTPUT_KINDS:
            result.add(env_name, "", environment_kind.render(whole))
    return result
