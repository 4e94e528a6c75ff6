# syntax=docker/dockerfile:1
# twinflow's pipeline image: every step of the compiled Kubeflow pipeline runs in it and
# imports the project's code by module path (twinflow.trainers.…run_fn, twinflow.trainers.preprocessing.
# preprocessing_fn, twinflow.components.<name>.executor.Executor).
#
#   docker build -t REGISTRY/twinflow:TAG .                                   # CPU
#   docker build --build-arg TORCH_VARIANT=cu128 -t REGISTRY/twinflow:TAG-torch-gpu .  # torch on CUDA
#   docker build --build-arg TF_VARIANT=cuda -t REGISTRY/twinflow:TAG-tf-gpu .         # TensorFlow on CUDA
#
# One image cannot hold both CUDA builds: TensorFlow 2.16's CUDA extra pins cuDNN 8.9 and
# torch's CUDA wheels need cuDNN 9. A GPU deployment gives each Trainer step its framework's
# image (twinflow compile --keras-trainer-image / --lightning-trainer-image) and runs every
# other step, Evaluators included, in the CPU image.
#
# The model server (`twinflow serve`, for KServe: serving/manifests.py) is the 'serving' target;
# a plain build still gives the pipeline image above (the last stage, 'pipeline', is 'runtime').
#
#   docker build --target serving -t REGISTRY/twinflow-serving:TAG .
#
# The stack is installed the way scripts/setup.sh installs it: the CPU torch wheel by
# scripts/install_torch.sh, then pip --ignore-requires-python (TFX 1.16 declares Requires-Python
# <3.11) held in check by requirements/constraints.txt.
# Debian 12 (glibc 2.36), as on the machines the stack was verified on: newer glibc-only
# wheels of ml-metadata/TFDV are what pins TFX to 1.16 in the first place.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# cpu, or a PyTorch CUDA wheel tag (cu126, cu128 …) for the GPU variant.
ARG TORCH_VARIANT=cpu
# cpu, or cuda for TensorFlow's CUDA extra (tensorflow[and-cuda] at the pinned version).
ARG TF_VARIANT=cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl
# Folder(s) of wheels pip searches as well (pip's PIP_FIND_LINKS; build stage only, not in the
# image), for a torch wheel where TORCH_INDEX is out of reach. The folder must be visible to
# the build, e.g. buildah bud --volume /opt/wheels:/wheels:ro --build-arg PIP_FIND_LINKS=/wheels
# (scripts/image.sh). Empty by default: PyPI and TORCH_INDEX only.
ARG PIP_FIND_LINKS=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers only here, for the odd sdist (crcmod); the runtime stage never sees them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# 1. Dependencies, from the lock files alone: this multi-GB layer survives code changes. The CPU
#    torch wheel first, on its own (PyPI serves no +cpu builds; nothing else is looked up on
#    TORCH_INDEX), by the script `make setup` runs too; the project's install finds it satisfied.
COPY pyproject.toml setup.py README.md ./
COPY core/packages.py core/
COPY requirements/ requirements/
COPY scripts/install_torch.sh scripts/
RUN python -m pip install --no-cache-dir --upgrade "pip>=24" wheel \
    && PIP_NO_CACHE_DIR=1 scripts/install_torch.sh python "${TORCH_INDEX}" \
    && python -m pip install --no-cache-dir --ignore-requires-python \
        -c requirements/constraints.txt .

# 2. The project itself (a regular, non-editable install into the venv): every package folder that
#    core/packages.py lists, installed as twinflow.<folder> by setup.py (.dockerignore keeps the rest out).
COPY . .
RUN python -m pip install --no-cache-dir --ignore-requires-python --no-deps --force-reinstall \
        -c requirements/constraints.txt .

# 3. GPU variants: swap the CPU torch wheel for the CUDA build of the same version, or add
#    TensorFlow's CUDA libraries to the pinned TensorFlow; every other pin stays. The same
#    script is what `make setup GPU=…` runs.
COPY scripts/install_gpu_build.sh scripts/
RUN if [ "${TORCH_VARIANT}" != "cpu" ] && [ "${TF_VARIANT}" != "cpu" ]; then \
        echo "TORCH_VARIANT=${TORCH_VARIANT} and TF_VARIANT=${TF_VARIANT}: one image holds one CUDA build" \
            "(TensorFlow 2.16 needs cuDNN 8.9, torch's CUDA wheels cuDNN 9); build one image per framework" >&2; \
        exit 1; \
    fi \
    && if [ "${TF_VARIANT}" = "cuda" ]; then \
        PIP_NO_CACHE_DIR=1 scripts/install_gpu_build.sh python tensorflow; \
    elif [ "${TF_VARIANT}" != "cpu" ]; then \
        echo "TF_VARIANT=${TF_VARIANT}: expected cpu or cuda" >&2; exit 1; \
    fi \
    && if [ "${TORCH_VARIANT}" != "cpu" ]; then \
        PIP_NO_CACHE_DIR=1 scripts/install_gpu_build.sh python torch "${TORCH_VARIANT}" "${TORCH_INDEX}"; \
    fi \
    && python -m pip check \
    && TF_USE_LEGACY_KERAS=1 python -c "import tfx, tensorflow_transform, tensorflow_model_analysis, torch, twinflow.pipelines.cli, twinflow.serving.app"


FROM ${PYTHON_IMAGE} AS runtime
# Set for every process, Kubeflow steps and Beam workers included, which run no twinflow entry point (and
# so no twinflow.core.bootstrap): tf-keras for TFX 1.16, and OpenMP threads that sleep rather than spin.
ENV PATH=/opt/venv/bin:$PATH \
    TF_USE_LEGACY_KERAS=1 \
    OMP_WAIT_POLICY=PASSIVE \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /opt/venv /opt/venv
# The curated schemas, where 'twinflow compile' points the schema_file parameter by default.
COPY schemas/ /opt/twinflow/schemas/
RUN useradd --create-home --uid 10001 --user-group twinflow \
    && mkdir -p /mnt/serving \
    && chown twinflow:twinflow /mnt/serving
USER 10001
WORKDIR /home/twinflow
# Kubeflow runs each step with its own command (python -m tfx.orchestration.kubeflow.v2.container…).
CMD ["twinflow", "--help"]


# The model server: TF Serving REST (/v1) and KServe V2 (/v2) on one port. 8501 is twinflow
# serve's own default, 8080 the port KServe expects (and the one CMD picks); KServe's storage
# initializer downloads the serving folder to /mnt/models and probes /v2/health/*.
FROM runtime AS serving
EXPOSE 8501 8080
ENTRYPOINT ["twinflow", "serve"]
CMD ["--serving-dir", "/mnt/models", "--host", "0.0.0.0", "--port", "8080"]


# The default target (a plain build builds the last stage): the pipeline image, unchanged.
# Kubeflow and scripts/image.sh run their own commands in it, which an ENTRYPOINT would swallow.
FROM runtime AS pipeline
