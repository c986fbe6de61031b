"""Writer: atomic swap, pruning only owned files, scoped renders, and confirmation before deleting an app."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from homec.config.project import load_project
from homec.render import render_project
from homec.writer import OWNED_LIST, apply, plan_write, read_owned, recover
from tests.conftest import run_homec, snapshot

GOLDEN_INPUT = Path(__file__).parent / "golden" / "full" / "input"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    destination = tmp_path / "repo"
    shutil.copytree(GOLDEN_INPUT, destination)
    code, _, err = run_homec("-C", destination, "render")
    assert code == 0, err
    return destination


def test_owned_list_names_every_rendered_file(repo: Path) -> None:
    owned = read_owned(repo)
    on_disk = {f"rendered/{path}" for path in snapshot(repo / "rendered")} - {OWNED_LIST}

    assert set(owned) == on_disk


def test_user_file_in_rendered_survives(repo: Path) -> None:
    (repo / "rendered" / "NOTES.md").write_text("mine\n")
    (repo / "rendered" / "cluster" / "apps" / "extra.yaml").write_text("kind: ConfigMap\n")

    code, _, _ = run_homec("-C", repo, "render", "--yes")

    assert code == 0
    assert (repo / "rendered" / "NOTES.md").read_text() == "mine\n"
    assert (repo / "rendered" / "cluster" / "apps" / "extra.yaml").exists()


def test_changed_owned_file_is_restored(repo: Path) -> None:
    path = repo / "rendered" / "cluster" / "apps" / "iris-fastapi" / "service.yaml"
    original = path.read_bytes()
    path.write_text("edited by hand\n")

    code, out, _ = run_homec("-C", repo, "render")

    assert code == 0
    assert "1 changed" in out
    assert path.read_bytes() == original


def test_removed_app_needs_confirmation(repo: Path) -> None:
    shutil.rmtree(repo / "apps")
    apps_yaml = repo / "apps.yaml"
    apps_yaml.write_text(apps_yaml.read_text().replace("include: [apps/*.yaml]\n", ""))
    before = snapshot(repo / "rendered")

    code, _, err = run_homec("-C", repo, "render")

    assert code == 1
    assert "wine" in err
    assert "--yes" in err
    assert snapshot(repo / "rendered") == before

    code, out, _ = run_homec("-C", repo, "render", "--yes")

    assert code == 0
    assert "removed rendered/cluster/apps/wine-fastapi/deployment.yaml" in out
    assert not (repo / "rendered" / "cluster" / "apps" / "wine-fastapi").exists()
    assert not any("wine" in path for path in read_owned(repo))


def test_scoped_render_touches_only_scope(repo: Path) -> None:
    apps_yaml = repo / "apps.yaml"
    text = apps_yaml.read_text().replace("fastapi: {replicas: 3}", "fastapi: {replicas: 4}")
    apps_yaml.write_text(text.replace("        replicas: 2\n", "        replicas: 5\n"))
    localhost_before = snapshot(repo / "rendered" / "localhost")

    code, out, _ = run_homec("-C", repo, "render", "--env", "cluster", "--app", "iris")

    assert code == 0
    assert "1 changed" in out
    assert snapshot(repo / "rendered" / "localhost") == localhost_before
    assert "replicas: 4" in (repo / "rendered/cluster/apps/iris-fastapi/deployment.yaml").read_text()
    code, _, err = run_homec("-C", repo, "check")
    assert code == 1
    assert "stale    rendered/localhost/apps/iris-fastapi/deployment.yaml" in err


def test_unknown_scope_is_usage_error(repo: Path) -> None:
    code, _, err = run_homec("-C", repo, "render", "--env", "staging")

    assert code == 2
    assert "unknown environment 'staging'" in err
    assert "cluster, localhost" in err


def test_crash_between_renames_recovers_old_tree(repo: Path) -> None:
    before = snapshot(repo / "rendered")
    (repo / "rendered").rename(repo / ".homec-render.old")
    (repo / ".homec-render.new").mkdir()
    (repo / ".homec-render.new" / "half.yaml").write_text("partial\n")

    recover(repo)

    assert snapshot(repo / "rendered") == before
    assert not (repo / ".homec-render.new").exists()
    assert not (repo / ".homec-render.old").exists()


def test_failed_write_leaves_old_tree(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apps_yaml = repo / "apps.yaml"
    apps_yaml.write_text(apps_yaml.read_text().replace("fastapi: {replicas: 3}", "fastapi: {replicas: 5}"))
    before = snapshot(repo / "rendered")
    project = load_project(repo)
    plan = plan_write(repo, render_project(project))

    def fail(self: Path, target: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "rename", fail)
    with pytest.raises(OSError, match="disk full"):
        apply(repo, plan)
    monkeypatch.undo()
    recover(repo)

    assert snapshot(repo / "rendered") == before


def test_hard_linked_old_tree_not_written_through(repo: Path) -> None:
    old_copy = repo.parent / "old"
    shutil.copytree(repo / "rendered", old_copy)
    apps_yaml = repo / "apps.yaml"
    apps_yaml.write_text(apps_yaml.read_text().replace("fastapi: {replicas: 3}", "fastapi: {replicas: 6}"))
    project = load_project(repo)
    plan = plan_write(repo, render_project(project))
    rendered_before = repo / "rendered"
    kept_inode = (rendered_before / "cluster/apps/iris-fastapi/deployment.yaml").stat().st_ino

    apply(repo, plan)

    assert (repo / "rendered/cluster/apps/iris-fastapi/deployment.yaml").stat().st_ino != kept_inode
    assert "replicas: 6" in (repo / "rendered/cluster/apps/iris-fastapi/deployment.yaml").read_text()
    assert (old_copy / "cluster/apps/iris-fastapi/deployment.yaml").read_text().count("replicas: 3") == 1
