#!/usr/bin/env bash
# End-to-end test on a kind cluster, for machines with a Docker engine (CI, laptops):
#   1. creates a kind cluster
#   2. builds the operator, dispatcher and food-ordering function images, and loads them into kind
#   3. helm-installs charts/eventide with those images
#   4. runs PostgreSQL 15 (wal_level=logical) in the cluster and creates the food-ordering schema
#   5. applies the food-ordering Functions and EventTriggers, inserts orders
#   6. waits until every order has is_agent_assigned; exits non-zero otherwise
# The cluster is deleted on exit (KEEP_CLUSTER=1 keeps it); on failure, diagnostics are printed first.
#
# Usage: test/e2e/kind.sh
# Environment:
#   ORDERS=20                  orders to insert
#   TIMEOUT_SECONDS=300        how long every order gets to be assigned an agent
#   CLUSTER_NAME=eventide-e2e  kind cluster name (an existing cluster of that name is refused)
#   KEEP_CLUSTER=1             keep the cluster (and print how to reach it) instead of deleting it
#   KIND_NODE_IMAGE=...        node image for `kind create cluster --image`
#
# Conventions with functions/food-ordering (checked, with a clear message when not met):
#   <name>/step.ts             one per function; each image is built from functions/food-ordering/Dockerfile
#                              with --build-arg FUNCTION_NAME=<name>; <name> is the Function's metadata.name
#   manifests/*.yaml           Functions and EventTriggers (else *.yaml next to the function folders)
#   schema.sql                 creates the orders table
#   e2e-orders.sql (optional)  inserts ONE order; run ORDERS times (default: INSERT INTO orders DEFAULT VALUES)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FOOD="$ROOT/functions/food-ordering"
CLUSTER_NAME="${CLUSTER_NAME:-eventide-e2e}"
ORDERS="${ORDERS:-20}"
TIMEOUT_SECONDS="${TIMEOUT_SECONDS:-300}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
TAG=e2e
REPO=eventide-e2e
RELEASE_NS=eventide-system
APP_NS=food
DB_NAME=food
DB_PASSWORD=eventide-e2e
DB_URL="postgres://postgres:${DB_PASSWORD}@postgres.${APP_NS}.svc.cluster.local:5432/${DB_NAME}"

log() { printf '\n[kind-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[kind-e2e] error: %s\n' "$*" >&2; exit 1; }

# --- prerequisites -------------------------------------------------------------------------------
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not on PATH: $2"; }
need docker "install Docker (https://docs.docker.com/engine/install/)"
need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
if command -v helm >/dev/null 2>&1; then
  HELM=helm
elif HELM="$(find "$ROOT/.cache/k8s" -path '*/bin/helm' -type f -print -quit 2>/dev/null)" && [[ -n "$HELM" ]]; then
  :
else
  die "helm is required: install it (https://helm.sh/docs/intro/install/) or run test/controlplane/build.sh"
fi
docker info >/dev/null 2>&1 || die "docker is installed but its engine is not reachable (is the daemon running, may this user use it?)"
[[ -d "$FOOD" ]] || die "$FOOD is missing"
[[ -f "$FOOD/schema.sql" ]] || die "$FOOD/schema.sql (creates the orders table) is missing"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  die "a kind cluster named $CLUSTER_NAME already exists; delete it (kind delete cluster --name $CLUSTER_NAME) or set CLUSTER_NAME"
fi

WORK="$(mktemp -d)"
export KUBECONFIG="$WORK/kubeconfig"
CREATED=0

diagnose() {
  log "diagnostics"
  kubectl get nodes -o wide || true
  kubectl get functions,eventtriggers -A -o wide || true
  kubectl get deployments,pods -A -o wide || true
  kubectl get events -A --sort-by=.lastTimestamp | tail -40 || true
  kubectl logs -n "$RELEASE_NS" -l app.kubernetes.io/component=operator --all-containers --tail=80 --prefix || true
  kubectl logs -n "$APP_NS" -l app.kubernetes.io/name=eventide-dispatcher --all-containers --tail=120 --prefix || true
  kubectl logs -n "$APP_NS" -l app.kubernetes.io/component=function --all-containers --tail=40 --prefix || true
  psql_query "SELECT * FROM orders ORDER BY 1 LIMIT 50" || true
}

