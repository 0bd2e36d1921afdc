# Sourced by the scripts: toolchain locations on this machine kind.
if [ -d /usr/local/cuda/bin ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
if [ -d "$HOME/.cargo/bin" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
if [ -z "${JAVA_HOME:-}" ]; then
  for j in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/default-java; do
    if [ -d "$j" ]; then export JAVA_HOME="$j"; break; fi
  done
fi
# The Debian python (pytest, numpy), not a pyenv shim.
MOE_PYTHON="${MOE_PYTHON:-/usr/bin/python3}"
JOBS="${JOBS:-$(nproc)}"
