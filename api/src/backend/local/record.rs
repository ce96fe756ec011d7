//! What the local backend keeps on disk per database, so that nothing of a
//! database's state lives only in memory: `database.json` (the desired spec,
//! the instances that exist or are being made, and how far the servers
//! follow the spec's revisions) and `secrets.json` (the generated
//! passwords, readable by pgplane's account only).
//!
//! Layout under `PGPLANE_DATA_DIR/databases/<name>/`:
//! `database.json`, `secrets.json`, and one `<name>-<n>/` per instance
//! holding `pgdata/` and `postgres.log`, owned by the PostgreSQL account.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::revision::prune;
use crate::model::{Change, DatabaseSpec, Revision};
use crate::secret::{random_token, Secret};

/// One PostgreSQL server of a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub ordinal: u32,
    pub port: u16,
}

/// The persisted truth about one database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseRecord {
    pub spec: DatabaseSpec,
    pub owner: String,
    pub revision: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set by DELETE; the reconciler then removes everything.
    pub deleting: bool,
    /// Instances that exist or are being built, primary included.
    pub instances: Vec<InstanceRecord>,
    /// Ordinal of the primary.
    pub primary: u32,
    /// The `app` role and database exist on the primary.
    pub bootstrapped: bool,
    /// The database has been healthy once: `creating` is over.
    pub created: bool,
    /// The latest revision whose parameters the servers ran well (started
    /// and passed the probe with): the configuration to go back to.
    /// `None` until the first, when pgplane's defaults are that.
    #[serde(default)]
    pub applied: Option<AppliedRevision>,
    /// Parameters are being written or undone: set before the first file
    /// changes, cleared once the servers run the files and pass the probe,
    /// so that a crash in between is finished on the next start.
    #[serde(default)]
    pub configuring: bool,
    /// The latest revision whose parameters broke the database and were
    /// undone; it is not tried again. Cleared once a later one is applied.
    #[serde(default)]
    pub failed: Option<FailedRevision>,
    /// The revisions kept, newest first, the current one always among
    /// them; written with the spec they record, in the same file. A record
    /// from before histories has none (see [`DatabaseRecord::history`]).
    #[serde(default)]
    pub history: Vec<Revision>,
    /// Per instance (by ordinal), how often pgplane started it again after
    /// it had stopped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restarts: BTreeMap<u32, u32>,
}

/// A revision whose parameters the servers ran well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRevision {
    pub revision: u64,
    pub parameters: BTreeMap<String, String>,
}

/// A revision whose parameters the servers could not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRevision {
    pub revision: u64,
    /// PostgreSQL's own words where it gave any (`FATAL: ...`).
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// How far a database's servers follow its spec revisions, for the
/// revision history: the latest revision applied and the latest that
/// failed, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionStatus {
    /// The latest revision whose parameters the servers run and ran well;
    /// `None` while the first is being applied.
    pub applied: Option<u64>,
    /// Set when a revision after `applied` could not be applied and was
    /// undone.
    pub failed: Option<FailedRevision>,
}

impl DatabaseRecord {
    pub fn new(spec: DatabaseSpec, change: &Change, primary_port: u16) -> DatabaseRecord {
        let now = Utc::now();
        DatabaseRecord {
            history: vec![Revision::new(1, &spec, None, change, now)],
            spec,
            owner: change.by.clone(),
            revision: 1,
            created_at: now,
            updated_at: now,
            deleting: false,
            instances: vec![InstanceRecord {
                ordinal: 1,
                port: primary_port,
            }],
            primary: 1,
            bootstrapped: false,
            created: false,
            applied: None,
            configuring: false,
            failed: None,
            restarts: BTreeMap::new(),
        }
    }

    /// Replaces the spec, making the next revision of `change` (the caller
    /// persists the record), and prunes the history to `depth`.
    pub fn change_spec(&mut self, spec: DatabaseSpec, change: &Change, depth: u32) {
        let at = Utc::now();
        let mut history = self.history();
        history.push(Revision::new(
            self.revision + 1,
            &spec,
            Some(&self.spec),
            change,
            at,
        ));
        prune(&mut history, depth);
        self.history = history;
        self.spec = spec;
        self.revision += 1;
        self.updated_at = at;
    }

