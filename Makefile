# twinflow: the two commands a fresh machine needs are `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
DATA ?= work/data/fashion_mnist
RUN_ARGS ?=

.PHONY: setup data run retrain-demo bench bench-scale bench-gpu docs test test-fast lint format clean image image-test image-kfp-local

setup:  # GPU=tensorflow or GPU=torch: that framework's CUDA build (one per environment)
	GPU=$(GPU) bash scripts/setup.sh

data: setup
	bash scripts/install_dataset.sh
	$(BIN)/twinflow prepare-data --output $(DATA)

run: data
	$(BIN)/twinflow run --data-dir $(DATA) $(RUN_ARGS)

retrain-demo: data  # three spans of Fashion-MNIST arriving, the third brighter: two pushes, one drift stop
	$(BIN)/python scripts/retrain_demo.py $(DEMO_ARGS)

# Training-only images/s of both trainers vs bare loops on one Transform output (QUICK=1: a sample, ~1 min).
bench: data
	$(BIN)/python bench/training.py $(if $(QUICK),--quick) --data-dir $(DATA) $(BENCH_ARGS)

# Per-stage time and peak memory at 1x, 4x, 16x a generated RGB data set (QUICK=1: 250 images at 1x).
bench-scale: setup
	$(BIN)/python bench/scale.py $(if $(QUICK),--quick) $(BENCH_ARGS)

# Both trainers and bare loops on an NVIDIA GPU, one environment per framework's CUDA build (QUICK=1: a sample).
bench-gpu: data
	DATA=$(DATA) QUICK=$(QUICK) bash scripts/gpu_bench.sh

# The docs site (mkdocs.yml, docs/), built strictly: a broken link or a missing page fails it.
docs: setup
	$(BIN)/mkdocs build --strict --site-dir work/site

test: setup docs
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
