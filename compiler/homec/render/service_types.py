"""Request and response types of a generated service, derived from the pinned model's MLflow signature.

``homec promote`` records the signature in ``signatures/<app>.json``: ``inputs`` is a list of MLflow
column specs (``{"name": "sepal_length", "type": "double", "required": true}``) or tensor specs
(``{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}``), as
``ModelSignature.to_dict()`` writes them once decoded from JSON; ``outputs`` and ``params`` have the
same form or are null. This module turns that file into a ``ServiceTypes`` value that the service
templates print as pydantic fields, so a request is validated and documented in OpenAPI with the
model's own column names and types.

A request carries a batch of rows, ``{"rows": [...]}``, and the response is ``{"predictions": [...]}``:

- column signature: each row is an object keyed by column name; missing, extra or mistyped columns
  are rejected,
- tensor signature: each row is one entry along the first axis, a nested list of the tensor's row
  shape (or, for several named tensors, an object of such lists),
- no signature file: each row is a free-form object, passed to the model as a data frame record.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from homec.signatures import ModelSignature, SignatureFileError, parse_signature, signature_path

_REWRITE_HINT = "run homec promote APP again, or remove the file to serve free-form rows"

# MLflow column types: the type name used in generated code (defined in the serving runtime), the
# pandas dtype of the column handed to the model, and an example value for documentation.
COLUMN_TYPES: dict[str, tuple[str, str, Any]] = {
    "double": ("Double", "float64", 1.0),
    "float": ("Float", "float32", 1.0),
    "long": ("Long", "int64", 1),
    "integer": ("Integer", "int32", 1),
    "boolean": ("Boolean", "bool", True),
    "string": ("String", "object", "text"),
    "binary": ("Binary", "object", "aGVsbG8="),
    "datetime": ("Datetime", "datetime64[ns]", "2024-01-01T00:00:00"),
}

# numpy dtypes of MLflow tensor specs, with the element type used in generated code.
TENSOR_TYPES: dict[str, str] = {
    **{name: "Double" for name in ("float64", "float32", "float16")},
    **{name: "Long" for name in ("int64", "int32", "int16", "int8")},
    **{name: "UnsignedLong" for name in ("uint64", "uint32", "uint16", "uint8")},
    "bool": "Boolean",
    "str": "String",
    "object": "String",
}
_TENSOR_EXAMPLES = {"Double": 0.0, "Long": 0, "UnsignedLong": 0, "Boolean": False, "String": "text"}

# Names a pydantic field may not take: BaseModel's own attributes and Python keywords.
_RESERVED_FIELDS = frozenset(dir(BaseModel)) | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
_NOT_IDENTIFIER = re.compile(r"[^0-9A-Za-z_]+")
# Names of the field types that the serving runtime defines, as they appear in annotations.
_RUNTIME_TYPE = re.compile(r"\b(Binary|Boolean|Datetime|Double|Float|Integer|Long|String|UnsignedLong)\b")


@dataclass(frozen=True)
class Column:
    """One input column: the pydantic field that carries it and how the model receives it."""

    field: str
    name: str
    annotation: str
    dtype: str
    required: bool
    example: Any

    @property
    def needs_alias(self) -> bool:
        return self.field != self.name


@dataclass(frozen=True)
class Tensor:
    """One input tensor. ``annotation`` is the type of one row: the tensor without its first axis."""

    field: str
    name: str | None
    annotation: str
    dtype: str
    shape: tuple[int, ...]
    example: Any

    @property
    def needs_alias(self) -> bool:
        return self.name is not None and self.field != self.name


@dataclass(frozen=True)
class Param:
    """One inference parameter of the model, passed to ``predict(params=...)``."""

    field: str
    name: str
    annotation: str
    default: Any

    @property
    def needs_alias(self) -> bool:
        return self.field != self.name


@dataclass(frozen=True)
class ServiceTypes:
    """Request and response types of one app's service, as the service templates print them."""

    kind: Literal["columns", "tensors", "records"]
    columns: tuple[Column, ...] = ()
    tensors: tuple[Tensor, ...] = ()
    params: tuple[Param, ...] = ()
    prediction: str = "Any"
    model_uri: str | None = None
    example_row: Any = field(default_factory=dict)

    @property
    def batchable(self) -> bool:
        """Whether rows of different requests may share one model call.

        Parameters apply to a whole request, so a model with parameters is called once per request.
        A tensor whose first axis is fixed cannot be concatenated either.
        """
        if self.params:
            return False
        return all(tensor.shape[:1] == (-1,) for tensor in self.tensors)

    @property
    def single_tensor(self) -> bool:
        return self.kind == "tensors" and len(self.tensors) == 1 and self.tensors[0].name is None

    @property
    def row_model(self) -> bool:
        """Whether a row is a pydantic model (columns, several tensors) rather than a plain type."""
        return self.kind == "columns" or (self.kind == "tensors" and not self.single_tensor)

    def example_request(self) -> dict[str, Any]:
        """Return a request body with one example row, for OpenAPI and for ``homec serve``."""
        return {"rows": [self.example_row]}

    def annotations(self) -> list[str]:
        """Return every type annotation the request models use."""
        found = [column.annotation for column in self.columns]
        found += [tensor.annotation for tensor in self.tensors]
        found += [param.annotation for param in self.params]
        return found

    def runtime_names(self) -> list[str]:
        """Return the names generated code imports from the serving runtime for these types."""
        used = set(_RUNTIME_TYPE.findall(" ".join(self.annotations())))
        used.add({"columns": "column_frame", "tensors": "tensor_input", "records": "record_frame"}[self.kind])
        return sorted(used)

    def uses(self, name: str) -> bool:
        """Return whether an annotation of the request models mentions ``name`` (such as ``Annotated``)."""
        return any(re.search(rf"\b{name}\b", annotation) for annotation in self.annotations())


