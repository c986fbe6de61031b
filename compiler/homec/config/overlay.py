"""The one merge rule of homec's environment overlay.

Precedence, lowest first: the schema's built-in defaults < the environment's ``defaults`` < the app as
written < the app's ``overrides.<environment>``.

``deep_merge`` applies one layer over another. Mappings merge key by key, recursively. A scalar or a
list in the upper layer replaces the lower value whole, because list items carry no key to match them
by. To change one item, repeat the whole list. ``null`` in the upper layer removes the key, which is how
an override turns a flavor off (``serving: {bentoml: null}``).
"""

from __future__ import annotations

import copy
from typing import Any

from homec.config.loader import KeyPath, SourceMap


def deep_merge(lower: Any, upper: Any) -> Any:
    """Return ``upper`` merged over ``lower``; neither input is changed."""
    if not isinstance(lower, dict) or not isinstance(upper, dict):
        return copy.deepcopy(upper)
    merged = copy.deepcopy(lower)
    for key, value in upper.items():
        if value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merge_origins(lower: SourceMap, upper_data: Any, upper: SourceMap, path: KeyPath = ()) -> None:
    """Update ``lower`` in place so each node merged from ``upper_data`` points at its upper origin."""
    origin = upper.origins.get(path)
    if not isinstance(upper_data, dict):
        lower.drop(path)
        if origin is not None:
            lower.graft(upper.subtree(path), path)
        return
    if origin is not None and path:
        lower.origins[path] = origin
    for key, value in upper_data.items():
        child = (*path, key)
        if value is None:
            lower.drop(child)
        else:
            merge_origins(lower, value, upper, child)
