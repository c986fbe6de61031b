"""Argo CD Applications, built as data: one per app flavor, and one root Application per environment."""

from __future__ import annotations

from typing import Any

from homec.render.target import EnvironmentTarget, Target
from homec.render.yamlout import dump_yaml

# Deleting an Application also deletes the objects it synced, so removing an app cleans the cluster.
_FINALIZER = "resources-finalizer.argocd.argoproj.io"


def _sync_policy() -> dict[str, Any]:
    return {
        "automated": {"prune": True, "selfHeal": True},
        "syncOptions": ["CreateNamespace=true"],
    }


def application(target: Target) -> dict[str, Any]:
    settings = target.environment.argocd
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": target.name,
            "namespace": settings.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "homec",
                "app.kubernetes.io/name": target.app.name,
                "app.kubernetes.io/component": target.flavor,
            },
            "finalizers": [_FINALIZER],
        },
        "spec": {
            "project": settings.project,
            "source": {
                "repoURL": settings.repo_url,
                "targetRevision": settings.target_revision,
                "path": f"rendered/{target.env_name}/apps/{target.name}",
            },
            "destination": {
                "server": settings.destination_server,
                "namespace": target.environment.kubernetes.namespace,
            },
            "syncPolicy": _sync_policy(),
        },
    }


def render_target(target: Target) -> dict[str, bytes]:
    return {f"argocd/{target.name}.yaml": dump_yaml([application(target)])}


def render_root(environment: EnvironmentTarget) -> dict[str, bytes]:
    """Render ``root-application.yaml``, the one object to apply by hand; it syncs ``argocd/`` (app of apps)."""
    settings = environment.environment.argocd
    root = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": f"homec-{environment.env_name}",
            "namespace": settings.namespace,
            "finalizers": [_FINALIZER],
        },
        "spec": {
            "project": settings.project,
            "source": {
                "repoURL": settings.repo_url,
                "targetRevision": settings.target_revision,
                "path": f"rendered/{environment.env_name}/argocd",
            },
            "destination": {"server": settings.destination_server, "namespace": settings.namespace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }
    return {"root-application.yaml": dump_yaml([root])}
