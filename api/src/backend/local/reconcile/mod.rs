//! The reconciler of one local database: drives the servers on disk towards
//! the record (primary, bootstrap, parameters, standbys, deletion), one step
//! at a time, and reports what it sees. Every step is idempotent, so a crash
//! or restart at any point is followed by the same steps again. This module
//! holds the loop, the pass and the decisions of what is pending; each step
//! lives in its own module.
//!
//! It is also the watcher: between passes it waits on the postmasters' exit
//! (pidfds, so a dead instance is seen at once) and looks at every instance
//! twice a second ([`health`]). Each pass observes before it acts, so an
//! instance that died is recorded (`degraded`, or `failing_over` for a lost
//! primary) before it is healed.

mod bootstrap;
mod config_files;
mod deletion;
mod failover;
mod health;
mod parameters;
mod servers;
mod sessions;
mod standbys;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::postgres::{chain, PgError};
use super::record::DatabaseRecord;
use super::{Entry, Inner};
use crate::states::Operation;
pub(super) use deletion::remove_database_dir;
use health::Look;
use sessions::Sessions;
use standbys::Healed;

/// How often the instances are looked at when nothing wakes the reconciler.
const LOOK_EVERY: Duration = Duration::from_millis(500);

enum Outcome {
    /// The pass is done; the last look at the instances.
    Converged(Look),
    Deleted,
}

/// Runs until the database is deleted (or the task is aborted on shutdown).
pub(super) async fn run(inner: Arc<Inner>, entry: Arc<Entry>) {
    let mut sessions = Sessions::default();
    loop {
        let started = Instant::now();
        let outcome = reconcile(&inner, &entry, &mut sessions).await;
        let record = entry.snapshot();
        let (failures, look) = match outcome {
            Ok(Outcome::Deleted) => {
                inner.forget(&entry.paths.name);
                tracing::info!(database = %entry.paths.name, "database deleted");
                return;
            }
            Ok(Outcome::Converged(look)) => {
                entry.observe(&inner, &record, |o| {
                    o.failures = 0;
                    o.error = None;
                    o.operation = None;
                });
                (0, Some(look))
            }
            Err(e) => {
                tracing::warn!(database = %entry.paths.name, error = %chain(&e), "reconcile step failed");
                let mut failures = 0;
                entry.observe(&inner, &record, |o| {
                    o.failures += 1;
                    o.error = Some(chain(&e));
                    failures = o.failures;
                });
                (failures, None)
            }
        };
        inner
            .metrics
            .backend_duration
            .with_label_values(&["reconcile"])
            .observe(started.elapsed().as_secs_f64());
        let pause = if failures == 0 {
            LOOK_EVERY
        } else {
            LOOK_EVERY * 2u32.pow(failures.min(5))
        };
        // The pass's last look knows the postmasters; one that ended since
        // wakes the wait at once (see `exits::first_exit`).
        let pids = match look {
            Some(look) => look.postmasters(),
            None => {
                let mut pids = Vec::new();
                for i in &record.instances {
                    if let Some(pid) =
                        servers::live_postmaster(&entry.paths.pgdata(i.ordinal)).await
                    {
                        pids.push(pid.as_raw());
                    }
                }
                pids
            }
        };
        tokio::select! {
            _ = entry.wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
            _ = super::exits::first_exit(&pids) => {}
        }
    }
}

/// Marks what the reconciler is doing; the state follows.
async fn begin(inner: &Inner, entry: &Entry, operation: Operation) {
    let record = entry.snapshot();
    entry.observe(inner, &record, |o| o.operation = Some(operation));
}

