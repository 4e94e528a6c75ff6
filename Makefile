# twinflow: the two commands a fresh machine needs are `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
DATA ?= work/data/fashion_mnist
RUN_ARGS ?=

.PHONY: setup data run test test-fast lint format clean

setup:
	bash scripts/setup.sh

data: setup
	bash scripts/install_dataset.sh
	$(BIN)/twinflow prepare-data --output $(DATA)

run: data
	$(BIN)/twinflow run --data-dir $(DATA) $(RUN_ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -v tests

test-fast: setup
	$(BIN)/python -m pytest -q -m "not e2e and not slow" tests

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf work
