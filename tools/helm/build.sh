#!/usr/bin/env bash
# Builds the helm CLI used by mizzen's tests, from the version pinned in
# go.mod/go.sum next to this script.
#
# The binary goes to a cache outside the repository, keyed by the pinned versions
# and the Go toolchain, so a second run rebuilds nothing. Prints the bin directory
# on the last line of stdout (run it as "$dir/helm").
#
#   MIZZEN_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/mizzen)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MIZZEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mizzen}

export GOTOOLCHAIN=local CGO_ENABLED=0

helm_version=$(awk '$1=="helm.sh/helm/v3" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
go_version=$(go env GOVERSION)
# The key covers everything that decides the bytes of the binary.
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" <(echo "$go_version") | sha256sum | cut -c1-12)
bin="$cache_root/helm/${helm_version}_${key}/bin"

if [[ -x "$bin/helm" ]]; then
  echo "helm up to date in $bin" >&2
  echo "$bin"
  exit 0
fi

# GOCACHE and GOMODCACHE keep Go's defaults (outside the repository).
rm -rf "$bin.tmp"
mkdir -p "$bin.tmp"
start=$(date +%s)
cd "$here"
echo "downloading modules ..." >&2
go mod download

# What helm's own Makefile stamps in: its version, and the Kubernetes version
# that `helm template` and `helm lint` assume without a cluster (derived from
# the client-go it is built with; left alone it would be 1.20).
client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go)
client_go=${client_go#v}
k8s_major=$(( ${client_go%%.*} + 1 ))
k8s_minor=${client_go#*.}; k8s_minor=${k8s_minor%%.*}
ld="-s -w"
ld+=" -X helm.sh/helm/v3/internal/version.version=$helm_version"
ld+=" -X helm.sh/helm/v3/internal/version.metadata="
ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ld+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
done

echo "building helm $helm_version ..." >&2
go build -trimpath -ldflags "$ld" -o "$bin.tmp/helm" helm.sh/helm/v3/cmd/helm

rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "helm built in $(( $(date +%s) - start ))s into $bin" >&2
echo "$bin"
