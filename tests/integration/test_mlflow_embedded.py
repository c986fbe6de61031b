"""Training, promotion, runs and the online check on the embedded MLflow store (no server running)."""

from __future__ import annotations

import csv
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import run_homec
from tests.support.training import TrainedRepo, clone, parse_summary

from homec.tracking_store import sqlite_uri
from homec.yamledit import set_mapping

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).resolve().parents[1] / "golden/promote"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
MISSING_RUN = "0123456789abcdef0123456789abcdef"


def client_of(root: Path) -> object:
    from mlflow import MlflowClient

    uri = sqlite_uri(root / ".homec/mlflow/mlflow.db")
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def pin_run(root: Path, run_id: str, experiment_id: str = "1") -> None:
    """Pin a run in apps.yaml without asking any store, and render, as a hand edit would."""
    apps = root / "apps.yaml"
    values = {"experiment_id": experiment_id, "run_id": run_id}
    apps.write_text(set_mapping(apps.read_text(), ("apps", 0, "model"), values), encoding="utf-8")
    code, _, err = run_homec("-C", root, "render")
    assert code == 0, err


def test_train_prints_machine_readable_summary(trained_repo: TrainedRepo) -> None:
    summary = trained_repo.summary
    root = trained_repo.root

    assert summary["experiment"] == "iris"
    assert summary["experiment_id"] == "1"
    assert len(summary["run_id"]) == 32
    assert summary["registered_model"] == "iris-classifier"
    assert summary["model_version"] == "1"
    assert summary["tracking_uri"] == sqlite_uri(root / ".homec/mlflow/mlflow.db")
    assert {key for key in summary if key.startswith("metric.")} == {
        "metric.accuracy",
        "metric.f1",
        "metric.precision",
        "metric.recall",
    }
    assert float(summary["metric.accuracy"]) >= 0.9
    assert f"trained run {trained_repo.run_id}" in trained_repo.output


def test_embedded_store_lives_in_repository(trained_repo: TrainedRepo) -> None:
    root = trained_repo.root
    client = client_of(root)

    experiment = client.get_experiment(trained_repo.experiment_id)  # type: ignore[attr-defined]

    assert (root / ".homec/mlflow/mlflow.db").is_file()
    assert experiment.artifact_location == str(root / ".homec/mlflow/artifacts/1")
    assert (root / ".homec/mlflow/artifacts/1" / trained_repo.run_id / "artifacts").is_dir()
    assert not (root / "mlruns").exists()
    assert not (root / "mlflow.db").exists()


def test_run_carries_tags_params_and_metrics(trained_repo: TrainedRepo) -> None:
    root = trained_repo.root
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )

    run = client_of(root).get_run(trained_repo.run_id)  # type: ignore[attr-defined]

    assert run.data.tags["homec.app"] == "iris"
    assert run.data.tags["homec.environment"] == "localhost"
    assert run.data.tags["homec.git_commit"] == head.stdout.strip()
    assert run.data.tags["homec.git_dirty"] == "false"
    assert len(run.data.tags["homec.train_id"]) == 32
    assert run.data.params == {"C": "1.0", "max_iter": "500", "random_state": "42", "test_size": "0.2"}
    assert sorted(run.data.metrics) == ["accuracy", "f1", "precision", "recall"]