class _SignatureError(ValueError):
    def __init__(self, message: str, hint: str = _REWRITE_HINT) -> None:
        super().__init__(message)
        self.hint = hint


def read_service_types(inputs: dict[str, bytes], app: str) -> ServiceTypes:
    """Return the service types of ``app`` from its signature file among the repository ``inputs``.

    An app without a signature file gets the free-form records request. Raises ``SignatureFileError``
    naming the file when it is not a valid signature or uses a type homec cannot serve.
    """
    path = signature_path(app)
    data = inputs.get(path)
    if data is None:
        return ServiceTypes(kind="records", example_row={"feature": 1.0})
    signature = parse_signature(data, path)
    try:
        return service_types(signature)
    except _SignatureError as exc:
        raise SignatureFileError(f"{path}: {exc}", exc.hint) from None


def service_types(signature: ModelSignature) -> ServiceTypes:
    inputs = signature.inputs
    prediction = _prediction_type(signature.outputs or [])
    params = _params(signature.params or [])
    if not inputs:
        return ServiceTypes(
            kind="records",
            params=params,
            prediction=prediction,
            model_uri=signature.model_uri,
            example_row={"feature": 1.0},
        )
    if all(spec.get("type") == "tensor" for spec in inputs):
        tensors = _tensors(inputs)
        example: Any = tensors[0].example if tensors[0].name is None else {t.name: t.example for t in tensors}
        return ServiceTypes(
            kind="tensors",
            tensors=tensors,
            params=params,
            prediction=prediction,
            model_uri=signature.model_uri,
            example_row=example,
        )
    if any(spec.get("type") == "tensor" for spec in inputs):
        raise _SignatureError(
            "inputs mix column and tensor specs", "an MLflow signature uses one kind of spec"
        )
    columns = _columns(inputs)
    return ServiceTypes(
        kind="columns",
        columns=columns,
        params=params,
        prediction=prediction,
        model_uri=signature.model_uri,
        example_row={column.name: column.example for column in columns},
    )


def _columns(specs: list[dict[str, Any]]) -> tuple[Column, ...]:
    taken: set[str] = set()
    columns: list[Column] = []
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            # MLflow allows unnamed columns; the model then receives them by position, as 0, 1, ...
            name = str(index)
        if name in seen:
            raise _SignatureError(f"inputs: column {name!r} appears twice", "column names must be unique")
        seen.add(name)
        annotation, dtype, example = _column_type(spec, f"inputs: column {name!r}")
        required = spec.get("required", True) is not False
        columns.append(Column(_field_name(name, taken), name, annotation, dtype, required, example))
    return tuple(columns)


def _column_type(spec: dict[str, Any], where: str) -> tuple[str, str, Any]:
    """Return the annotation, pandas dtype and example value of a column spec, nested types included."""
    kind = spec.get("type")
    if isinstance(kind, str) and kind in COLUMN_TYPES:
        return COLUMN_TYPES[kind]
    if kind == "array":
        items = spec.get("items")
        if not isinstance(items, dict):
            raise _SignatureError(f"{where}: an array needs items")
        inner, _, example = _column_type(items, where)
        return f"list[{inner}]", "object", [example]
    if kind == "map":
        values = spec.get("values")
        if not isinstance(values, dict):
            raise _SignatureError(f"{where}: a map needs values")
        inner, _, example = _column_type(values, where)
        return f"dict[str, {inner}]", "object", {"key": example}
    if kind == "object":
        return "dict[str, Any]", "object", {}
    if kind == "any":
        return "Any", "object", None
    known = ", ".join([*COLUMN_TYPES, "array", "map", "object", "any"])
    raise _SignatureError(f"{where}: unknown MLflow type {kind!r}", f"known types: {known}")


