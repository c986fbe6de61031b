"""Send a run's held-out iris rows to a served model and compare the predictions with the true species.

Usage: ``python quickstart_predict.py URL TRACKING_URI RUN_ID``. The rows are the run's artifact
``data/heldout.csv`` (written by training/iris/train.py). Prints one line per row, then the accuracy,
and exits 1 when a request fails or the accuracy differs from the run's logged ``accuracy`` metric.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import urllib.error
import urllib.request
from typing import Any

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABEL = "species"


def heldout_rows(tracking_uri: str, run_id: str) -> tuple[list[dict[str, float]], list[str], float]:
    """Return the held-out feature rows, their species and the run's logged accuracy."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/data/heldout.csv")
    records = list(csv.DictReader(io.StringIO(text)))
    rows = [{name: float(record[name]) for name in FEATURES} for record in records]
    labels = [record[LABEL] for record in records]
    accuracy = float(client.get_run(run_id).data.metrics["accuracy"])
    return rows, labels, accuracy


def predict(url: str, rows: list[dict[str, float]]) -> list[Any]:
    body = json.dumps({"rows": rows}).encode("utf-8")
    request = urllib.request.Request(
        f"{url}/predict", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return list(json.loads(response.read())["predictions"])
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"POST {url}/predict failed with {exc.code}: {exc.read().decode('utf-8')}") from None


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, tracking_uri, run_id = argv[1:]
    rows, labels, logged = heldout_rows(tracking_uri, run_id)
    predictions = predict(url, rows)

    print(
        f"{'sepal length':>12} {'sepal width':>11} {'petal length':>12} {'petal width':>11}  predicted   true"
    )
    for row, predicted, true in zip(rows, predictions, labels, strict=True):
        mark = "" if predicted == true else "   <- wrong"
        values = " ".join(
            f"{row[name]:>{width}.1f}" for name, width in zip(FEATURES, (12, 11, 12, 11), strict=True)
        )
        print(f"{values}  {predicted:<10}  {true}{mark}")
    hits = sum(predicted == true for predicted, true in zip(predictions, labels, strict=True))
    accuracy = hits / len(labels)
    print(
        f"\naccuracy of the served model on {len(labels)} held-out rows: {accuracy:.4f} (logged: {logged:.4f})"
    )
    if abs(accuracy - logged) > 1e-9:
        print("error: the served model's accuracy differs from the accuracy the run logged", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
