#!/usr/bin/env bash
# The OSSM procedure §1.6.2 with kubectl: a RevisionBased ambient mesh at FROM with an
# ambient namespace of workloads, updated to TO: a second revision, then istio-cni and
# ztunnel, then the old revision is pruned once unused for the grace period (30 s). Needs
# KUBECONFIG, mizzen's CRDs and a running operator.
#   scripts/seed/revisionbased.sh v1.26.3 v1.26.4
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
from=${1:?from version} to=${2:?to version}
old=default-${from//./-} new=default-${to//./-}
for ns in istio-system istio-cni ztunnel bookinfo; do ensure_namespace "$ns"; done
kubectl apply -f - <<YAML
apiVersion: sailoperator.io/v1
kind: Istio
metadata:
  name: default
spec:
  namespace: istio-system
  version: $from
  profile: ambient
  updateStrategy:
    type: RevisionBased
    inactiveRevisionDeletionGracePeriodSeconds: 30
  values:
    pilot:
      trustedZtunnelNamespace: ztunnel
---
apiVersion: sailoperator.io/v1
kind: IstioCNI
metadata:
  name: default
spec:
  namespace: istio-cni
  version: $from
  profile: ambient
---
apiVersion: sailoperator.io/v1
kind: ZTunnel
metadata:
  name: default
spec:
  namespace: ztunnel
  version: $from
YAML
run kubectl wait --for=condition=Ready istios/default istiocnis/default ztunnels/default --timeout=5m
kubectl label namespace bookinfo istio.io/dataplane-mode=ambient --overwrite >/dev/null
kubectl get deployment ratings -n bookinfo >/dev/null 2>&1 ||
  kubectl create deployment ratings -n bookinfo --image=example.invalid/bookinfo/ratings:1 >/dev/null
kubectl rollout status deployment -n bookinfo --timeout=2m >/dev/null
kubectl wait --for=condition=InUse "istiorevision/$old" --timeout=2m >/dev/null

run kubectl patch istio default --type=merge -p "{\"spec\":{\"version\":\"$to\"}}"
run kubectl wait --for=condition=Ready istios/default --timeout=5m
kubectl get istio,istiorevision
run kubectl patch istiocni default --type=merge -p "{\"spec\":{\"version\":\"$to\"}}"
run kubectl wait --for=condition=Ready istiocnis/default --timeout=5m
run kubectl patch ztunnel default --type=merge -p "{\"spec\":{\"version\":\"$to\"}}"
run kubectl rollout status daemonset/ztunnel -n ztunnel --timeout=10m
run kubectl wait --for=condition=Ready ztunnels/default --timeout=10m
# Verify old revision cleanup: gone after the grace period.
run kubectl wait --for=delete "istiorevision/$old" --timeout=3m
kubectl wait --for=jsonpath='{.status.state}'=Healthy istios/default --timeout=2m >/dev/null
kubectl get istio,istiorevision,istiocni,ztunnel
