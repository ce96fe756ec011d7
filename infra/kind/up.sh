#!/usr/bin/env bash
# A local kind cluster running pgplane the way production does, from git:
#   1. the kind cluster (infra/kind/cluster.yaml)
#   2. the pgplane image, built from this checkout and loaded into the nodes
#      (pgplane:dev, the image manifests/overlays/kind uses)
#   3. infra/argocd/bootstrap.sh gitops/root-kind.yaml: Argo CD, the Secrets,
#      the root app; Argo CD installs the rest from git, wave by wave
#
# Needs: docker (a running engine), kind (>= 0.29, for kindest/node:v1.33.1), kubectl, openssl.
# Settings (environment):
#   KIND_CLUSTER_NAME   default pgplane
#   SKIP_IMAGE_BUILD=1  reuse an already loaded pgplane:dev
#   and those of infra/argocd/bootstrap.sh (PGPLANE_ADMIN_PASSWORD, ARGOCD_VERSION, WAIT_TIMEOUT)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${KIND_CLUSTER_NAME:-pgplane}"
IMAGE=pgplane:dev

say() { printf '\n==> %s\n' "$*"; }
die() { echo "up.sh: $*" >&2; exit 1; }

for tool in docker kind kubectl openssl; do
  command -v "$tool" > /dev/null || die "$tool is not installed"
done
docker info > /dev/null 2>&1 || die "the docker engine is not running"

say "kind cluster $CLUSTER"
if kind get clusters 2> /dev/null | grep -qx "$CLUSTER"; then
  echo "exists; reusing it"
else
  kind create cluster --name "$CLUSTER" --config "$ROOT/infra/kind/cluster.yaml" --wait 120s
fi

if [ "${SKIP_IMAGE_BUILD:-0}" != 1 ]; then
  say "image $IMAGE"
  docker build -t "$IMAGE" "$ROOT"
  kind load docker-image "$IMAGE" --name "$CLUSTER"
fi

KUBE_CONTEXT="kind-$CLUSTER" PGPLANE_IMAGE="$IMAGE" \
  "$ROOT/infra/argocd/bootstrap.sh" gitops/root-kind.yaml

cat <<EOT

pgplane is up on kind:
  API:     https://pgplane.localtest.me/api/v1   (self-signed certificate: curl -k)
           curl -k -X POST https://pgplane.localtest.me/api/v1/auth/login \\
             -H 'content-type: application/json' -d '{"username":"admin","password":"<printed above>"}'
  Remove:  kind delete cluster --name $CLUSTER
EOT
