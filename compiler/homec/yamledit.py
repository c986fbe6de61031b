"""Change one mapping of a YAML document in place and leave every other byte of the file as it was.

Dumping a round-trip-loaded document with ruamel.yaml keeps comments and key order but re-indents
sequences, normalizes spacing inside flow mappings and between a key and its value, and moves inline
comments. So this module takes a narrower path: ruamel.yaml composes the document into nodes that
carry the exact character span of every key and value, and only the spans of the entries that change
are replaced. Entries that keep their value are not touched, a removed entry loses its line (with its
inline comment), and new entries get lines of their own at the indentation of their siblings. The
edited text is parsed again and compared with the intended data before it is returned.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from homec.errors import HomecError

KeyPath = tuple[str | int, ...]
# Characters that make a plain scalar mean something else, or end it, somewhere in a YAML document.
_INDICATORS = set(":#{}[],&*!|>'\"%@`?\\")


class YamlEditError(HomecError):
    """The file's layout at the place to change is one this editor does not handle."""


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class _Entry:
    name: str
    key: Node
    value: Node


def set_mapping(
    text: str,
    path: KeyPath,
    values: dict[str, Any],
    order: Sequence[str] = (),
    quoted: frozenset[str] = frozenset(),
) -> str:
    """Return ``text`` with the mapping at ``path`` holding exactly ``values`` (scalars only).

    The mapping is created under its parent when it is missing. ``order`` ranks new keys; a new key
    takes the place of the first removed one, or follows the last kept one. Keys in ``quoted`` are
    written single-quoted when they are new; a changed value keeps the quoting style it had.
    """
    root = compose(text)
    parent = find_node(root, path[:-1])
    if not isinstance(parent, MappingNode):
        raise YamlEditError(f"cannot find the mapping {_display(path[:-1])} to edit")
    name = str(path[-1])
    entry = _entry(parent, name)
    newline = "\r\n" if "\r\n" in text else "\n"
    ranked = sorted(values, key=lambda key: order.index(key) if key in order else len(order))
    if entry is None:
        edits = [_add_entry(text, parent, name, values, ranked, quoted, newline)]
    elif not isinstance(entry.value, MappingNode):
        raise YamlEditError(f"{_display(path)} is not a mapping; write it as key: value lines and run again")
    elif entry.value.flow_style:
        edits = [_flow_edit(text, entry.value, values, ranked, quoted)]
    else:
        edits = _block_edits(text, entry.value, values, ranked, quoted, newline)
    result = _apply(text, edits)
    _verify(text, result, path, values)
    return result


def compose(text: str) -> Node:
    """Parse ``text`` into ruamel.yaml nodes, which keep the character span of every key and value."""
    try:
        node = YAML(typ="rt").compose(text)
    except YAMLError as exc:
        raise YamlEditError(f"the file is not valid YAML: {exc}") from None
    if not isinstance(node, Node):
        raise YamlEditError("the file is empty")
    return node


def find_node(root: Node, path: KeyPath) -> Node | None:
    """Return the node at ``path`` (mapping keys and sequence indexes), or ``None`` when it does not exist."""
    node: Node | None = root
    for part in path:
        if isinstance(part, int) and isinstance(node, SequenceNode):
            node = node.value[part] if 0 <= part < len(node.value) else None
        elif isinstance(part, str) and isinstance(node, MappingNode):
            entry = _entry(node, part)
            node = entry.value if entry is not None else None
        else:
            return None
    return node


def locate(text: str, path: KeyPath) -> tuple[int, int] | None:
    """Return the 1-based line and column of the key at ``path`` (or of the item, for an index)."""
    try:
        root = compose(text)
    except YamlEditError:
        return None
    parent = find_node(root, path[:-1])
    last = path[-1] if path else None
    mark = None
    if isinstance(parent, MappingNode) and isinstance(last, str):
        entry = _entry(parent, last)
        mark = entry.key.start_mark if entry is not None else None
    elif isinstance(parent, SequenceNode) and isinstance(last, int) and 0 <= last < len(parent.value):
        mark = parent.value[last].start_mark
    if mark is None:
        return None
    return mark.line + 1, mark.column + 1


