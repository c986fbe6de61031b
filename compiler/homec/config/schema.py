"""Pydantic models of ``apps.yaml`` and ``environments/<name>.yaml``.

Every model rejects unknown keys and is immutable. ``AppSpec`` is the effective app for one
environment, after the overlay; the file-level models add the parts that only exist in files
(``overrides``, ``include``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from homec.config.quantity import canonical_quantity

# An app's Kubernetes objects are named "<app>-<flavor>", and the longest flavor is 7 characters, so 55
# keeps every derived name inside the 63-character DNS label limit.
MAX_APP_NAME = 55
FLAVORS = ("bentoml", "fastapi")
DEFAULT_PORTS = {"bentoml": 3000, "fastapi": 8000}
# Variables homec sets itself in generated services; an app's env may not replace them.
RESERVED_ENV = frozenset(
    {"MODEL_URI", "MLFLOW_TRACKING_URI", "HOMEC_APP", "HOMEC_ENV", "HOMEC_FLAVOR", "PORT"}
)

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_EXPERIMENT_ID = re.compile(r"^[0-9]+$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*[a-z0-9](@sha256:[0-9a-f]{64})?$")
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CREDENTIAL_IN_URL = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", re.IGNORECASE)


class SchemaValueError(ValueError):
    """A rejected value, with the fix to show next to the message."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def _check_dns_label(value: str, what: str, max_length: int = 63) -> str:
    if not _DNS_LABEL.match(value):
        raise SchemaValueError(
            f"invalid {what} {value!r}",
            "use lower-case letters, digits and '-', starting with a letter and ending with a letter or digit",
        )
    if len(value) > max_length:
        raise SchemaValueError(
            f"{what} {value!r} is {len(value)} characters long",
            f"shorten it to at most {max_length} characters",
        )
    return value


def _app_name(value: str) -> str:
    return _check_dns_label(value, "app name", MAX_APP_NAME)


def _namespace(value: str) -> str:
    return _check_dns_label(value, "namespace")


def _matching(pattern: re.Pattern[str], what: str, example: str) -> Any:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise SchemaValueError(f"invalid {what} {value!r}", f"write it like {example}")
        return value

    return AfterValidator(check)


def _no_credentials(value: str | None) -> str | None:
    if value is not None and _CREDENTIAL_IN_URL.match(value):
        raise SchemaValueError(
            "the URI contains a user name and password, and homec never renders secrets",
            "remove them and give the credential through a Jenkins credential id or a Kubernetes Secret",
        )
    return value


def _relative_path(suffix: str = "") -> Any:
    def check(value: str) -> str:
        if value.startswith("/") or ".." in value.split("/") or "\\" in value or not value.strip():
            raise SchemaValueError(
                f"invalid path {value!r}", "give a path relative to the repository, without '..'"
            )
        if suffix and not value.endswith(suffix):
            raise SchemaValueError(f"invalid path {value!r}", f"name a {suffix} file")
        return value

    return AfterValidator(check)