/// One pass: from what is on disk and running towards the record. A
/// steady pass looks at each thing once: what the first look saw stands
/// for as long as nothing was done and the record did not change, and
/// the instances are looked at again only when something was.
async fn reconcile(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    sessions: &mut Sessions,
) -> Result<Outcome, PgError> {
    let record = entry.snapshot();
    if record.deleting {
        entry.observe(inner, &record, |_| {});
        deletion::remove_all(inner, entry, &record).await?;
        return Ok(Outcome::Deleted);
    }
    let mut seen: Option<Seen> = None;
    if !record.bootstrapped {
        begin(inner, entry, Operation::Bootstrapping).await;
        bootstrap::init_primary(inner, entry, &record).await?;
    } else {
        // Look before acting, so what died is recorded before it is healed;
        // an operation the record or the files still ask for (after a
        // restart) goes on.
        let look = health::look_at(entry, &record, sessions).await;
        let wanted = wanted_parameters(&record);
        let files_current = parameters::files_hold(entry, &record, &wanted.parameters).await;
        let instances = look.statuses(entry, &record);
        entry.observe(inner, &record, |o| {
            o.ready = look.ready();
            o.instances = instances;
            o.operation = o.operation.or(pending_operation(&record, files_current));
        });
        seen = Some(Seen {
            record,
            look,
            files_current,
        });
    }
    // Parameters first: a primary that stopped because of new ones is
    // given the last that worked, rather than healed or replaced.
    let record = entry.snapshot();
    let files_current = Seen::still(&seen, &record).map(|s| s.files_current);
    let configured = parameters::step(inner, entry, sessions, &record, files_current).await?;
    if configured {
        seen = None;
    }

    let record = entry.snapshot();
    let primary_seen = Seen::still(&seen, &record).and_then(|s| s.look.server(record.primary));
    if failover::heal_primary(inner, entry, &record, primary_seen).await? {
        seen = None;
    }

    let record = entry.snapshot();
    let added = standbys::scale(inner, entry, &record).await?;

    let record = entry.snapshot();
    let seen_look = Seen::still(&seen, &record).map(|s| &s.look);
    let healed = standbys::heal(inner, entry, &record, seen_look).await?;
    if (added || healed.rebuilt || configured) && !record.standbys().is_empty() {
        standbys::wait_streaming(entry, &record, sessions).await?;
    }
    let look = match seen {
        Some(s) if Arc::ptr_eq(&s.record, &record) && healed == Healed::default() => s.look,
        _ => {
            let look = health::look_at(entry, &record, sessions).await;
            // The steps may have counted restarts in the record since.
            let instances = look.statuses(entry, &entry.snapshot());
            entry.observe(inner, &record, |o| {
                o.ready = look.ready();
                o.instances = instances;
            });
            look
        }
    };
    if !record.created && look.ready() == record.spec.instances {
        entry.update_record(|r| r.created = true).await?;
    }
    Ok(Outcome::Converged(look))
}

/// The first look of a pass, the record it was of and whether the
/// configuration files held the wanted parameters then.
struct Seen {
    /// Every change makes a new record, so the same one is the same pointer.
    record: Arc<DatabaseRecord>,
    look: Look,
    files_current: bool,
}

impl Seen {
    /// What was seen, while it still holds: nothing was done since (the
    /// caller forgets it then) and the record is the one it was of.
    fn still<'a>(seen: &'a Option<Seen>, record: &Arc<DatabaseRecord>) -> Option<&'a Seen> {
        seen.as_ref().filter(|s| Arc::ptr_eq(&s.record, record))
    }
}

/// The parameters the servers should run.
#[derive(Debug, PartialEq, Eq)]
struct Wanted {
    parameters: BTreeMap<String, String>,
    /// The current revision's were tried and undone: these are the last
    /// that worked.
    fallback: bool,
}

/// The spec's parameters, unless the current revision was tried and
/// undone; then the last that worked, so it is not tried again.
fn wanted_parameters(record: &DatabaseRecord) -> Wanted {
    match record.current_failed() {
        None => Wanted {
            parameters: record.spec.parameters.clone(),
            fallback: false,
        },
        Some(_) => Wanted {
            parameters: record.fallback_parameters(),
            fallback: true,
        },
    }
}

/// The operation a record asks for, judged from the record and whether
/// every instance's configuration file holds the wanted parameters.
fn pending_operation(record: &DatabaseRecord, files_current: bool) -> Option<Operation> {
    let have = record.instances.len() as u32;
    if have < record.spec.instances {
        Some(Operation::AddingStandbys)
    } else if have > record.spec.instances {
        Some(Operation::RemovingStandbys)
    } else if !files_current || record.configuring {
        Some(Operation::ApplyingParameters)
    } else {
        None
    }
}

