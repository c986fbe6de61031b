"""Load a homec repository: ``apps.yaml`` (and its includes), ``environments/*.yaml`` and the user files
that feed rendering, then apply the overlay to get each app's effective spec per environment.

Every problem of every file is collected before anything fails, so one run reports them all.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from homec.config.diagnose import problems_from_validation
from homec.config.loader import KeyPath, Origin, SourceMap, format_key_path, load_yaml
from homec.config.overlay import deep_merge, merge_origins
from homec.config.quantity import format_decimal, quantity_value
from homec.config.schema import (
    _DNS_LABEL,
    FLAVOR_MODELS,
    AppEntry,
    AppsFileShape,
    AppSpec,
    Environment,
    Flavor,
)
from homec.errors import ConfigError, Problem

APPS_FILE = "apps.yaml"
ENVIRONMENTS_DIR = "environments"
# User files that rendering reads: hand-written serving code and recorded model signatures.
INPUT_DIRS = ("serving", "signatures")
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class Project:
    """A loaded, validated repository. ``effective`` contains each app per environment after the overlay."""

    root: Path
    environments: dict[str, Environment]
    apps: dict[str, AppEntry]
    effective: dict[tuple[str, str], AppSpec]
    app_files: dict[str, str]
    inputs: dict[str, bytes] = field(default_factory=dict)

    def app(self, environment: str, name: str) -> AppSpec:
        return self.effective[(environment, name)]

    def inputs_under(self, prefix: str) -> dict[str, bytes]:
        """Return the user files below ``prefix`` (a repository-relative folder), keyed by their full path."""
        folder = prefix.rstrip("/") + "/"
        return {path: data for path, data in self.inputs.items() if path.startswith(folder)}


@dataclass
class _RawApp:
    data: dict[str, Any]
    source_map: SourceMap
    entry: AppEntry | None


def load_project(root: Path) -> Project:
    """Load and validate the repository at ``root``; raise ``ConfigError`` listing every problem found."""
    problems: list[Problem] = []
    environments, environment_maps = _load_environments(root, problems)
    raw_apps = _load_apps(root, problems)
    environment_names = {path.stem for path in (root / ENVIRONMENTS_DIR).glob("*.yaml")}
    _check_override_targets(raw_apps, environment_names, problems)
    effective = _effective_apps(raw_apps, environments, environment_maps, problems)
    _check_capacity(effective, environments, environment_maps, problems)
    _check_environment_defaults(environments, environment_maps, problems)
    if problems:
        raise ConfigError(problems)
    return Project(
        root=root,
        environments=environments,
        apps={name: raw.entry for name, raw in sorted(raw_apps.items()) if raw.entry is not None},
        effective={key: spec for key, (spec, _) in sorted(effective.items())},
        app_files={name: raw.source_map.origins[()].file for name, raw in raw_apps.items()},
        inputs=_read_inputs(root),
    )


def _validate(
    model: type[ModelT], data: Any, source_map: SourceMap, problems: list[Problem]
) -> ModelT | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, data, source_map, model))
        return None


def _load_file(path: Path, root: Path, problems: list[Problem]) -> tuple[Any, SourceMap] | None:
    display = path.relative_to(root).as_posix()
    try:
        data, source_map = load_yaml(path, display)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(
            Problem(
                display, 1, 1, "", "the file must hold a mapping at the top level", "start with key: lines"
            )
        )
        return None
    return data, source_map


def _load_environments(
    root: Path, problems: list[Problem]
) -> tuple[dict[str, Environment], dict[str, SourceMap]]:
    folder = root / ENVIRONMENTS_DIR
    environments: dict[str, Environment] = {}
    maps: dict[str, SourceMap] = {}
    paths = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    for stray in sorted(folder.glob("*.yml")) if folder.is_dir() else []:
        problems.append(
            Problem(
                stray.relative_to(root).as_posix(),
                1,
                1,
                "",
                "environment files end in .yaml",
                f"rename it to {stray.stem}.yaml",
            )
        )
    if not paths:
        problems.append(
            Problem(
                f"{ENVIRONMENTS_DIR}/",
                1,
                1,
                "",
                "no environment files found",
                "add environments/localhost.yaml (homec init writes one)",
            )
        )
    for path in paths:
        name = path.stem
        if not _DNS_LABEL.match(name) or len(name) > 63:
            problems.append(
                Problem(
                    path.relative_to(root).as_posix(),
                    1,
                    1,
                    "",
                    f"invalid environment name {name!r}",
                    "name the file with lower-case letters, digits and '-', like cluster.yaml",
                )
            )
            continue
        loaded = _load_file(path, root, problems)
        if loaded is None:
            continue
        data, source_map = loaded
        environment = _validate(Environment, data, source_map, problems)
        if environment is not None:
            environments[name] = environment
            maps[name] = source_map
    return environments, maps


def _load_apps(root: Path, problems: list[Problem]) -> dict[str, _RawApp]:
    main = root / APPS_FILE
    if not main.is_file():
        problems.append(
            Problem(
                APPS_FILE,
                1,
                1,
                "",
                "apps.yaml not found",
                "run homec in the repository root, or homec init DIR for a new one",
            )
        )
        return {}
    apps: dict[str, _RawApp] = {}
    first_seen: dict[str, Origin] = {}
    for path, allow_include in _app_files(root, main, problems):
        loaded = _load_file(path, root, problems)
        if loaded is None:
            continue
        data, source_map = loaded
        if not allow_include and "include" in data:
            origin = source_map.origins[("include",)]
            problems.append(
                Problem(
                    origin.file,
                    origin.key_line,
                    origin.key_column,
                    "include",
                    "included files may not include others",
                    "list every pattern in apps.yaml",
                )
            )
            continue
        parsed = _validate(AppsFileShape, data, source_map, problems)
        if parsed is None:
            continue
        for index, written in enumerate(parsed.apps):
            app_path: KeyPath = ("apps", index)
            app_map = source_map.subtree(app_path)
            app_map.origins[()] = source_map.origins[app_path]
            entry = _validate(AppEntry, written, app_map, problems)
            name = written.get("name")
            if not isinstance(name, str):
                continue
            origin = source_map.origins[app_path]
            if name in first_seen:
                earlier = first_seen[name]
                problems.append(
                    Problem(
                        origin.file,
                        origin.value_line,
                        origin.value_column,
                        format_key_path(app_path),
                        f"duplicate app name {name!r}",
                        f"it is also defined at {earlier.file}:{earlier.value_line}; app names must be unique",
                    )
                )
                continue
            first_seen[name] = origin
            apps[name] = _RawApp(written, app_map, entry)
    return apps


def _app_files(root: Path, main: Path, problems: list[Problem]) -> list[tuple[Path, bool]]:
    files = [(main, True)]
    loaded = _load_file(main, root, [])
    if loaded is None:
        return files
    data, source_map = loaded
    patterns = data.get("include") if isinstance(data.get("include"), list) else []
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or pattern.startswith("/") or ".." in pattern:
            continue
        matches = sorted(path for path in root.glob(pattern) if path.is_file() and path != main)
        if not matches:
            origin = source_map.origins[("include", index)]
            problems.append(
                Problem(
                    origin.file,
                    origin.value_line,
                    origin.value_column,
                    f"include[{index}]",
                    f"pattern {pattern!r} matches no file",
                    "fix the pattern or remove it",
                )
            )
        files.extend((path, False) for path in matches if (path, False) not in files)
    return files


def _check_override_targets(
    apps: dict[str, _RawApp], environments: set[str], problems: list[Problem]
) -> None:
    if not environments:
        return
    known = sorted(environments)
    for raw in apps.values():
        overrides = raw.data.get("overrides")
        for name in overrides if isinstance(overrides, dict) else {}:
            if name in environments:
                continue
            origin = raw.source_map.origins[("overrides", name)]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known environments: {', '.join(known)}"
            problems.append(
                Problem(
                    origin.file,
                    origin.key_line,
                    origin.key_column,
                    format_key_path(origin.path),
                    f"unknown environment {name!r}",
                    hint,
                )
            )


def _effective_apps(
    apps: dict[str, _RawApp],
    environments: dict[str, Environment],
    environment_maps: dict[str, SourceMap],
    problems: list[Problem],
) -> dict[tuple[str, str], tuple[AppSpec, SourceMap]]:
    result: dict[tuple[str, str], tuple[AppSpec, SourceMap]] = {}
    for env_name, environment in environments.items():
        for app_name, raw in apps.items():
            data, source_map = _overlay(raw, env_name, environment, environment_maps[env_name])
            spec = _validate(AppSpec, data, source_map, problems)
            if spec is not None:
                result[(env_name, app_name)] = (spec, source_map)
    return result


def _overlay(
    raw: _RawApp, env_name: str, environment: Environment, env_map: SourceMap
) -> tuple[dict[str, Any], SourceMap]:
    """Merge the layers for one app and environment, keeping where each merged value came from."""
    written = {key: value for key, value in raw.data.items() if key != "overrides"}
    overrides = raw.data.get("overrides")
    override = overrides.get(env_name) if isinstance(overrides, dict) else None
    if not isinstance(override, dict):
        override = {}
    override_map = raw.source_map.subtree(("overrides", env_name))
    enabled = {**_mapping(written.get("serving")), **_mapping(override.get("serving"))}
    defaults = {
        "serving": {
            flavor: values
            for flavor, values in environment.defaults.serving.items()
            if enabled.get(flavor) is not None
        }
    }

    source_map = SourceMap()
    source_map.origins[()] = raw.source_map.origins[()]
    for flavor in defaults["serving"]:
        source_map.graft(env_map.subtree(("defaults", "serving", flavor)), ("serving", flavor))
    merged = deep_merge(defaults, written)
    merge_origins(source_map, written, raw.source_map)
    merged = deep_merge(merged, override)
    merge_origins(source_map, override, override_map)
    if not merged.get("serving"):
        merged.pop("serving", None)
    return merged, source_map


def _check_capacity(
    effective: dict[tuple[str, str], tuple[AppSpec, SourceMap]],
    environments: dict[str, Environment],
    environment_maps: dict[str, SourceMap],
    problems: list[Problem],
) -> None:
    """Reject pods that fit on no node, and environments whose replicas request more than all nodes hold."""
    for env_name, environment in environments.items():
        nodes = environment.kubernetes.nodes
        if not nodes:
            continue
        largest = {
            resource: max(quantity_value(getattr(node, resource)) for node in nodes)
            for resource in _RESOURCES
        }
        total = {
            resource: sum((quantity_value(getattr(node, resource)) for node in nodes), Decimal(0))
            for resource in _RESOURCES
        }
        requested = dict.fromkeys(_RESOURCES, Decimal(0))
        for (env, _), (spec, source_map) in effective.items():
            if env != env_name:
                continue
            for flavor, settings in spec.serving.flavors().items():
                for resource in _RESOURCES:
                    amount = quantity_value(getattr(settings.resources, resource))
                    requested[resource] += amount * settings.replicas
                    if amount > largest[resource]:
                        problems.append(_too_large(source_map, flavor, resource, settings, env_name))
        nodes_origin = environment_maps[env_name].find(("kubernetes", "nodes"))
        assert nodes_origin is not None
        for resource in _RESOURCES:
            if requested[resource] > total[resource]:
                message = (
                    f"the apps request {_amount(resource, requested[resource])} {resource} in all, "
                    f"more than the {_amount(resource, total[resource])} the nodes have"
                )
                hint = "lower replicas or requests, or add nodes"
                problems.append(
                    Problem(
                        nodes_origin.file,
                        nodes_origin.value_line,
                        nodes_origin.value_column,
                        "kubernetes.nodes",
                        message,
                        hint,
                    )
                )


_RESOURCES = ("cpu", "memory")


def _check_environment_defaults(
    environments: dict[str, Environment], environment_maps: dict[str, SourceMap], problems: list[Problem]
) -> None:
    """Validate each flavor's defaults on their own, so a bad default fails even while every app overrides it."""
    for env_name, environment in environments.items():
        for flavor, values in environment.defaults.serving.items():
            model = FLAVOR_MODELS[flavor]
            prefix: KeyPath = ("defaults", "serving", flavor)
            _validate(model, values, environment_maps[env_name].subtree(prefix), problems)


def _amount(resource: str, value: Decimal) -> str:
    """Spell a summed request the way a user writes it: cores for cpu, Gi or Mi for memory."""
    if resource == "cpu":
        return format_decimal(value)
    for suffix, factor in (("Gi", 2**30), ("Mi", 2**20)):
        if value >= factor:
            return f"{format_decimal(round(value / factor, 1))}{suffix}"
    return format_decimal(value)


def _too_large(source_map: SourceMap, flavor: str, resource: str, settings: Flavor, env_name: str) -> Problem:
    origin = source_map.find(("serving", flavor, "resources", resource))
    assert origin is not None
    amount = getattr(settings.resources, resource)
    message = f"{resource} request {amount} fits on no node of environment {env_name!r}"
    hint = "lower the request or add a larger node to kubernetes.nodes"
    return Problem(
        origin.file, origin.value_line, origin.value_column, format_key_path(origin.path), message, hint
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _read_inputs(root: Path) -> dict[str, bytes]:
    inputs: dict[str, bytes] = {}
    for folder in INPUT_DIRS:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not _SKIPPED_PARTS.intersection(relative.parts) and path.suffix != ".pyc":
                inputs[relative.as_posix()] = path.read_bytes()
    return inputs
