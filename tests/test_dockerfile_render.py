"""Rendered Dockerfiles: clean under hadolint, multi-stage with dependencies before code, non-root, a
readiness HEALTHCHECK, telemetry off, no build arguments, and configuration strings kept literal."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from homec.config.project import load_project
from homec.render import serving, targets_of
from homec.render.docker import BENTO_PATH, image_command
from homec.render.target import READINESS_PATH, RUN_AS_USER
from tests.conftest import copy_example, run_homec
from tests.support.hostile import HOSTILE, write_hostile_project
from tests.support.validators import format_problems, require_tool, run_hadolint

GOLDEN_INPUT = Path(__file__).parent / "golden" / "full" / "input"
TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "true"}

Instruction = tuple[str, str]


def render(root: Path) -> Path:
    code, _, err = run_homec("-C", root, "render")
    assert code == 0, err
    return root / "rendered"


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("dockerfiles")
    golden = base / "golden"
    shutil.copytree(GOLDEN_INPUT, golden)
    roots = {
        "golden": golden,
        "example": copy_example(base / "example"),
        "hostile": write_hostile_project(base / "hostile"),
    }
    for root in roots.values():
        render(root)
    return roots


def dockerfiles(root: Path) -> list[Path]:
    return sorted((root / "rendered").glob("*/build/*/Dockerfile"))


def instructions(path: Path) -> list[Instruction]:
    """Return (INSTRUCTION, arguments) pairs, joining continued lines and dropping comments."""
    found: list[Instruction] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, f"{path} ends inside a continued line"
    return found


def stages(path: Path) -> list[list[Instruction]]:
    """Split the instructions into build stages, each starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions(path):
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def key_values(arguments: str) -> dict[str, str]:
    """Decode the KEY=WORD pairs of a LABEL or ENV instruction the way a POSIX shell reads the words."""
    pairs = {}
    for word in shlex.split(arguments):
        key, _, value = word.partition("=")
        pairs[key] = value
    return pairs


