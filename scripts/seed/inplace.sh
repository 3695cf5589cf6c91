#!/usr/bin/env bash
# The OSSM procedure §1.5.2 with kubectl: install the ambient mesh at FROM (InPlace), then
# update control plane, istio-cni and ztunnel to TO in the documented order, waiting as the
# document does. Needs KUBECONFIG, mizzen's CRDs and a running operator.
#   scripts/seed/inplace.sh v1.26.3 v1.26.4
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
from=${1:?from version} to=${2:?to version}
"$here/install-ambient.sh" "$from"

run kubectl patch istio default --type=merge -p "{\"spec\":{\"version\":\"$to\"}}"
run kubectl wait --for=condition=Ready istios/default --timeout=5m
run kubectl patch istiocni default --type=merge -p "{\"spec\":{\"version\":\"$to\"}}"
run kubectl wait --for=condition=Ready istiocnis/default --timeout=5m
run kubectl patch ztunnel default --type=merge -p "{\"spec\":{\"version\":\"$to\"}}"
run kubectl rollout status daemonset/ztunnel -n ztunnel --timeout=10m
run kubectl wait --for=condition=Ready ztunnels/default --timeout=10m
kubectl wait --for=jsonpath='{.status.state}'=Healthy istios/default --timeout=2m >/dev/null
kubectl get istio,istiorevision,istiocni,ztunnel
