# The two commands of the README: `make demo` (the main job) and `make test`.
# Both set up what is missing and are safe to run again; a second run downloads nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test benchmark soak broker-start broker-stop clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(BIN)/python || $(PYTHON) -m uv venv --quiet --python $(PYTHON) $(VENV)
	$(PYTHON) -m uv pip install --quiet --python $(BIN)/python -e '.[data,test]'
	@touch $(STAMP)

demo: setup
	$(BIN)/moodshift demo

test: setup
	$(BIN)/python -m pytest

benchmark: setup
	$(BIN)/python -m benchmarks.run

# A bounded run (MOODSHIFT_SOAK_SECONDS, default 600) sampling the worker's memory and lag.
soak: setup
	$(BIN)/python -m pytest -m soak tests/soak -s

broker-start: setup
	$(BIN)/moodshift broker start

broker-stop: setup
	$(BIN)/moodshift broker stop

clean:
	rm -rf $(VENV) .pytest_cache
