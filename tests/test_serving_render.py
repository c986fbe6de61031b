"""Serving build folders: file lists, signature-derived types, generated code quality, user-written code.

These tests render only; the integration tests under tests/integration/ run the services for real.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from homec.config.project import load_project
from homec.errors import ConfigError
from homec.render import render_project, targets_of
from homec.render.service_types import read_service_types, service_types
from homec.render.serving import build_commands, render_target, start_command
from homec.signatures import ModelSignature, SignatureFileError
from tests.conftest import copy_example

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_SIGNATURE: dict[str, Any] = {
    "model_uri": "models:/iris-classifier@champion",
    "inputs": [{"name": name, "type": "double", "required": True} for name in IRIS_COLUMNS],
    "outputs": [{"name": "species", "type": "string", "required": True}],
    "params": None,
}
TENSOR_SIGNATURE: dict[str, Any] = {
    "model_uri": "models:/digits@champion",
    "inputs": [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 8, 8]}}],
    "outputs": [{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}],
    "params": None,
}
NAMED_TENSORS_SIGNATURE: dict[str, Any] = {
    "model_uri": "models:/pair@1",
    "inputs": [
        {"name": "image", "type": "tensor", "tensor-spec": {"dtype": "uint8", "shape": [-1, 2, 2]}},
        {"name": "scale factor", "type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1]}},
    ],
    "outputs": None,
    "params": None,
}
ODD_COLUMNS_SIGNATURE: dict[str, Any] = {
    "model_uri": "models:/odd@1",
    "inputs": [
        {"name": "sepal length (cm)", "type": "double", "required": True},
        {"name": "class", "type": "long", "required": True},
        {"name": "model_config", "type": "string", "required": True},
        {"name": "2nd", "type": "boolean", "required": False},
        {"name": "sepal-length-cm", "type": "float", "required": True},
        {"name": "tags", "type": "array", "items": {"type": "string"}, "required": True},
        {"name": "when", "type": "datetime", "required": True},
        {"name": "blob", "type": "binary", "required": False},
        {"name": "attrs", "type": "map", "values": {"type": "integer"}, "required": True},
        {"name": 'quote\'"""', "type": "double", "required": True},
    ],
    "outputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "double"}],
    "params": [{"name": "top k", "type": "long", "default": 3, "shape": None}],
}
SIGNATURES = {
    "columns": IRIS_SIGNATURE,
    "tensor": TENSOR_SIGNATURE,
    "named-tensors": NAMED_TENSORS_SIGNATURE,
    "odd-columns": ODD_COLUMNS_SIGNATURE,
    "none": None,
}


def write_signature(repo: Path, signature: dict[str, Any] | None, app: str = "iris") -> None:
    path = repo / "signatures" / f"{app}.json"
    if signature is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(signature, indent=2), encoding="utf-8")


def build_folder(repo: Path, flavor: str, env: str = "localhost") -> dict[str, bytes]:
    """Return the serving files of ``build/iris-<flavor>/`` in ``env``, by path inside that folder.

    Other output kinds (the Dockerfile) render into the same folder; only the serving kind's files count.
    """
    prefix = f"build/iris-{flavor}/"
    files = render_target(target_of(repo, flavor, env))
    assert all(path.startswith(prefix) for path in files)
    return {path[len(prefix) :]: data for path, data in files.items()}


def target_of(repo: Path, flavor: str, env: str = "localhost") -> Any:
    project = load_project(repo)
    return next(target for target in targets_of(project, env) if target.flavor == flavor)


def write_folder(files: dict[str, bytes], folder: Path) -> Path:
    for relative, data in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def set_apps_yaml(repo: Path, replace: str, by: str) -> None:
    apps = repo / "apps.yaml"
    text = apps.read_text(encoding="utf-8")
    assert replace in text, f"{replace!r} not in the example apps.yaml"
    apps.write_text(text.replace(replace, by), encoding="utf-8")


@pytest.fixture
def repo(example_repo: Path) -> Path:
    write_signature(example_repo, IRIS_SIGNATURE)
    return example_repo


# --- build folder file lists and start commands -------------------------------------------------


def test_fastapi_folder_file_list(repo: Path) -> None:
    for env in ("localhost", "cluster"):
        assert sorted(build_folder(repo, "fastapi", env)) == [
            "app.py",
            "homec_serving.py",
            "requirements.txt",
            "start.py",
        ]


def test_bentoml_folder_file_list(repo: Path) -> None:
    files = build_folder(repo, "bentoml")

    assert sorted(files) == [
        "bentofile.yaml",
        "homec_serving.py",
        "import_model.py",
        "requirements.txt",
        "service.py",
    ]


