#!/usr/bin/env bash
# make bench-gpu: both trainers and both bare loops on a GPU, measured by bench/training.py.
# TensorFlow's and torch's CUDA builds need different cuDNN majors, so each framework gets its
# own environment (.venv-gpu-tensorflow, .venv-gpu-torch; scripts/setup.sh GPU=...), and each
# measures its own two loops on the GPU. Figures: work/bench/gpu-<framework>/bench.json.
# QUICK=1 passes --quick (a sample); the data must be installed (make data).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-work/data/fashion_mnist}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "bench-gpu: no NVIDIA GPU visible (nvidia-smi -L found none): nothing measured; make bench measures the CPU" >&2
    exit 1
fi
nvidia-smi -L
[[ -d $DATA ]] || { echo "bench-gpu: no data at $DATA (run make data first)" >&2; exit 1; }

declare -A LOOPS=([tensorflow]=bare_keras,keras [torch]=bare_torch,lightning)
for framework in tensorflow torch; do
    venv=.venv-gpu-$framework
    VENV=$venv GPU=$framework bash scripts/setup.sh
    echo "bench-gpu: $framework loops (${LOOPS[$framework]}) in $venv"
    "$venv/bin/python" bench/training.py ${QUICK:+--quick} --data-dir "$DATA" \
        --out "work/bench/gpu-$framework" --loops "${LOOPS[$framework]}" --require-gpu
done
.venv-gpu-torch/bin/python - <<'PY'
import json
rows = {fw: json.load(open(f"work/bench/gpu-{fw}/bench.json")) for fw in ("tensorflow", "torch")}
loops = {**rows["tensorflow"]["loops"], **rows["torch"]["loops"]}
print("\n| loop | device | training images/s |\n|---|---|---:|")
for fw, report in rows.items():
    device = report["device"]["keras" if fw == "tensorflow" else "torch"]
    for name, loop in report["loops"].items():
        print(f"| {name} | {device} | {loop['images_per_second']:,.0f} |")
speed = {name: loop["images_per_second"] for name, loop in loops.items()}
ratios = {
    "keras_trainer / bare_keras": speed["keras"] / speed["bare_keras"],
    "lightning_trainer / bare_torch": speed["lightning"] / speed["bare_torch"],
    "lightning_trainer / keras_trainer": speed["lightning"] / speed["keras"],
}
print("\n| ratio | value |\n|---|---:|")
for name, value in ratios.items():
    print(f"| {name} | {value:.2f} |")
json.dump({"reports": rows, "ratios": ratios}, open("work/bench/gpu.json", "w"), indent=2)
print("written to work/bench/gpu.json")
PY
