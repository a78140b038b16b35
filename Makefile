# make train | make test | make test-fast | make lint | make bench-train | make bench-decode | make bench-data
# TORCH pins the PyTorch build installed first: the default takes the CPU wheel on
# machines that provide it; on a GPU machine use e.g. `make TORCH=torch install`.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install train test test-fast lint format bench-train bench-decode bench-data clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,serve]"
	touch $(STAMP)

train: install
	$(BIN)/python -m seq2seq.train +model=transformer $(ARGS)

# One pytest-xdist worker per core, each test file on one worker (its fixtures made once).
test: install
	$(BIN)/python -m pytest -n auto --dist loadfile $(ARGS)

# The tests not marked slow: no training, no wheel, no command-line processes.
test-fast: install
	$(BIN)/python -m pytest -n auto --dist loadfile -m "not slow" $(ARGS)

lint: install
	$(BIN)/ruff check seq2seq tests scripts
	$(BIN)/ruff format --check seq2seq tests scripts

format: install
	$(BIN)/ruff format seq2seq tests scripts
	$(BIN)/ruff check --fix seq2seq tests scripts

bench-train: install
	$(BIN)/python scripts/bench_train.py $(ARGS)

bench-decode: install
	$(BIN)/python scripts/bench_decode.py $(ARGS)

bench-data: install
	$(BIN)/python scripts/bench_data.py $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
