#!/usr/bin/env bash
# The crash-convergence test (crates/mizzen/tests/crash.rs) with TRIALS trials (default 20),
# optionally replaying the kill moments of an earlier run from its SEED.
#   scripts/crash.sh [TRIALS] [SEED]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MIZZEN_CLUSTER_BIN=${MIZZEN_CLUSTER_BIN:-$(tools/cluster/build.sh)}
export MIZZEN_CLUSTER_BIN
export MIZZEN_CRASH_TRIALS=${1:-20}
if [ -n "${2:-}" ]; then export MIZZEN_CRASH_SEED=$2; fi
exec cargo test -p mizzen --test crash -- --nocapture
