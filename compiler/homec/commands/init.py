"""``homec init DIR``: a new homec repository with the iris example app and both environments."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from homec.commands.schema import write_schemas
from homec.errors import UsageError

# Files of a new repository besides the example, with their contents.
_GITIGNORE = """\
# homec's local state: embedded MLflow store, artifacts, build scratch
.homec/
.homec-render.new/
.homec-render.old/
__pycache__/
*.pyc
"""

PRE_COMMIT_CONFIG = """\
# Keeps apps.yaml and environments/ valid and rendered/ current on every commit.
repos:
  - repo: local
    hooks:
      - id: homec-check
        name: homec check
        entry: homec check
        language: system
        pass_filenames: false
        files: ^(apps\\.yaml|apps/|environments/|templates/|serving/|signatures/|rendered/)
"""


def example_dir() -> Path:
    """Return the folder holding the example repository: package data when installed, the checkout otherwise."""
    packaged = Path(str(resources.files("homec"))) / "example"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3]


def init_repository(target: Path) -> list[Path]:
    """Create the example files in ``target``; refuse to touch a folder that already has an apps.yaml."""
    if (target / "apps.yaml").exists():
        raise UsageError(
            f"{target / 'apps.yaml'} already exists; nothing was written", "choose an empty or new folder"
        )
    source = example_dir()
    target.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    for relative in (
        "apps.yaml",
        "environments/localhost.yaml",
        "environments/cluster.yaml",
        "training/iris/train.py",
    ):
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, destination)
        created.append(destination)
    for name, text in ((".gitignore", _GITIGNORE), (".pre-commit-config.yaml", PRE_COMMIT_CONFIG)):
        if not (target / name).exists():
            (target / name).write_text(text, encoding="utf-8")
            created.append(target / name)
    created.extend(write_schemas(target / "schemas"))
    return created