def test_run_keeps_heldout_rows_and_model_copy(trained_repo: TrainedRepo) -> None:
    artifacts = trained_repo.root / ".homec/mlflow/artifacts/1" / trained_repo.run_id / "artifacts"

    with (artifacts / "data/heldout.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))

    assert list(rows[0]) == [*FEATURES, "species"]
    assert len(rows) == 30
    assert {row["species"] for row in rows} == {"setosa", "versicolor", "virginica"}
    assert (artifacts / "model/MLmodel").is_file()


def test_model_predicts_heldout_rows(trained_repo: TrainedRepo) -> None:
    import mlflow.pyfunc
    import pandas as pd

    artifacts = trained_repo.root / ".homec/mlflow/artifacts/1" / trained_repo.run_id / "artifacts"
    heldout = pd.read_csv(artifacts / "data/heldout.csv")

    model = mlflow.pyfunc.load_model(str(artifacts / "model"))
    predictions = model.predict(heldout[FEATURES])

    accuracy = float((predictions == heldout["species"]).mean())
    assert accuracy == pytest.approx(float(trained_repo.summary["metric.accuracy"]))
    assert model.metadata.get_input_schema().input_names() == FEATURES


def test_training_registers_version_with_alias(trained_repo: TrainedRepo) -> None:
    version = client_of(trained_repo.root).get_model_version_by_alias("iris-classifier", "champion")  # type: ignore[attr-defined]

    assert str(version.version) == "1"
    assert version.run_id == trained_repo.run_id


def test_promote_golden_diff(trained_repo: TrainedRepo, tmp_path: Path, update_golden: bool) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")
    original = (GOLDEN / "apps.yaml").read_bytes()
    (repo / "apps.yaml").write_bytes(original)

    code, out, err = run_homec("-C", repo, "promote", "iris", "--run-id", trained_repo.run_id)

    assert code == 0, err
    promoted = (repo / "apps.yaml").read_bytes()
    diff = "".join(
        difflib.unified_diff(
            original.decode().splitlines(keepends=True),
            promoted.decode().splitlines(keepends=True),
            "a/apps.yaml",
            "b/apps.yaml",
        )
    ).replace(trained_repo.run_id, "<RUN_ID>")
    golden = GOLDEN / "apps.yaml.diff"
    if update_golden:
        golden.write_text(diff, encoding="utf-8")
    assert diff == golden.read_text(encoding="utf-8"), "run pytest --update-golden and review the diff"
    assert promoted.endswith(b"# last line: a comment without a newline at the end")
    assert "model_uri: models:/iris-classifier/1\n" in out
    assert "updated: apps.yaml (apps[0].model)" in out
    assert run_homec("-C", repo, "check")[0] == 0


def test_promote_records_signature(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")

    code, out, err = run_homec("-C", repo, "promote", "iris", "--run-id", trained_repo.run_id)

    assert code == 0, err
    document = json.loads((repo / "signatures/iris.json").read_text())
    assert document["model_uri"] == "models:/iris-classifier/1"
    assert [column["name"] for column in document["inputs"]] == FEATURES
    assert {column["type"] for column in document["inputs"]} == {"double"}
    assert document["outputs"] == [{"type": "string", "name": "species", "required": True}]
    assert document["params"] is None
    assert "wrote: signatures/iris.json" in out
    assert "rendered: " in out


def test_promote_version_records_run(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")

    code, out, err = run_homec("-C", repo, "promote", "iris", "--version", "1")

    assert code == 0, err
    text = (repo / "apps.yaml").read_text()
    assert (
        "    model:\n      registered_name: iris-classifier\n      version: 1\n"
        f"      experiment_id: '1'\n      run_id: {trained_repo.run_id}\n    serving:\n"
    ) in text
    assert f"resolved: iris-classifier version 1 → run {trained_repo.run_id} (experiment 1)" in out


def test_promote_alias_keeps_file_unchanged(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")
    before = (repo / "apps.yaml").read_bytes()

    code, out, err = run_homec("-C", repo, "promote", "iris", "--alias", "champion")

    assert code == 0, err
    assert (repo / "apps.yaml").read_bytes() == before
    assert "unchanged: apps.yaml" in out
    assert "alias champion → version 1" in out
    assert (
        json.loads((repo / "signatures/iris.json").read_text())["model_uri"]
        == "models:/iris-classifier@champion"
    )


def test_promote_unknown_run_changes_nothing(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")
    before = (repo / "apps.yaml").read_bytes()

    code, _, err = run_homec("-C", repo, "promote", "iris", "--run-id", MISSING_RUN)

    assert code == 1
    assert f"run {MISSING_RUN} not found on store sqlite:///" in err
    assert "homec runs iris --env localhost" in err
    assert (repo / "apps.yaml").read_bytes() == before
    assert not (repo / "signatures/iris.json").exists()


def test_promote_needs_exactly_one_reference(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")

    code, _, err = run_homec("-C", repo, "promote", "iris", "--version", "1", "--alias", "champion")

    assert code == 2
    assert "give exactly one of --run-id, --version and --alias" in err


def test_promote_rejects_model_without_signature(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")
    script = (
        "import mlflow, mlflow.sklearn, sys\n"
        "from sklearn.dummy import DummyClassifier\n"
        "mlflow.set_tracking_uri(sys.argv[1])\n"
        "experiment = mlflow.create_experiment('unsigned', artifact_location=sys.argv[2])\n"
        "with mlflow.start_run(experiment_id=experiment) as run:\n"
        "    model = DummyClassifier().fit([[0], [1]], [0, 1])\n"
        "    mlflow.sklearn.log_model(model, name='model', pip_requirements=['scikit-learn'])\n"
        "print(run.info.run_id)\n"
    )
    uri = sqlite_uri(repo / ".homec/mlflow/mlflow.db")
    logged = subprocess.run(
        [sys.executable, "-c", script, uri, str(repo / "unsigned")],
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = logged.stdout.strip().splitlines()[-1]
    before = (repo / "apps.yaml").read_bytes()

    code, _, err = run_homec("-C", repo, "promote", "iris", "--run-id", run_id)

    assert code == 1
    assert f"model 'model' of run {run_id} has no signature in its MLmodel" in err
    assert "signature=infer_signature" in err
    assert (repo / "apps.yaml").read_bytes() == before


def test_check_online_passes_for_promoted_run(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")
    assert run_homec("-C", repo, "promote", "iris", "--run-id", trained_repo.run_id)[0] == 0

    code, out, err = run_homec("-C", repo, "check", "--online", "--env", "localhost")

    assert code == 0, err
    assert (
        f"ok: localhost: iris: models:/iris-classifier/1 resolves to iris-classifier version 1 → "
        f"run {trained_repo.run_id} (experiment 1); signature: 4 inputs, 1 output"
    ) in out


def test_check_online_passes_for_alias(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")
    assert run_homec("-C", repo, "render")[0] == 0

    code, out, err = run_homec("-C", repo, "check", "--online", "--env", "localhost")

    assert code == 0, err
    assert (
        "ok: localhost: iris: models:/iris-classifier@champion resolves to iris-classifier alias champion"
        in out
    )


def test_check_online_fails_for_missing_run(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")
    pin_run(repo, MISSING_RUN)
    assert run_homec("-C", repo, "check")[0] == 0, "plain check must pass: it never asks the store"

    code, out, err = run_homec("-C", repo, "check", "--online", "--env", "localhost")

    assert code == 1
    assert "ok: configuration valid" in out
    assert (
        f"apps.yaml:10:5: apps[0].model: environment 'localhost': run {MISSING_RUN} not found on store "
        f"{sqlite_uri(repo / '.homec/mlflow/mlflow.db')}"
    ) in err
    assert "hint: homec runs iris --env localhost lists the runs there" in err
    assert "1 model reference failed the online check." in err


def test_check_online_fails_for_wrong_experiment(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")
    pin_run(repo, trained_repo.run_id, experiment_id="7")

    code, _, err = run_homec("-C", repo, "check", "--online", "--env", "localhost")

    assert code == 1
    assert f"run {trained_repo.run_id} belongs to experiment 1, but apps.yaml records experiment 7" in err


def test_check_online_fails_for_stale_signature_file(trained_repo: TrainedRepo, tmp_path: Path) -> None:
    repo = clone(trained_repo.root, tmp_path / "repo")
    assert run_homec("-C", repo, "promote", "iris", "--run-id", trained_repo.run_id)[0] == 0
    signature = repo / "signatures/iris.json"
    document = json.loads(signature.read_text())
    document["inputs"] = document["inputs"][:3]
    signature.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    assert run_homec("-C", repo, "render")[0] == 0

    code, _, err = run_homec("-C", repo, "check", "--online", "--env", "localhost")

    assert code == 1
    assert "signatures/iris.json differs from the signature of models:/iris-classifier/1" in err


def test_check_online_without_store(example_repo: Path) -> None:
    assert run_homec("-C", example_repo, "render")[0] == 0

    code, _, err = run_homec("-C", example_repo, "check", "--online", "--env", "localhost")

    assert code == 1
    assert (
        f"environment 'localhost': no MLflow store at {example_repo / '.homec/mlflow/mlflow.db'} yet" in err
    )
    assert "hint: run homec train APP --env localhost first" in err
    assert not (example_repo / ".homec/mlflow/mlflow.db").exists()


def test_runs_marks_pinned_run(trained_repo: TrainedRepo) -> None:
    code, out, err = run_homec("-C", trained_repo.root, "runs", "iris")

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("experiment iris (id 1) on store sqlite:///")
    assert lines[1].split()[:8] == [
        "run_id",
        "started",
        "(UTC)",
        "status",
        "accuracy",
        "f1",
        "precision",
        "recall",
    ]
    assert lines[2].split()[:2] == ["*", trained_repo.run_id]
    assert lines[2].split()[-2] == "1"
    assert lines[-1] == f"pinned: models:/iris-classifier@champion (run {trained_repo.run_id}, marked *)"


def test_train_failure_reports_exit_code_and_tail(example_repo: Path) -> None:
    script = example_repo / "training/iris/train.py"
    script.write_text(
        "import sys\nfor number in range(30):\n    print(f'line {number}')\n"
        "print('bad input data', file=sys.stderr)\nsys.exit(3)\n"
    )
    before = (example_repo / "apps.yaml").read_bytes()

    code, out, err = run_homec("-C", example_repo, "train", "iris", "--promote")

    assert code == 1
    assert "line 0\n" in out
    assert "training script training/iris/train.py failed with exit code 3; its last lines:" in err
    assert "    | bad input data" in err
    assert "    | line 11\n" in err
    assert "    | line 10\n" not in err
    assert "hint: nothing was promoted" in err
    assert "run_id:" not in out
    assert (example_repo / "apps.yaml").read_bytes() == before
    assert not (example_repo / "signatures/iris.json").exists()


def test_train_finds_runs_of_plain_mlflow(example_repo: Path) -> None:
    script = example_repo / "training/iris/train.py"
    script.write_text("import mlflow\nwith mlflow.start_run():\n    mlflow.log_metric('loss', 0.5)\n")

    code, out, err = run_homec("-C", example_repo, "train", "iris")

    assert code == 0, err
    summary = parse_summary(out)
    assert summary["metric.loss"] == "0.5"
    assert "model_version" not in summary
    run = client_of(example_repo).get_run(summary["run_id"])  # type: ignore[attr-defined]
    assert run.info.experiment_id == summary["experiment_id"]
    assert run.data.tags["homec.app"] == "iris"
    assert run.data.tags["homec.environment"] == "localhost"
    assert "homec.train_id" not in run.data.tags


def test_configure_from_script_without_homec_train(example_repo: Path) -> None:
    script = example_repo / "training/iris/train.py"
    script.write_text(
        "import mlflow\nfrom homec.tracking import configure\n"
        "tracking = configure()\n"
        "with tracking.start_run() as run:\n"
        "    mlflow.log_metric('loss', 0.25)\n"
        "print(tracking.app, tracking.environment, tracking.experiment_id, run.info.run_id)\n"
        "print(tracking.tracking_uri)\nprint(tracking.artifact_location)\n"
    )
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("HOMEC_", "MLFLOW_TRACKING"))
    }

    result = subprocess.run(
        [sys.executable, "training/iris/train.py"],
        cwd=example_repo,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    first, uri, location = result.stdout.strip().splitlines()[-3:]
    app, env_name, experiment_id, run_id = first.split()
    assert (app, env_name, experiment_id) == ("iris", "localhost", "1")
    assert uri == sqlite_uri(example_repo / ".homec/mlflow/mlflow.db")
    assert location == str(example_repo.resolve() / ".homec/mlflow/artifacts/1")
    run = client_of(example_repo).get_run(run_id)  # type: ignore[attr-defined]
    assert run.data.tags["homec.app"] == "iris"
    assert "homec.git_commit" not in run.data.tags
