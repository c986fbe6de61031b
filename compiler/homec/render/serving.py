"""Serving code of each app flavor: the files of its image build context, ``build/<app>-<flavor>/``.

FastAPI, in ``build/<app>-fastapi/``:

- ``app.py``: the generated service, which loads the model by URI at start-up,
- ``homec_serving.py``: the runtime of generated services,
- ``start.py``: starts uvicorn with the app's worker count, on ``PORT`` and ``HOST`` from the environment,
- ``requirements.txt``: the serving stack, the model's libraries and the user's own requirements.

BentoML, in ``build/<app>-bentoml/``:

- ``service.py`` and ``homec_serving.py``: the generated service,
- ``import_model.py``: imports the pinned MLflow model into the BentoML model store as ``<app>-model``,
- ``bentofile.yaml``: the bento's build options, with ``lock_packages: false`` so that ``bentoml build``
  never resolves packages against an index,
- ``requirements.txt``.

When the user wrote ``serving/<app>/fast-api/`` or ``serving/<app>/bento-ml/``, those files are copied
into the build folder at the same relative paths in place of the generated service. homec then renders only
the packaging: ``start.py`` or ``import_model.py`` and ``bentofile.yaml``, and ``requirements.txt`` with the
user's ``requirements.txt`` appended. A user FastAPI folder must have ``app.py`` defining ``app``; a user
BentoML folder must have ``service.py`` with a ``@bentoml.service`` class.

The server starts inside the build folder with ``start_command(target)``. The BentoML image must first run
``build_commands(target)`` (the model import, with ``MODEL_URI``, ``MLFLOW_TRACKING_URI`` and
``BENTOML_HOME`` set) so that the model is in the image's model store.
"""

from __future__ import annotations

import ast
import json

from homec.errors import ConfigError, Problem
from homec.render.service_types import ServiceTypes, read_service_types
from homec.render.target import LIVENESS_PATH, METRICS_PATH, READINESS_PATH, Target
from homec.render.yamlout import dump_yaml
from homec.templating import GENERATED, render_template

# Packages of the serving stack. mlflow and bentoml are pinned to the versions homec is tested with
# (pyproject.toml's ml extra); pydantic 2.11 is the first with serialize_by_alias.
SERVING_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "fastapi": (
        "mlflow==3.17.2",
        "fastapi>=0.110",
        "uvicorn>=0.29",
        "prometheus-client>=0.20",
        "pydantic>=2.11",
        "pandas>=2",
        "numpy>=1.24",
    ),
    "bentoml": ("bentoml==1.4.40", "mlflow==3.17.2", "pydantic>=2.11", "pandas>=2", "numpy>=1.24"),
}
# Libraries the model needs to load, for apps without serving/<app>/requirements.txt. MLflow 3 saves
# scikit-learn models in the skops format.
DEFAULT_MODEL_REQUIREMENTS = ("scikit-learn>=1.4", "skops>=0.10")
MODEL_REQUIREMENTS_FILE = "requirements.txt"

# Largest number of rows in one request; a guard against a request exhausting the server's memory.
MAX_ROWS = 10_000
# Environment of the bento itself; the generated images get the same switches from their Deployment.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "true"}

# Files homec renders next to user code, which a user folder therefore may not contain. The Dockerfile
# and .dockerignore come from the image output kind, which renders into the same folder.
_RENDERED_NEXT_TO_USER_CODE = {
    "fastapi": frozenset({"start.py", "Dockerfile", ".dockerignore"}),
    "bentoml": frozenset({"bentofile.yaml", "import_model.py", "Dockerfile", ".dockerignore"}),
}
_ENTRY_FILE = {"fastapi": "app.py", "bentoml": "service.py"}


def render_target(target: Target) -> dict[str, bytes]:
    """Render the serving files of ``target`` into its build folder."""
    files = _render_fastapi(target) if target.flavor == "fastapi" else _render_bentoml(target)
    return {f"{target.build_dir}/{name}": data for name, data in sorted(files.items())}


def start_command(target: Target) -> list[str]:
    """Return the command that starts the server, run inside the build folder (the image's CMD)."""
    if target.flavor == "fastapi":
        return ["python3", "start.py"]
    return [
        "bentoml",
        "serve",
        f"service:{bentoml_service_class(target)}",
        "--host",
        "0.0.0.0",
        "--port",
        str(target.port),
    ]


