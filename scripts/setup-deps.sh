#!/usr/bin/env bash
# Installs what the build, the tests and every binding need on a fresh Debian 12 machine of
# this project's kind (the CUDA 13 toolkit is expected preinstalled in /usr/local/cuda; without
# it the library builds CPU-only). Idempotent: skips packages already present.
set -euo pipefail
pkgs=(cmake ninja-build pkg-config gcc g++ swig golang-go bindgen libclang-dev junit5
      default-jdk-headless python3-pytest python3-numpy python3-dev)
# bench/plot.py and its ctest (bench_plot) draw with matplotlib.
pkgs+=(python3-matplotlib)
# Python package tests (bindings/python/venv.sh): python3 -m venv.
pkgs+=(python3-venv)
# ---- hardening (issue 23): clang with libFuzzer and the sanitizer runtimes (scripts/fuzz.sh,
# scripts/clang-sanitize-tests.sh); gcc's ThreadSanitizer runtime (scripts/test.sh) ----
pkgs+=(clang libclang-rt-14-dev libtsan2)
# ---- end hardening ----
# cargo/rustc may come from rustup (~/.cargo/bin) instead of Debian; accept either.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then pkgs+=(cargo); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
