#!/usr/bin/env bash
# Builds mizzen's OCI image without a container engine (what CI builds):
#
#   1. the release binary, statically linked (glibc, +crt-static), in
#      target/x86_64-unknown-linux-gnu/release/ (the debug build is untouched);
#   2. a one-file layer: /mizzen, mode 0755, owned by 65532:65532;
#   3. with crane (tools/crane): that layer on an empty OCI base, and the config
#      (entrypoint, cmd, user, working dir, platform, OCI labels).
#
# crane's append/mutate work against a registry, so the script runs crane's
# in-process registry on 127.0.0.1 (a free port, memory only) for the few
# seconds it needs and stops it on exit.
#
# Outputs, all under target/image/:
#   oci/        OCI image layout (index.json names the tag <version>)
#   mizzen.tar  docker-archive tarball tagged mizzen:<version> (docker/podman load)
#   mizzen      a copy of the exact binary in the layer, for end-to-end tests
#   digest      the image (manifest) digest
# The last line of stdout is the digest; the binary's path is printed before it.
# A second run with the same binary, version and revision does nothing.
#
#   MIZZEN_IMAGE_SOURCE   org.opencontainers.image.source (default: the workspace
#                         Cargo.toml's repository, else "unknown")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

target=x86_64-unknown-linux-gnu
out=$root/target/image

# [workspace.package] of the root Cargo.toml: version, license, repository.
ws_field() {
  awk -v k="$1" '
    /^\[/ { in_ws = ($0 == "[workspace.package]") }
    in_ws && $1 == k && $2 == "=" { v = $3; gsub(/"/, "", v); print v; exit }
  ' Cargo.toml
}
version=$(ws_field version)
license=$(ws_field license)
source_url=${MIZZEN_IMAGE_SOURCE:-$(ws_field repository)}
source_url=${source_url:-unknown}
revision=$(git rev-parse HEAD)
[[ -n $version && -n $license ]] || { echo "image.sh: no version/license in Cargo.toml" >&2; exit 1; }

crane_bin=$(tools/crane/build.sh)
crane=$crane_bin/crane

echo "building the static release binary ..." >&2
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked -p mizzen --target "$target" >&2
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$root/$target_dir
binary=$target_dir/$target/release/mizzen

# Static or nothing: a dynamically linked binary would not start on an empty base.
# (It is static-pie: no program interpreter, no needed shared libraries. ldd
# says "statically linked" and succeeds for those, so it cannot tell.)
headers=$(readelf -lW "$binary")
dynamic=$(readelf -dW "$binary")
kind=$(file -L "$binary")
if [[ $headers == *INTERP* || $dynamic == *NEEDED* ]] \
    || ! [[ $kind == *"statically linked"* || $kind == *"static-pie linked"* ]]; then
  echo "image.sh: $binary is not statically linked:" >&2
  echo "$kind" >&2
  grep NEEDED <<<"$dynamic" >&2 || true
  exit 1
fi

# Everything that decides the image's bytes.
key=$( { sha256sum "$binary" | cut -d' ' -f1; echo "$version $license $source_url $revision";
         sha256sum scripts/image.sh | cut -d' ' -f1; echo "$crane_bin"; } | sha256sum | cut -c1-16)
if [[ -f $out/key && $(cat "$out/key") == "$key" && -f $out/oci/index.json && -f $out/mizzen.tar \
      && -f $out/digest ]] && cmp -s "$binary" "$out/mizzen"; then
  echo "image mizzen:$version up to date in $out" >&2
  echo "$out/mizzen"
  cat "$out/digest"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mizzen-image.XXXXXX")
registry_pid=
cleanup() {
  if [[ -n $registry_pid ]]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The layer: one file, fixed owner, mode and mtime, so its digest depends on the
# binary alone.
mkdir -p "$work/rootfs"
cp "$binary" "$work/rootfs/mizzen"
chmod 0755 "$work/rootfs/mizzen"
tar --format=gnu --sort=name --numeric-owner --owner=65532 --group=65532 --mode=0755 \
  --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" mizzen

echo "starting crane's registry on 127.0.0.1 ..." >&2
"$crane" registry serve --address 127.0.0.1:0 2>"$work/registry.log" &
registry_pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/.*serving on port \([0-9][0-9]*\).*/\1/p' "$work/registry.log")
  [[ -n $port ]] && break
  kill -0 "$registry_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $port ]]; then
  echo "image.sh: crane's registry did not start:" >&2
  cat "$work/registry.log" >&2
  exit 1
fi
repo=127.0.0.1:$port/mizzen

"$crane" append --oci-empty-base -f "$work/layer.tar" -t "$repo:layer" >/dev/null
"$crane" mutate "$repo:layer" -t "$repo:$version" \
  --set-platform linux/amd64 \
  --entrypoint /mizzen --cmd run \
  --user 65532:65532 --workdir / \
  --label "org.opencontainers.image.title=mizzen" \
  --label "org.opencontainers.image.description=Kubernetes operator that installs and upgrades Istio in ambient mode" \
  --label "org.opencontainers.image.source=$source_url" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.licenses=$license" >/dev/null
digest=$("$crane" digest "$repo:$version")

# OCI layout; index.json rewritten to name the tag (crane would name the
# registry's host:port, which means nothing outside this script).
"$crane" pull --format=oci "$repo:$version" "$work/oci"
manifest=$work/oci/blobs/sha256/${digest#sha256:}
[[ -f $manifest ]] || { echo "image.sh: $digest missing from the layout" >&2; exit 1; }
size=$(wc -c <"$manifest")
media_type=application/vnd.oci.image.manifest.v1+json
[[ $(<"$manifest") == *"\"mediaType\":\"$media_type\""* ]] || { echo "image.sh: not an OCI manifest" >&2; exit 1; }
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"%s","size":%d,"digest":"%s","annotations":{"org.opencontainers.image.ref.name":"%s"}}]}\n' \
  "$media_type" "$size" "$digest" "$version" >"$work/oci/index.json"

# docker-archive tagged mizzen:<version>: the same config and layer, written
# locally by an unchanged mutate. (Its manifest is Docker's, so it has a digest of
# its own; the config blob is the one to compare.)
"$crane" mutate "$repo:$version" -t "mizzen:$version" -o "$work/mizzen.tar"
config_digest=sha256:$("$crane" config "$repo:$version" | sha256sum | cut -c1-64)
tar_manifest=$(tar -xOf "$work/mizzen.tar" manifest.json)
if [[ $tar_manifest != *"\"Config\":\"$config_digest\""* ]]; then
  echo "image.sh: mizzen.tar does not hold the image's config $config_digest" >&2
  exit 1
fi

mkdir -p "$out"
rm -rf "$out/oci" "$out/key"
mv "$work/oci" "$out/oci"
mv "$work/mizzen.tar" "$out/mizzen.tar"
cp "$work/rootfs/mizzen" "$out/mizzen.tmp" && mv "$out/mizzen.tmp" "$out/mizzen"
echo "$digest" >"$out/digest"
echo "$key" >"$out/key"

echo "image mizzen:$version ($digest) in $out/oci and $out/mizzen.tar" >&2
echo "$out/mizzen"
echo "$digest"
