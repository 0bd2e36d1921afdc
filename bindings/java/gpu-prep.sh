#!/bin/sh
# Prepares, on a machine with apt and network (this project's dev machine), everything the
# Java binding's GPU run needs on a GPU machine that has cmake, a C compiler and the CUDA
# toolkit but no JVM, no SWIG and no network. Writes the ignored folder .jre/ (about 40 MiB,
# under the device tool's 64 MiB carry limit):
#   .jre/jre/            a Java 17 runtime: Debian's openjdk-17-jre-headless and
#                        openjdk-17-jdk-headless packages (apt-get download, dpkg -x into
#                        .jre-stage/), cut down by their own jlink to java.base + java.logging
#                        (+ jdk.unsupported): the unpacked JRE is ~190 MiB
#   .jre/include/        jni.h and jni_md.h of that JDK (to compile the JNI wrapper there)
#   .jre/src/            the SWIG-generated JNI C source of the binding (compiled on the GPU
#                        machine against its CUDA build of libmoe_trtllm)
#   .jre/classes/, .jre/test-classes/   the binding's and its tests' compiled classes
#   .jre/junit-platform-console-standalone.jar, .jre/lib-extra/libz.so.1
# Then run bindings/java/gpu-run.sh on the GPU machine (see docs/bindings.md).
#
# Usage: bindings/java/gpu-prep.sh [BUILD_DIR]   (default build-java-prep: a CPU-only build
# with the Java binding on; an existing build dir with the Java binding is reused)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${1:-build-java-prep}
out=.jre
stage=.jre-stage
pkgs="openjdk-17-jre-headless openjdk-17-jdk-headless"
junit=${MOE_JUNIT_CONSOLE:-/usr/share/java/junit-platform-console-standalone.jar}
[ -f "$junit" ] || { echo "gpu-prep: no JUnit console launcher at $junit (apt-get install junit5)" >&2; exit 1; }

# 1. The binding's classes and SWIG-generated sources (backend-independent: a CPU build).
if [ ! -f "$build/CMakeCache.txt" ]; then
  JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64} \
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_WITH_CUDA=OFF \
        -DMOE_BINDING_JAVA=ON -DMOE_BINDING_PYTHON=OFF -DMOE_BINDING_RUST=OFF \
        -DMOE_BINDING_GO=OFF -DMOE_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$build" --target moe_trtllm_java -j 2
jb="$build/bindings/java"
wrap="$jb/wrap/moe_trtllm_jniJAVA_wrap.c"
for f in "$wrap" "$jb/classes" "$jb/test-classes"; do
  [ -e "$f" ] || { echo "gpu-prep: $f missing (is the Java binding on in $build?)" >&2; exit 1; }
done

# 2. Debian's JDK packages, unpacked (not installed) into the stage.
mkdir -p "$stage/debs"
for p in $pkgs; do
  if ! ls "$stage/debs/${p}_"*.deb >/dev/null 2>&1; then
    (cd "$stage/debs" && apt-get download "$p")
  fi
done
rm -rf "$stage/root"
mkdir -p "$stage/root"
for d in "$stage"/debs/*.deb; do
  dpkg -x "$d" "$stage/root"
done
jdk="$stage/root/usr/lib/jvm/java-17-openjdk-amd64"
# The packages link some files to /etc/java-17-openjdk (their conffiles, unpacked beside).
find "$jdk" -type l | while read -r l; do
  t=$(readlink "$l")
  case "$t" in
    /etc/*) ln -sfn "$root/$stage/root$t" "$l" ;;
  esac
done
"$jdk/bin/java" -version 2>&1 | head -1

# 3. The carried runtime: jlink of the unpacked JDK's own jmods.
rm -rf "$out"
mkdir -p "$out/include/linux" "$out/src" "$out/lib-extra"
"$jdk/bin/jlink" --module-path "$jdk/jmods" \
  --add-modules java.base,java.logging,jdk.unsupported \
  --strip-debug --no-man-pages --no-header-files --compress=2 --output "$out/jre"
cp "$jdk/include/jni.h" "$out/include/"
cp "$jdk/include/linux/jni_md.h" "$out/include/linux/"
cp "$wrap" "$out/src/"
cp -r "$jb/classes" "$jb/test-classes" "$out/"
cp "$junit" "$out/junit-platform-console-standalone.jar"
# zlib, which bin/java links, in case the GPU machine's image lacks it (LD_LIBRARY_PATH there).
zlib=$(ldconfig -p 2>/dev/null | awk '/libz\.so\.1 .*x86-64/ {print $NF; exit}')
[ -n "$zlib" ] && cp -L "$zlib" "$out/lib-extra/libz.so.1"

# 4. The carried runtime runs here: the binding's CPU tests with .jre's java and classes
#    against this machine's JNI library and CPU build (skips the GPU cases).
log="$stage/cpu-check.log"
if ! LD_LIBRARY_PATH="$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$out/jre/bin/java" \
  -Djava.library.path="$jb" -Dmoetrtllm.cases="$root/tests/conformance/cases.txt" \
  -jar "$out/junit-platform-console-standalone.jar" --disable-banner --details=summary \
  --disable-ansi-colors --fail-if-no-tests -cp "$out/classes:$out/test-classes" \
  --select-package io.moetrtllm >"$log" 2>&1; then
  cat "$log" >&2
  echo "gpu-prep: the carried runtime failed the CPU tests here (above)" >&2
  exit 1
fi
grep -E "tests (successful|failed)" "$log"
du -sh "$out"
echo "gpu-prep: $out is ready; on the GPU machine run bindings/java/gpu-run.sh (carry .jre)"
