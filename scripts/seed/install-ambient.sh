#!/usr/bin/env bash
# Installs the ambient mesh of deploy/examples/ambient.yaml at VERSION (InPlace) and waits
# until Istio, IstioCNI and ZTunnel are Ready. Needs KUBECONFIG, the CRDs, a running operator.
#   scripts/seed/install-ambient.sh v1.26.3
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
version=${1:?version}
for ns in istio-system istio-cni ztunnel; do ensure_namespace "$ns"; done
sed "s/v1.26.3/$version/" "$here/../../deploy/examples/ambient.yaml" | kubectl apply -f -
run kubectl wait --for=condition=Ready istios/default --timeout=5m
run kubectl wait --for=condition=Ready istiocnis/default ztunnels/default --timeout=5m
kubectl get istio
