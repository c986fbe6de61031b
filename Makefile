# The two quick-start commands are `make demo` (the main job) and `make test` (the whole test suite).
PYTHON ?= python3
export MLFLOW_DISABLE_TELEMETRY = true
export DO_NOT_TRACK = true
export BENTOML_DO_NOT_TRACK = true

.PHONY: demo test setup lint typecheck pytest render

demo:
	bash scripts/quickstart.sh

test: setup lint typecheck pytest

setup:
	bash scripts/setup-test-env.sh

lint:
	$(PYTHON) -m ruff check compiler tests
	$(PYTHON) -m ruff format --check compiler tests

typecheck:
	$(PYTHON) -m mypy

# pytest exits 5 when it collected no test; that must fail the run, not pass it.
pytest:
	$(PYTHON) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

render:
	homec render
