#!/usr/bin/env bash
# mizzen's main job on a local control plane that this script starts itself:
# 3 fake nodes, mizzen's CRDs, and the ambient mesh manifests of the OSSM update
# procedure. The cluster keeps running afterwards; the script says how to reach it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building mizzen"
cargo build --quiet -p mizzen
mizzen=$PWD/target/debug/mizzen

say "starting a local control plane with 3 fake nodes (first run builds Kubernetes: ~15 min)"
"$mizzen" dev down >/dev/null 2>&1 || true
eval "$("$mizzen" dev up --nodes 3)"
kubectl get nodes

say "installing mizzen's CRDs (sailoperator.io/v1)"
"$mizzen" crds | kubectl apply --server-side -f - >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/istios.sailoperator.io crd/istiorevisions.sailoperator.io \
  crd/istiorevisiontags.sailoperator.io crd/istiocnis.sailoperator.io crd/ztunnels.sailoperator.io

say "creating the ambient mesh: Istio, IstioCNI and ZTunnel at v1.26.3"
for ns in istio-system istio-cni ztunnel; do kubectl create namespace "$ns" >/dev/null; done
kubectl apply -f deploy/examples/ambient.yaml
kubectl get istio,istiorevision,istiocni,ztunnel

cat <<TXT

The API server validated and defaulted these objects; the columns are the ones the
OSSM procedure prints. The operator that reconciles them (mizzen run: istiod,
istio-cni and ztunnel rollouts, upgrades) is not built yet, so STATUS stays empty.

The cluster keeps running:
  eval "\$($mizzen dev env)"    # point kubectl at it
  $mizzen dev down              # stop it and remove its state
TXT
