//! A database's revision history where Kubernetes keeps the history of its
//! own controllers: `apps/v1` `ControllerRevision` objects, as StatefulSets
//! and DaemonSets have them. One per revision, named `<cluster>-<revision>`
//! (a name only one writer can create, so two replicas making the same
//! revision at once cannot both succeed), labelled
//! `app.kubernetes.io/managed-by=pgplane` and `pgplane.io/database=<name>`,
//! owned by the Cluster (a real cluster's garbage collector removes them
//! with it; pgplane deletes them itself too), with `revision` the number
//! and `data` the [`Revision`] as the API shows it.
//!
//! This file holds the pure translations; the API calls are in the backend.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::Resource;

use super::cluster::{Cluster, MANAGED_BY, MANAGED_BY_VALUE};
use crate::model::Revision;

/// The label naming the database a revision belongs to.
pub const DATABASE: &str = "pgplane.io/database";

/// The label selector of one database's revisions.
pub fn selector(database: &str) -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE},{DATABASE}={database}")
}

/// The name of revision `n` of the Cluster `cluster`.
pub fn object_name(cluster: &str, n: u64) -> String {
    format!("{cluster}-{n}")
}

/// The `ControllerRevision` of `revision`, owned by `cluster` (which must
/// have its uid: it exists).
pub fn render(revision: &Revision, cluster: &Cluster, namespace: &str) -> ControllerRevision {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(object_name(&name, revision.revision)),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()),
                (DATABASE.to_owned(), name.clone()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: Cluster::api_version(&()).into_owned(),
                kind: Cluster::kind(&()).into_owned(),
                name,
                uid: cluster.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                // Blocking the owner's deletion would need the finalizers
                // permission on Clusters; nothing needs it.
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(
            serde_json::to_value(revision).expect("a revision serializes"),
        )),
        revision: i64::try_from(revision.revision).unwrap_or(i64::MAX),
    }
}

/// The uid of the Cluster that owns a revision object.
pub fn owner_uid(object: &ControllerRevision) -> Option<&str> {
    object
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.kind == Cluster::kind(&()))
        .map(|o| o.uid.as_str())
}

/// The revision an object holds; `None` when it is not one pgplane wrote
/// (or was edited into something else).
pub fn revision_of(object: &ControllerRevision) -> Option<Revision> {
    let data = object.data.as_ref()?;
    let revision: Revision = serde_json::from_value(data.0.clone()).ok()?;
    (i64::try_from(revision.revision).ok() == Some(object.revision)).then_some(revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Change, DatabaseSpec, RevisionKind};

    #[test]
    fn a_revision_round_trips_through_its_object() {
        let spec = DatabaseSpec::test();
        let mut cluster = super::super::cluster::render(
            &spec,
            "databases",
            &super::super::cluster::Stamp::api("alice".into(), 3, None),
        );
        cluster.metadata.uid = Some("u-1".into());
        let change = Change::rollback(1, "bob", Some("r-9"));
        let revision = Revision::new(3, &spec, Some(&spec), &change, chrono::Utc::now());
        let object = render(&revision, &cluster, "databases");
        assert_eq!(object.metadata.name.as_deref(), Some("orders-3"));
        assert_eq!(object.revision, 3);
        assert_eq!(owner_uid(&object), Some("u-1"));
        let owner = &object.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str()),
            ("postgresql.cnpg.io/v1", "Cluster")
        );
        assert_eq!(object.metadata.labels.as_ref().unwrap()[DATABASE], "orders");
        let back = revision_of(&object).unwrap();
        assert_eq!(back, revision);
        assert_eq!((back.kind, back.from), (RevisionKind::Rollback, Some(1)));

        let mut edited = object.clone();
        edited.revision = 4;
        assert_eq!(revision_of(&edited), None, "number and data disagree");
    }
}
