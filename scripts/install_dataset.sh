#!/usr/bin/env bash
# Fashion-MNIST ships in Debian's dataset-fashion-mnist package. Install it where apt
# can; elsewhere say what to do instead (twinflow prepare-data --source DIR or --download).
set -uo pipefail
DIR=/usr/share/datasets/fashion-mnist
[[ -f $DIR/train-images-idx3-ubyte.gz ]] && exit 0
if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    (apt-get install -y -qq dataset-fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }) \
        >/dev/null 2>&1
fi
if [[ ! -f $DIR/train-images-idx3-ubyte.gz ]]; then
    echo "install_dataset: Debian's dataset-fashion-mnist package is not available here." >&2
    echo "  Put the four Fashion-MNIST IDX .gz files in a folder and run:" >&2
    echo "    .venv/bin/twinflow prepare-data --source FOLDER" >&2
    echo "  or, online: .venv/bin/twinflow prepare-data --download" >&2
    exit 1
fi
