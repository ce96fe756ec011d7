//! Taking an existing Cluster under management and giving it back, as pure
//! functions of its JSON: which of its fields pgplane leaves alone, and the
//! two writes (a server-side apply of pgplane's marks only; a merge patch
//! that removes them).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::cluster::{
    major_of, DECLARED_IN, MANAGED_BY, MANAGED_BY_VALUE, OWNER, RECORDED_STATE, REVISION, SOURCE,
    UPDATED_AT,
};
use crate::model::spec::RESERVED_LABEL_PREFIXES;

/// The fields of a Cluster pgplane shows and changes once it adopted it:
/// everything else is left to whoever set it.
fn represented(path: &str, value: &Value) -> bool {
    match path {
        "spec.instances" => true,
        "spec.imageName" => value.as_str().and_then(major_of).is_some(),
        "spec.storage.size" => true,
        _ => false,
    }
}

/// Whether a field manager set the field at `path` (`["spec",
/// "monitoring"]`), by the Cluster's `managedFields`: a default the API
/// server filled in was set by nobody. Without `managedFields` (an API
/// server that keeps none), every field counts as set.
fn set_by_someone(cluster: &Value, path: &[&str]) -> bool {
    let Some(entries) = cluster["metadata"]["managedFields"].as_array() else {
        return true;
    };
    entries.iter().any(|entry| {
        let mut node = &entry["fieldsV1"];
        path.iter().all(|step| {
            node = &node[format!("f:{step}")];
            !node.is_null()
        })
    })
}

/// Each field of a Cluster (`spec.…`, and the labels and parameters other
/// tools set) that pgplane leaves alone when it adopts it, in path order.
/// Defaults the API server filled in are left alone too but not listed.
pub fn left_alone(cluster: &Value) -> Vec<String> {
    // Each candidate as its steps: a parameter's or label's key may hold dots.
    let mut candidates: Vec<Vec<String>> = Vec::new();
    let steps = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    if let Some(spec) = cluster["spec"].as_object() {
        for (key, value) in spec {
            match (key.as_str(), value) {
                ("storage", Value::Object(storage)) => {
                    for (k, v) in storage {
                        if !represented(&format!("spec.storage.{k}"), v) {
                            candidates.push(steps(&["spec", "storage", k]));
                        }
                    }
                }
                ("postgresql", Value::Object(postgresql)) => {
                    for (k, v) in postgresql {
                        match (k.as_str(), v) {
                            ("parameters", Value::Object(parameters)) => {
                                for p in parameters.keys() {
                                    candidates.push(steps(&[
                                        "spec",
                                        "postgresql",
                                        "parameters",
                                        p,
                                    ]));
                                }
                            }
                            _ => candidates.push(steps(&["spec", "postgresql", k])),
                        }
                    }
                }
                _ if represented(&format!("spec.{key}"), value) => {}
                _ => candidates.push(steps(&["spec", key])),
            }
        }
    }
    if let Some(labels) = cluster["metadata"]["labels"].as_object() {
        for k in labels.keys() {
            if !RESERVED_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)) {
                candidates.push(steps(&["metadata", "labels", k]));
            }
        }
    }
    let mut out: Vec<String> = candidates
        .into_iter()
        .filter(|path| {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            set_by_someone(cluster, &path)
        })
        .map(|path| path.join("."))
        .collect();
    if cluster["spec"].get("imageName").is_none() {
        // CNPG picks its default image: pgplane cannot tell the major.
        out.push("spec.imageName".into());
    }
    out.sort();
    out
}

/// Why a Cluster cannot be adopted, if it cannot.
pub fn refusal(cluster: &Value) -> Option<String> {
    let name = cluster["metadata"]["name"].as_str().unwrap_or_default();
    if !cluster["metadata"]["deletionTimestamp"].is_null() {
        return Some(format!("Cluster {name} is being deleted"));
    }
    match cluster["metadata"]["labels"][MANAGED_BY].as_str() {
        Some(MANAGED_BY_VALUE) => Some(format!("database {name} is managed by pgplane already")),
        Some(other) => Some(format!(
            "Cluster {name} is labelled {MANAGED_BY}={other}: another tool manages it, and pgplane does not take it over"
        )),
        None => None,
    }
}

/// What pgplane applies to adopt a Cluster: its label and annotations and
/// nothing of the spec, on the Cluster as it was read (`resourceVersion`).
pub fn adoption(cluster: &Value, by: &str, now: DateTime<Utc>) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {
            "name": cluster["metadata"]["name"],
            "namespace": cluster["metadata"]["namespace"],
            "resourceVersion": cluster["metadata"]["resourceVersion"],
            "labels": {MANAGED_BY: MANAGED_BY_VALUE},
            "annotations": {
                OWNER: by,
                REVISION: "1",
                SOURCE: "adopted",
                UPDATED_AT: now.to_rfc3339_opts(SecondsFormat::Secs, true),
            },
        },
    })
}

