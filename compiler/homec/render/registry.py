"""The registry of output kinds. Adding an output kind is one module plus one line in ``OUTPUT_KINDS``.

Each kind renders files relative to ``rendered/<env>/``. Kinds run in three stages:

- ``context`` kinds write a target's image build context; the image tag is a digest of those files,
- ``deploy`` kinds then see ``Target.image_tag`` (Kubernetes manifests, Argo CD Applications, Jenkinsfiles),
- ``environment`` kinds render once per environment from all its targets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from homec.render import argocd, docker, jenkins, kubernetes, serving
from homec.render.target import EnvironmentTarget, Target

Files = dict[str, bytes]


@dataclass(frozen=True)
class OutputKind:
    name: str
    stage: Literal["context", "deploy"]
    render: Callable[[Target], Files]


@dataclass(frozen=True)
class EnvironmentOutputKind:
    name: str
    render: Callable[[EnvironmentTarget], Files]


OUTPUT_KINDS: tuple[OutputKind, ...] = (
    OutputKind("serving", "context", serving.render_target),
    OutputKind("docker", "context", docker.render_target),
    OutputKind("kubernetes", "deploy", kubernetes.render_target),
    OutputKind("argocd", "deploy", argocd.render_target),
    OutputKind("jenkins", "deploy", jenkins.render_target),
)

ENVIRONMENT_OUTPUT_KINDS: tuple[EnvironmentOutputKind, ...] = (
    EnvironmentOutputKind("argocd-root", argocd.render_root),
    EnvironmentOutputKind("jenkins-jobs", jenkins.render_jobs),
)
