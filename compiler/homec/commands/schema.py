"""``homec schema``: the JSON Schemas of homec's input files."""

from __future__ import annotations

from pathlib import Path

from homec.config.jsonschema import schema_documents


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in schema_documents().items():
        path = folder / name
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
            written.append(path)
    return written
