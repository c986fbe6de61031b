"""YAML loading that keeps where every key and value was written.

Values are converted to plain Python data for pydantic. A ``SourceMap`` keeps, for every key path, the
file and the 1-based line and column of the key and of its value. A schema error can then point at the
exact spot in the user's file.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from homec.errors import ConfigError, Problem

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Origin:
    """Position of one node: the file, its key path there, and 1-based line and column numbers."""

    file: str
    path: KeyPath
    key_line: int
    key_column: int
    value_line: int
    value_column: int


@dataclass
class SourceMap:
    """Origins of every node of a loaded tree, keyed by the node's path in that tree."""

    origins: dict[KeyPath, Origin] = field(default_factory=dict)

    def find(self, path: KeyPath) -> Origin | None:
        """Return the origin of ``path`` or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            origin = self.origins.get(path[:end])
            if origin is not None:
                return origin
        return None

    def subtree(self, prefix: KeyPath) -> SourceMap:
        """Return the origins below ``prefix``, re-keyed relative to it."""
        size = len(prefix)
        return SourceMap({path[size:]: o for path, o in self.origins.items() if path[:size] == prefix})

    def graft(self, other: SourceMap, prefix: KeyPath = ()) -> None:
        """Place ``other``'s origins under ``prefix``, replacing what was there."""
        self.drop(prefix)
        for path, origin in other.origins.items():
            self.origins[prefix + path] = origin

    def drop(self, prefix: KeyPath) -> None:
        size = len(prefix)
        for path in [p for p in self.origins if p[:size] == prefix and size]:
            del self.origins[path]


def format_key_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text


def load_yaml(path: Path, display: str) -> tuple[Any, SourceMap]:
    """Load one YAML document; raise ``ConfigError`` with the position of any syntax or duplicate-key error."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(display, 1, 1, "", f"file is not UTF-8 text ({exc.reason})", "save it as UTF-8")]
        ) from exc
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        documents = list(yaml.load_all(text))
    except MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(exc, display)]) from exc
    if len(documents) > 1:
        raise ConfigError(
            [
                Problem(
                    display, 1, 1, "", "the file holds several YAML documents", "keep one document per file"
                )
            ]
        )
    root = documents[0] if documents else None
    source_map = SourceMap()
    source_map.origins[()] = Origin(display, (), 1, 1, 1, 1)
    return _plain(root, (), display, source_map), source_map


def _yaml_problem(exc: MarkedYAMLError, display: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    message = " ".join(part for part in (exc.context, exc.problem) if part)
    hint = "fix the YAML syntax at that position"
    if exc.problem and "duplicate key" in exc.problem:
        hint = "remove one of the two entries; a key may appear once per mapping"
        message = exc.problem.replace("found duplicate key", "duplicate key").split(" with value")[0]
    return Problem(display, line, column, "", message.strip(), hint)


def _plain(node: Any, path: KeyPath, display: str, source_map: SourceMap) -> Any:
    if isinstance(node, CommentedMap):
        result: dict[Any, Any] = {}
        for key, value in node.items():
            key_line, key_column = node.lc.key(key)
            value_line, value_column = node.lc.value(key)
            child = (*path, str(key))
            source_map.origins[child] = Origin(
                display, child, key_line + 1, key_column + 1, value_line + 1, value_column + 1
            )
            result[str(key) if not isinstance(key, str) else key] = _plain(value, child, display, source_map)
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            line, column = node.lc.item(index)
            child = (*path, index)
            source_map.origins[child] = Origin(display, child, line + 1, column + 1, line + 1, column + 1)
            items.append(_plain(value, child, display, source_map))
        return items
    return _plain_scalar(node)


def _plain_scalar(node: Any) -> Any:
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, datetime.date):
        return node.isoformat()
    return node
