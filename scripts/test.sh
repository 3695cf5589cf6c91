#!/usr/bin/env bash
# The whole test suite: formatting, lints, the committed CRDs, unit tests, and the
# integration and end-to-end tests that run on a real local control plane (built
# once by tools/cluster/build.sh and cached outside the repository).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "local control plane binaries"
MIZZEN_CLUSTER_BIN=$(tools/cluster/build.sh)
export MIZZEN_CLUSTER_BIN

step "helm"
MIZZEN_HELM_BIN=$(tools/helm/build.sh)
export MIZZEN_HELM_BIN

step "istiod (pilot-discovery)"
MIZZEN_ISTIOD_BIN=$(tools/istiod/build.sh)
export MIZZEN_ISTIOD_BIN

step "OCI image (scripts/image.sh)"
./scripts/image.sh
# The end-to-end tests run the very binary that is inside the image.
export MIZZEN_E2E_BIN=$PWD/target/image/mizzen

step "cargo fmt"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked --no-fail-fast