/// The merge patch that takes pgplane's label and annotations off a
/// Cluster, as it was read (`metadata`, with its `resourceVersion`), and
/// nothing else. pgplane's own server-side-apply entry in `managedFields`
/// is handed to a manager that never applies: were it kept, adopting the
/// Cluster again (an apply of the marks alone, by `pgplane`) would remove
/// every spec field it still owned.
pub fn release(metadata: &Value, now: DateTime<Utc>) -> Value {
    let annotations: Map<String, Value> = [
        OWNER,
        REVISION,
        SOURCE,
        UPDATED_AT,
        DECLARED_IN,
        RECORDED_STATE,
    ]
    .into_iter()
    .map(|k| (k.to_owned(), Value::Null))
    .collect();
    let mut patch = json!({
        "metadata": {
            "resourceVersion": metadata["resourceVersion"],
            "labels": {MANAGED_BY: null},
            "annotations": annotations,
        },
    });
    if let Some(entries) = metadata["managedFields"].as_array() {
        let handed: Vec<Value> = entries
            .iter()
            .map(|entry| {
                let mut entry = entry.clone();
                if entry["manager"] == super::FIELD_MANAGER && entry["operation"] == "Apply" {
                    entry["manager"] = json!(format!("pgplane-released-{}", now.timestamp()));
                    entry["operation"] = json!("Update");
                }
                entry
            })
            .collect();
        if handed != *entries {
            patch["metadata"]["managedFields"] = Value::Array(handed);
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_pgplane_leaves_alone_is_listed_by_path() {
        let cluster = json!({
            "metadata": {"name": "legacy", "labels": {"team": "other", "app.kubernetes.io/name": "x"}},
            "spec": {
                "instances": 2,
                "imageName": "ghcr.io/cloudnative-pg/postgresql:16.4",
                "storage": {"size": "1Gi", "storageClass": "fast"},
                "postgresql": {"parameters": {"max_connections": "300"}, "pg_hba": ["host all all 0.0.0.0/0 md5"]},
                "monitoring": {"enablePodMonitor": true},
            },
        });
        assert_eq!(
            left_alone(&cluster),
            [
                "metadata.labels.team",
                "spec.monitoring",
                "spec.postgresql.parameters.max_connections",
                "spec.postgresql.pg_hba",
                "spec.storage.storageClass",
            ]
        );
        let bare = json!({"metadata": {"name": "x"}, "spec": {"instances": 1, "storage": {"size": "1Gi"}}});
        assert_eq!(left_alone(&bare), ["spec.imageName"]);
        // With managedFields, only what a manager set: not the API server's defaults.
        let mut managed = cluster.clone();
        managed["spec"]["logLevel"] = json!("info");
        managed["metadata"]["managedFields"] = json!([{"manager": "team-tool", "fieldsV1": {
            "f:metadata": {"f:labels": {"f:team": {}}},
            "f:spec": {"f:monitoring": {".": {}, "f:enablePodMonitor": {}}, "f:instances": {},
                "f:storage": {"f:size": {}, "f:storageClass": {}}}}}]);
        assert_eq!(
            left_alone(&managed),
            [
                "metadata.labels.team",
                "spec.monitoring",
                "spec.storage.storageClass"
            ]
        );
    }

    #[test]
    fn a_managed_or_foreign_or_going_cluster_is_refused() {
        let with = |labels: Value, deleting: bool| {
            json!({"metadata": {"name": "c", "labels": labels,
                "deletionTimestamp": if deleting { json!("2026-12-01T00:00:00Z") } else { Value::Null }}})
        };
        assert_eq!(refusal(&with(json!({"team": "x"}), false)), None);
        assert!(refusal(&with(json!({MANAGED_BY: "pgplane"}), false))
            .unwrap()
            .contains("already"));
        assert!(refusal(&with(json!({MANAGED_BY: "helm"}), false))
            .unwrap()
            .contains("helm"));
        assert!(refusal(&with(json!({}), true))
            .unwrap()
            .contains("being deleted"));
    }

    #[test]
    fn the_writes_touch_only_pgplanes_marks() {
        let cluster = json!({"metadata": {"name": "c", "namespace": "databases", "resourceVersion": "7"},
            "spec": {"instances": 1}});
        let applied = adoption(&cluster, "admin", Utc::now());
        assert!(applied.get("spec").is_none());
        assert_eq!(applied["metadata"]["resourceVersion"], "7");
        assert_eq!(applied["metadata"]["annotations"][SOURCE], "adopted");
        let metadata = json!({"resourceVersion": "9", "managedFields": [
            {"manager": "pgplane", "operation": "Apply", "fieldsV1": {"f:spec": {"f:instances": {}}}},
            {"manager": "pgplane", "operation": "Update", "fieldsV1": {}},
            {"manager": "team-tool", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
        ]});
        let at = Utc::now();
        let patch = release(&metadata, at);
        assert!(patch.get("spec").is_none());
        assert_eq!(patch["metadata"]["resourceVersion"], "9");
        assert_eq!(patch["metadata"]["labels"][MANAGED_BY], Value::Null);
        assert_eq!(
            patch["metadata"]["annotations"].as_object().unwrap().len(),
            6
        );
        let handed = patch["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(
            handed[0]["manager"],
            format!("pgplane-released-{}", at.timestamp())
        );
        assert_eq!(handed[0]["operation"], "Update");
        assert_eq!(
            handed[0]["fieldsV1"],
            metadata["managedFields"][0]["fieldsV1"]
        );
        assert_eq!(
            handed[1..],
            metadata["managedFields"].as_array().unwrap()[1..]
        );
    }
}
