#!/usr/bin/env bash
# Regenerates every committed file that code produces (tests fail when one drifts):
# the CRDs, the plain install manifests, the Helm chart and the OLM bundle + catalog.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --quiet -p mizzen
m=target/debug/mizzen
"$m" crds >deploy/crds/sailoperator.io.yaml
"$m" manifests >deploy/manifests/mizzen.yaml
"$m" chart --out deploy/chart
"$m" bundle --out deploy/olm
git status --short deploy
