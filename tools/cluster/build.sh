#!/usr/bin/env bash
# Builds the local control plane used by mizzen's tests and `mizzen dev`:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok,
# from the versions pinned in go.mod/go.sum next to this script.
#
# Binaries go to a cache outside the repository, keyed by the pinned versions and
# the Go toolchain, so a second run rebuilds nothing. Prints the bin directory on
# the last line of stdout.
#
#   MIZZEN_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/mizzen)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MIZZEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mizzen}

export GOTOOLCHAIN=local CGO_ENABLED=0

k8s_version=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
etcd_version=$(awk '$1=="go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
kwok_version=$(awk '$1=="sigs.k8s.io/kwok" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
go_version=$(go env GOVERSION)
# The key covers everything that decides the bytes of the binaries.
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" <(echo "$go_version") | sha256sum | cut -c1-12)
bin="$cache_root/cluster/k8s-${k8s_version}_etcd-${etcd_version}_kwok-${kwok_version}_${key}/bin"

tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
missing=0
for t in "${tools[@]}"; do [[ -x "$bin/$t" ]] || missing=1; done
if [[ $missing == 0 ]]; then
  echo "cluster binaries up to date in $bin" >&2
  echo "$bin"
  exit 0
fi

# GOCACHE and GOMODCACHE keep Go's defaults (outside the repository); a warm Go
# cache makes a rebuild after a script change take a minute or two.
mkdir -p "$bin.tmp"
start=$(date +%s)
cd "$here"
echo "downloading modules ..." >&2
go mod download

minor=${k8s_version#v1.}; minor=${minor%%.*}
commit=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ld+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=$now"
done

build() { # output package
  local t0; t0=$(date +%s)
  echo "building $1 ..." >&2
  go build -trimpath -ldflags "$ld" -o "$bin.tmp/$1" "$2"
  echo "built $1 in $(( $(date +%s) - t0 ))s" >&2
}
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubectl k8s.io/kubernetes/cmd/kubectl
build etcd go.etcd.io/etcd/server/v3
build kwok sigs.k8s.io/kwok/cmd/kwok

rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "cluster binaries built in $(( $(date +%s) - start ))s into $bin" >&2
echo "$bin"
