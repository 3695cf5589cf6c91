#!/usr/bin/env bash
# Builds istiod's binary (pilot-discovery) used by mizzen's tests, from the istio.io/istio
# pseudo-version pinned in go.mod/go.sum next to this script, and puts the standard Gateway
# API CRDs of the sigs.k8s.io/gateway-api module it is built with next to it
# (gateway-api-crds.yaml), for the tests that create Gateways.
#
# The binary goes to a cache outside the repository, keyed by the pinned versions and the Go
# toolchain, so a second run rebuilds nothing. Prints the bin directory on the last line of
# stdout (run it as "$dir/pilot-discovery").
#
#   MIZZEN_CACHE   cache root (see ../go-tool.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../go-tool.sh"

go_tool_begin pilot-discovery istio.io/istio
go build -trimpath -ldflags "-s -w" -o "$bin.tmp/pilot-discovery" istio.io/istio/pilot/cmd/pilot-discovery
crds=$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/standard
for f in "$crds"/*.yaml; do printf -- '---\n'; cat "$f"; done >"$bin.tmp/gateway-api-crds.yaml"
go_tool_end pilot-discovery