def _number_to_text(value: Any) -> Any:
    """Accept ``cpu: 2`` or ``cpu: 0.5`` as YAML numbers; quantities are strings everywhere else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return value


def _id_to_text(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _canonical(value: str) -> str:
    return canonical_quantity(value)


_QUANTITY_JSON = {
    "anyOf": [
        {"type": "string", "pattern": r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$"},
        {"type": "number", "minimum": 0},
    ],
    "description": "Kubernetes quantity, such as 500m, 2, 512Mi or 1Gi.",
}
Quantity = Annotated[
    str, BeforeValidator(_number_to_text), AfterValidator(_canonical), WithJsonSchema(_QUANTITY_JSON)
]
AppName = Annotated[str, AfterValidator(_app_name)]
Namespace = Annotated[str, AfterValidator(_namespace)]
EnvVarName = Annotated[str, _matching(_ENV_NAME, "environment variable name", "LOG_LEVEL")]
SafeUri = Annotated[str, AfterValidator(_no_credentials)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Training(Strict):
    entrypoint: Annotated[str, _relative_path(".py")] = Field(
        description="Training script, relative to the repository root."
    )
    experiment: str = Field(min_length=1, max_length=255, description="MLflow experiment name.")


class ModelRef(Strict):
    """The model an app serves: a registered model version or alias, or a run (as the Jenkins job takes)."""

    # A version may also record the run it came from (experiment_id and run_id), as homec promote
    # writes it. The model URI is then still the version's.

    registered_name: (
        Annotated[str, _matching(_MODEL_NAME, "registered model name", "iris-classifier")] | None
    ) = None
    version: Annotated[int, Field(ge=1)] | None = None
    alias: Annotated[str, _matching(_ALIAS, "model alias", "champion")] | None = None
    experiment_id: (
        Annotated[
            str,
            BeforeValidator(_id_to_text),
            _matching(_EXPERIMENT_ID, "experiment id", "'1'"),
            WithJsonSchema(
                {"anyOf": [{"type": "string", "pattern": "^[0-9]+$"}, {"type": "integer", "minimum": 0}]}
            ),
        ]
        | None
    ) = None
    run_id: (
        Annotated[
            str, _matching(_RUN_ID, "run id", "0123456789abcdef0123456789abcdef (32 lower-case hex digits)")
        ]
        | None
    ) = None
    artifact_path: Annotated[str, _relative_path()] = "model"

    @model_validator(mode="after")
    def _one_complete_reference(self) -> ModelRef:
        if self.version is not None and self.alias is not None:
            raise SchemaValueError(
                "version and alias are both set", "keep one: a version pins, an alias follows"
            )
        if (self.version is not None or self.alias is not None) and self.registered_name is None:
            raise SchemaValueError("version and alias need registered_name", "add registered_name: NAME")
        if (self.run_id is None) != (self.experiment_id is None):
            raise SchemaValueError(
                "run_id and experiment_id go together", "give both; homec promote --run-id writes both"
            )
        if self.alias is not None and self.run_id is not None:
            # An alias can later point at another version, and the recorded run would then be wrong.
            raise SchemaValueError(
                "alias and run_id are both set",
                "pin version: N to record its run, or remove run_id and experiment_id",
            )
        if (
            self.registered_name is not None
            and self.version is None
            and self.alias is None
            and self.run_id is None
        ):
            raise SchemaValueError(
                "registered_name alone names no model version", "add version: N or alias: NAME"
            )
        if self.registered_name is None and self.run_id is None:
            raise SchemaValueError(
                "no model named", "give registered_name with version or alias, or run_id with experiment_id"
            )
        return self

    @property
    def uri(self) -> str:
        """The MLflow model URI that loads this model."""
        if self.registered_name is not None and self.version is not None:
            return f"models:/{self.registered_name}/{self.version}"
        if self.registered_name is not None and self.alias is not None:
            return f"models:/{self.registered_name}@{self.alias}"
        return f"runs:/{self.run_id}/{self.artifact_path}"


class ResourceList(Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(Strict):
    """Requests; ``limits`` defaults to the requests so a pod's memory is guaranteed."""

    cpu: Quantity = "250m"
    memory: Quantity = "512Mi"
    limits: ResourceList | None = None


class SecretRef(Strict):
    """A value taken from a Kubernetes Secret at run time; homec renders only the reference."""

    secret: Namespace = Field(description="Name of the Kubernetes Secret.")
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]


class Ingress(Strict):
    host: Annotated[str, _matching(_HOSTNAME, "host name", "iris.home.arpa")]
    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9._~/-]*$")] = "/"
    class_name: str | None = None
    tls_secret: Namespace | None = None


class Flavor(Strict):
    replicas: Annotated[int, Field(ge=0, le=100)] = 1
    port: (
        Annotated[
            int, Field(ge=1024, le=65535, description="Container port; 1024 or above so it runs non-root.")
        ]
        | None
    ) = None
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    resources: Resources = Resources()
    env: dict[EnvVarName, str | SecretRef] = Field(default_factory=dict)
    ingress: Ingress | None = None

    @model_validator(mode="after")
    def _env_not_reserved(self) -> Flavor:
        taken = sorted(RESERVED_ENV.intersection(self.env))
        if taken:
            raise SchemaValueError(
                f"env may not set {', '.join(taken)}", "remove it; homec sets it in every generated service"
            )
        return self


class Batching(Strict):
    enabled: bool = True
    max_batch_size: Annotated[int, Field(ge=1, le=10000)] = 100
    max_latency_ms: Annotated[int, Field(ge=1, le=60000)] = 500


class BentoMLServing(Flavor):
    batching: Batching = Batching()


class FastAPIServing(Flavor):
    pass


FLAVOR_MODELS: dict[str, type[Flavor]] = {"bentoml": BentoMLServing, "fastapi": FastAPIServing}


