"""Inputs of the output kinds: one app flavor in one environment, or one whole environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from homec.config.project import Project
from homec.config.schema import DEFAULT_PORTS, AppSpec, Environment, Flavor, ModelRef

# Probe paths that every generated service serves; readiness passes only once the model is loaded.
READINESS_PATH = "/readyz"
LIVENESS_PATH = "/livez"
METRICS_PATH = "/metrics"
# The non-root user every generated image runs as.
RUN_AS_USER = 10001


@dataclass(frozen=True)
class Target:
    """One serving flavor of one app in one environment. ``image_tag`` is set once the build context is known."""

    project: Project
    env_name: str
    environment: Environment
    app: AppSpec
    flavor: str
    image_tag: str = ""

    @property
    def name(self) -> str:
        return f"{self.app.name}-{self.flavor}"

    @property
    def settings(self) -> Flavor:
        return self.app.serving.flavors()[self.flavor]

    @property
    def model(self) -> ModelRef:
        assert self.app.model is not None, "the schema requires a model for every served app"
        return self.app.model

    @property
    def port(self) -> int:
        return self.settings.port or DEFAULT_PORTS[self.flavor]

    @property
    def image_repository(self) -> str:
        repository = getattr(self.environment.images.repositories, self.flavor)
        return f"{self.environment.registry}/{repository}"

    @property
    def image(self) -> str:
        return f"{self.image_repository}:{self.image_tag}"

    @property
    def build_dir(self) -> str:
        """Folder of this target's image build context, relative to ``rendered/<env>/``."""
        return f"build/{self.name}"

    @property
    def user_serving_dir(self) -> str:
        """Repository folder where a user's own service code for this flavor lives."""
        folder = {"bentoml": "bento-ml", "fastapi": "fast-api"}[self.flavor]
        return f"serving/{self.app.name}/{folder}"


@dataclass(frozen=True)
class EnvironmentTarget:
    """A whole environment, for outputs that cover all its apps (job lists, root Applications)."""

    project: Project
    env_name: str
    environment: Environment
    targets: tuple[Target, ...] = field(default_factory=tuple)