def build_commands(target: Target) -> list[list[str]]:
    """Return the commands an image build runs in the build folder after installing requirements.txt.

    The BentoML image imports the pinned model into its model store; the FastAPI image needs nothing,
    because it loads the model at start-up.
    """
    if target.flavor == "bentoml":
        return [["python3", "import_model.py"]]
    return []


def model_name(target: Target) -> str:
    """Return the name of the app's model in the BentoML model store."""
    return f"{target.app.name}-model"


def model_tag(target: Target) -> str:
    return f"{model_name(target)}:latest"


def service_types(target: Target) -> ServiceTypes:
    return read_service_types(target.project.inputs, target.app.name)


def user_files(target: Target) -> dict[str, bytes]:
    """Return the user's own service files for this flavor, keyed by path inside the user folder."""
    folder = target.user_serving_dir
    return {path[len(folder) + 1 :]: data for path, data in target.project.inputs_under(folder).items()}


def bentoml_service_class(target: Target) -> str:
    """Return the name of the BentoML service class: the generated one, or the user's entry service."""
    written = user_files(target)
    if not written:
        return generated_class_name(target.app.name)
    return _user_service_class(target, written)


def generated_class_name(app: str) -> str:
    """Return the class name of a generated BentoML service, such as ``IrisService`` for ``iris``."""
    return "".join(part.capitalize() for part in app.split("-")) + "Service"


def requirements(target: Target, written: dict[str, bytes]) -> bytes:
    """Return requirements.txt: the serving stack, then the model's libraries, then the user's lines."""
    model_file = target.project.inputs.get(f"serving/{target.app.name}/{MODEL_REQUIREMENTS_FILE}")
    sections = [
        ("serving stack", list(SERVING_REQUIREMENTS[target.flavor])),
        (
            f"model libraries (serving/{target.app.name}/{MODEL_REQUIREMENTS_FILE})"
            if model_file is not None
            else f"model libraries (default; list yours in serving/{target.app.name}/{MODEL_REQUIREMENTS_FILE})",
            _requirement_lines(model_file) if model_file is not None else list(DEFAULT_MODEL_REQUIREMENTS),
        ),
    ]
    if MODEL_REQUIREMENTS_FILE in written:
        sections.append(
            (f"{target.user_serving_dir}/requirements.txt", _requirement_lines(written["requirements.txt"]))
        )
    lines = [f"# {GENERATED}; change apps.yaml or serving/ and run homec render"]
    for title, entries in sections:
        lines.append(f"# {title}")
        lines.extend(entries)
    return ("\n".join(lines) + "\n").encode("utf-8")