def test_generated_files_carry_header(repo: Path) -> None:
    for flavor in ("fastapi", "bentoml"):
        for name, data in build_folder(repo, flavor).items():
            assert "generated by homec — do not edit" in data.decode("utf-8").splitlines()[0], name


def test_start_and_build_commands(repo: Path) -> None:
    fastapi = target_of(repo, "fastapi")
    bentoml = target_of(repo, "bentoml")

    assert start_command(fastapi) == ["python3", "start.py"]
    assert build_commands(fastapi) == []
    assert start_command(bentoml) == [
        "bentoml", "serve", "service:IrisService", "--host", "0.0.0.0", "--port", "3000"
    ]  # fmt: skip
    assert build_commands(bentoml) == [["python3", "import_model.py"]]


def test_bentofile_is_offline_and_complete(repo: Path) -> None:
    bentofile = yaml.safe_load(build_folder(repo, "bentoml")["bentofile.yaml"])

    assert bentofile["service"] == "service:IrisService"
    assert bentofile["name"] == "iris-bentoml"
    assert bentofile["python"] == {"requirements_txt": "requirements.txt", "lock_packages": False}
    assert bentofile["include"] == ["homec_serving.py", "service.py"]
    assert {"name": "BENTOML_DO_NOT_TRACK", "value": "true"} in bentofile["envs"]


def test_requirements_pin_serving_stack(repo: Path) -> None:
    fastapi = build_folder(repo, "fastapi")["requirements.txt"].decode().splitlines()
    bentoml = build_folder(repo, "bentoml")["requirements.txt"].decode().splitlines()

    assert "mlflow==3.17.2" in fastapi
    assert "uvicorn>=0.29" in fastapi
    assert "bentoml==1.4.40" in bentoml
    assert "scikit-learn>=1.4" in fastapi
    assert "scikit-learn>=1.4" in bentoml


def test_model_requirements_file_replaces_default(repo: Path) -> None:
    (repo / "serving/iris").mkdir(parents=True)
    (repo / "serving/iris/requirements.txt").write_text(
        "# the model's own\nxgboost==2.1.0\n", encoding="utf-8"
    )

    lines = build_folder(repo, "fastapi")["requirements.txt"].decode().splitlines()

    assert "xgboost==2.1.0" in lines
    assert "scikit-learn>=1.4" not in lines


def test_serving_files_reach_render_result(repo: Path) -> None:
    rendered = render_project(load_project(repo)).files

    for env in ("localhost", "cluster"):
        assert f"rendered/{env}/build/iris-fastapi/app.py" in rendered
        assert f"rendered/{env}/build/iris-bentoml/bentofile.yaml" in rendered


def test_render_is_deterministic(repo: Path) -> None:
    first = render_project(load_project(repo)).files
    second = render_project(load_project(repo)).files

    assert {path: data for path, data in first.items() if "/build/" in path} == {
        path: data for path, data in second.items() if "/build/" in path
    }


def test_port_and_workers_reach_start_files(repo: Path) -> None:
    set_apps_yaml(
        repo,
        "fastapi:\n        replicas: 2",
        "fastapi:\n        replicas: 2\n        workers: 3\n        port: 8123",
    )

    start = build_folder(repo, "fastapi")["start.py"].decode()

    assert "DEFAULT_PORT = 8123" in start
    assert "WORKERS = 3" in start


