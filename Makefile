# twinflow: the two commands a fresh machine needs are `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
DATA ?= work/data/fashion_mnist
RUN_ARGS ?=

.PHONY: setup data run retrain-demo test test-fast lint format clean image image-test image-kfp-local

setup:
	bash scripts/setup.sh

data: setup
	bash scripts/install_dataset.sh
	$(BIN)/twinflow prepare-data --output $(DATA)

run: data
	$(BIN)/twinflow run --data-dir $(DATA) $(RUN_ARGS)

retrain-demo: data  # three spans of Fashion-MNIST arriving, the third brighter: two pushes, one drift stop
	$(BIN)/python scripts/retrain_demo.py $(DEMO_ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -v --durations=25 tests

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

# The Kubeflow image, built here without a Docker engine (buildah + a debootstrapped base); not part of make test.
image:
	bash scripts/image.sh build

image-test: setup
	bash scripts/image.sh test

image-kfp-local: setup  # the whole compiled spec through kfp.local's DockerRunner against podman
	bash scripts/image.sh kfp-local