cleanup() {
  local code=$?
  trap - EXIT
  if [[ $code -ne 0 && $CREATED -eq 1 ]]; then diagnose; fi
  if [[ $CREATED -eq 1 ]]; then
    if [[ "$KEEP_CLUSTER" == "1" ]]; then
      log "keeping cluster $CLUSTER_NAME: export KUBECONFIG=$KUBECONFIG; delete with: kind delete cluster --name $CLUSTER_NAME"
    else
      log "deleting cluster $CLUSTER_NAME"
      kind delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
      rm -rf "$WORK"
    fi
  else
    rm -rf "$WORK"
  fi
  if [[ $code -eq 0 ]]; then log "PASS"; else log "FAIL (exit $code)"; fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql_query() { # <sql>: prints unaligned, tuples-only output
  kubectl exec -n "$APP_NS" deploy/postgres -- psql -U postgres -d "$DB_NAME" -v ON_ERROR_STOP=1 -qAt -c "$1"
}

# --- cluster -------------------------------------------------------------------------------------
log "creating kind cluster $CLUSTER_NAME"
CREATED=1
kind create cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG" --wait 120s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}

# --- images --------------------------------------------------------------------------------------
build() { # <image> <dockerfile> [docker build args...]
  local image="$1" dockerfile="$2"; shift 2
  log "building $image ($dockerfile)"
  docker build -f "$dockerfile" -t "$image" "$@" "$ROOT"
  kind load docker-image --name "$CLUSTER_NAME" "$image"
}
build "$REPO/operator:$TAG" "$ROOT/deploy/Dockerfile.operator"
build "$REPO/dispatcher:$TAG" "$ROOT/deploy/Dockerfile.dispatcher"

FUNCTIONS=()
for step in "$FOOD"/*/step.ts; do
  [[ -f "$step" ]] || continue
  name="$(basename "$(dirname "$step")")"
  build "$REPO/$name:$TAG" "$FOOD/Dockerfile" --build-arg "FUNCTION_NAME=$name"
  FUNCTIONS+=("$name")
done
[[ ${#FUNCTIONS[@]} -gt 0 ]] || die "no $FOOD/<name>/step.ts found"

# --- eventide ------------------------------------------------------------------------------------
log "installing charts/eventide"
"$HELM" install eventide "$ROOT/charts/eventide" --namespace "$RELEASE_NS" --create-namespace \
  --set operator.image.repository="$REPO/operator" --set operator.image.tag="$TAG" \
  --set operator.image.pullPolicy=IfNotPresent \
  --set dispatcher.image.repository="$REPO/dispatcher" --set dispatcher.image.tag="$TAG" \
  --set dispatcher.image.pullPolicy=IfNotPresent \
  --wait --timeout 3m
kubectl get crd functions.eventide.dev eventtriggers.eventide.dev >/dev/null

# --- PostgreSQL ----------------------------------------------------------------------------------
log "starting PostgreSQL 15 with wal_level=logical"
kubectl create namespace "$APP_NS"
kubectl apply -n "$APP_NS" -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: { name: postgres, labels: { app: postgres } }
spec:
  replicas: 1
  strategy: { type: Recreate }
  selector: { matchLabels: { app: postgres } }
  template:
    metadata: { labels: { app: postgres } }
    spec:
      containers:
        - name: postgres
          image: postgres:15
          args: [-c, wal_level=logical, -c, max_replication_slots=10, -c, max_wal_senders=10]
          env:
            - { name: POSTGRES_PASSWORD, value: "$DB_PASSWORD" }
            - { name: POSTGRES_DB, value: "$DB_NAME" }
          ports: [{ name: postgres, containerPort: 5432 }]
          readinessProbe:
            exec: { command: [pg_isready, -U, postgres, -d, "$DB_NAME"] }
            periodSeconds: 2
          volumeMounts: [{ name: data, mountPath: /var/lib/postgresql/data }]
      volumes: [{ name: data, emptyDir: {} }]
---
apiVersion: v1
kind: Service
metadata: { name: postgres }
spec:
  selector: { app: postgres }
  ports: [{ name: postgres, port: 5432, targetPort: postgres }]
EOF
kubectl rollout status -n "$APP_NS" deploy/postgres --timeout=180s
# The image's entrypoint restarts the server once after initdb; wait until it answers for real.
for _ in $(seq 1 60); do psql_query "SELECT 1" >/dev/null 2>&1 && break; sleep 2; done
[[ "$(psql_query 'SHOW wal_level')" == "logical" ]] || die "PostgreSQL is not running with wal_level=logical"
kubectl exec -i -n "$APP_NS" deploy/postgres -- psql -U postgres -d "$DB_NAME" -v ON_ERROR_STOP=1 -q < "$FOOD/schema.sql"

# --- food ordering -------------------------------------------------------------------------------
if [[ -d "$FOOD/manifests" ]]; then MANIFESTS=("$FOOD/manifests"); else MANIFESTS=("$FOOD"/*.yaml); fi
[[ -e "${MANIFESTS[0]}" ]] || die "no food-ordering manifests ($FOOD/manifests/ or $FOOD/*.yaml)"
MANIFEST_ARGS=()
for m in "${MANIFESTS[@]}"; do MANIFEST_ARGS+=(-f "$m"); done

# The triggers' connection Secrets point at the in-cluster database; created before the triggers so
# the first reconcile already finds them.
SECRETS="$(kubectl apply -n "$APP_NS" "${MANIFEST_ARGS[@]}" --dry-run=client \
  -o jsonpath='{range .items[?(@.kind=="EventTrigger")]}{.spec.source.connectionSecretRef.name}{" "}{.spec.source.connectionSecretRef.key}{"\n"}{end}' | sort -u)"
[[ -n "$SECRETS" ]] || die "the food-ordering manifests contain no EventTrigger"
while read -r secret key; do
  [[ -n "$secret" ]] || continue
  log "creating Secret $secret (key ${key:-url})"
  kubectl create secret generic -n "$APP_NS" "$secret" --from-literal="${key:-url}=$DB_URL" --dry-run=client -o yaml | kubectl apply -f -
done <<<"$SECRETS"

log "applying the food-ordering Functions and EventTriggers"
kubectl apply -n "$APP_NS" "${MANIFEST_ARGS[@]}"
# Run the images built above, whatever registry the manifests name.
for name in $(kubectl get functions -n "$APP_NS" -o jsonpath='{.items[*].metadata.name}'); do
  [[ " ${FUNCTIONS[*]} " == *" $name "* ]] || die "Function $name has no $FOOD/$name/step.ts"
  kubectl patch function -n "$APP_NS" "$name" --type=merge -p "{\"spec\":{\"image\":\"$REPO/$name:$TAG\"}}"
done
kubectl wait -n "$APP_NS" --for=condition=Ready functions --all --timeout=180s
kubectl wait -n "$APP_NS" --for=condition=Ready eventtriggers --all --timeout=180s
kubectl get functions,eventtriggers -n "$APP_NS" -o wide

log "inserting $ORDERS orders"
ORDER_SQL="INSERT INTO orders DEFAULT VALUES"
if [[ -f "$FOOD/e2e-orders.sql" ]]; then ORDER_SQL="$(cat "$FOOD/e2e-orders.sql")"; fi
for _ in $(seq 1 "$ORDERS"); do psql_query "$ORDER_SQL" >/dev/null; done

log "waiting up to ${TIMEOUT_SECONDS}s for every order to have is_agent_assigned"
deadline=$((SECONDS + TIMEOUT_SECONDS))
while :; do
  counts="$(psql_query "SELECT count(*), count(*) FILTER (WHERE is_agent_assigned) FROM orders")"
  total="${counts%%|*}"; assigned="${counts##*|}"
  printf '[kind-e2e] %s/%s orders assigned an agent\n' "$assigned" "$total" >&2
  if [[ "$total" -ge "$ORDERS" && "$assigned" -eq "$total" ]]; then break; fi
  if (( SECONDS >= deadline )); then die "only $assigned of $total orders were assigned an agent within ${TIMEOUT_SECONDS}s"; fi
  sleep 5
done
log "all $total orders went validate -> pay -> approve -> assign"
