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
    details = _drop_other_union_members(error.errors(include_url=False), data)
    return [_problem(detail, data, source_map, model) for detail in details]


def _drop_other_union_members(details: list[Any], data: Any) -> list[Any]:
    """Keep, for a value that matched no member of a union such as ``str | SecretRef``, only the errors
    of the member the value looks like: a mapping is read as the model, a scalar as the plain type."""
    by_path: dict[KeyPath, list[Any]] = {}
    for detail in details:
        by_path.setdefault(_data_path(detail["loc"], data), []).append(detail)
    kept = []
    for path, group in by_path.items():
        value = _value_at(data, path)
        if len(group) > 1 and isinstance(value, dict):
            group = [d for d in group if d["type"] not in _SCALAR_TYPES] or group
        elif len(group) > 1:
            group = [
                d for d in group if d["type"] not in {"model_type", "dict_type", "model_attributes_type"}
            ] or group
        kept.extend(group)
    return kept


_SCALAR_TYPES = {"string_type", "int_type", "bool_type", "float_type", "int_parsing", "bool_parsing"}


def _value_at(data: Any, path: KeyPath) -> Any:
    node = data
    for part in path:
        node = node[part]
    return node


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
        return Problem(
            file,
            line,
            column,
            shown_path,
            f"missing required key {missing!r}",
            f"add {missing}: under this mapping",
        )
    if kind == "extra_forbidden":
        return _unknown_key(path, model, file, line, column, shown_path)
    message, hint = _message_and_hint(detail)
    return Problem(file, line, column, shown_path, message, hint)


def _data_path(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """Follow ``loc`` through ``data``, skipping the union-member tags pydantic adds to locations."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            path.append(part)
            node = node[part]
    return tuple(path)


def _message_and_hint(detail: Any) -> tuple[str, str]:
    kind = detail["type"]
    value = detail.get("input")
    context = detail.get("ctx") or {}
    original = context.get("error")
    if isinstance(original, ValueError):
        return str(original), getattr(original, "hint", "")
    shown = (
        ""
        if isinstance(value, dict | list)
        else f"; got {_yaml_text(value)!r}"
        if isinstance(value, bool)
        else f"; got {value!r}"
    )
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"expected a whole number{shown}", "write a whole number without quotes, such as 2"
    if kind == "string_type":
        hint = (
            f'quote the value to keep it text, for example "{_yaml_text(value)}"'
            if _is_scalar(value)
            else "write text here"
        )
        return f"expected text{shown}", hint
    if kind in {"bool_type", "bool_parsing"}:
        return f"expected true or false{shown}", "write true or false without quotes"
    if kind in {"greater_than_equal", "greater_than"}:
        bound = context.get("ge", context.get("gt"))
        return f"value is too small{shown}", f"use {bound} or more"
    if kind in {"less_than_equal", "less_than"}:
        bound = context.get("le", context.get("lt"))
        return f"value is too large{shown}", f"use {bound} or less"
    if kind == "literal_error":
        return f"invalid value{shown}", f"use one of: {context.get('expected', '')}"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"expected a mapping{shown}", "write key: value lines here"
    if kind == "list_type":
        return f"expected a list{shown}", "write one '- item' per line"
    if kind in {"string_too_short", "too_short"}:
        return f"value is empty{shown}", "give a value"
    if kind in {"string_too_long", "too_long"}:
        return f"value is too long{shown}", f"shorten it to {context.get('max_length', 'the limit')}"
    if kind == "string_pattern_mismatch":
        return f"invalid value{shown}", f"it must match {context.get('pattern', '')}"
    return str(detail["msg"]) + shown, ""


def _is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float)


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
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
