#!/usr/bin/env bash
# The Python package as users get it: `pip install .` (repository root) into the virtual
# environment VENV (made by venv.sh), then the binding's tests against the installed wheel,
# run from outside the source tree; `pip wheel bindings/python` gives the same package; and
# CMake's reason for a Python binding it turns off.
# The wheel is CPU-only unless MOE_WHEEL_CUDA=auto (CMake then builds the CUDA backend when it
# finds nvcc) or ON: CI and scripts/test.sh leave it OFF, the C build tests the kernels.
# Usage: bash bindings/python/test-wheel.sh VENV
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
venv=$(cd "${1:?usage: test-wheel.sh VENV}" && pwd)
py=$venv/bin/python
cuda=${MOE_WHEEL_CUDA:-OFF}
# CMAKE_ARGS (read by scikit-build-core) rather than -C: Debian 12's pip 23.0 has no -C.
if [ "$cuda" != auto ]; then export CMAKE_ARGS="${CMAKE_ARGS:-} -DMOE_WITH_CUDA=$cuda"; fi
export CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== pip install . (MOE_WITH_CUDA=$cuda)"
"$py" -m pip install -q --disable-pip-version-check .
(cd "$tmp" && "$py" -c "
import os, moe_trtllm as m
assert os.path.realpath(m.__file__).startswith(os.path.realpath('$venv')), m.__file__
print('import moe_trtllm', m.__version__, 'from', os.path.dirname(m.__file__))")

echo "== the binding's tests against the installed wheel"
(cd "$tmp" && MOE_REQUIRE_TORCH=${MOE_REQUIRE_TORCH:-1} PYTHONDONTWRITEBYTECODE=1 \
  "$py" -m pytest -q -p no:cacheprovider -rs "$root/bindings/python/tests")

echo "== pip wheel bindings/python holds the same files as the installed package"
"$py" -m pip wheel -q --disable-pip-version-check --no-deps -w "$tmp/w" \
  ./bindings/python
"$py" -c "
import sys, zipfile, importlib.metadata as md
inst = sorted(str(f) for f in md.files('moe-trtllm')
              if f.parts[0] == 'moe_trtllm' and '__pycache__' not in f.parts)
whl = sorted(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.startswith('moe_trtllm/'))
assert inst == whl, (inst, whl)
assert 'moe_trtllm/libmoe_trtllm.so.0' in whl and 'moe_trtllm/torch.py' in whl, whl
print(' '.join(whl))" "$tmp"/w/*.whl

echo "== CMake says why the Python binding is off"
mkdir -p "$tmp/nomods"
printf 'raise ImportError("hidden by test-wheel.sh")\n' > "$tmp/nomods/pytest.py"
PYTHONPATH="$tmp/nomods" cmake -S . -B "$tmp/cfg" -G Ninja -DMOE_WITH_CUDA=OFF \
  -DMOE_BUILD_TESTS=OFF -DMOE_BUILD_BENCH=OFF -DPython3_EXECUTABLE="$py" > "$tmp/cfg.log"
if command -v swig >/dev/null; then
  want="binding python: OFF: no interpreter with the test modules ($py lacks pytest)"
else
  want="binding python: OFF: SWIG >= 4.0 not found"
fi
grep -qF "$want" "$tmp/cfg.log" || { cat "$tmp/cfg.log"; echo "test-wheel: expected: $want"; exit 1; }
grep "moe_trtllm binding" "$tmp/cfg.log"
echo "test-wheel: OK"
