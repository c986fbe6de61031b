"""Turn pydantic validation errors into positioned ``Problem``s with hints."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from homec.config.loader import KeyPath, SourceMap, format_key_path
from homec.errors import Problem


def problems_from_validation(
    error: ValidationError, data: Any, source_map: SourceMap, model: type[BaseModel]
) -> list[Problem]:
    return [_problem(detail, data, source_map, model) for detail in error.errors(include_url=False)]


def _problem(detail: Any, data: Any, source_map: SourceMap, model: type[BaseModel]) -> Problem:
    path = _data_path(detail["loc"], data)
    kind = detail["type"]
    origin = source_map.find(path)
    file = origin.file if origin else "<unknown>"
    shown_path = format_key_path(origin.path if origin else path)
    if origin is None:
        line = column = 1
    elif kind == "extra_forbidden":
        line, column = origin.key_line, origin.key_column
    else:
        line, column = origin.value_line, origin.value_column

    if kind == "missing":
        missing = str(detail["loc"][-1])
        return Problem(file, line, column, shown_path, f"missing required key {missing!r}", f"add {missing}: under this mapping")
    if kind == "extra_forbidden":
        return _unknown_key(path, model, file, line, column, shown_path)
    message = _message(detail)
    return Problem(file, line, column, shown_path, message, _type_hint(kind, detail.get("input")))


def _data_path(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """Follow ``loc`` through ``data``, skipping the union-member tags pydantic adds to locations."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
    return tuple(path)


def _message(detail: Any) -> str:
    message = str(detail["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = detail.get("input")
    if detail["type"] not in {"value_error", "assertion_error"} and not isinstance(value, dict | list):
        message += f"; got {value!r}"
    return message


def _type_hint(kind: str, value: Any) -> str:
    if kind == "string_type" and isinstance(value, bool | int | float):
        return f'quote the value to keep it a string, for example "{_yaml_text(value)}"'
    if kind in {"int_type", "int_parsing"} and isinstance(value, str):
        return "write a whole number without quotes"
    if kind == "bool_type":
        return "write true or false without quotes"
    if kind in {"dict_type", "model_type"}:
        return "write a mapping of key: value lines here"
    if kind == "list_type":
        return "write a list here, one '- item' per line"
    return ""


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unknown_key(
    path: KeyPath, model: type[BaseModel], file: str, line: int, column: int, shown_path: str
) -> Problem:
    key = str(path[-1]) if path else ""
    allowed = sorted(allowed_keys(model, path[:-1]))
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {close[0]!r}?"
    elif allowed:
        hint = f"allowed keys here: {', '.join(allowed)}"
    else:
        hint = "remove this key"
    return Problem(file, line, column, shown_path, f"unknown key {key!r}", hint)


def allowed_keys(model: type[BaseModel], path: KeyPath) -> set[str]:
    """Return the keys the schema accepts in the mapping at ``path``."""
    annotation: Any = model
    for part in path:
        annotation = _child_annotation(annotation, part)
        if annotation is None:
            return set()
    found: set[str] = set()
    for candidate in _members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            found.update(candidate.model_fields)
        elif typing.get_origin(candidate) is dict:
            key_type = typing.get_args(candidate)[0]
            if typing.get_origin(key_type) is typing.Literal:
                found.update(str(arg) for arg in typing.get_args(key_type))
    return found


def _child_annotation(annotation: Any, part: str | int) -> Any:
    for candidate in _members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel) and isinstance(part, str):
            field = candidate.model_fields.get(part)
            if field is not None:
                return field.annotation
        origin = typing.get_origin(candidate)
        if origin is list and isinstance(part, int):
            return typing.get_args(candidate)[0]
        if origin is dict and isinstance(part, str):
            return typing.get_args(candidate)[1]
    return None


def _members(annotation: Any) -> list[Any]:
    """Flatten ``Optional``, unions and ``Annotated`` into the plain types they admit."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [member for arg in typing.get_args(annotation) for member in _members(arg)]
    return [annotation]
