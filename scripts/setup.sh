#!/usr/bin/env bash
# Create or repair .venv with the pinned TFX 1.16 + torch stack. Idempotent: when the
# stamp matches the lock files and the stack is installed, it returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}  # another folder for a second environment (scripts/gpu_bench.sh: one per CUDA build)
STAMP=$VENV/.twinflow-setup-stamp
# GPU=tensorflow adds TensorFlow's CUDA libraries (tensorflow[and-cuda]); GPU=torch swaps in torch's
# CUDA wheel (TORCH_VARIANT, cu128 by default). Not both: TensorFlow 2.16 needs cuDNN 8.9 and
# torch's CUDA wheels cuDNN 9, so one environment holds one framework's CUDA build.
GPU=${GPU:-}
case "$GPU" in
    "" | none | cpu) GPU="" ;;
    tensorflow | torch) ;;
    *) echo "setup: GPU=$GPU: expected tensorflow or torch (or nothing for CPU only)" >&2; exit 2 ;;
esac
TORCH_VARIANT=${TORCH_VARIANT:-cu128}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl}
want=$( (cat pyproject.toml setup.py core/packages.py requirements/constraints.txt; echo "gpu=$GPU/$TORCH_VARIANT") | sha256sum | cut -d' ' -f1)

stack_imports() {
    TF_USE_LEGACY_KERAS=1 "$VENV/bin/python" -c \
        'import tfx, tensorflow_transform, tensorflow_model_analysis, torch, pytorch_lightning, onnxruntime, twinflow.pipelines.cli' \
        >/dev/null 2>&1
}

# The stamp is written last, so a half-finished install never has it; with it, checking that the
# stack's distributions are installed and the project imports is enough (importing the whole
# stack, as after an install, takes half a minute).
stack_installed() {
    "$VENV/bin/python" -c 'import importlib.metadata as m, twinflow.core, twinflow.pipelines.cli.flags
for name in ("tfx", "tensorflow", "tensorflow-io", "torch", "pytorch-lightning", "onnxruntime", "moto"):
    m.version(name)' >/dev/null 2>&1
}

venv_is_311() {
    [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null
}

# Python 3.11 is checked before anything is installed; current distributions ship 3.12 or newer.
if ! venv_is_311 && ! "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1; then
    found=$("$PYTHON" --version 2>&1) || found="not found"
    echo "setup: twinflow needs Python 3.11 ($PYTHON: $found; TFX 1.16's stack has no wheels for 3.12+):" \
        "'uv python install 3.11', then 'make run PYTHON=\$(uv python find 3.11)' (or pyenv, or deadsnakes on Ubuntu)" >&2
    exit 2
fi

# Two test dependencies from Debian, best effort and never fatal: MariaDB's server binaries for the
# shared-store tests (tests/test_mysql_metadata.py starts a server of its own) and headless
# Chromium for the browser test of report.html (tests/test_comparison.py). One `command -v` when
# present; otherwise installed with apt-get when this is root, else a one-line note (those tests then skip).
mariadb_installed() {
    command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] ||
        command -v mysqld >/dev/null 2>&1 || [[ -x /usr/sbin/mysqld ]]
}

chromium_installed() {
    command -v chromium >/dev/null 2>&1
}

# ensure_apt_package PACKAGE CHECK WHAT: install PACKAGE unless CHECK succeeds; WHAT names the tests it serves.
ensure_apt_package() {
    local package=$1 check=$2 what=$3
    "$check" && return 0
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: note: $package is not installed (installing it needs root and apt-get); $what will skip"
        return 0
    fi
    echo "setup: installing $package for $what"
    local log=${TMPDIR:-/tmp}/twinflow-$package-install.log
    if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o DPkg::Lock::Timeout=120 "$package"; } >"$log" 2>&1 && "$check"; then
        rm -f "$log"
    else
        echo "setup: note: could not install $package (see $log); $what will skip"
    fi
    return 0
}

ensure_apt_package mariadb-server mariadb_installed "the shared-store tests" || true
ensure_apt_package chromium chromium_installed "the browser test of report.html" || true

if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]] && stack_installed; then
    echo "setup: .venv is up to date"
    exit 0
fi

if ! venv_is_311; then
    echo "setup: creating $VENV with $PYTHON"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || {
        echo "setup: $PYTHON cannot create a virtual environment (Debian/Ubuntu: apt install python3.11-venv)" >&2
        exit 2
    }
fi

echo "setup: installing the pinned stack (a few minutes the first time)"
"$VENV/bin/python" -m pip install -q --upgrade "pip>=24" wheel
# PyPI serves no +cpu torch builds: torch comes first, on its own, from where pip finds it or else
# from $TORCH_INDEX/cpu (the one script the Dockerfile runs too); the install below finds it satisfied.
scripts/install_torch.sh "$VENV/bin/python" "$TORCH_INDEX"
# TFX 1.16.0 and ml-pipelines-sdk declare Requires-Python <3.11 although the whole stack
# runs on 3.11: hence --ignore-requires-python, held in check by the full constraints file.
"$VENV/bin/python" -m pip install -q --ignore-requires-python \
    -c requirements/constraints.txt -e '.[dev]'
[[ -n $GPU ]] && scripts/install_gpu_build.sh "$VENV/bin/python" "$GPU" "$TORCH_VARIANT" "$TORCH_INDEX"
"$VENV/bin/python" -m pip check
stack_imports || { echo "setup: the stack does not import after install" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "setup: done"
