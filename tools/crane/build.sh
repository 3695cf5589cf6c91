#!/usr/bin/env bash
# Builds crane (go-containerregistry), which scripts/image.sh uses to assemble
# mizzen's OCI image without a container engine, from the version pinned in
# go.mod/go.sum next to this script.
#
# The binary goes to a cache outside the repository, keyed by the pinned versions
# and the Go toolchain, so a second run rebuilds nothing. Prints the bin directory
# on the last line of stdout (run it as "$dir/crane").
#
#   MIZZEN_CACHE   cache root (see ../go-tool.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../go-tool.sh"

go_tool_begin crane github.com/google/go-containerregistry
ld="-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$version"
go build -trimpath -ldflags "$ld" -o "$bin.tmp/crane" github.com/google/go-containerregistry/cmd/crane
go_tool_end crane
