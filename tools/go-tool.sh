# Sourced by the build.sh of a tool module that builds one Go binary (tools/helm,
# tools/crane): the cache directory keyed by everything that decides the binary's bytes,
# the early exit when it is cached, and the final move into place.
#
#   . "$here/../go-tool.sh"
#   go_tool_begin <name> <module whose version names the cache>   # sets $bin, $version
#   go build ... -o "$bin.tmp/<name>" ...
#   go_tool_end <name>
#
#   MIZZEN_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/mizzen)

export GOTOOLCHAIN=local CGO_ENABLED=0

go_tool_begin() {
  local name=$1 module=$2 lib key
  lib=$(dirname "${BASH_SOURCE[0]}")/go-tool.sh
  version=$(awk -v m="$module" '$1==m && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
  key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" "$lib" <(go env GOVERSION) | sha256sum | cut -c1-12)
  bin="${MIZZEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mizzen}/$name/${version}_${key}/bin"
  if [[ -x "$bin/$name" ]]; then
    echo "$name up to date in $bin" >&2
    echo "$bin"
    exit 0
  fi
  # GOCACHE and GOMODCACHE keep Go's defaults (outside the repository).
  rm -rf "$bin.tmp"
  mkdir -p "$bin.tmp"
  go_tool_start=$(date +%s)
  cd "$here"
  echo "downloading modules ..." >&2
  go mod download
  echo "building $name $version ..." >&2
}

go_tool_end() {
  rm -rf "$bin"
  mv "$bin.tmp" "$bin"
  echo "$1 built in $(( $(date +%s) - go_tool_start ))s into $bin" >&2
  echo "$bin"
}
