#!/usr/bin/env bash
# Downloads (here, with PyPI reachable) what a GPU machine with no network needs to build and
# test the Python package: the build requirements (scikit-build-core, swig) and the test and
# runtime modules torch does not bring (ml_dtypes for CPython 3.10-3.13, pytest), about 10 MB.
# numpy and torch are expected on that machine. Usage: bash bindings/python/wheelhouse.sh DIR
set -euo pipefail
dir=${1:?usage: wheelhouse.sh DIR}
py=${PYTHON:-python3}
mkdir -p "$dir"
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# The newest ml_dtypes needs numpy >= 2; 0.5.x also runs on numpy 1.x (pip picks what fits).
for v in 3.10 3.11 3.12 3.13; do
  for spec in ml_dtypes "ml_dtypes>=0.5,<0.6"; do
    "$py" -m pip download -q --only-binary=:all: --no-deps --python-version "$v" \
      --implementation cp "${plat[@]}" -d "$dir" "$spec"
  done
done
# Pure-Python wheels (markers are evaluated for this interpreter: name the <3.11 ones too).
"$py" -m pip download -q --only-binary=:all: --no-deps -d "$dir" "scikit-build-core>=0.10" \
  packaging pathspec pytest pluggy iniconfig pygments exceptiongroup tomli typing_extensions
"$py" -m pip download -q --only-binary=:all: --no-deps "${plat[@]}" --platform \
  manylinux_2_12_x86_64 --platform manylinux2010_x86_64 -d "$dir" "swig>=4.0"
ls "$dir"
