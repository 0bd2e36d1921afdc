#!/usr/bin/env bash
# The main job: build the library and moe-bench, then run real MoE forwards of every model
# preset (on the GPU when one is present; else on the CPU backend at small T, with the presets
# too large for the CPU scaled down, which it says). Extra arguments go to moe-bench
# (e.g. --preset deepseek-v3 --tokens 1,128; --help explains them and the columns).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh >&2
source scripts/env.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$MOE_PYTHON" >/dev/null
# Build output to stderr: stdout is moe-bench's alone (main.sh --json > rows.jsonl).
cmake --build build -j "$JOBS" --target moe-bench >&2
./build/bench/moe-bench "$@"