    /// The revisions kept, newest first. A record written before histories
    /// were kept gets one made up for its current spec.
    pub fn history(&self) -> Vec<Revision> {
        let mut history = self.history.clone();
        if !history.iter().any(|r| r.revision == self.revision) {
            history.push(Revision::synthetic(
                self.revision,
                &self.spec,
                &self.owner,
                self.updated_at,
            ));
        }
        history.sort_by_key(|r| std::cmp::Reverse(r.revision));
        history
    }

    /// The current revision was tried and undone.
    pub fn current_failed(&self) -> Option<&FailedRevision> {
        self.failed.as_ref().filter(|f| f.revision == self.revision)
    }

    /// The parameters the servers go back to when new ones break them.
    pub fn fallback_parameters(&self) -> BTreeMap<String, String> {
        self.applied
            .as_ref()
            .map(|a| a.parameters.clone())
            .unwrap_or_default()
    }

    /// Records that the servers run `revision`'s parameters well; a failure
    /// of an earlier revision is history then.
    pub fn mark_applied(&mut self, revision: u64, parameters: BTreeMap<String, String>) {
        self.applied = Some(AppliedRevision {
            revision,
            parameters,
        });
        if self.failed.as_ref().is_some_and(|f| f.revision < revision) {
            self.failed = None;
        }
    }

    pub fn revision_status(&self) -> RevisionStatus {
        RevisionStatus {
            applied: self.applied.as_ref().map(|a| a.revision),
            failed: self.failed.clone(),
        }
    }

    /// The phase of a healthy database whose current revision was undone:
    /// which revision, why, and what runs instead.
    pub fn not_applied_phase(&self) -> Option<String> {
        let failed = self.current_failed()?;
        let running = match &self.applied {
            Some(a) => format!("revision {}'s configuration", a.revision),
            None => "pgplane's default configuration".to_owned(),
        };
        Some(format!(
            "revision {} was not applied: {}; running {running}",
            failed.revision, failed.reason
        ))
    }

    pub fn primary(&self) -> Option<&InstanceRecord> {
        self.instances.iter().find(|i| i.ordinal == self.primary)
    }

    /// Standbys by ordinal.
    pub fn standbys(&self) -> Vec<InstanceRecord> {
        let mut s: Vec<_> = self
            .instances
            .iter()
            .filter(|i| i.ordinal != self.primary)
            .cloned()
            .collect();
        s.sort_by_key(|i| i.ordinal);
        s
    }

    /// Counts a start of a stopped instance.
    pub fn count_restart(&mut self, ordinal: u32) {
        *self.restarts.entry(ordinal).or_default() += 1;
    }

    pub fn next_ordinal(&self) -> u32 {
        self.instances.iter().map(|i| i.ordinal).max().unwrap_or(0) + 1
    }
}

/// The passwords a database's servers were made with.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secrets {
    pub superuser: String,
    pub replication: String,
    pub app: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(***)")
    }
}

impl Secrets {
    pub fn generate() -> Secrets {
        Secrets {
            superuser: random_token(32),
            replication: random_token(32),
            app: random_token(32),
        }
    }

    pub fn replication(&self) -> Secret<String> {
        Secret::new(self.replication.clone())
    }
}

/// Paths of one database's files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub name: String,
}

impl Paths {
    pub fn new(root: &Path, name: &str) -> Paths {
        Paths {
            dir: root.join(name),
            name: name.to_owned(),
        }
    }

    pub fn record(&self) -> PathBuf {
        self.dir.join("database.json")
    }

    pub fn secrets(&self) -> PathBuf {
        self.dir.join("secrets.json")
    }

    pub fn instance_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    pub fn instance_dir(&self, ordinal: u32) -> PathBuf {
        self.dir.join(self.instance_name(ordinal))
    }

    pub fn pgdata(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("pgdata")
    }

    pub fn log(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("postgres.log")
    }

