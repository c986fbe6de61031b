#!/usr/bin/env bash
# The main job (`make demo`): from a fresh machine to predictions of a served model, with no manual step.
#
# Steps: create a virtual environment and install homec with its ml extra; create a scratch repository
# with `homec init`; train the iris classifier on the embedded MLflow store; promote the run; render;
# serve the app with FastAPI; send the run's held-out iris rows and print the predictions against the
# true species and the accuracy; stop the server. Exits non-zero when any step fails, or when the served
# accuracy differs from the accuracy the run logged.
#
# Environment: PYTHON (default python3), HOMEC_DEMO_VENV (default .homec/venv), HOMEC_DEMO_DIR (default
# build/quickstart), HOMEC_DEMO_PORT (default: a free port), HOMEC_DEMO_READY_TIMEOUT (seconds, default 240).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${HOMEC_DEMO_VENV:-$ROOT/.homec/venv}"
WORK="${HOMEC_DEMO_DIR:-$ROOT/build/quickstart}"
READY_TIMEOUT="${HOMEC_DEMO_READY_TIMEOUT:-240}"
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true BENTOML_DO_NOT_TRACK=true

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

step "creating a fresh virtual environment in $VENV"
"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
step "installing homec with its ml extra (MLflow, BentoML, scikit-learn, FastAPI, uvicorn)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[ml]"
HOMEC="$VENV/bin/homec"
PORT="${HOMEC_DEMO_PORT:-$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"

step "creating the example repository in $WORK"
rm -rf "$WORK"
mkdir -p "$(dirname "$WORK")"
"$HOMEC" init "$WORK" >/dev/null
cd "$WORK"

step "training iris on the embedded MLflow store"
"$HOMEC" train iris | tee train.out
RUN_ID="$(sed -n 's/^run_id: //p' train.out | tail -n 1)"
TRACKING_URI="$(sed -n 's/^tracking_uri: //p' train.out | tail -n 1)"
[[ "$RUN_ID" =~ ^[0-9a-f]{32}$ ]] || fail "homec train printed no run_id line"
[ -n "$TRACKING_URI" ] || fail "homec train printed no tracking_uri line"

step "promoting run $RUN_ID"
"$HOMEC" promote iris --run-id "$RUN_ID"

step "rendering"
"$HOMEC" render
"$HOMEC" check

step "serving iris with FastAPI on 127.0.0.1:$PORT"
"$HOMEC" serve iris --flavor fastapi --port "$PORT" --ready-timeout "$READY_TIMEOUT" >serve.out 2>serve.log &
SERVE_PID=$!
stop_server() {
  if kill -0 "$SERVE_PID" 2>/dev/null; then
    kill -TERM "$SERVE_PID"
    wait "$SERVE_PID" || true
  fi
}
trap stop_server EXIT
for _ in $(seq 1 "$((READY_TIMEOUT + 30))"); do
  grep -q '^press Ctrl-C' serve.out && break
  kill -0 "$SERVE_PID" 2>/dev/null || break
  sleep 1
done
if ! grep -q '^press Ctrl-C' serve.out; then
  tail -n 40 serve.log >&2
  fail "homec serve did not become ready; its output is in $WORK/serve.log"
fi
cat serve.out

step "predicting the held-out rows of run $RUN_ID"
"$VENV/bin/python" "$ROOT/scripts/quickstart_predict.py" "http://127.0.0.1:$PORT" "$TRACKING_URI" "$RUN_ID"

step "stopping the server"
kill -TERM "$SERVE_PID"
status=0
wait "$SERVE_PID" || status=$?
trap - EXIT
[ "$status" -eq 0 ] || fail "homec serve exited with $status when stopped"
grep -q '^stopped' serve.out || fail "homec serve did not report that it stopped"
echo "quickstart: done"