def scalar_text(value: Any, style: str | None = None) -> str:
    """Return ``value`` as a YAML scalar in ``style`` (``'``, ``"`` or plain when it stays a string)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if style == '"':
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style == "'" or not _plain_is_string(text):
        return "'" + text.replace("'", "''") + "'"
    return text


def _plain_is_string(text: str) -> bool:
    """Return whether ``text`` written plain reads back as the same string in YAML 1.2 and in YAML 1.1."""
    if not text or text != text.strip() or _INDICATORS.intersection(text) or text[0] in "-":
        return False
    try:
        modern = YAML(typ="safe", pure=True).load(text)
        legacy = pyyaml.safe_load(text)
    except (YAMLError, pyyaml.YAMLError):
        return False
    return bool(modern == text and legacy == text)


def _entry(mapping: MappingNode, name: str) -> _Entry | None:
    for key, value in mapping.value:
        if isinstance(key, ScalarNode) and key.value == name:
            return _Entry(name, key, value)
    return None


def _entries(mapping: MappingNode) -> list[_Entry]:
    return [_Entry(str(key.value), key, value) for key, value in mapping.value]


def _block_edits(
    text: str,
    mapping: MappingNode,
    values: dict[str, Any],
    ranked: list[str],
    quoted: frozenset[str],
    newline: str,
) -> list[_Edit]:
    entries = _entries(mapping)
    edits: list[_Edit] = []
    kept: set[str] = set()
    removed: list[_Entry] = []
    for entry in entries:
        if entry.name in values and isinstance(entry.value, ScalarNode):
            kept.add(entry.name)
            edit = _value_edit(text, entry.value, values[entry.name])
            if edit is not None:
                edits.append(edit)
        else:
            removed.append(entry)
    indent = " " * entries[0].key.start_mark.column
    added = "".join(
        f"{indent}{name}: {scalar_text(values[name], _new_style(name, quoted))}{newline}"
        for name in ranked
        if name not in kept
    )
    for index, entry in enumerate(removed):
        start = _line_start(text, entry.key)
        edits.append(_Edit(start, _line_end(text, _last_index(entry.value)), added if index == 0 else ""))
    if not removed and added:
        end = _line_end(text, _last_index(entries[-1].value))
        edits.append(_Edit(end, end, added))
    return edits


def _flow_edit(
    text: str, mapping: MappingNode, values: dict[str, Any], ranked: list[str], quoted: frozenset[str]
) -> _Edit:
    items: list[str] = []
    kept: set[str] = set()
    insert_at: int | None = None
    for entry in _entries(mapping):
        if entry.name in values and isinstance(entry.value, ScalarNode):
            kept.add(entry.name)
            edit = _value_edit(text, entry.value, values[entry.name])
            value_text = (
                text[entry.value.start_mark.index : entry.value.end_mark.index] if edit is None else edit.text
            )
            items.append(
                f"{text[entry.key.start_mark.index : entry.key.end_mark.index]}: {value_text.strip()}"
            )
        elif insert_at is None:
            insert_at = len(items)
    new_items = [
        f"{name}: {scalar_text(values[name], _new_style(name, quoted))}"
        for name in ranked
        if name not in kept
    ]
    position = len(items) if insert_at is None else insert_at
    items[position:position] = new_items
    start, end = mapping.start_mark.index, mapping.end_mark.index
    padding = " " if text[start + 1 : start + 2] == " " else ""
    return _Edit(start, end, "{" + padding + ", ".join(items) + padding + "}")


def _add_entry(
    text: str,
    parent: MappingNode,
    name: str,
    values: dict[str, Any],
    ranked: list[str],
    quoted: frozenset[str],
    newline: str,
) -> _Edit:
    if parent.flow_style or not parent.value:
        raise YamlEditError(f"cannot add {name}: to a flow mapping; add it by hand as a block and run again")
    entries = _entries(parent)
    # The new entry follows the training section when there is one, else the last entry.
    anchor = next((entry for entry in entries if entry.name == "training"), entries[-1])
    position = _line_end(text, _last_index(anchor.value))
    column = entries[0].key.start_mark.column
    step = _indent_step(parent, column)
    lines = [f"{' ' * column}{name}:{newline}"]
    lines += [
        f"{' ' * (column + step)}{key}: {scalar_text(values[key], _new_style(key, quoted))}{newline}"
        for key in ranked
    ]
    return _Edit(position, position, "".join(lines))


def _value_edit(text: str, node: ScalarNode, new: Any) -> _Edit | None:
    """Return the edit that gives ``node`` the value ``new``, or ``None`` when it already has it."""
    old = YAML(typ="safe", pure=True).load(text[node.start_mark.index : node.end_mark.index] or "~")
    if _same(old, new):
        return None
    start, end = node.start_mark.index, node.end_mark.index
    replacement = scalar_text(new, node.style if node.style in {"'", '"'} else None)
    if start == end:
        # An empty value (``key:``) has no characters of its own; keep a space after the colon.
        replacement = " " + replacement
    return _Edit(start, end, replacement)


def _same(old: Any, new: Any) -> bool:
    if type(old) is type(new):
        return bool(old == new)
    # ``experiment_id: 1`` and ``experiment_id: '1'`` mean the same id; leave the written form alone.
    return isinstance(old, int) and not isinstance(old, bool) and isinstance(new, str) and str(old) == new


def _new_style(name: str, quoted: frozenset[str]) -> str | None:
    return "'" if name in quoted else None


def _indent_step(parent: MappingNode, column: int) -> int:
    for _, value in parent.value:
        if isinstance(value, MappingNode) and not value.flow_style and value.value:
            return int(value.value[0][0].start_mark.column) - column
    return 2


def _last_index(node: Node) -> int:
    """Return the index just past the last character that belongs to ``node``'s own content."""
    if isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return _last_index(last[1] if isinstance(node, MappingNode) else last)
    return int(node.end_mark.index)


def _line_start(text: str, key: Node) -> int:
    start = text.rfind("\n", 0, key.start_mark.index) + 1
    if text[start : key.start_mark.index].strip():
        raise YamlEditError(
            f"line {key.start_mark.line + 1} contains more than one entry; put each key on its own line"
        )
    return start


def _line_end(text: str, index: int) -> int:
    end = text.find("\n", index)
    return len(text) if end == -1 else end + 1


def _apply(text: str, edits: list[_Edit]) -> str:
    result = text
    for edit in sorted(edits, key=lambda edit: (edit.start, edit.end), reverse=True):
        result = result[: edit.start] + edit.text + result[edit.end :]
    return result


def _verify(before: str, after: str, path: KeyPath, values: dict[str, Any]) -> None:
    loader = YAML(typ="safe", pure=True)
    old, new = loader.load(before), loader.load(after)
    expected = copy.deepcopy(old)
    _put(expected, path, None)
    written = _take(new, path)
    _put(new, path, None)
    if (
        new != expected
        or not isinstance(written, dict)
        or {k: str(v) for k, v in written.items()} != {k: str(v) for k, v in values.items()}
    ):
        raise RuntimeError(
            f"editing {_display(path)} changed more than that mapping; the file was not written"
        )


def _take(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data


def _put(data: Any, path: KeyPath, value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _display(path: KeyPath) -> str:
    return (
        "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
        or "the top level"
    )