# --- generated code -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(SIGNATURES))
@pytest.mark.parametrize("flavor", ["fastapi", "bentoml"])
def test_generated_code_passes_ruff(example_repo: Path, tmp_path: Path, case: str, flavor: str) -> None:
    write_signature(example_repo, SIGNATURES[case])
    folder = write_folder(build_folder(example_repo, flavor), tmp_path / "build")

    result = subprocess.run(
        [
            sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--line-length", "120",
            "--select", "E,F,W,I,B,UP", "--ignore", "E501", str(folder),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr


def test_config_strings_stay_literal(repo: Path) -> None:
    description = "Iris '''\"\"\" {{ jinja }} \\n $HOME"
    set_apps_yaml(repo, "description: Iris species classifier", f"description: {json.dumps(description)}")

    app = build_folder(repo, "fastapi")["app.py"].decode()
    tree = ast.parse(app)
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "FastAPI"
    ]
    keywords = {keyword.arg: keyword.value for keyword in calls[0].keywords}

    assert isinstance(keywords["description"], ast.Constant)
    assert keywords["description"].value == description


def test_column_aliases_in_generated_row(example_repo: Path) -> None:
    write_signature(example_repo, ODD_COLUMNS_SIGNATURE)

    app = build_folder(example_repo, "fastapi")["app.py"].decode()

    assert "sepal_length_cm: Double = Field(alias='sepal length (cm)')" in app
    assert "column_class: Long = Field(alias='class')" in app
    assert "column_model_config: String = Field(alias='model_config')" in app
    assert "column_2nd: Boolean | None = Field(None, alias='2nd')" in app
    assert "sepal_length_cm_2: Float = Field(alias='sepal-length-cm')" in app
    assert "top_k: Long | None = Field(None, alias='top k')" in app


def test_batching_follows_settings(repo: Path) -> None:
    batched = build_folder(repo, "bentoml")["service.py"].decode()
    set_apps_yaml(
        repo,
        "bentoml:\n        replicas: 1",
        "bentoml:\n        batching: {enabled: false, max_batch_size: 7}\n        replicas: 1",
    )
    unbatched = build_folder(repo, "bentoml")["service.py"].decode()

    assert "batchable=True" in batched
    assert "max_batch_size=100" in batched
    assert "predict_batch" not in unbatched
    assert "anyio.to_thread.run_sync(self.predict_rows, rows)" in unbatched


def test_params_turn_batching_off(example_repo: Path) -> None:
    write_signature(example_repo, ODD_COLUMNS_SIGNATURE)

    service = build_folder(example_repo, "bentoml")["service.py"].decode()

    assert "batchable=True" not in service
    assert "params: Params | None = None" in service


# --- signature to types ---------------------------------------------------------------------------


def test_types_of_column_signature() -> None:
    types = service_types(
        ModelSignature.from_mlflow("m", {"inputs": json.dumps(ODD_COLUMNS_SIGNATURE["inputs"])})
    )

    annotations = {column.name: column.annotation for column in types.columns}
    assert annotations["tags"] == "list[String]"
    assert annotations["attrs"] == "dict[str, Integer]"
    assert annotations["when"] == "Datetime"
    assert annotations["blob"] == "Binary"
    assert [column.required for column in types.columns][3] is False
    assert types.kind == "columns"
    assert types.batchable


def test_types_of_tensor_signature() -> None:
    types = service_types(ModelSignature(**TENSOR_SIGNATURE))

    assert types.single_tensor
    assert types.tensors[0].annotation == (
        "Annotated[list[Annotated[list[Double], Field(min_length=8, max_length=8)]], Field(min_length=8, max_length=8)]"
    )
    assert types.prediction == "int"
    assert types.example_row == [[0.0] * 8] * 8
    assert types.batchable


def test_types_of_named_tensors() -> None:
    types = service_types(ModelSignature(**NAMED_TENSORS_SIGNATURE))

    assert [(tensor.field, tensor.name) for tensor in types.tensors] == [
        ("image", "image"),
        ("scale_factor", "scale factor"),
    ]
    assert types.tensors[0].annotation.count("UnsignedLong") == 1
    assert types.example_row == {"image": [[0, 0], [0, 0]], "scale factor": 0.0}
    assert types.prediction == "Any"


def test_fixed_first_axis_is_not_batchable() -> None:
    signature = {
        **TENSOR_SIGNATURE,
        "inputs": [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [1, 3]}}],
    }

    assert not service_types(ModelSignature(**signature)).batchable


def test_no_signature_means_records() -> None:
    types = read_service_types({}, "iris")

    assert types.kind == "records"
    assert types.example_request() == {"rows": [{"feature": 1.0}]}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([{"name": "a", "type": "decimal"}], "unknown MLflow type 'decimal'"),
        ([{"name": "a", "type": "double"}, {"name": "a", "type": "double"}], "column 'a' appears twice"),
        (
            [
                {"name": "a", "type": "double"},
                {"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1]}},
            ],
            "mix column and tensor specs",
        ),
        (
            [{"type": "tensor", "tensor-spec": {"dtype": "complex128", "shape": [-1]}}],
            "unsupported tensor dtype",
        ),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": []}}], "invalid tensor shape"),
        ([{"name": "a", "type": "array"}], "an array needs items"),
    ],
)
def test_invalid_signature_names_file(inputs: list[dict[str, Any]], message: str) -> None:
    document = {"model_uri": "models:/m@a", "inputs": inputs, "outputs": None, "params": None}

    with pytest.raises(SignatureFileError) as raised:
        read_service_types({"signatures/iris.json": json.dumps(document).encode()}, "iris")

    assert raised.value.message.startswith("signatures/iris.json: ")
    assert message in raised.value.message
    assert raised.value.hint


