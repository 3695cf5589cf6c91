#!/usr/bin/env bash
# mizzen's main job on a local control plane that this script starts itself: install an
# ambient mesh (Istio, IstioCNI, ZTunnel at v1.26.3) on 3 fake nodes, then update it InPlace to
# v1.26.4 with the upgrade companion: `mizzen status`, `mizzen plan`, then `mizzen upgrade`,
# which runs the documented order (control plane, istio-cni, ztunnel) of the OSSM procedure,
# each step gated on Ready. (The procedure's own kubectl commands are scripts/seed/inplace.sh,
# run by the tests.) The cluster and the operator keep running afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

from=${MIZZEN_DEMO_FROM:-v1.26.3}
to=${MIZZEN_DEMO_TO:-v1.26.4}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "building mizzen"
cargo build --quiet -p mizzen
mizzen=$PWD/target/debug/mizzen

say "starting a local control plane with 3 fake nodes (the first run builds Kubernetes: ~12 min)"
"$mizzen" dev down >/dev/null 2>&1 || true
eval "$("$mizzen" dev up --nodes 3)"
state=$(dirname "$KUBECONFIG")
kubectl get nodes

say "installing the CRDs and starting the operator (log: $state/operator.log)"
"$mizzen" crds | kubectl apply --server-side -f - >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/istios.sailoperator.io \
  crd/istiorevisions.sailoperator.io crd/istiorevisiontags.sailoperator.io \
  crd/istiocnis.sailoperator.io crd/ztunnels.sailoperator.io >/dev/null
nohup "$mizzen" run --health-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 >"$state/operator.log" 2>&1 &
echo $! >"$state/operator.pid"

say "installing the ambient mesh at $from"
for ns in istio-system istio-cni ztunnel bookinfo; do kubectl create namespace "$ns" >/dev/null; done
sed "s/v1.26.3/$from/" deploy/examples/ambient.yaml | kubectl apply -f -
run kubectl wait --for=condition=Ready istios/default --timeout=5m
run kubectl wait --for=condition=Ready istiocnis/default --timeout=5m
run kubectl wait --for=condition=Ready ztunnels/default --timeout=5m

say "sample workloads in an ambient namespace"
kubectl label namespace bookinfo istio.io/dataplane-mode=ambient >/dev/null
for app in productpage details ratings; do
  kubectl create deployment "$app" -n bookinfo --image=example.invalid/bookinfo/$app:1 >/dev/null
done
kubectl rollout status deployment -n bookinfo --timeout=2m >/dev/null
kubectl get pods -n bookinfo

kubectl wait --for=jsonpath='{.status.state}'=Healthy istios/default --timeout=2m >/dev/null

say "before the update"
kubectl get istio,istiorevision,istiocni,ztunnel
run "$mizzen" status

say "what the update to $to would do (nothing changes yet)"
run "$mizzen" plan --to "$to"

say "the update: control plane, then istio-cni, then ztunnel, each step gated on Ready"
run "$mizzen" upgrade --to "$to" --yes

# The Istio's STATUS follows ztunnel's through the revision's DependenciesHealthy, about a
# second behind: let it settle before printing.
sleep 3
kubectl wait --for=jsonpath='{.status.state}'=Healthy istios/default --timeout=2m >/dev/null

say "after the update"
kubectl get istio,istiorevision,istiocni,ztunnel
kubectl get pods -n ztunnel -o wide
run "$mizzen" status

cat <<TXT

The cluster and the operator keep running:
  eval "\$($mizzen dev env)"    # point kubectl at the cluster
  $mizzen dev down              # stop the operator and the cluster, remove their state
TXT
