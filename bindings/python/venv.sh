#!/usr/bin/env bash
# Creates a fresh virtual environment DIR with what the Python tests need (pytest, numpy,
# ml_dtypes, matplotlib and, unless MOE_PY_TORCH=0, torch from PyPI) and prints its python on stdout (the
# last line; pip's output goes to stderr). Needs python3-venv on Debian.
# Usage: PY=$(bash bindings/python/venv.sh DIR)
set -euo pipefail
dir=${1:?usage: venv.sh DIR}
base=${MOE_VENV_BASE_PYTHON:-/usr/bin/python3}
"$base" -m venv --clear "$dir" >&2
# matplotlib: bench/plot.py, whose ctest (bench_plot) runs with this interpreter too.
pkgs=(pytest numpy ml_dtypes matplotlib)
if [ "${MOE_PY_TORCH:-1}" != 0 ]; then pkgs+=(torch); fi
"$dir/bin/python" -m pip install -q --disable-pip-version-check "${pkgs[@]}" >&2
echo "$(cd "$dir" && pwd)/bin/python"