def _tensors(specs: list[dict[str, Any]]) -> tuple[Tensor, ...]:
    named = [spec.get("name") for spec in specs]
    if len(specs) > 1 and not all(isinstance(name, str) and name for name in named):
        raise _SignatureError("inputs: several tensors must all be named")
    taken: set[str] = set()
    tensors: list[Tensor] = []
    for spec in specs:
        name = spec.get("name") if isinstance(spec.get("name"), str) and spec.get("name") else None
        tensor_spec = spec.get("tensor-spec")
        if not isinstance(tensor_spec, dict):
            raise _SignatureError(f"inputs: tensor {name or ''} has no tensor-spec")
        dtype = tensor_spec.get("dtype")
        shape = tensor_spec.get("shape")
        if not isinstance(dtype, str) or dtype not in TENSOR_TYPES:
            raise _SignatureError(
                f"inputs: unsupported tensor dtype {dtype!r}", f"supported dtypes: {', '.join(TENSOR_TYPES)}"
            )
        if not isinstance(shape, list) or not shape or not all(isinstance(size, int) for size in shape):
            raise _SignatureError(f"inputs: invalid tensor shape {shape!r}", "a shape is a list like [-1, 4]")
        element = TENSOR_TYPES[dtype]
        field_name = _field_name(name, taken) if name is not None else "row"
        annotation, example = _row_annotation(element, shape[1:])
        tensors.append(Tensor(field_name, name, annotation, dtype, tuple(shape), example))
    return tuple(tensors)


def _row_annotation(element: str, shape: list[int]) -> tuple[str, Any]:
    """Return the annotation of one tensor row with the given remaining shape, and an example row."""
    if not shape:
        return element, _TENSOR_EXAMPLES[element]
    inner, example = _row_annotation(element, shape[1:])
    size = shape[0]
    if size < 0:
        return f"list[{inner}]", [example]
    return f"Annotated[list[{inner}], Field(min_length={size}, max_length={size})]", [example] * size


def _params(specs: list[dict[str, Any]]) -> tuple[Param, ...]:
    taken: set[str] = set()
    params: list[Param] = []
    for spec in specs:
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise _SignatureError("params: every parameter needs a name")
        kind = spec.get("type")
        if not isinstance(kind, str) or kind not in COLUMN_TYPES:
            raise _SignatureError(
                f"params: parameter {name!r} has unsupported type {kind!r}",
                f"known types: {', '.join(COLUMN_TYPES)}",
            )
        annotation = COLUMN_TYPES[kind][0]
        if spec.get("shape") is not None:
            annotation = f"list[{annotation}]"
        params.append(Param(_field_name(name, taken), name, annotation, spec.get("default")))
    return tuple(params)


def _prediction_type(outputs: list[dict[str, Any]]) -> str:
    """Return the annotation of one prediction, loose (``Any``, ``dict[str, Any]``) where the signature is."""
    if len(outputs) != 1:
        return "dict[str, Any]" if outputs else "Any"
    spec = outputs[0]
    if spec.get("type") == "tensor":
        tensor_spec = spec.get("tensor-spec")
        if not isinstance(tensor_spec, dict):
            return "Any"
        element = TENSOR_TYPES.get(str(tensor_spec.get("dtype")))
        shape = tensor_spec.get("shape")
        if element is None or not isinstance(shape, list):
            return "Any"
        scalar = {
            "Double": "float",
            "Long": "int",
            "UnsignedLong": "int",
            "Boolean": "bool",
            "String": "str",
        }[element]
        return "".join("list[" for _ in shape[1:]) + scalar + "]" * len(shape[1:])
    plain = {
        "double": "float",
        "float": "float",
        "long": "int",
        "integer": "int",
        "boolean": "bool",
        "string": "str",
    }
    return plain.get(str(spec.get("type")), "Any")


def _field_name(column: str, taken: set[str]) -> str:
    """Return a unique pydantic field name for ``column``; the column name itself becomes its alias."""
    base = _NOT_IDENTIFIER.sub("_", column).strip("_")
    if not base or base[0].isdigit() or base in _RESERVED_FIELDS or base.startswith("model_"):
        base = f"column_{base}" if base else "column"
    candidate = base
    number = 2
    while candidate in taken:
        candidate = f"{base}_{number}"
        number += 1
    taken.add(candidate)
    return candidate
