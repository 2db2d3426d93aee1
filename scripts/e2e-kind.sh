#!/usr/bin/env bash
# End-to-end on a throwaway kind cluster, with the operator running in it as users deploy it:
#   1. create a kind cluster (its own kubeconfig: yours is left alone),
#   2. build the image and load it into the cluster,
#   3. kubectl apply -k deploy/base (CRDs, RBAC, Deployment) and wait for the rollout,
#   4. run the e2e tier with E2E_IN_CLUSTER=1 (pytest tests/e2e -m e2e),
#   5. delete the cluster, also on failure or Ctrl-C (after printing the operator's logs).
# Needs docker (with a running engine), kind and kubectl. `make e2e-kind` runs it.
#
# Environment:
#   KIND_CLUSTER_NAME  cluster name (default webhook-operator-e2e)
#   IMAGE              image to build and deploy; must match deploy/base (default below)
#   E2E_ALLOW_CIDRS    CIDRs the operator may deliver to: kind's pod and service ranges and the
#                      Docker network, where the e2e receivers listen (default below)
#   KEEP_CLUSTER=1     keep the cluster afterwards for debugging (prints how to reach it)
#   PYTEST_ARGS        extra pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER_NAME:-webhook-operator-e2e}
IMAGE=${IMAGE:-ghcr.io/openplatform/webhook-operator:0.1.0}
ALLOW_CIDRS=${E2E_ALLOW_CIDRS:-10.0.0.0/8,172.16.0.0/12,192.168.0.0/16}
NAMESPACE=webhook-operator
PYTHON=${PYTHON:-.venv/bin/python}

log() { printf '\n==> %s\n' "$*"; }

for tool in docker kind kubectl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "e2e-kind: '$tool' is not installed; it needs docker, kind and kubectl" >&2
    exit 2
  fi
done
if ! docker info >/dev/null 2>&1; then
  echo "e2e-kind: no Docker engine answers (is the daemon running?)" >&2
  exit 2
fi
if ! grep -q "image: ${IMAGE}\$" deploy/base/deployment.yaml; then
  echo "e2e-kind: IMAGE=${IMAGE} is not the image deploy/base deploys" >&2
  exit 2
fi
if [ ! -x "$PYTHON" ]; then
  log "Installing the test environment (make install)"
  make install
fi

KUBECONFIG=$(mktemp "${TMPDIR:-/tmp}/e2e-kind-kubeconfig.XXXXXX")
export KUBECONFIG

cleanup() {
  status=$?
  set +e
  if [ "$status" -ne 0 ] && kubectl cluster-info >/dev/null 2>&1; then
    log "Failed (exit $status): operator state and logs"
    kubectl -n "$NAMESPACE" get deployment,pods -o wide
    kubectl -n "$NAMESPACE" logs deployment/webhook-operator --tail=300
    kubectl get webhooks -A -o wide
  fi
  if [ "${KEEP_CLUSTER:-0}" = "1" ]; then
    log "Keeping cluster $CLUSTER: export KUBECONFIG=$KUBECONFIG; kind delete cluster --name $CLUSTER when done"
  else
    log "Deleting cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1
    rm -f "$KUBECONFIG"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "Creating kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s

log "Building $IMAGE"
docker build --tag "$IMAGE" .

log "Loading $IMAGE into the cluster"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "Deploying: kubectl apply -k deploy/base"
kubectl apply -k deploy/base
kubectl wait --for=condition=Established --timeout=60s \
  crd/webhooksubscriptions.webhooks.openplatform.dev crd/webhookevents.webhooks.openplatform.dev
# The egress policy refuses private addresses; the e2e receivers live on them.
kubectl -n "$NAMESPACE" set env deployment/webhook-operator WEBHOOK_OPERATOR_ALLOW_CIDRS="$ALLOW_CIDRS"
kubectl -n "$NAMESPACE" rollout status deployment/webhook-operator --timeout=180s

log "Running the e2e tier in-cluster"
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words on purpose
E2E_IN_CLUSTER=1 E2E_OPERATOR_NAMESPACE="$NAMESPACE" E2E_ALLOW_CIDRS="$ALLOW_CIDRS" \
  "$PYTHON" -m pytest tests/e2e -m e2e ${PYTEST_ARGS:-}
