#!/usr/bin/env bash
# Hand a cluster to Argo CD: the one step that is not in git.
#   1. Argo CD itself, with a health check on Applications so that the root
#      app waits for one sync wave of child apps before the next
#   2. the Secrets that never live in git: pgplane/pgplane-auth (JWT secret,
#      users file with an `admin`) and monitoring/grafana-admin
#   3. the AppProject and the root Application; Argo CD then installs
#      everything else from git, wave by wave, and this waits until it has.
#
#   infra/argocd/bootstrap.sh gitops/root.yaml        # a cloud cluster (current kubectl context)
#   infra/argocd/bootstrap.sh gitops/root-kind.yaml   # kind (infra/kind/up.sh calls it)
#
# Needs: kubectl, openssl, and a way to hash the admin password: `pgplane`
# on PATH, or docker with PGPLANE_IMAGE.
# Settings (environment):
#   KUBE_CONTEXT            kubectl context (default: the current one)
#   ARGOCD_VERSION          default v3.5.1 (the CRDs the manifests are validated against)
#   PGPLANE_IMAGE           image whose `pgplane hash-password` is used when pgplane is not on PATH
#                           (default ghcr.io/pgplane/pgplane:0.1.0)
#   PGPLANE_ADMIN_PASSWORD  password of the pgplane user `admin` (default: generated, printed once)
#   WAIT_TIMEOUT            seconds to wait for every Application to be healthy (default 1200)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROOT_APP="${1:?usage: bootstrap.sh gitops/root.yaml|gitops/root-kind.yaml}"
ARGOCD_VERSION="${ARGOCD_VERSION:-v3.5.1}"
PGPLANE_IMAGE="${PGPLANE_IMAGE:-ghcr.io/pgplane/pgplane:0.1.0}"
WAIT_TIMEOUT="${WAIT_TIMEOUT:-1200}"

say() { printf '\n==> %s\n' "$*"; }
die() { echo "bootstrap.sh: $*" >&2; exit 1; }
kc() { kubectl ${KUBE_CONTEXT:+--context "$KUBE_CONTEXT"} "$@"; }

for tool in kubectl openssl; do
  command -v "$tool" > /dev/null || die "$tool is not installed"
done
[ -f "$ROOT_APP" ] || ROOT_APP="$ROOT/$ROOT_APP"
[ -f "$ROOT_APP" ] || die "$1 not found"
hash_password() { # stdin: password; stdout: argon2 hash for the users file
  if command -v pgplane > /dev/null; then
    pgplane hash-password
  else
    command -v docker > /dev/null || die "need pgplane on PATH or docker to hash the admin password"
    docker run --rm -i "$PGPLANE_IMAGE" hash-password
  fi
}

say "Argo CD $ARGOCD_VERSION"
kc create namespace argocd --dry-run=client -o yaml | kc apply -f -
# server-side: the CRDs are too large for the last-applied annotation
kc apply -n argocd --server-side --force-conflicts \
  -f "https://raw.githubusercontent.com/argoproj/argo-cd/${ARGOCD_VERSION}/manifests/install.yaml"
# Argo CD does not assess the health of Applications by default (since 1.8);
# without this the root app would start every wave at once.
kc -n argocd patch configmap argocd-cm --type merge -p "$(cat <<'JSON'
{"data": {"resource.customizations.health.argoproj.io_Application": "hs = {}\nhs.status = \"Progressing\"\nhs.message = \"\"\nif obj.status ~= nil and obj.status.health ~= nil then\n  hs.status = obj.status.health.status\n  if obj.status.health.message ~= nil then\n    hs.message = obj.status.health.message\n  end\nend\nreturn hs\n"}}
JSON
)"
for d in argocd-server argocd-repo-server argocd-applicationset-controller argocd-redis; do
  kc -n argocd rollout status "deployment/$d" --timeout=300s
done
kc -n argocd rollout status statefulset/argocd-application-controller --timeout=300s

say "secrets (kept out of git)"
for ns in pgplane monitoring; do
  kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f -
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
umask 077
admin_password="(unchanged: pgplane/pgplane-auth existed)"
if ! kc -n pgplane get secret pgplane-auth > /dev/null 2>&1; then
  admin_password="${PGPLANE_ADMIN_PASSWORD:-$(openssl rand -base64 18)}"
  openssl rand -base64 48 | tr -d '\n' > "$tmp/jwt-secret"
  hash="$(printf '%s' "$admin_password" | hash_password)"
  printf 'users:\n  - username: admin\n    password_hash: %s\n    role: admin\n' "'$hash'" > "$tmp/users.yaml"
  kc -n pgplane create secret generic pgplane-auth \
    --from-file=jwt-secret="$tmp/jwt-secret" --from-file=users.yaml="$tmp/users.yaml"
fi
if ! kc -n monitoring get secret grafana-admin > /dev/null 2>&1; then
  kc -n monitoring create secret generic grafana-admin \
    --from-literal=admin-user=admin --from-literal=admin-password="$(openssl rand -base64 18)"
fi

say "AppProject and root application ($ROOT_APP)"
# The project is also in the root app's tree (gitops/apps); applied first
# here because the root Application belongs to it.
kc apply -f "$ROOT/gitops/apps/project.yaml"
kc apply -f "$ROOT_APP"

say "waiting for the applications to be synced and healthy (up to ${WAIT_TIMEOUT}s)"
want=$(( $(kubectl kustomize "$ROOT/gitops/apps" | grep -c '^kind: Application$') + 1 ))
deadline=$((SECONDS + WAIT_TIMEOUT))
while :; do
  status="$(kc -n argocd get applications.argoproj.io \
    -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.sync.status}{" "}{.status.health.status}{"\n"}{end}' 2> /dev/null || true)"
  total="$(grep -c . <<< "$status" || true)"
  ready="$(grep -c ' Synced Healthy$' <<< "$status" || true)"
  echo "$ready/$want applications synced and healthy"
  if [ "$total" -ge "$want" ] && [ "$ready" -eq "$total" ]; then
    break
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "$status"
    die "not all applications became healthy in ${WAIT_TIMEOUT}s (kubectl -n argocd get applications)"
  fi
  sleep 15
done

argocd_password="$(kc -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d)"
cat <<EOT

Argo CD has synced every application.
  pgplane login:  admin / $admin_password
  pgplane host:   $(kc -n pgplane get ingress pgplane -o jsonpath='{.spec.rules[0].host}')
  Argo CD:        kubectl -n argocd port-forward svc/argocd-server 8443:443
                  https://localhost:8443  admin / $argocd_password
  Grafana:        kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80
                  http://localhost:3000  admin / \$(kubectl -n monitoring get secret grafana-admin -o jsonpath='{.data.admin-password}' | base64 -d)
EOT