/// A standby rebuilt during `creating` is part of the creation; later, a
/// missing standby is being healed.
fn operation_for_rebuild(record: &DatabaseRecord) -> Operation {
    if record.created {
        Operation::Healing
    } else {
        Operation::AddingStandbys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::record::{AppliedRevision, FailedRevision, InstanceRecord};
    use crate::model::DatabaseSpec;
    use Operation::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A record at revision 1 with one instance, its parameters applied.
    fn record() -> DatabaseRecord {
        let spec = DatabaseSpec {
            name: "cfg".into(),
            postgres_version: 15,
            instances: 1,
            storage: "1Gi".into(),
            parameters: params(&[("work_mem", "8MB")]),
            labels: BTreeMap::new(),
        };
        let change = crate::model::Change::new(crate::model::RevisionKind::Create, "alice", None);
        let mut r = DatabaseRecord::new(spec, &change, 5432);
        r.bootstrapped = true;
        r.created = true;
        r.applied = Some(AppliedRevision {
            revision: 1,
            parameters: params(&[("work_mem", "8MB")]),
        });
        r
    }

    /// Builders, so that the tables read as what each case is.
    trait Case {
        fn wants(self, instances: u32) -> Self;
        fn has(self, instances: u32) -> Self;
        fn asks(self, revision: u64, pairs: &[(&str, &str)]) -> Self;
        fn failed_at(self, revision: u64) -> Self;
        fn configuring(self) -> Self;
    }

    impl Case for DatabaseRecord {
        fn wants(mut self, instances: u32) -> Self {
            self.spec.instances = instances;
            self
        }
        fn has(mut self, instances: u32) -> Self {
            self.instances = (1..=instances)
                .map(|ordinal| InstanceRecord {
                    ordinal,
                    port: 5431 + ordinal as u16,
                })
                .collect();
            self
        }
        fn asks(mut self, revision: u64, pairs: &[(&str, &str)]) -> Self {
            self.revision = revision;
            self.spec.parameters = params(pairs);
            self
        }
        fn failed_at(mut self, revision: u64) -> Self {
            self.failed = Some(FailedRevision {
                revision,
                reason: "FATAL: could not map anonymous shared memory".into(),
                at: chrono::Utc::now(),
            });
            self
        }
        fn configuring(mut self) -> Self {
            self.configuring = true;
            self
        }
    }

    #[test]
    fn pending_operations_table() {
        let table = [
            // (record, files hold the wanted parameters, pending)
            (record(), true, None),
            (record().wants(3), true, Some(AddingStandbys)),
            (record().wants(3), false, Some(AddingStandbys)),
            (record().wants(2).has(3), true, Some(RemovingStandbys)),
            (record().wants(2).has(2), true, None),
            (record(), false, Some(ApplyingParameters)),
            (record().configuring(), true, Some(ApplyingParameters)),
            (
                record().wants(2).has(2).configuring(),
                true,
                Some(ApplyingParameters),
            ),
        ];
        for (r, files_current, want) in table {
            assert_eq!(
                pending_operation(&r, files_current),
                want,
                "instances {}/{}, files current {files_current}, configuring {}",
                r.instances.len(),
                r.spec.instances,
                r.configuring
            );
        }
    }

    #[test]
    fn wanted_parameters_table() {
        let applied = params(&[("work_mem", "8MB")]);
        let asked = params(&[("shared_buffers", "1TB")]);
        let table = [
            // (record, wanted parameters, fallback)
            (record(), applied.clone(), false),
            (
                record().asks(2, &[("shared_buffers", "1TB")]),
                asked.clone(),
                false,
            ),
            (
                record().asks(2, &[("shared_buffers", "1TB")]).failed_at(2),
                applied.clone(),
                true,
            ),
            // A later revision is tried afresh, even with the same parameters.
            (
                record().asks(3, &[("shared_buffers", "1TB")]).failed_at(2),
                asked.clone(),
                false,
            ),
            // A revision that failed before anything was applied falls back
            // to pgplane's defaults.
            (
                {
                    let mut r = record().asks(1, &[("shared_buffers", "1TB")]).failed_at(1);
                    r.applied = None;
                    r
                },
                BTreeMap::new(),
                true,
            ),
        ];
        for (r, parameters, fallback) in table {
            assert_eq!(
                wanted_parameters(&r),
                Wanted {
                    parameters,
                    fallback
                },
                "revision {}, failed {:?}",
                r.revision,
                r.failed.as_ref().map(|f| f.revision)
            );
        }
    }

    #[test]
    fn a_rebuild_is_part_of_creating_until_the_database_was_created() {
        let mut r = record();
        assert_eq!(operation_for_rebuild(&r), Healing);
        r.created = false;
        assert_eq!(operation_for_rebuild(&r), AddingStandbys);
    }
}