    /// Written once a standby's copy is complete and configured.
    pub fn built_marker(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("built")
    }
}

/// The replication slot of a standby on its primary.
pub fn slot_name(ordinal: u32) -> String {
    format!("pgplane_instance_{ordinal}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revision: u64) -> DatabaseRecord {
        let spec = DatabaseSpec {
            name: "cfg".into(),
            postgres_version: 15,
            instances: 1,
            storage: "1Gi".into(),
            parameters: BTreeMap::new(),
            labels: BTreeMap::new(),
        };
        let change = Change::new(crate::model::RevisionKind::Create, "alice", None);
        let mut r = DatabaseRecord::new(spec, &change, 5432);
        r.revision = revision;
        r
    }

    fn failed(revision: u64) -> FailedRevision {
        FailedRevision {
            revision,
            reason: "FATAL: could not access file \"x\": No such file or directory".into(),
            at: Utc::now(),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_phase_names_the_undone_revision_while_it_is_current() {
        let mut r = record(5);
        assert_eq!(r.not_applied_phase(), None);
        r.failed = Some(failed(5));
        assert_eq!(
            r.not_applied_phase().as_deref(),
            Some("revision 5 was not applied: FATAL: could not access file \"x\": No such file or directory; running pgplane's default configuration")
        );
        r.mark_applied(4, params(&[("work_mem", "8MB")]));
        assert_eq!(
            r.not_applied_phase().as_deref(),
            Some("revision 5 was not applied: FATAL: could not access file \"x\": No such file or directory; running revision 4's configuration")
        );
        assert_eq!(r.fallback_parameters(), params(&[("work_mem", "8MB")]));
        // A newer revision is tried afresh: the old failure is no longer the phase.
        r.revision = 6;
        assert_eq!(r.not_applied_phase(), None);
        assert_eq!(r.current_failed(), None);
    }

    #[test]
    fn a_later_applied_revision_clears_an_earlier_failure() {
        let table = [
            // (failed, applied now, failure kept)
            (5, 4, true),
            (5, 5, true),
            (5, 6, false),
        ];
        for (failed_revision, applied, kept) in table {
            let mut r = record(6);
            r.failed = Some(failed(failed_revision));
            r.mark_applied(applied, BTreeMap::new());
            assert_eq!(
                r.failed.is_some(),
                kept,
                "failed {failed_revision}, applied {applied}"
            );
            assert_eq!(r.revision_status().applied, Some(applied));
        }
    }

    #[test]
    fn records_written_before_revision_status_still_load() {
        let mut old = serde_json::to_value(record(3)).expect("serializes");
        let fields = old.as_object_mut().expect("an object");
        for new in ["applied", "configuring", "failed", "history"] {
            fields.remove(new);
        }
        fields.insert("applied_parameters".into(), serde_json::json!({}));
        let r: DatabaseRecord = serde_json::from_value(old).expect("loads");
        assert_eq!(
            r.revision_status(),
            RevisionStatus {
                applied: None,
                failed: None
            }
        );
        assert!(!r.configuring);
        let history = r.history();
        assert_eq!(history.len(), 1, "one made up for the current spec");
        assert_eq!(history[0].revision, 3);
        assert_eq!(history[0].spec, r.spec);
        assert_eq!(history[0].request_id, None);
    }

    #[test]
    fn spec_changes_keep_a_pruned_history_with_the_spec() {
        let mut r = record(1);
        let change = Change::new(crate::model::RevisionKind::Update, "bob", Some("req-1"));
        for n in 2..=5 {
            let spec = r.spec.clone().instances(n);
            r.change_spec(spec, &change, 3);
        }
        assert_eq!(r.revision, 5);
        let numbers: Vec<u64> = r.history.iter().map(|h| h.revision).collect();
        assert_eq!(numbers, [5, 4, 3]);
        assert_eq!(r.history[0].spec, r.spec);
        assert_eq!(r.history[0].changes["instances"], serde_json::json!([4, 5]));
        assert_eq!(r.history[0].request_id.as_deref(), Some("req-1"));
        assert_eq!(r.history[0].by, "bob");
    }
}
