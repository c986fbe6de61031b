"""Generated FastAPI services for other signatures than iris: a tensor, odd column names, parameters, none.

Each case saves a real MLflow model to a local folder and records its signature the way ``homec promote``
does. It then renders the FastAPI build folder and runs the generated app in this process through
FastAPI's test client. The client runs the app's lifespan, so the model loads in the background as in a
server.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import pytest
from fastapi.testclient import TestClient
from tests.conftest import copy_example

from homec.config.project import load_project
from homec.render import targets_of
from homec.render.serving import render_target
from homec.signatures import ModelSignature

pytestmark = pytest.mark.integration


# Listing requirements skips MLflow's inference of them, which takes seconds per model.
REQUIREMENTS = ["mlflow", "scikit-learn", "skops"]


class ScaleModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """Multiplies the first column by the ``scale`` parameter."""

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        scale = (params or {}).get("scale", 1.0)
        return model_input.iloc[:, 0] * scale


def iris_arrays() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data, data.target


def save_tensor_model(folder: Path) -> Any:
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    features, labels = iris_arrays()
    model = LogisticRegression(max_iter=500).fit(features, labels)
    signature = infer_signature(features, model.predict(features))
    mlflow.sklearn.save_model(model, str(folder), signature=signature, pip_requirements=REQUIREMENTS)
    return signature


def save_odd_columns_model(folder: Path, with_signature: bool) -> Any:
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    features, labels = iris_arrays()
    frame = pd.DataFrame(features, columns=["sepal length (cm)", "class", "model_config", "2nd"])
    model = LogisticRegression(max_iter=500).fit(frame, labels)
    signature = infer_signature(frame, model.predict(frame)) if with_signature else None
    mlflow.sklearn.save_model(model, str(folder), signature=signature, pip_requirements=REQUIREMENTS)
    return signature


def save_params_model(folder: Path) -> Any:
    import pandas as pd
    from mlflow.models import infer_signature

    frame = pd.DataFrame({"x": [1.0, 2.0]})
    signature = infer_signature(frame, pd.Series([1.0, 2.0]), params={"scale": 1.0})
    mlflow.pyfunc.save_model(
        str(folder), python_model=ScaleModel(), signature=signature, pip_requirements=REQUIREMENTS
    )
    return signature


def generated_app(base: Path, name: str, model_folder: Path, signature: Any) -> ModuleType:
    """Render the FastAPI folder for a model and import its ``app.py`` as module ``name``."""
    repo = copy_example(base / "repo")
    if signature is not None:
        recorded = ModelSignature.from_mlflow(str(model_folder), signature.to_dict())
        (repo / "signatures").mkdir(exist_ok=True)
        (repo / "signatures/iris.json").write_bytes(recorded.to_bytes())
    target = next(t for t in targets_of(load_project(repo), "localhost") if t.flavor == "fastapi")
    folder = base / "build"
    for path, data in render_target(target).items():
        destination = folder / path.split("/", 2)[2]
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_client(base: Path, name: str, save: Any) -> Iterator[Any]:
    """Save a model with ``save(folder)``, start the generated app for it and wait until it is ready."""
    model_folder = base / "model"
    signature = save(model_folder)
    previous = os.environ.get("MODEL_URI")
    os.environ["MODEL_URI"] = str(model_folder)
    try:
        module = generated_app(base, f"generated_app_{name}", model_folder, signature)
    finally:
        if previous is None:
            del os.environ["MODEL_URI"]
        else:
            os.environ["MODEL_URI"] = previous
    with TestClient(module.app) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.1)
        yield client


@pytest.fixture(scope="module")
def tensor_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from start_client(tmp_path_factory.mktemp("tensor"), "tensor", save_tensor_model)


@pytest.fixture(scope="module")
def odd_columns_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    def save(folder: Path) -> Any:
        return save_odd_columns_model(folder, with_signature=True)

    yield from start_client(tmp_path_factory.mktemp("odd"), "odd", save)


@pytest.fixture(scope="module")
def records_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    def save(folder: Path) -> Any:
        return save_odd_columns_model(folder, with_signature=False)

    yield from start_client(tmp_path_factory.mktemp("records"), "records", save)


@pytest.fixture(scope="module")
def params_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from start_client(tmp_path_factory.mktemp("params"), "params", save_params_model)


def test_tensor_rows_predict(tensor_client: Any) -> None:
    response = tensor_client.post("/predict", json={"rows": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})

    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [0, 2]}


@pytest.mark.parametrize(
    "rows",
    [[[5.1, 3.5, 1.4]], [[5.1, 3.5, 1.4, 0.2, 9.9]], [["a", 3.5, 1.4, 0.2]], [5.1], [[[5.1], 3.5, 1.4, 0.2]]],
    ids=["short", "long", "string", "scalar", "nested"],
)
def test_tensor_shape_and_type_checked(tensor_client: Any, rows: list[Any]) -> None:
    response = tensor_client.post("/predict", json={"rows": rows})

    assert response.status_code == 422, response.text


def test_odd_column_names_use_aliases(odd_columns_client: Any) -> None:
    client = odd_columns_client
    row = {"sepal length (cm)": 5.1, "class": 3.5, "model_config": 1.4, "2nd": 0.2}
    by_field_name = {
        "sepal_length_cm": 5.1,
        "column_class": 3.5,
        "column_model_config": 1.4,
        "column_2nd": 0.2,
    }

    good = client.post("/predict", json={"rows": [row]})
    bad = client.post("/predict", json={"rows": [by_field_name]})
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Row"]

    assert good.status_code == 200, good.text
    assert good.json() == {"predictions": [0]}
    assert bad.status_code == 422
    assert sorted(schema["properties"]) == sorted(row)
    assert schema["additionalProperties"] is False


def test_records_without_signature(records_client: Any) -> None:
    client = records_client
    row = {"sepal length (cm)": 5.1, "class": 3.5, "model_config": 1.4, "2nd": 0.2}

    good = client.post("/predict", json={"rows": [row]})
    rejected = client.post("/predict", json={"rows": [{"unknown": 1.0}]})

    assert good.status_code == 200, good.text
    assert good.json() == {"predictions": [0]}
    assert rejected.status_code == 422
    assert "the model rejected the input" in rejected.json()["detail"]


def test_params_reach_model(params_client: Any) -> None:
    client = params_client

    default = client.post("/predict", json={"rows": [{"x": 2.0}]})
    scaled = client.post("/predict", json={"rows": [{"x": 2.0}], "params": {"scale": 3.0}})
    unknown = client.post("/predict", json={"rows": [{"x": 2.0}], "params": {"shift": 3.0}})

    assert default.json() == {"predictions": [2.0]}
    assert scaled.json() == {"predictions": [6.0]}
    assert unknown.status_code == 422


def test_too_many_rows_rejected(tensor_client: Any) -> None:
    rows = [[5.1, 3.5, 1.4, 0.2]] * 10_001

    response = tensor_client.post("/predict", json={"rows": rows})

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "too_long"
