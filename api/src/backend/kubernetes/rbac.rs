//! The permissions the kubernetes backend needs: declared here once, printed
//! by `pgplane rbac` as a namespaced `Role`, checked at start-up (and then
//! now and again) by readiness with `SelfSubjectAccessReview`s. The manifest
//! `manifests/base/role.yaml` must grant exactly these; `scripts/check-deploy.sh`
//! compares the two.
//!
//! The access reviews themselves (`selfsubjectaccessreviews` create) need no
//! rule: Kubernetes grants them to every authenticated user (ClusterRole
//! `system:basic-user`), as it grants `GET /version`, which the watch uses
//! to see that an unreachable API server is back.

/// One rule of the Role: a resource, the verbs used on it, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// API group; "" is the core group.
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub why: &'static str,
}

/// Everything the backend does to the API server, and nothing more.
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "postgresql.cnpg.io",
        resource: "clusters",
        // get: the live check of a name before create, and a read back when
        // a write meets a newer object; list, watch: the cache; create,
        // patch: server-side apply (create when the Cluster is new), and
        // the recorded-state annotation of the watcher; delete.
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        why: "one CNPG Cluster per database: watch-fed cache, server-side apply, delete",
    },
    Permission {
        group: "apps",
        resource: "controllerrevisions",
        // list: reading a database's history (by label), and finding the
        // object in the way of a new one; create: one per revision;
        // delete: pruning, undoing a failed change, and the database's delete.
        verbs: &["list", "create", "delete"],
        why: "each database's revision history, as ControllerRevisions of its Cluster",
    },
    Permission {
        group: "",
        resource: "secrets",
        verbs: &["get"],
        why: "the <name>-app Secret CNPG generates, read for GET .../credentials",
    },
    Permission {
        group: "",
        resource: "services",
        verbs: &["list", "watch"],
        why: "the <name>-rw and <name>-ro Services, watched for endpoints",
    },
    Permission {
        group: "events.k8s.io",
        resource: "events",
        // patch: a repeated transition is counted on the same Event (series).
        verbs: &["create", "patch"],
        why: "Kubernetes Events on the Clusters for state transitions",
    },
];

/// The name of the Role and of the service account it is meant for.
pub const ROLE_NAME: &str = "pgplane";

/// One `verb group/resource` a caller may lack, as readiness names it.
pub fn describe(group: &str, resource: &str, verb: &str, namespace: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    format!("{verb} {group}/{resource} in namespace {namespace}")
}

/// The Role as YAML, with a comment per rule saying why.
pub fn role_yaml(namespace: &str) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!(
        "# The one Role the kubernetes backend of pgplane needs, in the databases\n\
         # namespace only (no ClusterRole). Printed by `pgplane rbac` from the code\n\
         # that declares it (api/src/backend/kubernetes/rbac.rs).\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: Role\n\
         metadata:\n  name: {ROLE_NAME}\n  namespace: {namespace}\n\
         rules:\n"
    );
    for p in PERMISSIONS {
        out.push_str(&format!(
            "  # {}\n  - apiGroups: [{:?}]\n    resources: [{}]\n    verbs: [{}]\n",
            p.why,
            p.group,
            list(&[p.resource]),
            list(p.verbs)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_parses_and_lists_every_permission() {
        let role: serde_yaml::Value = serde_yaml::from_str(&role_yaml("databases")).unwrap();
        assert_eq!(role["kind"], "Role");
        assert_eq!(role["metadata"]["namespace"], "databases");
        let rules = role["rules"].as_sequence().unwrap();
        assert_eq!(rules.len(), PERMISSIONS.len());
        for (rule, p) in rules.iter().zip(PERMISSIONS) {
            assert_eq!(rule["apiGroups"][0], p.group);
            assert_eq!(rule["resources"][0], p.resource);
            let verbs: Vec<&str> = rule["verbs"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(verbs, p.verbs);
            assert!(!verbs.contains(&"*"));
        }
    }
}
