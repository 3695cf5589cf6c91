#!/usr/bin/env bash
# Builds the helm CLI used by mizzen's tests, from the version pinned in
# go.mod/go.sum next to this script.
#
# The binary goes to a cache outside the repository, keyed by the pinned versions
# and the Go toolchain, so a second run rebuilds nothing. Prints the bin directory
# on the last line of stdout (run it as "$dir/helm").
#
#   MIZZEN_CACHE   cache root (see ../go-tool.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../go-tool.sh"

go_tool_begin helm helm.sh/helm/v3
# What helm's own Makefile stamps in: its version, and the Kubernetes version
# that `helm template` and `helm lint` assume without a cluster (derived from
# the client-go it is built with; left alone it would be 1.20).
client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go)
client_go=${client_go#v}
k8s_major=$(( ${client_go%%.*} + 1 ))
k8s_minor=${client_go#*.}; k8s_minor=${k8s_minor%%.*}
ld="-s -w"
ld+=" -X helm.sh/helm/v3/internal/version.version=$version"
ld+=" -X helm.sh/helm/v3/internal/version.metadata="
ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ld+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
done

go build -trimpath -ldflags "$ld" -o "$bin.tmp/helm" helm.sh/helm/v3/cmd/helm
go_tool_end helm
