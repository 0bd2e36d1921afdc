#!/usr/bin/env bash
# ep-nccl-run.sh R PROGRAM [ARGS...] - run PROGRAM as R NCCL ranks, one process per GPU (rank r
# on device r), sharing the ncclUniqueId through a fresh file: each process gets
# --world R --rank r --id-file F before ARGS; its output lines are prefixed [rank r].
# Exit: 0 if every rank passed, 77 if every rank skipped, 1 otherwise. (docs/ep.md)
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 R PROGRAM [ARGS...]" >&2
  exit 2
fi
R=$1
shift
PROG=$1
shift
ID=$(mktemp -u "${TMPDIR:-/tmp}/moe-ep-nccl-id.XXXXXX")
trap 'rm -f "$ID" "$ID.tmp"' EXIT
pids=()
for ((r = 0; r < R; r++)); do
  "$PROG" --world "$R" --rank "$r" --id-file "$ID" "$@" > >(sed "s/^/[rank $r] /") 2>&1 &
  pids+=($!)
done
pass=0
skip=0
for p in "${pids[@]}"; do
  wait "$p"
  case $? in
    0) pass=$((pass + 1)) ;;
    77) skip=$((skip + 1)) ;;
  esac
done
wait
if [ "$pass" -eq "$R" ]; then exit 0; fi
if [ "$skip" -eq "$R" ]; then exit 77; fi
exit 1
