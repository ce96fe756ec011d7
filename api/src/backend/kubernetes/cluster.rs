//! The CloudNativePG `postgresql.cnpg.io/v1` `Cluster`, typed for what
//! pgplane sets and reads (nothing more: fields this file does not name are
//! neither sent nor kept), and the two pure translations between it and the
//! domain: [`render`] (a database spec to the Cluster pgplane applies) and
//! [`database_of`] (a Cluster as the watch delivers it to a [`Database`]).
//!
//! The field names follow `../shared/upstream/cnpg-v1.30.0/postgresql.cnpg.io_clusters.yaml`;
//! a table test validates rendered objects against that schema with unknown
//! fields refused.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use crate::model::spec::RESERVED_LABEL_PREFIXES;
use crate::model::{
    Database, DatabaseSpec, Endpoints, InstanceRole, InstanceState, InstanceStatus, Source, State,
};

/// The label that makes a Cluster a pgplane database.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "pgplane";
/// The label selector of every watch and list of Clusters.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=pgplane";
/// Who asked for the database.
pub const OWNER: &str = "pgplane.io/owner";
/// Counts spec changes: the `revision` and `ETag` of the API.
pub const REVISION: &str = "pgplane.io/revision";
/// When pgplane last changed the spec.
pub const UPDATED_AT: &str = "pgplane.io/updated-at";
/// The state whose transition was last recorded and the count of recorded
/// transitions, as `healthy/4`, written by the watcher (field manager
/// `pgplane-watcher`) with the Cluster's resourceVersion as precondition: of
/// several pgplane replicas, or a pgplane restarted without its data
/// directory, exactly one records each transition. The count tells a claim
/// made since from the same state seen earlier (healthy, degraded, healthy).
pub const RECORDED_STATE: &str = "pgplane.io/recorded-state";
/// Where the Cluster comes from when not from the API: `git` (rendered by
/// `pgplane render`, applied by Argo CD) or `adopted`.
pub const SOURCE: &str = "pgplane.io/source";
/// Of a Cluster declared in git: the spec's path in the repository.
pub const DECLARED_IN: &str = "pgplane.io/declared-in";
/// The PostgreSQL images CNPG publishes, tagged by major version.
pub const IMAGE_REPOSITORY: &str = "ghcr.io/cloudnative-pg/postgresql";
/// The database and role `bootstrap.initdb` makes; the `-app` Secret is theirs.
pub const APP: &str = "app";

/// `spec` of a CNPG Cluster: the fields pgplane sets.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    pub instances: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<PostgresConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapConfiguration>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct StorageConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PostgresConfiguration {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BootstrapConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initdb: Option<BootstrapInitDb>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BootstrapInitDb {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `status` of a CNPG Cluster: the fields pgplane reads. CNPG writes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ClusterCondition>,
    /// Every instance (pod) of the Cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_names: Vec<String>,
    /// Instance names by the status CNPG gives them (`healthy`,
    /// `replicating`, `failed`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instances_status: BTreeMap<String, Vec<String>>,
    /// What each instance reported in CNPG's last reconciliation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instances_reported_state: BTreeMap<String, InstanceReportedState>,
    /// The timeline of the Cluster (its primary's).
    #[serde(
        default,
        rename = "timelineID",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeline_id: Option<u32>,
}

/// One entry of `status.instancesReportedState`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceReportedState {
    /// Required by the CRD; read leniently, so that one odd entry does not
    /// make the whole Cluster unreadable.
    #[serde(default)]
    pub is_primary: bool,
    #[serde(
        default,
        rename = "timeLineID",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeline_id: Option<u32>,
}

/// A `metav1.Condition` of the Cluster (every field optional when read).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCondition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` the condition was set from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What the Cluster's metadata records besides the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub owner: String,
    pub revision: u64,
    /// `None` for `pgplane render` (declared in git): no API change yet.
    pub updated_at: Option<DateTime<Utc>>,
    pub source: Source,
    /// Of a Cluster declared in git: the spec's path in the repository.
    pub declared_in: Option<String>,
}