def merged(stage: list[Instruction], keyword: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, arguments in stage:
        if name == keyword:
            values.update(key_values(arguments))
    return values


def target_dir(root: Path, env_name: str, target: str) -> Path:
    return root / f"rendered/{env_name}/build/{target}"


# --- hadolint -------------------------------------------------------------------------------------


def test_hadolint_passes_every_dockerfile(projects: dict[str, Path]) -> None:
    require_tool("hadolint")
    paths = [path for root in projects.values() for path in dockerfiles(root)]

    problems = run_hadolint(paths)

    # golden: 3 targets in cluster and 2 in localhost; example: 2 per environment; hostile: 2.
    assert len(paths) == 11, paths
    assert problems == [], format_problems(problems)


def test_no_blanket_hadolint_ignores(projects: dict[str, Path]) -> None:
    for root in projects.values():
        for path in dockerfiles(root):
            assert "hadolint ignore" not in path.read_text(encoding="utf-8"), path
    assert not (Path(__file__).parents[1] / ".hadolint.yaml").exists()


# --- structure --------------------------------------------------------------------------------------


def test_fastapi_stages(projects: dict[str, Path]) -> None:
    found = stages(target_dir(projects["golden"], "cluster", "iris-fastapi") / "Dockerfile")

    assert [stage[0][1] for stage in found] == [
        "python:3.11-slim-bookworm AS dependencies",
        "python:3.11-slim-bookworm",
    ]


def test_bentoml_stages(projects: dict[str, Path]) -> None:
    found = stages(target_dir(projects["golden"], "cluster", "iris-bentoml") / "Dockerfile")
    final = found[-1]

    assert [stage[0][1].rpartition(" AS ")[2] for stage in found[:-1]] == ["dependencies", "bento"]
    assert ("COPY", f"--from=bento /bento {BENTO_PATH}") in final
    assert ("COPY", "--from=dependencies /opt/venv /opt/venv") in final


def test_base_image_per_environment(projects: dict[str, Path]) -> None:
    root = projects["golden"]
    for env_name, base in [
        ("cluster", "python:3.11-slim-bookworm"),
        ("localhost", "localhost/python:3.11-bookworm"),
    ]:
        for path in sorted((root / f"rendered/{env_name}/build").glob("*/Dockerfile")):
            images = {stage[0][1].partition(" ")[0] for stage in stages(path)}

            assert images == {base}, path


def test_dependencies_before_code(projects: dict[str, Path]) -> None:
    dependencies, final = stages(target_dir(projects["golden"], "cluster", "iris-fastapi") / "Dockerfile")

    assert dependencies[1:4] == [
        ("ENV", "PIP_DISABLE_PIP_VERSION_CHECK=1     PYTHONDONTWRITEBYTECODE=1"),
        ("WORKDIR", "/build"),
        ("COPY", "requirements.txt ./"),
    ]
    assert ("COPY", "wheels/ ./wheels/") in dependencies
    pip_step = [arguments for name, arguments in dependencies if name == "RUN"]
    assert len(pip_step) == 1
    assert "--no-index --find-links /build/wheels -r requirements.txt" in pip_step[0]
    assert "pip install --no-cache-dir -r requirements.txt" in pip_step[0]
    code_copies = [arguments for name, arguments in final if name == "COPY" and "--from" not in arguments]
    assert [json.loads(arguments) for arguments in code_copies] == [
        ["app.py", "homec_serving.py", "start.py", "./"]
    ]


def test_runs_as_non_root_user(projects: dict[str, Path]) -> None:
    for root in projects.values():
        for path in dockerfiles(root):
            final = stages(path)[-1]
            users = [arguments for name, arguments in final if name == "USER"]

            assert users == [f"{RUN_AS_USER}:{RUN_AS_USER}"], path
            assert [name for name, _ in final][-4:] == ["USER", "EXPOSE", "HEALTHCHECK", "CMD"], path


def test_healthcheck_probes_readiness(projects: dict[str, Path]) -> None:
    for path in dockerfiles(projects["golden"]):
        (healthcheck,) = [arguments for name, arguments in stages(path)[-1] if name == "HEALTHCHECK"]
        options, _, command = healthcheck.partition(" CMD ")
        probe = json.loads(command)

        assert "--start-period=" in options
        assert probe[:2] == ["python3", "-c"]
        assert f"'{READINESS_PATH}'" in probe[2]
        assert "os.environ.get('PORT'" in probe[2]


def test_telemetry_off_in_runtime_and_bento_stages(projects: dict[str, Path]) -> None:
    for path in dockerfiles(projects["golden"]):
        for stage in stages(path)[1:]:
            environment = merged(stage, "ENV")

            assert {name: environment.get(name) for name in TELEMETRY} == TELEMETRY, path


def test_command_is_the_serving_start_command(projects: dict[str, Path]) -> None:
    project = load_project(projects["golden"])
    for env_name in project.environments:
        for target in targets_of(project, env_name):
            path = target_dir(projects["golden"], env_name, target.name) / "Dockerfile"
            (command,) = [json.loads(arguments) for name, arguments in stages(path)[-1] if name == "CMD"]

            assert command == image_command(target)
            if target.flavor == "fastapi":
                assert command == serving.start_command(target)
            else:
                assert BENTO_PATH in command


def test_bento_stage_builds_the_named_bento(projects: dict[str, Path]) -> None:
    root = projects["golden"]
    bento = stages(target_dir(root, "cluster", "iris-bentoml") / "Dockerfile")[1]
    (script,) = [arguments for name, arguments in bento if name == "RUN" and "bentoml build" in arguments]
    bentofile = (target_dir(root, "cluster", "iris-bentoml") / "bentofile.yaml").read_text()

    assert "name: iris-bentoml\n" in bentofile
    assert "bentoml export iris-bentoml:latest /build/bento.tar" in script
    assert script.startswith("python3 import_model.py ")
    assert merged(bento, "ENV")["MODEL_URI"] == "/build/model"


def test_no_build_arguments_or_secrets(projects: dict[str, Path]) -> None:
    for root in projects.values():
        for path in dockerfiles(root):
            names = [name for name, _ in instructions(path)]
            text = path.read_text(encoding="utf-8")

            assert "ARG" not in names, path
            assert "--mount" not in text, path
            for word in ("PASSWORD", "TOKEN", "SECRET", "CREDENTIALS"):
                assert word not in text.upper(), (path, word)


def test_context_files(projects: dict[str, Path]) -> None:
    fastapi = target_dir(projects["golden"], "cluster", "iris-fastapi")
    bentoml = target_dir(projects["golden"], "cluster", "iris-bentoml")

    assert (fastapi / ".dockerignore").read_text().splitlines()[-2:] == ["**/__pycache__", "**/*.pyc"]
    assert (fastapi / "wheels/README.txt").is_file()
    assert "uv==" in (bentoml / "bento-build-requirements.txt").read_text()
    assert not (fastapi / "bento-build-requirements.txt").exists()


def test_user_template_overrides_dockerfile(tmp_path: Path) -> None:
    root = copy_example(tmp_path / "repo")
    render(root)
    manifest = root / "rendered/localhost/apps/iris-fastapi/deployment.yaml"
    before = manifest.read_text()
    override = root / "templates/docker/fastapi.Dockerfile.j2"
    override.parent.mkdir(parents=True, exist_ok=True)
    override.write_text(
        '{% extends "docker/base.Dockerfile.j2" %}\n{% block runtime_files %}\nCOPY . ./\n{% endblock %}\n'
    )

    render(root)

    final = stages(root / "rendered/localhost/build/iris-fastapi/Dockerfile")[-1]
    assert ("COPY", ". ./") in final
    assert manifest.read_text() != before, "a changed Dockerfile must change the image tag"


# --- hostile configuration strings ----------------------------------------------------------------


def test_hostile_labels_read_back_literally(projects: dict[str, Path]) -> None:
    for target in ("iris-fastapi", "iris-bentoml"):
        labels = merged(
            stages(target_dir(projects["hostile"], "hostile", target) / "Dockerfile")[-1], "LABEL"
        )

        # A Dockerfile instruction is one line, so line breaks and tabs become spaces.
        assert labels["org.opencontainers.image.description"] == spaced(HOSTILE["description"])
        model_uri = f"runs:/0123456789abcdef0123456789abcdef/{HOSTILE['artifact_path']}"
        assert labels["io.homec.model-uri"] == spaced(model_uri)


def spaced(text: str) -> str:
    return "".join(" " if ord(character) < 32 or ord(character) == 127 else character for character in text)


def test_hostile_values_only_in_labels(projects: dict[str, Path]) -> None:
    for path in dockerfiles(projects["hostile"]):
        for name, arguments in instructions(path):
            if name != "LABEL":
                assert "$(id)" not in arguments, (path, name)
                assert "quoted" not in arguments, (path, name)


def test_no_credential_in_rendered_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-registry-password-4711"
    monkeypatch.setenv("HOMEC_REGISTRY_USERNAME", "homec-ci")
    monkeypatch.setenv("HOMEC_REGISTRY_PASSWORD", secret)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", secret)
    root = copy_example(tmp_path / "repo")

    rendered = render(root)

    files = [path for path in rendered.rglob("*") if path.is_file()]
    assert files
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
