"""Dockerfiles of the generated services, rendered into each target's build folder.

Both flavors build in stages: a ``dependencies`` stage installs ``requirements.txt`` into a virtual
environment, so that a code change reuses that layer, and the final stage copies the environment and the
code and runs as a non-root user. The BentoML image has one more stage, ``bento``. It imports the model
that ``homec build`` fetched into ``model/`` and runs ``bentoml build``. The final stage then serves the
built bento, whose own ``models/`` folder is its model store.

pip installs from ``wheels/`` without the package index when ``homec build --wheelhouse`` put wheels
there, and from the index otherwise. No secret is passed to a build: the model is fetched on the host.
"""

from __future__ import annotations

import shlex

from homec import __version__
from homec.render import serving
from homec.render.kubernetes import TELEMETRY_OFF
from homec.render.target import READINESS_PATH, RUN_AS_USER, Target
from homec.templating import GENERATED, render_template

DOCKERFILE = "Dockerfile"
DOCKERIGNORE = ".dockerignore"
WHEELS_README = "wheels/README.txt"
# Packages that only the bento stage needs. `bentoml build` of bentoml 1.4.40 installs uv from the
# package index when uv is missing, even with lock_packages false. Listing uv here lets the build run
# offline from a wheelhouse.
BENTO_BUILD_REQUIREMENTS_FILE = "bento-build-requirements.txt"
BENTO_BUILD_REQUIREMENTS = ("uv==0.13.9",)
# Folder of the fetched MLflow model in a BentoML build context; homec build fills it.
MODEL_DIR = "model"
# Folder of the built bento in the final BentoML image.
BENTO_PATH = "/app/bento"
# Files of the build folder that only the build uses, never the running service.
_BUILD_ONLY = frozenset({"requirements.txt", "bentofile.yaml", "import_model.py"})


def render_target(target: Target) -> dict[str, bytes]:
    """Render the Dockerfile, .dockerignore and the wheels/ placeholder of ``target``'s build folder."""
    root = target.project.root
    template = f"docker/{target.flavor}.Dockerfile.j2"
    files = {
        DOCKERFILE: render_template(root, template, **_context(target)),
        DOCKERIGNORE: render_template(root, "docker/dockerignore.j2"),
        WHEELS_README: render_template(root, "docker/wheels-readme.txt.j2"),
    }
    if target.flavor == "bentoml":
        lines = [
            f"# {GENERATED}; packages the bento stage of the Dockerfile installs",
            *BENTO_BUILD_REQUIREMENTS,
        ]
        files[BENTO_BUILD_REQUIREMENTS_FILE] = ("\n".join(lines) + "\n").encode("utf-8")
    return {f"{target.build_dir}/{name}": data for name, data in files.items()}


def _context(target: Target) -> dict[str, object]:
    code = code_entries(target)
    return {
        "base_image": target.environment.images.base,
        "labels": image_labels(target),
        "environment": runtime_environment(target),
        "telemetry": TELEMETRY_OFF,
        "run_as_user": RUN_AS_USER,
        "port": target.port,
        "healthcheck": healthcheck_command(target),
        "command": image_command(target),
        "code": [entry for entry in code if entry.rstrip("/") not in _BUILD_ONLY],
        "bento_sources": code,
        "model_dir": MODEL_DIR,
        "bento_build": bento_build_script(target) if target.flavor == "bentoml" else "",
        "bento_path": BENTO_PATH,
        "bento_build_requirements": BENTO_BUILD_REQUIREMENTS_FILE,
    }


def code_entries(target: Target) -> list[str]:
    """Return the top-level files and folders (with a trailing ``/``) of the serving code, sorted.

    A folder is copied as a whole, so that user code in subfolders keeps its layout.
    """
    prefix = f"{target.build_dir}/"
    entries: set[str] = set()
    for path in serving.render_target(target):
        name = path.removeprefix(prefix)
        first, separator, _ = name.partition("/")
        entries.add(f"{first}/" if separator else first)
    return sorted(entries)


def image_labels(target: Target) -> dict[str, str]:
    """Return the image's labels: OCI annotations and what homec built it from."""
    return {
        "org.opencontainers.image.title": target.name,
        "org.opencontainers.image.description": target.app.description or f"homec app {target.app.name}",
        "io.homec.app": target.app.name,
        "io.homec.flavor": target.flavor,
        "io.homec.environment": target.env_name,
        "io.homec.model-uri": target.model.uri,
        "io.homec.version": __version__,
    }


def runtime_environment(target: Target) -> dict[str, str]:
    """Return the environment of the final image besides PATH; the Deployment sets the same service variables."""
    environment = {
        # The root file system is read-only in Kubernetes and /tmp is a writable volume, so caches go there.
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        **TELEMETRY_OFF,
        "HOMEC_APP": target.app.name,
        "HOMEC_ENV": target.env_name,
        "HOMEC_FLAVOR": target.flavor,
        "PORT": str(target.port),
    }
    if target.flavor == "bentoml":
        environment["BENTOML_HOME"] = "/tmp/bentoml"
    return environment


def healthcheck_command(target: Target) -> list[str]:
    """Return the HEALTHCHECK command: a GET of the readiness path on ``PORT``, with Python's standard library."""
    script = (
        "import os, urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '{target.port}') + "
        f"'{READINESS_PATH}', timeout=4)"
    )
    return ["python3", "-c", script]


def image_command(target: Target) -> list[str]:
    """Return the image's CMD: the serving start command, run in the image's working directory.

    The BentoML image serves the built bento by its path instead of importing ``service:<Class>``, so
    that the bento's own models/ folder is the model store and BENTOML_HOME can be a writable /tmp.
    """
    command = serving.start_command(target)
    if target.flavor != "bentoml":
        return command
    service = f"service:{serving.bentoml_service_class(target)}"
    if service not in command:
        raise RuntimeError(f"the BentoML start command {command} does not name {service}")
    return [BENTO_PATH if argument == service else argument for argument in command]


def bento_build_script(target: Target) -> str:
    """Return the shell script of the ``bento`` stage: import the fetched model, build the bento, export it.

    ``serving.build_commands`` imports the model; MODEL_URI points them at the fetched ``model/``
    folder, so the build needs neither MLflow nor any credential.
    """
    steps = [shlex.join(command) for command in serving.build_commands(target)]
    steps.append("bentoml build --bentofile bentofile.yaml .")
    # A bento in the store only refers to its models; an export copies them into its models/ folder.
    steps.append(f"bentoml export {shlex.quote(target.name + ':latest')} /build/bento.tar")
    steps.append("mkdir /bento")
    steps.append("tar -xf /build/bento.tar -C /bento")
    # BentoML writes some files readable by their owner only; the service runs as another user.
    steps.append("chmod -R a+rX /bento")
    return " \\\n && ".join(steps)