impl Stamp {
    /// The stamp of a database made or changed through the API.
    pub fn api(owner: String, revision: u64, updated_at: Option<DateTime<Utc>>) -> Stamp {
        Stamp {
            owner,
            revision,
            updated_at,
            source: Source::Api,
            declared_in: None,
        }
    }
}

/// The image of a PostgreSQL major.
pub fn image_of(major: u32) -> String {
    format!("{IMAGE_REPOSITORY}:{major}")
}

/// The major version of an image reference such as
/// `ghcr.io/cloudnative-pg/postgresql:16` or `...:16.4-bookworm@sha256:..`.
pub fn major_of(image: &str) -> Option<u32> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let (_, tag) = without_digest.rsplit_once(':')?;
    if tag.contains('/') {
        return None; // a registry port, not a tag
    }
    let digits: String = tag.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The Cluster pgplane applies for `spec`: exactly the fields pgplane owns.
/// Server-side apply of this object with field manager `pgplane` leaves
/// every other field to CNPG and other tools.
pub fn render(spec: &DatabaseSpec, namespace: &str, stamp: &Stamp) -> Cluster {
    let mut labels: BTreeMap<String, String> = spec.labels.clone();
    labels.insert(MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    let mut annotations = BTreeMap::from([
        (OWNER.to_owned(), stamp.owner.clone()),
        (REVISION.to_owned(), stamp.revision.to_string()),
    ]);
    if let Some(t) = stamp.updated_at {
        annotations.insert(
            UPDATED_AT.into(),
            t.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
    }
    if stamp.source != Source::Api {
        annotations.insert(SOURCE.into(), stamp.source.as_str().into());
    }
    if let Some(path) = &stamp.declared_in {
        annotations.insert(DECLARED_IN.into(), path.clone());
    }
    Cluster {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: ClusterSpec {
            instances: spec.instances,
            image_name: Some(image_of(spec.postgres_version)),
            storage: Some(StorageConfiguration {
                size: Some(spec.storage.clone()),
            }),
            // Without parameters, no `postgresql` at all: an apply naming
            // an emptied map leaves it null on some API servers (1.20's
            // server-side apply), which the CRD refuses; left out, the
            // fields pgplane owned there are removed.
            postgresql: (!spec.parameters.is_empty()).then(|| PostgresConfiguration {
                parameters: spec.parameters.clone(),
            }),
            bootstrap: Some(BootstrapConfiguration {
                initdb: Some(BootstrapInitDb {
                    database: Some(APP.into()),
                    owner: Some(APP.into()),
                }),
            }),
        },
        status: None,
    }
}

/// Whether pgplane manages this Cluster (it carries the label).
pub fn is_managed(cluster: &Cluster) -> bool {
    cluster
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

fn annotation<'a>(cluster: &'a Cluster, key: &str) -> Option<&'a str> {
    cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The `revision` annotation; 0 when absent or unreadable (edited by hand).
pub fn revision_of(cluster: &Cluster) -> u64 {
    annotation(cluster, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The state last recorded for this Cluster and the count of recorded
/// transitions (see [`RECORDED_STATE`]).
pub fn recorded_state_of(cluster: &Cluster) -> Option<(State, u64)> {
    let (state, count) = annotation(cluster, RECORDED_STATE)?.split_once('/')?;
    let state = State::ALL.into_iter().find(|s| s.as_str() == state)?;
    Some((state, count.parse().ok()?))
}

/// The value of [`RECORDED_STATE`] for `state` after `count` transitions.
pub fn recorded_value(state: State, count: u64) -> String {
    format!("{}/{count}", state.as_str())
}

/// Where the Cluster comes from; an unknown value counts as `api`.
pub fn source_of(cluster: &Cluster) -> Source {
    match annotation(cluster, SOURCE) {
        Some("git") => Source::Git,
        Some("adopted") => Source::Adopted,
        _ => Source::Api,
    }
}

/// The owner recorded on the Cluster.
pub fn owner_of(cluster: &Cluster) -> String {
    annotation(cluster, OWNER).unwrap_or_default().to_owned()
}

/// The keys of the map at `path` (such as `["f:metadata", "f:labels"]`)
/// that field manager `pgplane` owns by apply, from `managedFields`; `None`
/// when pgplane never applied this Cluster (rendered for git and applied by
/// another tool, or a Cluster as [`render`] returns it).
fn owned_keys(cluster: &Cluster, path: &[&str]) -> Option<std::collections::BTreeSet<String>> {
    let entry = cluster.metadata.managed_fields.as_ref()?.iter().find(|m| {
        m.manager.as_deref() == Some(super::FIELD_MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.as_deref().unwrap_or("").is_empty()
    })?;
    let mut node = &entry.fields_v1.as_ref()?.0;
    for step in path {
        match node.get(step) {
            Some(n) => node = n,
            None => return Some(Default::default()),
        }
    }
    Some(
        node.as_object()?
            .keys()
            .filter_map(|k| k.strip_prefix("f:"))
            .map(str::to_owned)
            .collect(),
    )
}

/// The spec a Cluster expresses, in the model's terms. Labels and
/// parameters are those pgplane applied: another tool's label on the same
/// Cluster stays that tool's (it is not shown, and an update does not take
/// it over).
pub fn spec_of(cluster: &Cluster) -> DatabaseSpec {
    let s = &cluster.spec;
    let own_labels = owned_keys(cluster, &["f:metadata", "f:labels"]);
    let own_parameters = owned_keys(cluster, &["f:spec", "f:postgresql", "f:parameters"]);
    let owned = |keys: &Option<std::collections::BTreeSet<String>>, k: &String| {
        keys.as_ref().is_none_or(|keys| keys.contains(k))
    };
    DatabaseSpec {
        name: cluster.metadata.name.clone().unwrap_or_default(),
        postgres_version: s.image_name.as_deref().and_then(major_of).unwrap_or(0),
        instances: s.instances,
        storage: s
            .storage
            .as_ref()
            .and_then(|st| st.size.clone())
            .unwrap_or_default(),
        parameters: s
            .postgresql
            .as_ref()
            .map(|p| {
                p.parameters
                    .iter()
                    .filter(|(k, _)| owned(&own_parameters, k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        labels: cluster
            .metadata
            .labels
            .iter()
            .flatten()
            // Labels set by the platform: user labels never carry them (the
            // model refuses them), so they are left out when read back.
            .filter(|(k, _)| !RESERVED_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)))
            .filter(|(k, _)| owned(&own_labels, k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The CNPG phase text, verbatim ("" before the operator wrote a status).
pub fn phase_of(cluster: &Cluster) -> &str {
    cluster
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn ready_of(cluster: &Cluster) -> u32 {
    cluster
        .status
        .as_ref()
        .and_then(|s| s.ready_instances)
        .unwrap_or(0)
}

/// Whether CloudNativePG has yet to act on the latest spec: its Ready
/// condition was set from an older `metadata.generation`. `false` when the
/// condition does not say (an operator that does not set it).
pub fn spec_unobserved(cluster: &Cluster) -> bool {
    let generation = cluster.metadata.generation;
    let observed = cluster.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.kind == "Ready")
            .and_then(|c| c.observed_generation)
    });
    matches!((observed, generation), (Some(o), Some(g)) if o < g)
}

pub fn is_deleting(cluster: &Cluster) -> bool {
    cluster.metadata.deletion_timestamp.is_some()
}

pub fn to_chrono(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// A Cluster as the API shows it, with the state the watcher derived and
/// the endpoints of its Services (when CNPG has made them).
pub fn database_of(
    cluster: &Cluster,
    state: State,
    phase: &str,
    endpoints: Option<Endpoints>,
) -> Database {
    let spec = spec_of(cluster);
    let created_at = cluster
        .metadata
        .creation_timestamp
        .as_ref()
        .map(to_chrono)
        .unwrap_or_default();
    let updated_at = annotation(cluster, UPDATED_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(created_at, |t| t.with_timezone(&Utc));
    Database {
        name: spec.name,
        postgres_version: spec.postgres_version,
        instances: spec.instances,
        storage: spec.storage,
        parameters: spec.parameters,
        labels: spec.labels,
        owner: owner_of(cluster),
        state,
        phase: phase.to_owned(),
        ready_instances: ready_of(cluster),
        primary: cluster
            .status
            .as_ref()
            .and_then(|s| s.current_primary.clone())
            .filter(|p| !p.is_empty()),
        endpoints,
        revision: revision_of(cluster),
        created_at,
        updated_at,
        // CloudNativePG applies parameters itself and says nothing of a
        // change it could not run beyond its phase.
        undone: None,
        instances_status: instances_of(cluster),
        source: source_of(cluster),
        declared_in: annotation(cluster, DECLARED_IN).map(str::to_owned),
    }
}

/// Every instance as CloudNativePG publishes it in the Cluster's status:
/// the names, the primary, each one's pod status and reported timeline.
/// CNPG publishes no lag, start time or restart count there, so those are
/// absent.
pub fn instances_of(cluster: &Cluster) -> Vec<InstanceStatus> {
    let Some(status) = cluster.status.as_ref() else {
        return Vec::new();
    };
    let primary = status.current_primary.as_deref().filter(|p| !p.is_empty());
    let mut names: Vec<&str> = status.instance_names.iter().map(String::as_str).collect();
    names.extend(status.instances_reported_state.keys().map(String::as_str));
    names.extend(
        status
            .instances_status
            .values()
            .flatten()
            .map(String::as_str),
    );
    names.extend(primary);
    // Pods are `<cluster>-<serial>`: by serial, as the local backend orders them.
    names.sort_by_key(|n| (serial_of(n), *n));
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let reported = status.instances_reported_state.get(name);
            let is_primary = match primary {
                Some(p) => p == name,
                None => reported.is_some_and(|r| r.is_primary),
            };
            let pod_status = status
                .instances_status
                .iter()
                .find(|(_, names)| names.iter().any(|n| n == name))
                .map(|(s, _)| s.as_str());
            let state = match pod_status {
                Some("healthy") => InstanceState::Running,
                Some("replicating") => InstanceState::Starting,
                Some("failed") => InstanceState::Failed,
                _ => InstanceState::Unknown,
            };
            // 0 is no timeline: CNPG's zero value for "not reported".
            let timeline = reported
                .and_then(|r| r.timeline_id)
                .or(status.timeline_id.filter(|_| is_primary))
                .filter(|&t| t > 0);
            InstanceStatus {
                ready: pod_status == Some("healthy"),
                timeline,
                ..InstanceStatus::new(
                    name,
                    if is_primary {
                        InstanceRole::Primary
                    } else {
                        InstanceRole::Standby
                    },
                    state,
                )
            }
        })
        .collect()
}

/// The serial at the end of a pod name, for ordering (`None` sorts first).
fn serial_of(name: &str) -> Option<u64> {
    name.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn spec(name: &str) -> DatabaseSpec {
        DatabaseSpec {
            name: name.into(),
            postgres_version: 16,
            instances: 3,
            storage: "10Gi".into(),
            parameters: BTreeMap::from([("max_connections".into(), "200".into())]),
            labels: BTreeMap::from([("team".into(), "payments".into())]),
        }
    }

    fn stamp() -> Stamp {
        Stamp::api("alice".into(), 4, None)
    }

    #[test]
    fn render_sets_what_pgplane_owns() {
        let c = render(&spec("orders"), "databases", &stamp());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "postgresql.cnpg.io/v1",
                "kind": "Cluster",
                "metadata": {
                    "name": "orders",
                    "namespace": "databases",
                    "labels": {"app.kubernetes.io/managed-by": "pgplane", "team": "payments"},
                    "annotations": {"pgplane.io/owner": "alice", "pgplane.io/revision": "4"}
                },
                "spec": {
                    "instances": 3,
                    "imageName": "ghcr.io/cloudnative-pg/postgresql:16",
                    "storage": {"size": "10Gi"},
                    "postgresql": {"parameters": {"max_connections": "200"}},
                    "bootstrap": {"initdb": {"database": "app", "owner": "app"}}
                }
            })
        );
    }

    #[test]
    fn a_rendered_cluster_reads_back_as_its_spec() {
        for s in [
            spec("orders"),
            DatabaseSpec {
                parameters: BTreeMap::new(),
                labels: BTreeMap::new(),
                instances: 1,
                ..spec("tiny")
            },
        ] {
            let c = render(&s, "databases", &stamp());
            assert!(is_managed(&c));
            assert_eq!(spec_of(&c), s);
            assert_eq!(revision_of(&c), 4);
            assert_eq!(owner_of(&c), "alice");
        }
    }

    #[test]
    fn labels_and_parameters_of_other_managers_are_not_pgplanes() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        let mut c = render(&spec("orders"), "databases", &stamp());
        let labels = c.metadata.labels.as_mut().unwrap();
        labels.insert("example.com/cost-center".into(), "42".into());
        c.spec
            .postgresql
            .as_mut()
            .unwrap()
            .parameters
            .insert("work_mem".into(), "8MB".into());
        let entry = |manager: &str, fields: serde_json::Value| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        };
        c.metadata.managed_fields = Some(vec![
            entry(
                "pgplane",
                serde_json::json!({
                    "f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}, "f:team": {}}},
                    "f:spec": {"f:postgresql": {"f:parameters": {"f:max_connections": {}}}},
                }),
            ),
            entry(
                "platform-team",
                serde_json::json!({
                    "f:metadata": {"f:labels": {"f:example.com/cost-center": {}}},
                    "f:spec": {"f:postgresql": {"f:parameters": {"f:work_mem": {}}}},
                }),
            ),
        ]);
        assert_eq!(spec_of(&c), spec("orders"));
    }

    #[test]
    fn majors_of_images() {
        let cases = [
            ("ghcr.io/cloudnative-pg/postgresql:16", Some(16)),
            (
                "ghcr.io/cloudnative-pg/postgresql:17.2-standard-bookworm",
                Some(17),
            ),
            ("ghcr.io/cloudnative-pg/postgresql:18@sha256:abc", Some(18)),
            ("registry:5000/postgresql", None),
            ("postgresql", None),
            ("postgresql:latest", None),
        ];
        for (image, major) in cases {
            assert_eq!(major_of(image), major, "{image}");
        }
    }

    fn with_status(status: serde_json::Value) -> Cluster {
        let mut c = render(&spec("orders"), "databases", &stamp());
        c.status = Some(serde_json::from_value(status).unwrap());
        c
    }

    #[test]
    fn instances_are_what_the_status_publishes() {
        let c = with_status(serde_json::json!({
            "currentPrimary": "orders-2",
            "timelineID": 2,
            "instanceNames": ["orders-1", "orders-2", "orders-10"],
            "instancesStatus": {"healthy": ["orders-2", "orders-10"], "failed": ["orders-1"]},
            "instancesReportedState": {
                "orders-2": {"isPrimary": true},
                "orders-10": {"isPrimary": false, "timeLineID": 2},
                "orders-1": {"isPrimary": false, "timeLineID": 0},
            },
        }));
        let got: Vec<(String, InstanceRole, InstanceState, bool, Option<u32>)> = instances_of(&c)
            .into_iter()
            .map(|i| {
                assert_eq!(
                    (i.lag_bytes, i.lag_seconds, i.started_at, i.restarts),
                    (None, None, None, None),
                    "CNPG publishes none of these"
                );
                (i.name, i.role, i.state, i.ready, i.timeline)
            })
            .collect();
        use InstanceRole::*;
        use InstanceState::*;
        assert_eq!(
            got,
            [
                ("orders-1".into(), Standby, Failed, false, None),
                ("orders-2".into(), Primary, Running, true, Some(2)),
                ("orders-10".into(), Standby, Running, true, Some(2)),
            ]
        );
        // A pod CNPG is still making, and one it says nothing of.
        let c = with_status(serde_json::json!({
            "instanceNames": ["orders-1", "orders-2"],
            "instancesStatus": {"replicating": ["orders-2"]},
        }));
        let states: Vec<_> = instances_of(&c)
            .into_iter()
            .map(|i| (i.role, i.state))
            .collect();
        assert_eq!(states, [(Standby, Unknown), (Standby, Starting)]);
        assert!(instances_of(&render(&spec("orders"), "databases", &stamp())).is_empty());
    }
}
