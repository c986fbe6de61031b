"""Training support without MLflow: signature files, in-place YAML edits, store resolution, model references.

Tests against real MLflow stores are in tests/integration/test_mlflow_*.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from homec.commands.init import _GITIGNORE
from homec.commands.mlflow_server import LocalServer, default_port, free_port
from homec.commands.promote import MODEL_KEYS, QUOTED_KEYS, _written_values, model_location
from homec.commands.runs import RunRow, RunsOutcome, format_runs
from homec.commands.train import TrainOutcome, summary_lines
from homec.config.project import load_project
from homec.config.schema import Environment, ModelRef
from homec.mlflow_client import Experiment
from homec.signatures import (
    ModelSignature,
    SignatureFileError,
    parse_signature,
    read_signature,
    write_signature,
)
from homec.tracking import configure
from homec.tracking_store import resolve_store, sqlite_uri, under_artifact_root
from homec.yamledit import YamlEditError, locate, scalar_text, set_mapping
from tests.conftest import REPO_ROOT, run_homec
from tests.support.training import parse_summary

RUN = "0bc9deddeafa444196bcd2ab280cad7f"
MLFLOW_SIGNATURE = {
    "inputs": '[{"type": "double", "name": "sepal_length", "required": true}, '
    '{"type": "long", "name": "count", "required": false}]',
    "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]',
    "params": None,
}


def run_pin(run_id: str = RUN) -> dict[str, object]:
    return {"experiment_id": "1", "run_id": run_id}


def edit(text: str, path: tuple[str | int, ...], values: dict[str, object]) -> str:
    return set_mapping(text, path, values, MODEL_KEYS, QUOTED_KEYS)


# --- signatures/<app>.json ---


def test_signature_file_format_is_stable() -> None:
    signature = ModelSignature.from_mlflow("models:/iris-classifier/3", MLFLOW_SIGNATURE)

    data = signature.to_bytes()

    assert data.endswith(b"}\n")
    assert data.decode().splitlines()[1] == '  "inputs": ['
    document = json.loads(data)
    assert list(document) == ["inputs", "model_uri", "outputs", "params"]
    assert document["model_uri"] == "models:/iris-classifier/3"
    assert document["inputs"][0] == {"type": "double", "name": "sepal_length", "required": True}
    assert document["params"] is None
    assert parse_signature(data, "signatures/iris.json") == signature


def test_signature_columns_and_types() -> None:
    signature = ModelSignature.from_mlflow("runs:/x/model", MLFLOW_SIGNATURE)

    columns = signature.input_columns()
    outputs = signature.output_columns()

    assert signature.input_names() == ["sepal_length", "count"]
    assert [column.python_type for column in columns] == ["float", "int"]
    assert [column.required for column in columns] == [True, False]
    assert outputs[0].name is None
    assert outputs[0].type == "tensor"
    assert outputs[0].dtype == "int64"
    assert outputs[0].shape == (-1,)
    assert outputs[0].python_type is None


def test_signature_write_and_read(tmp_path: Path) -> None:
    signature = ModelSignature.from_mlflow("models:/iris-classifier@champion", MLFLOW_SIGNATURE)

    path = write_signature(tmp_path, "iris", signature)

    assert path == tmp_path / "signatures/iris.json"
    assert read_signature(tmp_path, "iris") == signature
    assert read_signature(tmp_path, "other") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b"[]", "must contain a JSON object"),
        (b'{"model_uri": "m", "inputs": [], "outputs": null}', "missing keys params"),
        (
            b'{"model_uri": "m", "inputs": [], "outputs": null, "params": null, "extra": 1}',
            "unknown keys extra",
        ),
        (b'{"model_uri": "m", "inputs": null, "outputs": null, "params": null}', "inputs must be a list"),
        (
            b'{"model_uri": "m", "inputs": [{"name": "a"}], "outputs": null, "params": null}',
            "each with a type",
        ),
        (b'{"model_uri": "", "inputs": [], "outputs": null, "params": null}', "model_uri must be"),
    ],
)
def test_signature_file_errors(data: bytes, message: str) -> None:
    with pytest.raises(SignatureFileError) as raised:
        parse_signature(data, "signatures/iris.json")

    assert message in raised.value.message
    assert raised.value.message.startswith("signatures/iris.json: ")
    assert "homec promote" in raised.value.hint


# --- editing apps.yaml in place ---

BLOCK = """\
apps:
  - name: iris   # the app
    training: {entrypoint: training/iris/train.py, experiment: iris}
    # The served model.
    model:
      registered_name:   iris-classifier   # registry entry
      # moves with every good version
      alias: champion  # trailing
    serving:
      fastapi: { replicas: 2 }