def test_invalid_signature_fails_render(repo: Path) -> None:
    (repo / "signatures/iris.json").write_text("{not json", encoding="utf-8")

    with pytest.raises(SignatureFileError) as raised:
        render_project(load_project(repo))

    assert "signatures/iris.json" in raised.value.message


# --- user-written services ------------------------------------------------------------------------

USER_FASTAPI_APP = b"from fastapi import FastAPI\n\napp = FastAPI()\n"


def test_user_fastapi_replaces_generated(repo: Path) -> None:
    folder = repo / "serving/iris/fast-api"
    (folder / "lib").mkdir(parents=True)
    (folder / "app.py").write_bytes(USER_FASTAPI_APP)
    (folder / "lib/helpers.py").write_bytes(b"VALUE = 1\n")
    (folder / "requirements.txt").write_bytes(b"httpx>=0.27\n")

    files = build_folder(repo, "fastapi")

    assert sorted(files) == ["app.py", "lib/helpers.py", "requirements.txt", "start.py"]
    assert files["app.py"] == USER_FASTAPI_APP
    assert files["requirements.txt"].decode().splitlines()[-1] == "httpx>=0.27"
    assert "serving/iris/fast-api/requirements.txt" in files["requirements.txt"].decode()
    assert sorted(build_folder(repo, "bentoml")) == [
        "bentofile.yaml", "homec_serving.py", "import_model.py", "requirements.txt", "service.py"
    ]  # fmt: skip


def test_user_fastapi_needs_app_py(repo: Path) -> None:
    folder = repo / "serving/iris/fast-api"
    folder.mkdir(parents=True)
    (folder / "main.py").write_bytes(USER_FASTAPI_APP)

    with pytest.raises(ConfigError) as raised:
        build_folder(repo, "fastapi")

    assert "serving/iris/fast-api/ has no app.py" in raised.value.format()


def test_user_fastapi_may_not_shadow_start_py(repo: Path) -> None:
    folder = repo / "serving/iris/fast-api"
    folder.mkdir(parents=True)
    (folder / "app.py").write_bytes(USER_FASTAPI_APP)
    (folder / "start.py").write_bytes(b"print()\n")

    with pytest.raises(ConfigError) as raised:
        build_folder(repo, "fastapi")

    assert "serving/iris/fast-api/start.py" in raised.value.format()
    assert "collides" in raised.value.format()


USER_BENTO_SERVICE = b"""\
import bentoml


@bentoml.service
class Preprocess:
    pass


@bentoml.service(workers=2)
class Classifier:
    preprocess = bentoml.depends(Preprocess)
"""


def test_user_bentoml_entry_service_is_last(repo: Path) -> None:
    folder = repo / "serving/iris/bento-ml"
    folder.mkdir(parents=True)
    (folder / "service.py").write_bytes(USER_BENTO_SERVICE)

    files = build_folder(repo, "bentoml")
    bentofile = yaml.safe_load(files["bentofile.yaml"])

    assert sorted(files) == ["bentofile.yaml", "import_model.py", "requirements.txt", "service.py"]
    assert bentofile["service"] == "service:Classifier"
    assert bentofile["include"] == ["service.py"]
    assert start_command(target_of(repo, "bentoml"))[2] == "service:Classifier"


def test_user_bentoml_without_service_class(repo: Path) -> None:
    folder = repo / "serving/iris/bento-ml"
    folder.mkdir(parents=True)
    (folder / "service.py").write_bytes(b"class Plain:\n    pass\n")

    with pytest.raises(ConfigError) as raised:
        build_folder(repo, "bentoml")

    assert (
        "serving/iris/bento-ml/service.py:1:1: no class decorated with @bentoml.service"
        in raised.value.format()
    )


def test_user_bentoml_syntax_error_position(repo: Path) -> None:
    folder = repo / "serving/iris/bento-ml"
    folder.mkdir(parents=True)
    (folder / "service.py").write_bytes(b"import bentoml\n\nclass Broken(:\n")

    with pytest.raises(ConfigError) as raised:
        build_folder(repo, "bentoml")

    assert "serving/iris/bento-ml/service.py:3:" in raised.value.format()
    assert "invalid Python" in raised.value.format()


def test_repository_example_renders_serving(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "repo")
    shutil.rmtree(repo / "serving", ignore_errors=True)

    files = build_folder(repo, "fastapi")

    assert "app.py" in files
