# The two commands of the README: `make demo` (the main job) and `make test`.
# Both set up what is missing and are safe to run again; a second run downloads nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test benchmark soak stress broker-start broker-stop clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(BIN)/python || $(PYTHON) -m uv venv --quiet --python $(PYTHON) $(VENV)
	$(PYTHON) -m uv pip install --quiet --python $(BIN)/python -e '.[data,test]'
	@touch $(STAMP)

demo: setup
	deploy/system-tools.sh broker
	$(BIN)/moodshift demo

test: setup
	deploy/system-tools.sh test
	$(BIN)/python -m pytest

benchmark: setup
	$(BIN)/python -m benchmarks.run

# A bounded run (MOODSHIFT_SOAK_SECONDS, default 600) sampling the worker's memory and lag.
soak: setup
	$(BIN)/python -m pytest -m soak tests/soak -s

# The crash (two kill -9 streams), broker-restart, rebalance and cluster scenarios STRESS_RUNS times
# each beside two CPU burners; prints passes per scenario (target: every run). A round of the five
# took about 4.6 minutes on 2 cores (docs/benchmarks.md has the measured runs).
STRESS_RUNS ?= 20
stress: setup
	$(BIN)/python -m pytest -m stress tests/reliability -q -p no:cacheprovider --repeat $(STRESS_RUNS) --cpu-burners 2

broker-start: setup
	$(BIN)/moodshift broker start

broker-stop: setup
	$(BIN)/moodshift broker stop

clean:
	rm -rf $(VENV) .pytest_cache
