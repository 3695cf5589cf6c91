#!/usr/bin/env bash
# Builds crane (go-containerregistry), which scripts/image.sh uses to assemble
# mizzen's OCI image without a container engine, from the version pinned in
# go.mod/go.sum next to this script.
#
# The binary goes to a cache outside the repository, keyed by the pinned versions
# and the Go toolchain, so a second run rebuilds nothing. Prints the bin directory
# on the last line of stdout (run it as "$dir/crane").
#
#   MIZZEN_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/mizzen)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MIZZEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mizzen}

export GOTOOLCHAIN=local CGO_ENABLED=0

crane_version=$(awk '$1=="github.com/google/go-containerregistry" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
go_version=$(go env GOVERSION)
# The key covers everything that decides the bytes of the binary.
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" <(echo "$go_version") | sha256sum | cut -c1-12)
bin="$cache_root/crane/${crane_version}_${key}/bin"

if [[ -x "$bin/crane" ]]; then
  echo "crane up to date in $bin" >&2
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

ld="-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$crane_version"
echo "building crane $crane_version ..." >&2
go build -trimpath -ldflags "$ld" -o "$bin.tmp/crane" github.com/google/go-containerregistry/cmd/crane

rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "crane built in $(( $(date +%s) - start ))s into $bin" >&2
echo "$bin"
