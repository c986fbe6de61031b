"""Recorded model signatures: ``signatures/<app>.json``.

``homec promote`` writes the signature of the model it pins, and rendering reads it to generate typed
services without contacting MLflow. The file is homec's own stable format: a JSON object with sorted
keys, two-space indent and a trailing newline::

    {
      "inputs": [{"name": "sepal_length", "required": true, "type": "double"}, ...],
      "model_uri": "models:/iris-classifier/3",
      "outputs": [{"name": "species", "required": true, "type": "string"}],
      "params": null
    }

``inputs``, ``outputs`` and ``params`` are the lists of MLflow's ``ModelSignature.to_dict()`` decoded
from the JSON strings MLflow stores them as: column specs (``name``, ``type``, ``required``) or tensor
specs (``type: tensor`` with a ``tensor-spec`` of ``dtype`` and ``shape``). ``outputs`` and ``params``
are ``null`` when the model has none. ``model_uri`` is the URI as ``apps.yaml`` pins it.

This module never imports MLflow.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homec.errors import HomecError

SIGNATURES_DIR = "signatures"
_KEYS = frozenset({"model_uri", "inputs", "outputs", "params"})
_REWRITE_HINT = "run homec promote APP again to rewrite the file from the tracking server"

# MLflow column types and the Python type a value of that column has.
PYTHON_TYPES = {
    "double": "float",
    "float": "float",
    "long": "int",
    "integer": "int",
    "boolean": "bool",
    "string": "str",
    "binary": "bytes",
    "datetime": "datetime",
}


class SignatureFileError(HomecError):
    """A ``signatures/<app>.json`` file that is not in homec's signature format."""


@dataclass(frozen=True)
class Column:
    """One entry of a signature: a named column or a tensor.

    ``type`` is the MLflow type name (``double``, ``string``, ``tensor``, ``array`` ...). ``dtype`` and
    ``shape`` are set for tensors only. ``name`` is ``None`` for an unnamed column or tensor.
    """

    name: str | None
    type: str
    required: bool = True
    dtype: str | None = None
    shape: tuple[int, ...] | None = None

    @property
    def python_type(self) -> str | None:
        """The Python type of one value of a scalar column, or ``None`` for tensors and nested types."""
        return PYTHON_TYPES.get(self.type)


@dataclass(frozen=True)
class ModelSignature:
    """The signature of a pinned model, as recorded in ``signatures/<app>.json``."""

    model_uri: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]] | None = None
    params: list[dict[str, Any]] | None = None

    @classmethod
    def from_mlflow(cls, model_uri: str, signature: dict[str, Any]) -> ModelSignature:
        """Build from MLflow's ``ModelSignature.to_dict()``, whose lists are JSON strings or ``None``."""
        return cls(
            model_uri=model_uri,
            inputs=_decoded(signature.get("inputs"), "inputs") or [],
            outputs=_decoded(signature.get("outputs"), "outputs"),
            params=_decoded(signature.get("params"), "params"),
        )

    def input_columns(self) -> list[Column]:
        return [_column(spec) for spec in self.inputs]

    def output_columns(self) -> list[Column]:
        return [_column(spec) for spec in self.outputs or []]

    def input_names(self) -> list[str]:
        """Return the names of the named input columns, in signature order."""
        return [column.name for column in self.input_columns() if column.name is not None]

    def to_bytes(self) -> bytes:
        document = {
            "model_uri": self.model_uri,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "params": self.params,
        }
        return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def signature_path(app: str) -> str:
    """Return the repository-relative path of an app's signature file."""
    return f"{SIGNATURES_DIR}/{app}.json"


def parse_signature(data: bytes, source: str) -> ModelSignature:
    """Parse the bytes of a signature file. ``source`` names the file in errors."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureFileError(f"{source}: invalid JSON: {exc}", _REWRITE_HINT) from None
    if not isinstance(document, dict):
        raise SignatureFileError(f"{source}: the file must contain a JSON object", _REWRITE_HINT)
    unknown = sorted(set(document) - _KEYS)
    missing = sorted(_KEYS - set(document))
    if unknown or missing:
        parts = [
            f"unknown keys {', '.join(unknown)}" if unknown else "",
            f"missing keys {', '.join(missing)}" if missing else "",
        ]
        raise SignatureFileError(f"{source}: {'; '.join(part for part in parts if part)}", _REWRITE_HINT)
    model_uri = document["model_uri"]
    if not isinstance(model_uri, str) or not model_uri:
        raise SignatureFileError(f"{source}: model_uri must be a non-empty string", _REWRITE_HINT)
    inputs = _spec_list(document["inputs"], "inputs", source)
    if inputs is None:
        raise SignatureFileError(f"{source}: inputs must be a list of MLflow specs, not null", _REWRITE_HINT)
    return ModelSignature(
        model_uri=model_uri,
        inputs=inputs,
        outputs=_spec_list(document["outputs"], "outputs", source),
        params=_spec_list(document["params"], "params", source),
    )


def read_signature(root: Path, app: str) -> ModelSignature | None:
    """Return the recorded signature of ``app`` in the repository at ``root``, or ``None`` if there is none."""
    path = root / signature_path(app)
    if not path.is_file():
        return None
    return parse_signature(path.read_bytes(), signature_path(app))


def write_signature(root: Path, app: str, signature: ModelSignature) -> Path:
    """Write the signature file of ``app`` atomically and return its path."""
    path = root / signature_path(app)
    write_atomically(path, signature.to_bytes())
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the whole old or the whole new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        else:
            os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _decoded(value: Any, key: str) -> list[dict[str, Any]] | None:
    if isinstance(value, str):
        value = json.loads(value)
    return _spec_list(value, key, "MLflow signature")


def _spec_list(value: Any, key: str, source: str) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(spec, dict) and isinstance(spec.get("type"), str) for spec in value
    ):
        raise SignatureFileError(
            f"{source}: {key} must be a list of MLflow specs, each with a type, or null", _REWRITE_HINT
        )
    return value


def _column(spec: dict[str, Any]) -> Column:
    name = spec.get("name")
    found = spec.get("tensor-spec")
    tensor: dict[str, Any] = found if isinstance(found, dict) else {}
    shape = tensor.get("shape")
    return Column(
        name=name if isinstance(name, str) and name else None,
        type=str(spec["type"]),
        required=spec.get("required", True) is not False,
        dtype=str(tensor["dtype"]) if "dtype" in tensor else None,
        shape=tuple(int(size) for size in shape) if isinstance(shape, list) else None,
    )
