"""Kubernetes objects for one served app flavor, built as data: Deployment, Service, Ingress, kustomization."""

from __future__ import annotations

from typing import Any

from homec.config.schema import SecretRef
from homec.render.target import LIVENESS_PATH, READINESS_PATH, RUN_AS_USER, Target
from homec.render.yamlout import dump_yaml

# Environment of every generated container: MLflow and BentoML must not send usage data anywhere.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "true"}


def labels(target: Target) -> dict[str, str]:
    return {
        "app.kubernetes.io/component": target.flavor,
        "app.kubernetes.io/instance": target.name,
        "app.kubernetes.io/managed-by": "homec",
        "app.kubernetes.io/name": target.app.name,
        "app.kubernetes.io/part-of": "home-mlops",
    }


def selector(target: Target) -> dict[str, str]:
    return {"app.kubernetes.io/component": target.flavor, "app.kubernetes.io/name": target.app.name}


def metadata(target: Target, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or target.name,
        "namespace": target.environment.kubernetes.namespace,
        "labels": labels(target),
    }


def container_env(target: Target) -> list[dict[str, Any]]:
    """Variables of the serving container: homec's own first, then the app's (secrets by reference only)."""
    fixed = {
        "HOMEC_APP": target.app.name,
        "HOMEC_ENV": target.env_name,
        "HOMEC_FLAVOR": target.flavor,
        "PORT": str(target.port),
        "MODEL_URI": target.model.uri,
        **TELEMETRY_OFF,
    }
    tracking_uri = target.environment.mlflow.tracking_uri
    if tracking_uri:
        fixed["MLFLOW_TRACKING_URI"] = tracking_uri
    env: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in fixed.items()]
    for key, value in target.settings.env.items():
        if isinstance(value, SecretRef):
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": value.secret, "key": value.key}}})
        else:
            env.append({"name": key, "value": value})
    return env


def resources(target: Target) -> dict[str, Any]:
    requested = target.settings.resources
    limits = requested.limits
    return {
        "requests": {"cpu": requested.cpu, "memory": requested.memory},
        "limits": {
            "cpu": (limits.cpu if limits and limits.cpu else requested.cpu),
            "memory": (limits.memory if limits and limits.memory else requested.memory),
        },
    }


def probe(path: str, initial_delay: int, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def container(target: Target) -> dict[str, Any]:
    return {
        "name": target.flavor,
        "image": target.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": target.port, "protocol": "TCP"}],
        "env": container_env(target),
        "resources": resources(target),
        # Loading a model can take minutes, so the startup probe delays liveness checks until the server responds.
        "startupProbe": probe(LIVENESS_PATH, 2, 5, 60),
        "readinessProbe": probe(READINESS_PATH, 2, 5, 3),
        "livenessProbe": probe(LIVENESS_PATH, 0, 10, 3),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def deployment(target: Target) -> dict[str, Any]:
    pod_labels = labels(target)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(target),
        "spec": {
            "replicas": target.settings.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(target)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "fsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container(target)],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                },
            },
        },
    }


def service(target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(target),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(target),
            "ports": [{"name": "http", "port": target.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def ingress(target: Target) -> dict[str, Any] | None:
    settings = target.settings.ingress
    if settings is None:
        return None
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": settings.host,
                "http": {
                    "paths": [
                        {
                            "path": settings.path,
                            "pathType": "Prefix",
                            "backend": {"service": {"name": target.name, "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ]
    }
    if settings.class_name:
        spec = {"ingressClassName": settings.class_name, **spec}
    if settings.tls_secret:
        spec["tls"] = [{"hosts": [settings.host], "secretName": settings.tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(target),
        "spec": spec,
    }


def kustomization(target: Target, files: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": target.environment.kubernetes.namespace,
        "resources": files,
    }


def render_target(target: Target) -> dict[str, bytes]:
    """Render ``apps/<app>-<flavor>/``: one file per object and a kustomization that lists them."""
    objects = {"deployment.yaml": deployment(target), "service.yaml": service(target)}
    ingress_object = ingress(target)
    if ingress_object is not None:
        objects["ingress.yaml"] = ingress_object
    folder = f"apps/{target.name}"
    files = {f"{folder}/{name}": dump_yaml([obj]) for name, obj in objects.items()}
    files[f"{folder}/kustomization.yaml"] = dump_yaml([kustomization(target, sorted(objects))])
    return files
