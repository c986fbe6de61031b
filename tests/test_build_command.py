"""homec image-tag, build and push without a container engine: content-addressed tags, option checks,
build contexts, model fetching from a storage root, and clear errors for an unreachable engine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from homec.commands import build as build_command
from homec.commands.model_artifacts import fetch_model
from homec.errors import ExternalToolError, UsageError
from tests.conftest import copy_example, run_homec

RUN_ID = "0123456789abcdef0123456789abcdef"


def render(root: Path) -> None:
    code, _, err = run_homec("-C", root, "render")
    assert code == 0, err


def image_tag(root: Path, *args: str) -> str:
    code, out, err = run_homec("-C", root, "image-tag", *args)
    assert code == 0, err
    return out.strip()


def manifest_tag(root: Path, env_name: str, target: str) -> str:
    document = yaml.safe_load((root / f"rendered/{env_name}/apps/{target}/deployment.yaml").read_text())
    image: str = document["spec"]["template"]["spec"]["containers"][0]["image"]
    return image.rpartition(":")[2]


def jenkinsfile_tag(root: Path, env_name: str, target: str) -> str:
    text = (root / f"rendered/{env_name}/jenkins/{target}.Jenkinsfile").read_text()
    found = re.search(r"HOMEC_RENDERED_IMAGE_TAG = '([^']*)'", text)
    assert found is not None
    return found.group(1)


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


# --- tags ---------------------------------------------------------------------------------------------


def test_tag_same_in_manifest_jenkinsfile_and_cli(example_repo: Path) -> None:
    render(example_repo)
    for env_name in ("localhost", "cluster"):
        for flavor in ("fastapi", "bentoml"):
            target = f"iris-{flavor}"
            printed = image_tag(example_repo, "iris", "--flavor", flavor, "--env", env_name)

            assert printed == manifest_tag(example_repo, env_name, target)
            assert printed == jenkinsfile_tag(example_repo, env_name, target)
            assert re.fullmatch(r"iris-[0-9a-f]{12}", printed)


def test_tag_ignores_registry(example_repo: Path) -> None:
    before = image_tag(example_repo, "iris", "--flavor", "fastapi")
    replace_in(
        example_repo / "environments/localhost.yaml", "registry: 127.0.0.1:5000", "registry: 127.0.0.1:5999"
    )

    assert image_tag(example_repo, "iris", "--flavor", "fastapi") == before


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        (
            "environments/localhost.yaml",
            "base: localhost/python:3.11-bookworm",
            "base: python:3.11.9-bookworm",
        ),
        ("apps.yaml", "alias: champion", "alias: challenger"),
        ("apps.yaml", "fastapi:\n        replicas: 2", "fastapi:\n        workers: 2\n        replicas: 2"),
    ],
    ids=["base-image", "model-reference", "serving-code"],
)
def test_tag_follows_image_inputs(example_repo: Path, path: str, old: str, new: str) -> None:
    before = image_tag(example_repo, "iris", "--flavor", "fastapi")
    replace_in(example_repo / path, old, new)

    assert image_tag(example_repo, "iris", "--flavor", "fastapi") != before


def test_tag_follows_homec_version(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = image_tag(example_repo, "iris", "--flavor", "fastapi")
    monkeypatch.setattr("homec.render.tags.__version__", "99.0.0")

    assert image_tag(example_repo, "iris", "--flavor", "fastapi") != before


def test_tag_with_run_selection(example_repo: Path) -> None:
    pinned = image_tag(example_repo, "iris", "--flavor", "bentoml")
    code, out, err = run_homec(
        "-C",
        example_repo,
        "image-tag",
        "iris",
        "--flavor",
        "bentoml",
        "--experiment-id",
        "3",
        "--run-id",
        RUN_ID,
    )
    blank = image_tag(example_repo, "iris", "--flavor", "bentoml", "--experiment-id", "", "--run-id", " ")

    assert code == 0
    assert out.strip() != pinned
    assert pinned in err
    assert blank == pinned


def version_pin_with_run(root: Path) -> None:
    """Pin a registered version with the run it came from, as ``homec promote --run-id`` writes it."""
    replace_in(
        root / "apps.yaml",
        "      registered_name: iris-classifier\n      alias: champion\n",
        f'      registered_name: iris-classifier\n      version: 3\n      experiment_id: "1"\n      run_id: {RUN_ID}\n',
    )


def test_tag_with_pinned_run_of_version(example_repo: Path) -> None:
    version_pin_with_run(example_repo)
    render(example_repo)
    rendered = manifest_tag(example_repo, "cluster", "iris-bentoml")
    selection = ["iris", "--flavor", "bentoml", "--env", "cluster"]

    code, out, err = run_homec(
        "-C", example_repo, "image-tag", *selection, "--experiment-id", "1", "--run-id", RUN_ID
    )
    other_code, other_out, other_err = run_homec(
        "-C", example_repo, "image-tag", *selection, "--experiment-id", "1", "--run-id", "f" * 32
    )
    image = build_command.resolve_image(
        build_command.ImageOptions(example_repo, "iris", "bentoml", "cluster", "1", RUN_ID)
    )

    assert code == 0, err
    assert out.strip() == rendered
    assert out.strip() == jenkinsfile_tag(example_repo, "cluster", "iris-bentoml")
    assert err == ""
    assert image.target.model.uri == "models:/iris-classifier/3"
    assert other_code == 0, other_err
    assert other_out.strip() != rendered
    assert f"packs runs:/{'f' * 32}/model" in other_err
    assert "not the model in apps.yaml, models:/iris-classifier/3" in other_err
    assert rendered in other_err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flavor", "bentoml", "--run-id", RUN_ID], "run_id and experiment_id go together"),
        (["--flavor", "bentoml", "--experiment-id", "1", "--run-id", "abc"], "invalid run id 'abc'"),
        (["--flavor", "fastapi", "--experiment-id", "1", "--run-id", RUN_ID], "apply to BentoML images only"),
        (["--flavor", "fastapi", "--env", "staging"], "unknown environment 'staging'"),
    ],
    ids=["half-selection", "bad-run-id", "fastapi-run", "unknown-env"],
)
def test_image_tag_usage_errors(example_repo: Path, args: list[str], message: str) -> None:
    code, out, err = run_homec("-C", example_repo, "image-tag", "iris", *args)

    assert code == 2
    assert out == ""
    assert message in err


def test_flavor_not_served(tmp_path: Path) -> None:
    root = copy_example(tmp_path / "repo")
    replace_in(
        root / "apps.yaml",
        "      bentoml:\n        replicas: 1\n        resources: {cpu: 500m, memory: 512Mi}\n",
        "",
    )

    code, _, err = run_homec("-C", root, "image-tag", "iris", "--flavor", "bentoml")

    assert code == 2
    assert "does not serve flavor 'bentoml'" in err
    assert "it serves fastapi" in err


# --- build context ------------------------------------------------------------------------------------


def test_context_written_with_wheels(example_repo: Path, tmp_path: Path) -> None:
    render(example_repo)
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    (wheelhouse / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"not really a wheel")
    (wheelhouse / "notes.txt").write_text("ignored")
    image = build_command.resolve_image(build_command.ImageOptions(example_repo, "iris", "fastapi"))

    folder = build_command.write_context(image, wheelhouse)

    rendered = example_repo / "rendered/localhost/build/iris-fastapi"
    expected = sorted(path.relative_to(rendered).as_posix() for path in rendered.rglob("*") if path.is_file())
    written = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    assert folder == example_repo / ".homec/build/localhost/iris-fastapi"
    assert written == sorted([*expected, "wheels/six-1.17.0-py2.py3-none-any.whl"])
    for name in expected:
        assert (folder / name).read_bytes() == (rendered / name).read_bytes()


def test_context_rewritten_from_scratch(example_repo: Path) -> None:
    image = build_command.resolve_image(build_command.ImageOptions(example_repo, "iris", "fastapi"))
    folder = build_command.write_context(image, None)
    (folder / "stale.txt").write_text("left over")

    build_command.write_context(image, None)

    assert not (folder / "stale.txt").exists()


def test_empty_wheelhouse_rejected(example_repo: Path, tmp_path: Path) -> None:
    image = build_command.resolve_image(build_command.ImageOptions(example_repo, "iris", "fastapi"))

    with pytest.raises(UsageError, match="no wheels"):
        build_command.write_context(image, tmp_path)


# --- model from the storage root -----------------------------------------------------------------


def pinned_run(root: Path) -> None:
    replace_in(
        root / "apps.yaml",
        "      registered_name: iris-classifier\n      alias: champion\n",
        f'      experiment_id: "5"\n      run_id: {RUN_ID}\n',
    )


def test_model_copied_from_storage_root(example_repo: Path, tmp_path: Path) -> None:
    pinned_run(example_repo)
    model = tmp_path / "nas" / "5" / RUN_ID / "artifacts" / "model"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "model.skops").write_bytes(b"weights")
    image = build_command.resolve_image(build_command.ImageOptions(example_repo, "iris", "bentoml"))
    messages: list[str] = []

    fetch_model(image.target, tmp_path / "context" / "model", str(tmp_path / "nas"), messages.append)

    assert (tmp_path / "context/model/model.skops").read_bytes() == b"weights"
    assert "from the storage root" in messages[0]


def test_missing_model_in_storage_root(example_repo: Path, tmp_path: Path) -> None:
    pinned_run(example_repo)
    image = build_command.resolve_image(build_command.ImageOptions(example_repo, "iris", "bentoml"))

    with pytest.raises(ExternalToolError, match="not found in the storage root") as raised:
        fetch_model(image.target, tmp_path / "model", f"file://{tmp_path}/nas", lambda _: None)

    assert "run id" in raised.value.hint


def test_storage_folder_without_mlmodel(example_repo: Path, tmp_path: Path) -> None:
    pinned_run(example_repo)
    (tmp_path / "nas" / "5" / RUN_ID / "artifacts" / "model").mkdir(parents=True)
    image = build_command.resolve_image(build_command.ImageOptions(example_repo, "iris", "bentoml"))

    with pytest.raises(ExternalToolError, match="contain no MLmodel"):
        fetch_model(image.target, tmp_path / "model", str(tmp_path / "nas"), lambda _: None)


# --- engine and registry errors ------------------------------------------------------------------


@pytest.mark.parametrize("docker_host", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:9"])
def test_unreachable_engine(example_repo: Path, monkeypatch: pytest.MonkeyPatch, docker_host: str) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_host)

    code, _, err = run_homec("-C", example_repo, "build", "iris", "--flavor", "fastapi")

    assert code == 1
    assert f"cannot reach the container engine at {docker_host}" in err
    assert "DOCKER_HOST" in err
    assert not (example_repo / ".homec/build").exists(), "nothing is written before the engine answers"


def test_half_registry_credentials(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("HOMEC_REGISTRY_USERNAME", "homec")
    monkeypatch.delenv("HOMEC_REGISTRY_PASSWORD", raising=False)

    code, _, err = run_homec("-C", example_repo, "build", "iris", "--flavor", "fastapi", "--push")

    assert code == 2
    assert "only one of HOMEC_REGISTRY_USERNAME and HOMEC_REGISTRY_PASSWORD is set" in err


@pytest.mark.parametrize(
    "repository", ["homec", "Registry.example/app", "127.0.0.1:5000/app;rm -rf /", "x/$(id)"]
)
def test_invalid_image_repository(example_repo: Path, repository: str) -> None:
    code, _, err = run_homec(
        "-C", example_repo, "push", "iris", "--flavor", "fastapi", "--image-repository", repository
    )

    assert code == 2
    assert f"invalid image repository {repository!r}" in err


def test_storage_root_rejected_for_fastapi(example_repo: Path) -> None:
    code, _, err = run_homec(
        "-C", example_repo, "build", "iris", "--flavor", "fastapi", "--storage-root", "/nas"
    )

    assert code == 2
    assert "--storage-root applies to BentoML images only" in err


def test_push_errors_hide_the_password() -> None:
    secret = "hunter2-registry-secret"
    stream = [
        {"status": "Preparing", "id": "abc"},
        {"status": "Pushing", "id": "abc", "progressDetail": {"current": 1, "total": 2}},
        {"error": f"unauthorized: user homec with password {secret}"},
    ]
    shown: list[str] = []

    with pytest.raises(ExternalToolError) as raised:
        build_command._follow_push(stream, "127.0.0.1:5000/app:tag", shown.append, [secret])

    assert secret not in raised.value.format()
    assert "****" in raised.value.message
    assert shown == ["abc: Preparing"]


def test_push_digest_from_status_line() -> None:
    digest = "sha256:" + "ab" * 32
    stream = [{"status": "Pushed", "id": "abc"}, {"status": f"iris-1: digest: {digest} size: 900"}]
    shown: list[str] = []

    found = build_command._follow_push(stream, "127.0.0.1:5000/app:iris-1", shown.append, [])

    assert found == digest
    assert shown == ["abc: Pushed", f"iris-1: digest: {digest} size: 900"]
