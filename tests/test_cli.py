"""CLI: exit codes, check and diff on a stale tree, schema, init, version."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from homec import __version__
from homec.commands import render as render_command
from tests.conftest import REPO_ROOT, run_homec


def test_version() -> None:
    code, out, _ = run_homec("--version")

    assert code == 0
    assert out.strip() == f"homec {__version__}"


def test_help_documents_exit_codes() -> None:
    code, out, _ = run_homec("--help")

    assert code == 0
    for line in (
        "0    success",
        "1    invalid",
        "2    usage error",
        "3    internal error",
        "130  interrupted",
    ):
        assert line in out


def test_unknown_option_is_usage_error() -> None:
    code, _, err = run_homec("check", "--no-such-option")

    assert code == 2
    assert "No such option" in err


def test_check_reports_stale_files(example_repo: Path) -> None:
    (example_repo / "apps.yaml").write_text(
        (example_repo / "apps.yaml").read_text().replace("replicas: 2", "replicas: 4")
    )
    deployment = example_repo / "rendered/localhost/apps/iris-fastapi/deployment.yaml"
    before = deployment.read_bytes()

    code, _, err = run_homec("-C", example_repo, "check")

    assert code == 1
    assert "stale    rendered/localhost/apps/iris-fastapi/deployment.yaml" in err
    assert "homec render" in err
    assert deployment.read_bytes() == before


def test_check_reports_missing_and_extra(example_repo: Path) -> None:
    (example_repo / "rendered/cluster/argocd/iris-fastapi.yaml").unlink()
    owned = example_repo / "rendered/.homec-owned"
    owned.write_text(owned.read_text() + "cluster/apps/old-fastapi/deployment.yaml\tcluster\told\n")
    (example_repo / "rendered/cluster/apps/old-fastapi").mkdir()
    (example_repo / "rendered/cluster/apps/old-fastapi/deployment.yaml").write_text("old\n")

    code, _, err = run_homec("-C", example_repo, "check")

    assert code == 1
    assert "missing  rendered/cluster/argocd/iris-fastapi.yaml" in err
    assert "extra    rendered/cluster/apps/old-fastapi/deployment.yaml" in err


def test_diff_shows_unified_diff(example_repo: Path) -> None:
    (example_repo / "apps.yaml").write_text(
        (example_repo / "apps.yaml").read_text().replace("replicas: 2", "replicas: 4")
    )

    code, out, _ = run_homec("-C", example_repo, "diff")

    assert code == 1
    assert "--- a/rendered/localhost/apps/iris-fastapi/deployment.yaml" in out
    assert "-  replicas: 2" in out
    assert "+  replicas: 4" in out


def test_diff_clean_exits_zero(example_repo: Path) -> None:
    code, out, _ = run_homec("-C", example_repo, "diff")

    assert code == 0
    assert out == ""


def test_ctrl_c_exits_130(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(options: render_command.RenderOptions) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(render_command, "render", interrupted)
    code, _, _ = run_homec("-C", example_repo, "render")

    assert code == 130


def test_bug_exits_3_with_log(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(options: render_command.RenderOptions) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(render_command, "render", broken)
    code, _, err = run_homec("-C", example_repo, "render")

    assert code == 3
    assert "internal error" in err
    log = Path(err.split("traceback is in ")[1].split("\n")[0])
    assert "RuntimeError: boom" in log.read_text()


def test_schema_files_are_current() -> None:
    from homec.config.jsonschema import schema_documents

    for name, data in schema_documents().items():
        assert (REPO_ROOT / "schemas" / name).read_bytes() == data, (
            f"schemas/{name} is stale; run homec schema --output schemas"
        )


def test_schema_accepts_example_and_rejects_typo() -> None:
    schema = json.loads((REPO_ROOT / "schemas/apps.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    apps = yaml.safe_load((REPO_ROOT / "apps.yaml").read_text())

    assert list(validator.iter_errors(apps)) == []
    apps["apps"][0]["serving"]["fastapi"]["replicsa"] = 2
    assert any("replicsa" in error.message for error in validator.iter_errors(apps))


def test_schema_accepts_partial_override() -> None:
    schema = json.loads((REPO_ROOT / "schemas/apps.schema.json").read_text())
    apps = yaml.safe_load((REPO_ROOT / "apps.yaml").read_text())
    apps["apps"][0]["overrides"] = {"cluster": {"serving": {"fastapi": {"replicas": 3}, "bentoml": None}}}

    assert list(jsonschema.Draft202012Validator(schema).iter_errors(apps)) == []


def test_environment_schema_accepts_both_environments() -> None:
    schema = json.loads((REPO_ROOT / "schemas/environment.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)

    for path in sorted((REPO_ROOT / "environments").glob("*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path


def test_schema_prints_one_schema() -> None:
    code, out, _ = run_homec("schema", "--kind", "environment")

    assert code == 0
    assert json.loads(out)["title"] == "homec environment file"


def test_init_creates_working_repository(tmp_path: Path) -> None:
    target = tmp_path / "new"

    code, out, _ = run_homec("init", target)

    assert code == 0
    assert "created" in out
    for relative in (
        "apps.yaml",
        "environments/localhost.yaml",
        "environments/cluster.yaml",
        "training/iris/train.py",
        ".gitignore",
        ".pre-commit-config.yaml",
        "schemas/apps.schema.json",
    ):
        assert (target / relative).is_file(), relative
    assert run_homec("-C", target, "render")[0] == 0
    assert run_homec("-C", target, "check")[0] == 0


def test_init_refuses_existing_repository(tmp_path: Path) -> None:
    (tmp_path / "apps.yaml").write_text("apps: []\n")

    code, _, err = run_homec("init", tmp_path)

    assert code == 2
    assert "already exists" in err
    assert (tmp_path / "apps.yaml").read_text() == "apps: []\n"


def test_repository_found_from_subfolder(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(example_repo / "environments")

    code, out, err = run_homec("check")

    assert code == 0, err
    assert out.startswith("ok:")


def test_check_before_first_render_says_render(tmp_path: Path) -> None:
    run_homec("init", tmp_path / "new")

    code, out, err = run_homec("-C", tmp_path / "new", "check")

    assert code == 1
    assert "rendered/ does not exist yet" in err
    assert "missing" not in err
    assert out == ""
