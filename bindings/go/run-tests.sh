#!/bin/sh
# The Go binding's test run (ctest binding_go): go vet, the suite under the race detector, and
# the suite with the full cgo pointer checks (cgocheck=2: a GODEBUG setting up to Go 1.20, a
# GOEXPERIMENT from Go 1.21). Run from bindings/go with PKG_CONFIG_PATH naming moe_trtllm.pc.
set -eu
go=${GO:-go}
"$go" vet ./...
"$go" test -race -count=1 -v ./...
case $("$go" env GOVERSION) in
  go1.1[0-9] | go1.1[0-9].* | go1.20 | go1.20.*) GODEBUG=cgocheck=2 "$go" test -count=1 ./... ;;
  *) GOEXPERIMENT=cgocheck2 "$go" test -count=1 ./... ;;
esac
