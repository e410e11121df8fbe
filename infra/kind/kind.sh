#!/usr/bin/env bash
# The kind path: `make kind-up`, `make kind-deploy`, `make kind-loadtest`, `make kind-down`.
# Needs Docker (or podman's docker CLI), kind, kubectl and the Pulumi CLI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${KIND_CLUSTER:-ticket-rush}"
RUN="$ROOT/.run/kind"
NAMESPACE="${KIND_NAMESPACE:-ticket-rush}"
APP_IMAGE="localhost/ticket-rush-app:dev"
OPERATOR_IMAGE="localhost/ticket-rush-operator:dev"
PY="${PY:-$ROOT/.venv/bin/python}"

need() {
  local problems=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || problems+=("$tool is not installed")
  done
  if [[ " $* " == *" docker "* ]] && command -v docker >/dev/null 2>&1 \
    && ! docker info >/dev/null 2>&1; then
    problems+=("the Docker daemon is not reachable (docker info failed)")
  fi
  if ((${#problems[@]})); then
    printf 'kind path: %s\n' "${problems[@]}" >&2
    echo "kind path: needs $* (not available on the Ticket-Rush development machines)" >&2
    exit 2
  fi
}

pulumi_env() {
  mkdir -p "$RUN/state"
  export PULUMI_BACKEND_URL="file://$RUN/state"
  # Encrypts the kind stack's secrets in .run/kind (local, throwaway cluster only).
  export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-kind-local-only}"
}

up() {
  need docker kind kubectl
  if ! kind get clusters | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --config "$ROOT/infra/kind/cluster.yaml" --wait 120s
  fi
  kubectl cluster-info --context "kind-$CLUSTER"
}

deploy() {
  need docker kind kubectl pulumi
  docker build -t "$APP_IMAGE" -f "$ROOT/Containerfile" "$ROOT"
  docker build -t "$OPERATOR_IMAGE" -f "$ROOT/operator/Containerfile" "$ROOT"
  kind load docker-image --name "$CLUSTER" "$APP_IMAGE" "$OPERATOR_IMAGE"
  pulumi_env
  mkdir -p "$RUN"
  if [[ ! -f "$RUN/secrets.env" ]]; then
    (umask 077 && "$PY" -c 'import secrets
for key in ("jwtSecret", "dbPassword", "redisPassword", "operatorAdminPassword"):
    print(f"{key}={secrets.token_urlsafe(32)}")' >"$RUN/secrets.env")
  fi
  # The tracked stack file stays clean: secrets go into a copy under .run/kind.
  cp "$ROOT/infra/Pulumi.kind.yaml" "$RUN/Pulumi.kind.yaml"
  # The Pulumi Kubernetes provider deploys to the current kubeconfig context.
  kubectl config use-context "kind-$CLUSTER"
  cd "$ROOT/infra"
  pulumi stack select --create kind
  while IFS='=' read -r key value; do
    pulumi config set --secret --config-file "$RUN/Pulumi.kind.yaml" "ticket-rush:$key" "$value"
  done <"$RUN/secrets.env"
  pulumi up --yes --stack kind --config-file "$RUN/Pulumi.kind.yaml"
  kubectl --context "kind-$CLUSTER" -n "$NAMESPACE" rollout status deploy/ticket-rush-api --timeout=600s
}

loadtest() {
  need kubectl kind
  local ctx="kind-$CLUSTER" users="${USERS:-500}" rate="${SPAWN_RATE:-50}" duration="${DURATION:-5m}"
  kubectl --context "$ctx" -n "$NAMESPACE" exec deploy/ticket-rush-api -- ticket-rush seed
  secret() {
    kubectl --context "$ctx" -n "$NAMESPACE" get secret ticket-rush-app -o "jsonpath={.data.$1}" | base64 -d
  }
  mkdir -p "$ROOT/reports/kind"
  LOADTEST_ADMIN_EMAIL="$(secret TR_OPERATOR_ADMIN_EMAIL)" \
    LOADTEST_ADMIN_PASSWORD="$(secret TR_OPERATOR_ADMIN_PASSWORD)" \
    "$PY" -m locust -f "$ROOT/loadtests/locustfile_rush.py" --headless \
    -u "$users" -r "$rate" -t "$duration" --host "http://127.0.0.1:30080" \
    --csv "$ROOT/reports/kind/rush" --html "$ROOT/reports/kind/rush.html"
}

down() {
  need kind
  kind delete cluster --name "$CLUSTER"
}

case "${1:-}" in
  up) up ;;
  deploy) deploy ;;
  loadtest) loadtest ;;
  down) down ;;
  *) echo "usage: $0 up|deploy|loadtest|down" >&2; exit 64 ;;
esac
