"""JSON Schema of ``apps.yaml`` and environment files, for editors (yaml-language-server) and CI."""

from __future__ import annotations

import copy
import json
from typing import Any

from homec.config.schema import AppsFile, Environment

SCHEMA_FILES = {"apps": "apps.schema.json", "environment": "environment.schema.json"}


def _partial(schema: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` with every ``required`` list dropped, as an override may set any subset."""
    result = copy.deepcopy(schema)
    stack: list[Any] = [result]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            node.pop("required", None)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return result


def apps_schema() -> dict[str, Any]:
    schema = AppsFile.model_json_schema()
    definitions = schema.setdefault("$defs", {})
    spec = copy.deepcopy(definitions["AppEntry"])
    spec["properties"].pop("overrides", None)
    spec["title"] = "AppOverride"
    spec["description"] = (
        "Changes for one environment: mappings merge, lists and scalars replace, null removes."
    )
    definitions["AppOverride"] = _partial(spec)
    overrides = definitions["AppEntry"]["properties"]["overrides"]
    overrides["additionalProperties"] = {"anyOf": [{"$ref": "#/$defs/AppOverride"}, {"type": "null"}]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "homec apps file"
    return schema


def environment_schema() -> dict[str, Any]:
    schema = Environment.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "homec environment file"
    return schema


def schema_documents() -> dict[str, bytes]:
    """Return both schemas as file name -> JSON bytes, stable across runs."""
    schemas = {"apps": apps_schema(), "environment": environment_schema()}
    return {
        SCHEMA_FILES[name]: (json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        for name, schema in schemas.items()
    }
