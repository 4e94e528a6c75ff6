#!/usr/bin/env bash
# One framework's CUDA build into an installed environment, every other pin kept. The one
# place both `make setup GPU=…` (scripts/setup.sh) and the Dockerfile's GPU variants do it.
#
#   scripts/install_gpu_build.sh PYTHON tensorflow                  # adds tensorflow[and-cuda] at the pin
#   scripts/install_gpu_build.sh PYTHON torch VARIANT INDEX         # torch==<pin>+VARIANT (cu128 …) from INDEX/VARIANT
#
# One environment holds one framework's CUDA build: TensorFlow 2.16's CUDA extra pins cuDNN 8.9
# and torch's CUDA wheels need cuDNN 9. Other pip settings come from PIP_* variables (the
# image sets PIP_NO_CACHE_DIR). Run from the project root (it reads requirements/constraints.txt).
set -euo pipefail
CONSTRAINTS=requirements/constraints.txt
python=${1:?usage: install_gpu_build.sh PYTHON tensorflow|torch [VARIANT INDEX]}
framework=${2:?usage: install_gpu_build.sh PYTHON tensorflow|torch [VARIANT INDEX]}

case $framework in
tensorflow)
    pinned=$(sed -n 's/^tensorflow==\(.*\)$/\1/p' "$CONSTRAINTS")
    echo "install_gpu_build: adding TensorFlow's CUDA libraries (tensorflow[and-cuda]==$pinned)"
    "$python" -m pip install -q --ignore-requires-python -c "$CONSTRAINTS" "tensorflow[and-cuda]==$pinned"
    ;;
torch)
    variant=${3:?torch needs a CUDA wheel tag, e.g. cu128}
    index=${4:?torch needs the PyTorch wheel index, e.g. https://download.pytorch.org/whl}
    pinned=$(sed -n 's/^torch==\([^+]*\)+cpu$/\1/p' "$CONSTRAINTS")
    echo "install_gpu_build: swapping in torch's CUDA build (torch==$pinned+$variant from $index/$variant)"
    gpu_constraints=$(mktemp)
    trap 'rm -f "$gpu_constraints"' EXIT
    grep -v '^torch==' "$CONSTRAINTS" >"$gpu_constraints"  # every pin but the CPU torch wheel's
    "$python" -m pip install -q --ignore-requires-python --extra-index-url "$index/$variant" \
        -c "$gpu_constraints" "torch==$pinned+$variant"
    ;;
*)
    echo "install_gpu_build: $framework: expected tensorflow or torch" >&2
    exit 2
    ;;
esac