class Serving(Strict):
    bentoml: BentoMLServing | None = None
    fastapi: FastAPIServing | None = None

    def flavors(self) -> dict[str, Flavor]:
        found: dict[str, Flavor] = {}
        if self.bentoml is not None:
            found["bentoml"] = self.bentoml
        if self.fastapi is not None:
            found["fastapi"] = self.fastapi
        return found


class AppSpec(Strict):
    """One app as it applies to one environment, after defaults and overrides."""

    name: AppName
    description: str = ""
    training: Training | None = None
    model: ModelRef | None = None
    serving: Serving = Serving()

    @model_validator(mode="after")
    def _serving_needs_model(self) -> AppSpec:
        if self.serving.flavors() and self.model is None:
            raise SchemaValueError(
                "serving needs a model", "add model:, or run homec train then homec promote"
            )
        return self


class AppEntry(AppSpec):
    """An app as written in ``apps.yaml``: the spec plus its per-environment overrides."""

    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-environment changes, merged over the app: mappings merge, lists and scalars replace, null removes.",
    )


class AppsFile(Strict):
    include: list[Annotated[str, _relative_path(".yaml")]] = Field(
        default_factory=list, description="Glob patterns of further app files, such as apps/*.yaml."
    )
    apps: list[AppEntry] = Field(default_factory=list)


class AppsFileShape(Strict):
    """The top level of an apps file; each entry is then validated on its own so all errors surface."""

    include: list[Annotated[str, _relative_path(".yaml")]] = Field(default_factory=list)
    apps: list[dict[str, Any]] = Field(default_factory=list)


class MLflowSettings(Strict):
    tracking_uri: Annotated[SafeUri | None, Field(description="Empty means the embedded SQLite store.")] = (
        None
    )
    artifact_root: SafeUri | None = None
    backend_store_uri: SafeUri | None = None


class Node(Strict):
    name: str | None = None
    cpu: Quantity
    memory: Quantity


class KubernetesSettings(Strict):
    namespace: Namespace = "home-mlops"
    api_server: SafeUri | None = None
    context: str | None = None
    nodes: list[Node] = Field(default_factory=list)


class ArgoCDSettings(Strict):
    repo_url: SafeUri
    target_revision: str = "HEAD"
    project: Namespace = "default"
    namespace: Namespace = "argocd"
    destination_server: SafeUri = "https://kubernetes.default.svc"


class JenkinsSettings(Strict):
    registry_credentials_id: str = Field(default="registry", min_length=1)
    scm_credentials_id: str | None = Field(
        default=None, description="Credential id the jobs use to check out a private Git repository."
    )
    storage_credentials_id: str | None = None
    mlflow_credentials_id: str | None = None
    agent_label: str | None = None
    homec_requirement: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "pip requirement that the Install homec stage installs, such as "
            "'homec[ml] @ git+https://git.example.com/homec.git@v0.1.0'. Unset: homec's own checkout, or "
            "homec[ml]==<rendering version> from the package index, plus for BentoML jobs the extra of a gs:// or "
            "s3:// artifact root."
        ),
    )


class ImageRepositories(Strict):
    bentoml: Annotated[str, _matching(_REPOSITORY, "image repository", "home-mlops-bentoml")] = (
        "homec-bentoml"
    )
    fastapi: Annotated[str, _matching(_REPOSITORY, "image repository", "home-mlops-fastapi")] = (
        "homec-fastapi"
    )


class ImageSettings(Strict):
    base: Annotated[str, _matching(_IMAGE, "base image", "python:3.11-slim-bookworm")] = (
        "python:3.11-slim-bookworm"
    )
    repositories: ImageRepositories = ImageRepositories()


class EnvironmentDefaults(Strict):
    """Settings applied under every app of the environment, for the flavors each app declares."""

    serving: dict[Literal["bentoml", "fastapi"], dict[str, Any]] = Field(default_factory=dict)


class Environment(Strict):
    kind: Literal["localhost", "cluster"]
    mlflow: MLflowSettings = MLflowSettings()
    registry: Annotated[str, _matching(_REGISTRY, "image registry", "docker.io/example or 127.0.0.1:5000")]
    images: ImageSettings = ImageSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    argocd: ArgoCDSettings
    jenkins: JenkinsSettings = JenkinsSettings()
    defaults: EnvironmentDefaults = EnvironmentDefaults()
