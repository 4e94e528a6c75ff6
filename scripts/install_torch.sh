#!/usr/bin/env bash
# The CPU torch wheel at its pin, in a step of its own before the project's install. The one place
# both `make setup` (scripts/setup.sh) and the Dockerfile do it.
#
#   scripts/install_torch.sh PYTHON INDEX        # torch==<pin>+cpu, e.g. INDEX=https://download.pytorch.org/whl
#
# PyPI serves no +cpu builds; the PyTorch CPU index (INDEX/cpu) does. The wheel is first looked for
# where pip looks anyway (its configured index, an offline mirror, find-links such as /opt/wheels) and
# only then on INDEX/cpu, as the one index of that call. --no-deps: torch's dependencies come with the
# project's install, from the usual index and held by the same constraints, so nothing but torch is
# ever looked up on the PyTorch index (an unreachable extra index costs about 10 s of retries for
# every package looked up there). The project's install then finds torch already satisfied.
# Other pip settings come from PIP_* variables (the image sets PIP_NO_CACHE_DIR). Run from the
# project root (it reads requirements/constraints.txt).
set -euo pipefail
CONSTRAINTS=requirements/constraints.txt
python=${1:?usage: install_torch.sh PYTHON INDEX}
index=${2:?usage: install_torch.sh PYTHON INDEX}

requirement=$(grep -E '^torch==[^+]+\+cpu$' "$CONSTRAINTS") || {
    echo "install_torch: $CONSTRAINTS pins no torch==<version>+cpu" >&2
    exit 2
}
install=("$python" -m pip install -q --no-deps --ignore-requires-python)
first_try=$(mktemp)
trap 'rm -f "$first_try"' EXIT
if "${install[@]}" "$requirement" >"$first_try" 2>&1; then
    exit 0  # installed already, or found without the PyTorch index
fi
echo "install_torch: $requirement from $index/cpu (not found where pip looks by default)"
if ! "${install[@]}" --index-url "$index/cpu" "$requirement"; then
    echo "install_torch: $requirement is on neither pip's own index nor $index/cpu; where pip looked first:" >&2
    tail -n 3 "$first_try" >&2
    exit 1
fi
