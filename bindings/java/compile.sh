#!/bin/sh
# Compiles the SWIG-generated and hand-written Java sources (and the tests when the JUnit
# console jar is present). Usage: compile.sh JAVAC JAR OUTDIR SRCDIR JUNIT_JAR
set -e
javac=$1; jar=$2; out=$3; src=$4; junit=$5
rm -rf "$out/classes" "$out/test-classes"
# SWIG 4.1 has no pragma for the constants interface's modifiers: keep it package-private.
sed -i 's/^public interface MoeNativeConstants/interface MoeNativeConstants/' \
  "$out"/gen/io/moetrtllm/MoeNativeConstants.java
"$javac" -nowarn -encoding UTF-8 -d "$out/classes" "$out"/gen/io/moetrtllm/*.java \
  "$src"/main/java/io/moetrtllm/*.java
"$jar" cf "$out/moe-trtllm.jar" -C "$out/classes" .
if [ -f "$junit" ]; then
  "$javac" -encoding UTF-8 -d "$out/test-classes" -cp "$out/classes:$junit" \
    "$src"/test/java/io/moetrtllm/*.java
fi
