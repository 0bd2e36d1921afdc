#!/usr/bin/env bash
# The main job: build the library and moe-bench, then run real MoE forwards of the model
# presets (on the GPU when one is present, else on the CPU backend). Extra arguments go to
# moe-bench (e.g. --preset deepseek-v3 --tokens 1,128).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
source scripts/env.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$MOE_PYTHON" >/dev/null
cmake --build build -j "$JOBS" --target moe-bench
./build/bench/moe-bench "$@"