def _requirement_lines(data: bytes) -> list[str]:
    lines = [line.strip() for line in data.decode("utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


# Names that every generated service imports from the serving runtime, besides the field types it uses.
_RUNTIME_IMPORTS = {
    "fastapi": (
        "InvalidInput",
        "ModelHolder",
        "ModelNotReady",
        "SharedReadiness",
        "configure_logging",
        "finite",
        "predict",
        "predictions",
    ),
    "bentoml": (
        "InvalidInput",
        "ModelHolder",
        "ModelNotReady",
        "SharedReadiness",
        "configure_logging",
        "predict",
        "predictions",
    ),
}


def _runtime_imports(flavor: str, types: ServiceTypes) -> list[str]:
    """Return the names to import from the runtime, classes before functions as isort orders them."""
    names = set(types.runtime_names()) | set(_RUNTIME_IMPORTS[flavor])
    return sorted(names, key=lambda name: (name[0].islower(), name))


def _template_context(target: Target, types: ServiceTypes) -> dict[str, object]:
    return {
        "runtime_imports": _runtime_imports(target.flavor, types),
        "app": target.app.name,
        "description": target.app.description or f"Serves the model of homec app {target.app.name}.",
        "model_uri": target.model.uri,
        "types": types,
        "max_rows": MAX_ROWS,
        "example_request": json.dumps(types.example_request()),
        "readiness_path": READINESS_PATH,
        "liveness_path": LIVENESS_PATH,
        "metrics_path": METRICS_PATH,
        "workers": target.settings.workers,
        "port": target.port,
    }


def _render_fastapi(target: Target) -> dict[str, bytes]:
    root = target.project.root
    written = user_files(target)
    _check_user_folder(target, written)
    files: dict[str, bytes] = {}
    if written:
        files.update({path: data for path, data in written.items() if path != "requirements.txt"})
    else:
        context = _template_context(target, service_types(target))
        files["app.py"] = render_template(root, "fastapi/app.py.j2", **context)
        files["homec_serving.py"] = render_template(root, "serving/homec_serving.py.j2")
    files["start.py"] = render_template(
        root, "fastapi/start.py.j2", port=target.port, workers=target.settings.workers, app_import="app:app"
    )
    files["requirements.txt"] = requirements(target, written)
    return files


def _render_bentoml(target: Target) -> dict[str, bytes]:
    root = target.project.root
    written = user_files(target)
    _check_user_folder(target, written)
    files: dict[str, bytes] = {}
    if written:
        files.update({path: data for path, data in written.items() if path != "requirements.txt"})
        class_name = _user_service_class(target, written)
    else:
        types = service_types(target)
        class_name = generated_class_name(target.app.name)
        settings = target.app.serving.bentoml
        assert settings is not None, "a bentoml target has bentoml settings"
        context = _template_context(target, types)
        context.update(
            class_name=class_name,
            service_name=target.name,
            model_tag=model_tag(target),
            batching=settings.batching.enabled and types.batchable,
            max_batch_size=settings.batching.max_batch_size,
            max_latency_ms=settings.batching.max_latency_ms,
        )
        files["service.py"] = render_template(root, "bentoml/service.py.j2", **context)
        files["homec_serving.py"] = render_template(root, "serving/homec_serving.py.j2")
    code = sorted(files)
    files["import_model.py"] = render_template(
        root,
        "bentoml/import_model.py.j2",
        app=target.app.name,
        model_name=model_name(target),
        model_uri=target.model.uri,
    )
    files["requirements.txt"] = requirements(target, written)
    files["bentofile.yaml"] = dump_yaml([bentofile(target, class_name, code)])
    return files


def bentofile(target: Target, class_name: str, code: list[str]) -> dict[str, object]:
    """Build the bentofile as data: the service, its code files, requirements and environment."""
    return {
        "service": f"service:{class_name}",
        "name": target.name,
        "description": target.app.description or f"homec app {target.app.name}",
        "labels": {"app": target.app.name, "flavor": target.flavor, "managed-by": "homec"},
        "include": code,
        "python": {"requirements_txt": "requirements.txt", "lock_packages": False},
        "envs": [{"name": name, "value": value} for name, value in TELEMETRY_OFF.items()],
    }


def _check_user_folder(target: Target, written: dict[str, bytes]) -> None:
    if not written:
        return
    folder = target.user_serving_dir
    problems = [
        Problem(
            f"{folder}/{name}",
            1,
            1,
            "",
            f"{name} in {folder}/ collides with the file homec renders into the build folder",
            "rename or remove it; homec writes this file itself",
        )
        for name in sorted(_RENDERED_NEXT_TO_USER_CODE[target.flavor].intersection(written))
    ]
    entry = _ENTRY_FILE[target.flavor]
    if entry not in written:
        what = "app.py defining the FastAPI object app" if target.flavor == "fastapi" else "service.py"
        problems.append(
            Problem(
                f"{folder}/",
                1,
                1,
                "",
                f"{folder}/ has no {entry}",
                f"add {what}, or remove the folder to use the generated service",
            )
        )
    if problems:
        raise ConfigError(problems)


def _user_service_class(target: Target, written: dict[str, bytes]) -> str:
    """Find the ``@bentoml.service`` class in the user's service.py; with several, the last is the entry.

    A service that depends on others must come after them in the file, so the last one is the one the
    others serve.
    """
    path = f"{target.user_serving_dir}/service.py"
    try:
        tree = ast.parse(written["service.py"], filename=path)
    except SyntaxError as exc:
        raise ConfigError(
            [
                Problem(
                    path,
                    exc.lineno or 1,
                    exc.offset or 1,
                    "",
                    f"invalid Python: {exc.msg}",
                    "fix the syntax error",
                )
            ]
        ) from None
    classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef) and _is_service(node)]
    if not classes:
        raise ConfigError(
            [
                Problem(
                    path, 1, 1, "", "no class decorated with @bentoml.service", "decorate the service class"
                )
            ]
        )
    return classes[-1]


def _is_service(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "service":
            return True
        if isinstance(target, ast.Name) and target.id == "service":
            return True
    return False
