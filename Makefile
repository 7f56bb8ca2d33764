# make setup / train / test — see README.md. Idempotent: setup re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
# CPU build by default; GPU users: make setup TORCH="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.rnnlab-installed

.PHONY: setup train test test-slow clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

# Default experiment: BiLSTM on BBC News. Extra Hydra overrides: make train ARGS="model/backbone=gru"
train: setup
	$(BIN)/rnnlab-train $(ARGS)

# One test process per core (pytest-xdist), one torch thread each: most of the suite is CLI
# subprocesses whose start-up (importing torch and Lightning) runs on one core.
test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto $(PYTEST_ARGS)

test-slow: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto -m slow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) outputs/runs outputs/multiruns outputs/evals
