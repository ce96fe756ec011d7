#!/usr/bin/env python3
"""Offline checks of pgplane's deployment artefacts, driven by check-deploy.sh.

Subcommands (each reads rendered, multi-document YAML files):

  schemas      every object against a schema: core kinds with
               `kubernetes-validate --strict`, custom resources against the
               openAPIV3Schema of their CRD in shared/upstream with unknown
               fields refused
  deployment   the security and operability settings of every Deployment
  gitops       every Application is allowed by its AppProject, pinned, waved
  rules        write the rule groups of every PrometheusRule to a directory
  metrics      alerts and dashboards use only metrics pgplane exports
  rbac         the rendered RBAC is one namespaced Role, no wildcards, no
               ClusterRole, and equal to manifests/base/role.yaml
  role         the Role in a file has exactly the rules `pgplane rbac` prints

Exit status 0 when everything passed, 1 when something failed, 2 on misuse.
Needs PyYAML and jsonschema (scripts/deploy-requirements.txt).
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import jsonschema
    import yaml
except ImportError as exc:  # pragma: no cover - reported to the user
    sys.exit(f"missing Python package ({exc.name}): pip install -r scripts/deploy-requirements.txt")


# Custom resources for which no schema is kept in shared/upstream. Each is
# listed with the reason; anything else without a schema fails the check.
NO_SCHEMA = {
    ("cert-manager.io", "ClusterIssuer"): "cert-manager's CRDs are not in shared/upstream",
}

failures = 0


def fail(msg: str) -> None:
    global failures
    failures += 1
    print(f"FAIL {msg}")


def ok(msg: str) -> None:
    print(f"ok   {msg}")


def load_docs(paths: list[str]) -> list[tuple[str, dict]]:
    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for doc in yaml.safe_load_all(fh):
                if doc is None:
                    continue
                if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                    fail(f"{path}: a document without apiVersion and kind")
                    continue
                docs.append((path, doc))
    return docs


def ident(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{doc['kind']} {ns + '/' if ns else ''}{name}"


def group_version(doc: dict) -> tuple[str, str]:
    api = doc["apiVersion"]
    if "/" in api:
        group, version = api.split("/", 1)
    else:
        group, version = "", api
    return group, version


def is_core(group: str) -> bool:
    """A kind served by Kubernetes itself (no CRD): the core group, the
    unqualified groups (apps, batch, policy, autoscaling) and *.k8s.io."""
    return group == "" or "." not in group or group.endswith(".k8s.io")


# --------------------------------------------------------------------------
# CRD schemas


OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
}


def strict(schema: dict, root: bool = False) -> dict:
    """The structural schema as the API server applies it, with pruning
    turned into refusal: an object accepts only the fields it declares,
    unless it preserves unknown fields or declares additionalProperties."""
    s = copy.deepcopy(schema)

    def walk(node: dict) -> None:
        if not isinstance(node, dict):
            return
        for key in ("properties", "patternProperties"):
            for child in (node.get(key) or {}).values():
                walk(child)
        for key in ("items", "additionalProperties", "not"):
            if isinstance(node.get(key), dict):
                walk(node[key])
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key) or []:
                walk(child)
        if node.get("x-kubernetes-int-or-string") and "type" not in node and "anyOf" not in node:
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.get("x-kubernetes-embedded-resource"):
            props = node.setdefault("properties", {})
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
        is_object = node.get("type") == "object" or "properties" in node
        if (
            is_object
            and not node.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in node
        ):
            node["additionalProperties"] = False
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]

    walk(s)
    if root:
        props = s.setdefault("properties", {})
        props["metadata"] = OBJECT_META
        props.pop("status", None)
    return s


def load_crds(upstream: Path) -> dict[tuple[str, str, str], tuple[dict, str]]:
    schemas: dict[tuple[str, str, str], tuple[dict, str]] = {}
    for path in sorted(upstream.rglob("*.yaml")):
        with open(path, encoding="utf-8") as fh:
            for doc in yaml.safe_load_all(fh):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec.get("versions", []):
                    if not version.get("served", False):
                        continue
                    schema = (version.get("schema") or {}).get("openAPIV3Schema")
                    if schema is None:
                        continue
                    key = (spec["group"], version["name"], spec["names"]["kind"])
                    schemas[key] = (strict(schema, root=True), str(path.relative_to(upstream)))
    return schemas


def error_path(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "(root)"


def cmd_schemas(args: argparse.Namespace) -> None:
    upstream = Path(args.upstream)
    if not upstream.is_dir():
        fail(f"upstream CRD directory {upstream} not found (set PGPLANE_UPSTREAM_DIR)")
        return
    crds = load_crds(upstream)
    if not crds:
        fail(f"no served CRD versions found under {upstream}")
        return
    print(f"     {len(crds)} CRD schemas from {upstream}")

    core: list[tuple[str, dict]] = []
    for path, doc in load_docs(args.files):
        group, version = group_version(doc)
        key = (group, version, doc["kind"])
        where = f"{path}: {ident(doc)}"
        if key in crds:
            schema, source = crds[key]
            validator = jsonschema.Draft4Validator(schema)
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            if errors:
                for err in errors:
                    fail(f"{where} ({source}) at {error_path(err)}: {err.message}")
            else:
                ok(f"{where} matches {source} (unknown fields refused)")
        elif is_core(group):
            core.append((path, doc))
        elif (group, doc["kind"]) in NO_SCHEMA:
            print(f"skip {where}: no schema here ({NO_SCHEMA[(group, doc['kind'])]})")
        else:
            fail(f"{where}: no CRD schema for {doc['apiVersion']} {doc['kind']} in {upstream}")

    if not core:
        return
    # kubernetes-validate, strict, offline (it ships the schemas). It exits 0
    # when it finds no schema, so its warnings count as failures here.
    with tempfile.TemporaryDirectory() as tmp:
        batch = Path(tmp) / "core.yaml"
        batch.write_text(yaml.safe_dump_all([d for _, d in core], sort_keys=False), encoding="utf-8")
        cmd = ["kubernetes-validate", "--strict", "--kubernetes-version", args.kubernetes_version, str(batch)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = (proc.stdout + proc.stderr).splitlines()
        bad = [l for l in lines if l.startswith(("ERROR", "WARN")) or "Traceback" in l]
        passed = [l for l in lines if l.startswith("INFO") and " passed " in l]
        if proc.returncode != 0 or bad or len(passed) != len(core):
            for line in bad or lines:
                fail(f"kubernetes-validate: {line.replace(str(batch), 'core objects')}")
            if not bad and len(passed) != len(core):
                fail(f"kubernetes-validate passed {len(passed)} of {len(core)} core objects")
        else:
            ok(
                f"kubernetes-validate --strict (Kubernetes {args.kubernetes_version}): "
                f"{len(core)} core objects from {len(set(p for p, _ in core))} file(s)"
            )


# --------------------------------------------------------------------------
# Deployment settings


def cmd_deployment(args: argparse.Namespace) -> None:
    deployments = [(p, d) for p, d in load_docs(args.files) if d["kind"] == "Deployment"]
    if not deployments:
        fail("no Deployment found in " + ", ".join(args.files))
    for path, dep in deployments:
        where = f"{path}: {ident(dep)}"
        problems: list[str] = []
        spec = dep.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problems.append("pod securityContext.runAsNonRoot is not true")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append("pod securityContext.seccompProfile.type is not RuntimeDefault")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            problems.append("pod uses a host namespace")
        if (spec.get("replicas") or 1) < 2:
            problems.append(f"replicas is {spec.get('replicas')}, want at least 2")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "hostPath" in v:
                problems.append(f"volume {v['name']} is a hostPath")
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            name = c.get("name", "?")
            sc = c.get("securityContext", {})
            if sc.get("runAsNonRoot") is not True and psc.get("runAsNonRoot") is not True:
                problems.append(f"{name}: runAsNonRoot is not true")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{name}: privileged")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{name}: capabilities.drop does not contain ALL")
            if (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{name}: adds capabilities {sc['capabilities']['add']}")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                problems.append(f"{name}: seccompProfile is {seccomp}, want RuntimeDefault")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(kind) or {}):
                        problems.append(f"{name}: resources.{kind}.{r} missing")
            image = c.get("image", "")
            if not image or image.endswith(":latest") or (":" not in image.rsplit("/", 1)[-1] and "@" not in image):
                problems.append(f"{name}: image {image!r} is not pinned to a tag or digest")
            if name != args.container:
                continue
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            if ports.get("http") != 8080:
                problems.append(f"{name}: no port 8080 named http")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                got = ((c.get(probe) or {}).get("httpGet") or {})
                if got.get("path") != path or got.get("port") not in ("http", 8080):
                    problems.append(f"{name}: {probe} is not GET {path} on the http port")
            env = {e["name"]: e for e in c.get("env", [])}
            for var, want in args.expect_env:
                got = env.get(var, {}).get("value")
                if got != want:
                    problems.append(f"{name}: env {var} is {got!r}, want {want!r}")
            for var in ("PGPLANE_JWT_SECRET", "PGPLANE_ADMIN_PASSWORD"):
                if var in env:
                    problems.append(f"{name}: {var} set in the manifest; use the *_FILE setting and a Secret")
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            for var in ("PGPLANE_JWT_SECRET_FILE", "PGPLANE_USERS_FILE"):
                value = env.get(var, {}).get("value", "")
                mount = next((m for p, m in mounts.items() if value.startswith(p.rstrip("/") + "/")), None)
                if mount is None or "secret" not in volumes.get(mount["name"], {}):
                    problems.append(f"{name}: {var}={value!r} is not on a Secret volume")
            if c.get("envFrom"):
                problems.append(f"{name}: envFrom would hide where settings come from")
        labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
        if labels.get("app.kubernetes.io/name") != args.app_label:
            problems.append(
                f"pod label app.kubernetes.io/name is {labels.get('app.kubernetes.io/name')!r}; "
                f"the log shipper turns it into app={args.app_label!r} for PGPLANE_LOKI_SELECTOR"
            )
        if problems:
            for p in problems:
                fail(f"{where}: {p}")
        else:
            ok(f"{where}: non-root, read-only root, no privilege escalation, drop ALL, "
               "seccomp RuntimeDefault, requests and limits, probes, settings")


def cmd_console(args: argparse.Namespace) -> None:
    """The web console is served by pgplane itself at `/`: each overlay's
    Ingress sends every path of its host to the pgplane Service (no separate
    UI server), and the NetworkPolicy lets the ingress controller in."""
    for path in args.files:
        docs = [d for _, d in load_docs([path])]
        ingresses = [d for d in docs if d["kind"] == "Ingress"]
        policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
        problems: list[str] = []
        if not ingresses:
            problems.append("no Ingress")
        for ing in ingresses:
            for rule in ing.get("spec", {}).get("rules", []):
                paths = rule.get("http", {}).get("paths", [])
                backends = {(p.get("backend", {}).get("service", {}).get("name"),
                             str(p.get("backend", {}).get("service", {}).get("port", {}).get("name")))
                            for p in paths}
                root = [p for p in paths if p.get("path") == "/" and p.get("pathType") == "Prefix"]
                if not root:
                    problems.append(f"{ident(ing)}: host {rule.get('host')} has no Prefix path /")
                if backends != {(args.service, "http")}:
                    problems.append(f"{ident(ing)}: host {rule.get('host')} sends paths to {sorted(backends)}, "
                                    f"want only {args.service}:http (the console and the API)")
        admitted = False
        for pol in policies:
            for rule in pol.get("spec", {}).get("ingress", []):
                ports = {str(p.get("port")) for p in rule.get("ports", [])}
                for peer in rule.get("from", []):
                    ns = (peer.get("namespaceSelector") or {}).get("matchLabels", {})
                    if ns.get("kubernetes.io/metadata.name") == "ingress-nginx" and "http" in ports:
                        admitted = True
        if not admitted:
            problems.append("no NetworkPolicy lets the ingress controller reach the http port")
        if problems:
            for p in problems:
                fail(f"{path}: {p}")
        else:
            ok(f"{path}: / (console and API) goes to {args.service}:http, and the ingress controller may reach it")


# --------------------------------------------------------------------------
# Argo CD


def cmd_gitops(args: argparse.Namespace) -> None:
    docs = load_docs(args.files)
    projects = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "AppProject"}
    apps = [(p, d) for p, d in docs if d["kind"] == "Application"]
    if not apps:
        fail("no Application found")
    for path, app in apps:
        where = f"{path}: {ident(app)}"
        spec = app.get("spec", {})
        problems = []
        project = projects.get(spec.get("project"))
        if project is None:
            problems.append(f"project {spec.get('project')!r} is not defined in these files")
        sources = spec.get("sources") or [spec.get("source") or {}]
        dest = spec.get("destination") or {}
        if project is not None:
            allowed = project["spec"].get("sourceRepos", [])
            for src in sources:
                if src.get("repoURL") not in allowed and "*" not in allowed:
                    problems.append(f"source {src.get('repoURL')} is not in the project's sourceRepos")
            dests = project["spec"].get("destinations", [])
            if not any(
                d.get("server") in (dest.get("server"), "*") and d.get("namespace") in (dest.get("namespace"), "*")
                for d in dests
            ):
                problems.append(f"destination {dest} is not in the project's destinations")
        for src in sources:
            rev = str(src.get("targetRevision", ""))
            if src.get("chart"):
                if not rev or any(ch in rev for ch in "*^~><x") or rev in ("latest", "HEAD"):
                    problems.append(f"chart {src['chart']} version {rev!r} is not pinned")
            elif src.get("path") is not None:
                target = Path(args.repo_root) / src["path"]
                if not target.is_dir():
                    problems.append(f"path {src['path']} does not exist in this repository")
        annotations = app.get("metadata", {}).get("annotations") or {}
        if app["metadata"]["name"] != "root" and "argocd.argoproj.io/sync-wave" not in annotations:
            problems.append("no sync wave")
        finalizers = app.get("metadata", {}).get("finalizers") or []
        if any(src.get("chart") == "cloudnative-pg" for src in sources):
            # its CRDs own every database: no cascade, no automatic prune
            if any("resources-finalizer" in f for f in finalizers):
                problems.append("deleting it would cascade into the CNPG CRDs and every database")
            if ((spec.get("syncPolicy") or {}).get("automated") or {}).get("prune"):
                problems.append("automated prune on the CNPG operator (its CRDs hold the databases)")
        if dest.get("namespace") in args.protect_namespace and any("resources-finalizer" in f for f in finalizers):
            problems.append(f"deleting it would cascade into namespace {dest.get('namespace')}")
        if problems:
            for p in problems:
                fail(f"{where}: {p}")
        else:
            ok(f"{where}: allowed by project {spec.get('project')}, sources pinned, "
               f"wave {annotations.get('argocd.argoproj.io/sync-wave', '(root)')}")

    # The databases namespace outlives any sync and any Application.
    for name in args.protect_namespace:
        found = [(p, d) for p, d in docs if d["kind"] == "Namespace" and d["metadata"]["name"] == name]
        if not found:
            fail(f"namespace {name} is not declared in " + ", ".join(args.files))
        for path, ns in found:
            opts = ((ns["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-options") or "")
            opts = {o.strip() for o in opts.split(",")}
            missing = {"Prune=false", "Delete=false"} - opts
            if missing:
                fail(f"{path}: Namespace {name} lacks argocd.argoproj.io/sync-options {sorted(missing)}")
            else:
                ok(f"{path}: Namespace {name} is never pruned or deleted by Argo CD")


# --------------------------------------------------------------------------
# PrometheusRule -> promtool


def cmd_rules(args: argparse.Namespace) -> None:
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for path, doc in load_docs(args.files):
        if doc["kind"] != "PrometheusRule":
            continue
        meta = doc["metadata"]
        target = out / f"{meta.get('namespace', 'default')}-{meta['name']}.rules.yaml"
        groups = doc.get("spec", {}).get("groups", [])
        if not groups:
            fail(f"{path}: {ident(doc)} has no rule groups")
        target.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
        print(target)
        n += 1
    if n == 0:
        fail("no PrometheusRule found in " + ", ".join(args.files))


# --------------------------------------------------------------------------
# Metric names in alerts and dashboards


# The metrics of DESIGN.md ("Metrics"), with the series a histogram adds.
# A typo in an alert or a panel would otherwise only show as silence.
METRICS = {
    "pgplane_http_requests_total",
    "pgplane_http_requests_in_flight",
    "pgplane_databases",
    "pgplane_state_transitions_total",
    "pgplane_audit_records_total",
}
HISTOGRAMS = {"pgplane_http_request_duration_seconds", "pgplane_backend_operation_duration_seconds"}
METRICS |= {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}


def cmd_metrics(args: argparse.Namespace) -> None:
    import re

    name = re.compile(r"\bpgplane_[a-z_]+")
    for path, doc in load_docs(args.files):
        if doc["kind"] == "PrometheusRule":
            texts = [r.get("expr", "") for g in doc["spec"]["groups"] for r in g["rules"]]
        elif doc["kind"] == "ConfigMap" and (doc["metadata"].get("labels") or {}).get("grafana_dashboard"):
            texts = list((doc.get("data") or {}).values())
        else:
            continue
        used = {m for t in texts for m in name.findall(str(t))}
        unknown = sorted(used - METRICS)
        if unknown:
            fail(f"{path}: {ident(doc)} uses metrics pgplane does not export: {', '.join(unknown)}")
        elif not used:
            fail(f"{path}: {ident(doc)} uses no pgplane metric")
        else:
            ok(f"{path}: {ident(doc)}: {len(used)} metric names, all exported by pgplane")


# --------------------------------------------------------------------------
# Role == `pgplane rbac`


def normal_rules(role: dict) -> set:
    rules = set()
    for r in role.get("rules", []):
        for group in r.get("apiGroups", [""]):
            for resource in r.get("resources", []):
                for verb in r.get("verbs", []):
                    rules.add((group, resource, tuple(sorted(r.get("resourceNames", []))), verb))
    return rules


def find_role(path: str) -> dict | None:
    roles = [d for _, d in load_docs([path]) if d["kind"] in ("Role", "ClusterRole")]
    return roles[0] if roles else None


def compare_roles(want: dict, got: dict, want_name: str, got_name: str) -> None:
    if got["kind"] != "Role":
        fail(f"{got_name} is a {got['kind']}; the backend needs only a namespaced Role")
    for field in ("name", "namespace"):
        if want["metadata"].get(field) != got["metadata"].get(field):
            fail(f"Role {field}: {want_name} has {want['metadata'].get(field)!r}, "
                 f"{got_name} has {got['metadata'].get(field)!r}")
    a, b = normal_rules(want), normal_rules(got)
    for g, r, names, v in sorted(a - b):
        fail(f"{want_name} grants {v} on {g or 'core'}/{r} but {got_name} does not")
    for g, r, names, v in sorted(b - a):
        fail(f"{got_name} grants {v} on {g or 'core'}/{r} but {want_name} does not")
    if a == b:
        ok(f"{want_name} and {got_name} grant the same {len(a)} permissions")


def cmd_role(args: argparse.Namespace) -> None:
    want, got = find_role(args.manifest), find_role(args.rbac_output)
    if want is None or got is None:
        fail(f"no Role in {args.manifest if want is None else 'the output of pgplane rbac'}")
        return
    compare_roles(want, got, args.manifest, "pgplane rbac")


def cmd_rbac(args: argparse.Namespace) -> None:
    """What an overlay renders may not widen the backend's permissions: one
    Role, bound to the API's service account, equal to the base file."""
    base = find_role(args.base)
    if base is None:
        fail(f"no Role in {args.base}")
        return
    for path in args.files:
        docs = [d for _, d in load_docs([path])]
        for d in docs:
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                fail(f"{path}: {ident(d)}: the backend must not need cluster-wide rights")
        roles = [d for d in docs if d["kind"] == "Role"]
        if len(roles) != 1:
            fail(f"{path}: {len(roles)} Roles rendered, want exactly 1")
            continue
        for rule in roles[0].get("rules", []):
            for key in ("apiGroups", "resources", "verbs"):
                if "*" in (rule.get(key) or []):
                    fail(f"{path}: Role rule {rule} has a wildcard in {key}")
        bindings = [d for d in docs if d["kind"] == "RoleBinding"
                    and d["roleRef"].get("name") == roles[0]["metadata"]["name"]]
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == args.service_account
                   for b in bindings for s in b.get("subjects", [])):
            fail(f"{path}: no RoleBinding gives Role {roles[0]['metadata']['name']} "
                 f"to ServiceAccount {args.service_account}")
        compare_roles(base, roles[0], args.base, f"the Role rendered in {Path(path).name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("schemas")
    p.add_argument("--upstream", required=True)
    p.add_argument("--kubernetes-version", required=True)
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("deployment")
    p.add_argument("--container", default="pgplane")
    p.add_argument("--app-label", default="pgplane")
    p.add_argument("--expect-env", nargs=2, action="append", default=[], metavar=("VAR", "VALUE"))
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_deployment)

    p = sub.add_parser("console")
    p.add_argument("--service", default="pgplane")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_console)

    p = sub.add_parser("gitops")
    p.add_argument("--repo-root", default=".")
    p.add_argument("--protect-namespace", action="append", default=[])
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_gitops)

    p = sub.add_parser("rules")
    p.add_argument("outdir")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("metrics")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("rbac")
    p.add_argument("--base", required=True)
    p.add_argument("--service-account", default="pgplane")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_rbac)

    p = sub.add_parser("role")
    p.add_argument("manifest")
    p.add_argument("rbac_output")
    p.set_defaults(func=cmd_role)

    args = parser.parse_args()
    args.func(args)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