"""


def test_edit_replaces_removed_entry_in_place() -> None:
    result = edit(
        BLOCK, ("apps", 0, "model"), {"registered_name": "iris-classifier", "version": 3, **run_pin()}
    )

    assert result == BLOCK.replace(
        "      alias: champion  # trailing\n",
        f"      version: 3\n      experiment_id: '1'\n      run_id: {RUN}\n",
    )


def test_edit_keeps_unchanged_entries_byte_for_byte() -> None:
    result = edit(BLOCK, ("apps", 0, "model"), {"registered_name": "iris-classifier", "alias": "champion"})

    assert result == BLOCK


def test_edit_removes_every_old_entry() -> None:
    result = edit(BLOCK, ("apps", 0, "model"), run_pin())

    assert result == BLOCK.replace(
        "      registered_name:   iris-classifier   # registry entry\n"
        "      # moves with every good version\n"
        "      alias: champion  # trailing\n",
        f"      experiment_id: '1'\n      run_id: {RUN}\n      # moves with every good version\n",
    )


def test_edit_changes_value_and_keeps_its_comment() -> None:
    pinned = edit(BLOCK, ("apps", 0, "model"), run_pin())

    result = edit(pinned, ("apps", 0, "model"), run_pin("a" * 32))

    assert result == pinned.replace(RUN, "a" * 32)


def test_edit_keeps_quoting_style_of_changed_value() -> None:
    text = BLOCK.replace("alias: champion", 'alias: "champion"')

    result = edit(text, ("apps", 0, "model"), {"registered_name": "iris-classifier", "alias": "best"})

    assert result == text.replace('alias: "champion"', 'alias: "best"')


def test_edit_rewrites_flow_mapping_only() -> None:
    text = BLOCK.replace(
        "    model:\n      registered_name:   iris-classifier   # registry entry\n"
        "      # moves with every good version\n      alias: champion  # trailing\n",
        "    model: { registered_name: iris-classifier, alias: 'champion' }   # pinned\n",
    )

    result = edit(
        text, ("apps", 0, "model"), {"registered_name": "iris-classifier", "version": 2, **run_pin()}
    )

    assert result == text.replace(
        "{ registered_name: iris-classifier, alias: 'champion' }",
        f"{{ registered_name: iris-classifier, version: 2, experiment_id: '1', run_id: {RUN} }}",
    )


def test_edit_adds_missing_model_after_training() -> None:
    text = BLOCK.replace(
        "    # The served model.\n    model:\n      registered_name:   iris-classifier   # registry entry\n"
        "      # moves with every good version\n      alias: champion  # trailing\n",
        "",
    )

    result = edit(text, ("apps", 0, "model"), run_pin())

    assert result == text.replace(
        "experiment: iris}\n",
        f"experiment: iris}}\n    model:\n      experiment_id: '1'\n      run_id: {RUN}\n",
    )


def test_edit_keeps_crlf_line_endings() -> None:
    text = BLOCK.replace("\n", "\r\n")

    result = edit(text, ("apps", 0, "model"), {"registered_name": "iris-classifier", "version": 3})

    assert result == text.replace("      alias: champion  # trailing\r\n", "      version: 3\r\n")


def test_edit_quotes_values_yaml_would_retype() -> None:
    digits = "12345678901234567890123456789012"

    result = edit(BLOCK, ("apps", 0, "model"), run_pin(digits))

    assert f"run_id: '{digits}'" in result


def test_edit_writes_null_for_removed_override_keys() -> None:
    text = BLOCK + "    overrides:\n      cluster:\n        model:\n          version: 2\n"

    result = edit(text, ("apps", 0, "overrides", "cluster", "model"), {**run_pin(), "registered_name": None})

    assert result.endswith(
        "        model:\n          registered_name: null\n          experiment_id: '1'\n"
        f"          run_id: {RUN}\n"
    )


def test_edit_rejects_flow_app_without_model() -> None:
    text = "apps:\n  - {name: iris, training: {entrypoint: training/iris/train.py, experiment: iris}}\n"

    with pytest.raises(YamlEditError) as raised:
        edit(text, ("apps", 0, "model"), run_pin())

    assert "flow mapping" in raised.value.message


def test_locate_points_at_key() -> None:
    assert locate(BLOCK, ("apps", 0, "model")) == (5, 5)
    assert locate(BLOCK, ("apps", 0, "missing")) is None


@pytest.mark.parametrize(
    ("value", "style", "expected"),
    [
        ("iris-classifier", None, "iris-classifier"),
        ("1", None, "'1'"),
        ("1e3", None, "'1e3'"),
        ("on", None, "'on'"),
        ("null", None, "'null'"),
        ("it's", None, "'it''s'"),
        ("a: b", None, "'a: b'"),
        ("champion", '"', '"champion"'),
        ("champion", "'", "'champion'"),
        (3, None, "3"),
        (None, None, "null"),
    ],
)
def test_scalar_text(value: object, style: str | None, expected: str) -> None:
    assert scalar_text(value, style) == expected


def test_model_location_prefers_environment_override(example_repo: Path) -> None:
    apps = example_repo / "apps.yaml"
    apps.write_text(
        apps.read_text().replace(
            "      cluster:\n",
            f"      cluster:\n        model: {{registered_name: null, alias: null, experiment_id: '1', run_id: {RUN}}}\n",
        )
    )
    project = load_project(example_repo)
    entry = project.apps["iris"]

    cluster = model_location(project, "iris", "cluster")
    localhost = model_location(project, "iris", "localhost")
    values = _written_values(entry, ModelRef(experiment_id="2", run_id="b" * 32), cluster)

    assert cluster.path == ("apps", 0, "overrides", "cluster", "model")
    assert localhost.path == ("apps", 0, "model")
    assert values == {"experiment_id": "2", "run_id": "b" * 32, "registered_name": None, "alias": None}


def test_model_location_in_included_file(example_repo: Path) -> None:
    apps = example_repo / "apps.yaml"
    apps.write_text("include: [apps/*.yaml]\n" + apps.read_text())
    (example_repo / "apps").mkdir()
    (example_repo / "apps/wine.yaml").write_text(
        "apps:\n"
        "  - name: wine\n"
        "    training: {entrypoint: training/wine/train.py, experiment: wine}\n"
        f"    model: {{experiment_id: '2', run_id: {RUN}}}\n"
    )
    project = load_project(example_repo)

    location = model_location(project, "wine", "localhost")

    assert location.file == "apps/wine.yaml"
    assert location.path == ("apps", 0, "model")


# --- where runs go ---


def environment(mlflow: dict[str, str]) -> Environment:
    return Environment.model_validate(
        {
            "kind": "localhost",
            "mlflow": mlflow,
            "registry": "127.0.0.1:5000",
            "argocd": {"repo_url": "https://x/y.git"},
        }
    )


def test_store_defaults_to_embedded_sqlite(tmp_path: Path) -> None:
    store = resolve_store(tmp_path, "localhost", environment({}))

    assert store.direct
    assert store.tracking_uri == f"sqlite:///{tmp_path.resolve().as_posix()}/.homec/mlflow/mlflow.db"
    assert store.sqlite_path == tmp_path.resolve() / ".homec/mlflow/mlflow.db"
    assert store.artifact_root == str(tmp_path.resolve() / ".homec/mlflow/artifacts")
    assert store.server_backend_store_uri == store.tracking_uri
    assert store.server_artifact_root == store.artifact_root


def test_store_with_tracking_server(tmp_path: Path) -> None:
    settings = {"tracking_uri": "http://127.0.0.1:5001", "artifact_root": "gs://home-mlops-storage"}

    store = resolve_store(tmp_path, "cluster", environment(settings))

    assert not store.direct
    assert store.is_http
    assert store.tracking_uri == "http://127.0.0.1:5001"
    assert store.artifact_root == "gs://home-mlops-storage"
    assert store.server_backend_store_uri == sqlite_uri(tmp_path / ".homec/mlflow/mlflow.db")
    assert default_port(store.tracking_uri) == 5001


def test_store_relative_artifact_root(tmp_path: Path) -> None:
    store = resolve_store(tmp_path, "localhost", environment({"artifact_root": "nas/mlflow"}))

    assert store.artifact_root == str(tmp_path.resolve() / "nas/mlflow")


def test_under_artifact_root() -> None:
    assert under_artifact_root("/data/artifacts/1", "/data/artifacts")
    assert under_artifact_root("file:///data/artifacts/1", "/data/artifacts/")
    assert not under_artifact_root("/data/artifacts-old/1", "/data/artifacts")
    assert not under_artifact_root("mlflow-artifacts:/1", "gs://home-mlops-storage")


def test_default_port_of_remote_server_is_5000() -> None:
    assert default_port("http://mlflow.mlops.svc:5000") == 5000
    assert default_port("sqlite:///x.db") == 5000


def test_server_command_serves_artifact_folder(tmp_path: Path) -> None:
    server = LocalServer("sqlite:///db", str(tmp_path), tmp_path / "log", port=5123)

    command = server.command()

    assert command[1:4] == ["-m", "mlflow", "server"]
    assert "--no-serve-artifacts" in command
    assert command[command.index("--default-artifact-root") + 1] == str(tmp_path)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--workers") + 1] == "1"
    assert server.url == "http://127.0.0.1:5123"


def test_mlflow_command_rejects_busy_port(example_repo: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_port()))
        busy.listen()
        port = busy.getsockname()[1]

        code, _, err = run_homec("-C", example_repo, "mlflow", "--port", str(port))

    assert code == 2
    assert f"port {port} on 127.0.0.1 is in use" in err


def test_embedded_store_is_git_ignored() -> None:
    assert ".homec/" in (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert ".homec/" in _GITIGNORE.splitlines()


def test_configure_rejects_unknown_environment(example_repo: Path) -> None:
    with pytest.raises(SystemExit) as raised:
        configure(app="iris", environment="staging", root=example_repo)

    message = str(raised.value.code)
    assert message.startswith("error: unknown environment 'staging'")
    assert "hint: known environments: cluster, localhost" in message


def test_configure_rejects_unknown_app(example_repo: Path) -> None:
    with pytest.raises(SystemExit) as raised:
        configure(app="wine", environment="localhost", root=example_repo)

    assert str(raised.value.code).startswith("error: unknown app 'wine'")


# --- model references ---


def test_version_may_record_its_run() -> None:
    reference = ModelRef(registered_name="iris-classifier", version=3, experiment_id="1", run_id=RUN)

    assert reference.uri == "models:/iris-classifier/3"


def test_alias_with_run_is_rejected() -> None:
    with pytest.raises(ValidationError) as raised:
        ModelRef(registered_name="iris-classifier", alias="champion", experiment_id="1", run_id=RUN)

    assert "alias and run_id are both set" in str(raised.value)


def test_run_reference_uri() -> None:
    assert ModelRef(experiment_id="1", run_id=RUN).uri == f"runs:/{RUN}/model"


# --- command output ---


def test_train_summary_lines() -> None:
    store = resolve_store(Path("/repo"), "localhost", environment({}))
    outcome = TrainOutcome(
        store=store,
        experiment=Experiment("1", "iris", "/repo/.homec/mlflow/artifacts/1"),
        run_id=RUN,
        other_run_ids=[],
        metrics={"accuracy": 0.9, "f1": 0.85},
        registered_model="iris-classifier",
        model_version=4,
    )

    lines = summary_lines(outcome)

    assert lines == [
        "experiment: iris",
        "experiment_id: 1",
        f"run_id: {RUN}",
        "registered_model: iris-classifier",
        "model_version: 4",
        "metric.accuracy: 0.9",
        "metric.f1: 0.85",
        f"tracking_uri: {store.tracking_uri}",
    ]
    assert parse_summary("\n".join(["run_id: from-the-script", *lines]))["run_id"] == RUN


def test_runs_table_marks_pinned_run() -> None:
    store = resolve_store(Path("/repo"), "localhost", environment({}))
    rows = [
        RunRow("b" * 32, "2026-01-02 10:00", "FINISHED", {"accuracy": 0.9}, (2,), "abcdef12", pinned=False),
        RunRow(RUN, "2026-01-01 10:00", "FAILED", {"accuracy": 0.8, "f1": 0.75}, (), "", pinned=True),
    ]
    outcome = RunsOutcome("iris", store, Experiment("1", "iris", "x"), rows, "models:/iris-classifier/1", RUN)

    lines = format_runs(outcome)

    assert lines[0] == f"experiment iris (id 1) on store {store.tracking_uri}"
    assert lines[1].split() == ["run_id", "started", "(UTC)", "status", "accuracy", "f1", "version", "commit"]
    assert lines[2].split() == ["b" * 32, "2026-01-02", "10:00", "FINISHED", "0.9000", "-", "2", "abcdef12"]
    assert lines[3].split() == ["*", RUN, "2026-01-01", "10:00", "FAILED", "0.8000", "0.7500", "-", "-"]
    assert lines[4] == f"pinned: models:/iris-classifier/1 (run {RUN}, marked *)"


def test_commands_are_listed() -> None:
    code, out, _ = run_homec("--help")

    assert code == 0
    for command in ("train", "promote", "runs", "mlflow"):
        assert f"  {command} " in out


def test_check_help_mentions_online() -> None:
    code, out, _ = run_homec("check", "--help")

    assert code == 0
    assert "--online" in out


def test_check_and_render_do_not_import_mlflow(example_repo: Path) -> None:
    script = (
        "import sys\n"
        "from homec.cli import main\n"
        "for args in (['render'], ['check']):\n"
        "    try:\n"
        f"        main(['-C', {str(example_repo)!r}, *args])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "print('mlflow loaded' if 'mlflow' in sys.modules else 'mlflow not loaded')\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, env=dict(os.environ)
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "mlflow not loaded"
