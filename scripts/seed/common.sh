# Shared by the seed procedure scripts: print each documented command before running it.
run() { printf '$ %s\n' "$*"; "$@"; }
ensure_namespace() {
  kubectl get namespace "$1" >/dev/null 2>&1 || kubectl create namespace "$1" >/dev/null
}
