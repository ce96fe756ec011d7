//! The local backend: real PostgreSQL servers on this host, one primary and
//! `instances - 1` streaming standbys per database, each with its own port
//! and data directory under `PGPLANE_DATA_DIR/databases`.
//!
//! API calls only change the record on disk (durably, before answering) and
//! wake the database's reconciler ([`reconcile`]), which does the slow work
//! in the background and reports what it sees. Records on disk are the
//! truth: a new start reads them all and reconciles each database again.
//! A database is `healthy` only when a client can use every instance (see
//! `reconcile::health`); parameters that break it are undone, and
//! [`LocalBackend::revision_status`] tells which revision runs and which
//! failed.

mod exits;
mod postgres;
mod reconcile;
mod record;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::feed::Feed;
use super::{Backend, BackendError, DeleteOutcome};
use crate::files;
use crate::metrics::Metrics;
use crate::model::{
    Change, Credentials, Database, DatabaseSpec, Endpoints, FieldError, InstanceStatus, Invalid,
    Revision, Source, State, UndoneChange,
};
use crate::records::{Events, ServiceEvent};
use crate::states::{local_state, LocalObservation, Operation};
pub use postgres::{PgError, Postgres};
use record::{DatabaseRecord, Paths, Secrets};
pub use record::{FailedRevision, RevisionStatus};

/// Where the servers listen; they are reachable from this host only.
const HOST: &str = "127.0.0.1";

pub struct LocalBackend {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    /// An empty configuration directory for checking parameters.
    probe: PathBuf,
    pg: Postgres,
    max_instances: u32,
    /// Revisions kept per database (`PGPLANE_REVISION_HISTORY`).
    history: u32,
    metrics: Arc<Metrics>,
    events: Arc<Events>,
    feed: Arc<Feed>,
    /// Held while this process serves the data directory (see [`lock_data_dir`]).
    lock: Mutex<Option<std::fs::File>>,
    databases: RwLock<BTreeMap<String, Arc<Entry>>>,
    /// Serializes creates and deletes, so a name check and its insert are one step.
    admission: tokio::sync::Mutex<()>,
    ports: Mutex<HashSet<u16>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// One database: its record, its secrets and what its reconciler last saw.
struct Entry {
    paths: Paths,
    /// The record as it is on disk. Held only to read or swap it, never
    /// across a write to disk: reads never wait on the disk, and what is
    /// published to the feed is always the current record. Shared, so a
    /// look at it costs no copy (the watcher looks several times a pass),
    /// and a new one on every change, so "the same record" is the same
    /// pointer.
    record: Mutex<Arc<DatabaseRecord>>,
    /// Serializes the changes of the record: held across the write to disk.
    writing: tokio::sync::Mutex<()>,
    secrets: Secrets,
    observed: Mutex<Observed>,
    wake: Notify,
    feed: Arc<Feed>,
}

/// What the reconciler last saw and is doing; the state follows from it
/// and the record by [`local_state`].
#[derive(Debug, Clone)]
struct Observed {
    state: State,
    phase: String,
    ready: u32,
    /// Every instance as the last look saw it.
    instances: Vec<InstanceStatus>,
    operation: Option<Operation>,
    failures: u32,
    /// The last failed step, shown in the phase once the database is `failed`.
    error: Option<String>,
}

impl LocalBackend {
    /// Finds PostgreSQL, prepares the data directory, reads every database
    /// recorded there and starts reconciling each.
    pub async fn start(
        data_dir: &Path,
        bindir: Option<&Path>,
        pg_user: &str,
        max_instances: u32,
        history: u32,
        metrics: Arc<Metrics>,
        events: Arc<Events>,
    ) -> Result<LocalBackend, PgError> {
        let root = data_dir.join("databases");
        let lock = {
            let (data_dir, root) = (data_dir.to_path_buf(), root.clone());
            tokio::task::spawn_blocking(move || prepare_data_dir(&data_dir, &root))
                .await
                .map_err(PgError::Task)??
        };
        let pg = Postgres::discover(bindir, pg_user).await?;
        pg.check_reachable(&root).await?;
        let probe = data_dir.join("probe");
        make_probe(&pg, &probe).await?;
        let (records, orphans) = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || load_records(&root))
                .await
                .map_err(PgError::Task)??
        };
        for dir in orphans {
            tracing::warn!(dir = %dir.display(), "removing a database directory without a record");
            if let Err(e) = reconcile::remove_database_dir(&dir).await {
                // Tried again on the next start; the name stays taken meanwhile.
                tracing::warn!(dir = %dir.display(), error = %postgres::chain(&e), "cannot remove a database directory without a record");
            }
        }
        let inner = Arc::new(Inner {
            root,
            probe,
            pg,
            max_instances,
            history,
            metrics,
            events,
            feed: Arc::new(Feed::default()),
            lock: Mutex::new(Some(lock)),
            databases: RwLock::new(BTreeMap::new()),
            admission: tokio::sync::Mutex::new(()),
            ports: Mutex::new(HashSet::new()),
            tasks: Mutex::new(Vec::new()),
        });
        for (record, secrets) in records {
            let paths = Paths::new(&inner.root, &record.spec.name);
            inner
                .ports
                .lock()
                .expect("not poisoned")
                .extend(record.instances.iter().map(|i| i.port));
            // The state last recorded, so that a restart does not record
            // again a transition it recorded before.
            let state = inner
                .events
                .last_state(&record.spec.name)
                .unwrap_or(State::Unknown);
            inner.adopt(paths, record, secrets, state, "Checking instances");
        }
        Ok(LocalBackend { inner })
    }

    /// Which revision of a database's spec its servers run, and the latest
    /// that failed and was undone, with why: for a revision history.
    pub async fn revision_status(&self, name: &str) -> Result<RevisionStatus, BackendError> {
        let e = self
            .inner
            .entry(name)
            .ok_or_else(|| BackendError::NotFound(name.into()))?;
        let status = e.snapshot().revision_status();
        Ok(status)
    }

    /// The PostgreSQL major version of the binaries in use.
    pub fn postgres_major(&self) -> u32 {
        self.inner.pg.major
    }

    /// Stops the reconcilers (the servers keep running, by design) and
    /// lets another pgplane serve the data directory.
    pub fn shutdown(&self) {
        for task in self.inner.tasks.lock().expect("not poisoned").drain(..) {
            task.abort();
        }
        self.inner.lock.lock().expect("not poisoned").take();
    }
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn adopt(
        self: &Arc<Self>,
        paths: Paths,
        record: DatabaseRecord,
        secrets: Secrets,
        state: State,
        phase: &str,
    ) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            paths,
            observed: Mutex::new(Observed {
                state,
                phase: phase.into(),
                ready: 0,
                instances: Vec::new(),
                operation: None,
                failures: 0,
                error: None,
            }),
            record: Mutex::new(Arc::new(record.clone())),
            writing: tokio::sync::Mutex::new(()),
            secrets,
            wake: Notify::new(),
            feed: self.feed.clone(),
        });
        entry.publish();
        self.databases
            .write()
            .expect("not poisoned")
            .insert(record.spec.name.clone(), entry.clone());
        let task = tokio::spawn(reconcile::run(self.clone(), entry.clone()));
        self.tasks
            .lock()
            .expect("not poisoned")
            .push(task.abort_handle());
        self.refresh_state_counts();
        entry
    }

    fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        self.databases
            .read()
            .expect("not poisoned")
            .get(name)
            .cloned()
    }

    fn forget(&self, name: &str) {
        self.databases.write().expect("not poisoned").remove(name);
        self.feed.remove(name);
        self.refresh_state_counts();
    }

    fn refresh_state_counts(&self) {
        let states: Vec<State> = self
            .databases
            .read()
            .expect("not poisoned")
            .values()
            .map(|e| e.observed.lock().expect("not poisoned").state)
            .collect();
        self.metrics.set_database_counts(states);
    }

    /// A free loopback port no other instance has been given.
    fn allocate_port(&self) -> Result<u16, PgError> {
        let mut ports = self.ports.lock().expect("not poisoned");
        for _ in 0..100 {
            let port = std::net::TcpListener::bind((HOST, 0))
                .and_then(|l| l.local_addr())
                .map_err(PgError::Port)?
                .port();
            if ports.insert(port) {
                return Ok(port);
            }
        }
        Err(PgError::NoFreePort)
    }

    fn free_port(&self, port: u16) {
        self.ports.lock().expect("not poisoned").remove(&port);
    }

    /// Instances wanted over every database but `except`.
    async fn instances_wanted(&self, except: &str) -> u32 {
        let entries: Vec<_> = self
            .databases
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        let mut total = 0;
        for e in entries {
            let r = e.snapshot();
            if !r.deleting && r.spec.name != except {
                total += r.spec.instances;
            }
        }
        total
    }

    async fn check_quota(&self, name: &str, instances: u32) -> Result<(), BackendError> {
        let others = self.instances_wanted(name).await;
        if others + instances > self.max_instances {
            return Err(BackendError::QuotaExceeded(format!(
                "this would run {} PostgreSQL instances; this installation allows {} (PGPLANE_MAX_INSTANCES)",
                others + instances,
                self.max_instances
            )));
        }
        Ok(())
    }
}

impl Entry {
    fn observed(&self) -> Observed {
        self.observed.lock().expect("not poisoned").clone()
    }

    /// The record as it is now.
    fn snapshot(&self) -> Arc<DatabaseRecord> {
        self.record.lock().expect("not poisoned").clone()
    }

    /// Changes the record durably: on disk first, then in memory, so that
    /// a failed write changes neither. Returns the new record.
    async fn update_record(
        &self,
        change: impl FnOnce(&mut DatabaseRecord),
    ) -> Result<Arc<DatabaseRecord>, PgError> {
        let _writing = self.writing.lock().await;
        let mut next = DatabaseRecord::clone(&self.snapshot());
        change(&mut next);
        self.persist(&next).await?;
        Ok(self.replace(next))
    }

    /// Makes `next`, written to disk already, the record, and shows it.
    /// The caller holds `writing`.
    fn replace(&self, next: DatabaseRecord) -> Arc<DatabaseRecord> {
        let next = Arc::new(next);
        *self.record.lock().expect("not poisoned") = next.clone();
        self.publish();
        next
    }

    /// Shows the database as it is now to the feed's subscribers.
    fn publish(&self) {
        let view = self.view(&self.snapshot());
        self.feed.publish(view);
    }

    /// Changes what is observed, derives the state from it and the record,
    /// and records a service event when the state changed (and only then).
    fn observe(&self, inner: &Inner, record: &DatabaseRecord, change: impl FnOnce(&mut Observed)) {
        let transition = {
            let mut o = self.observed.lock().expect("not poisoned");
            change(&mut o);
            let (state, phase) = local_state(&LocalObservation {
                deleting: record.deleting,
                created: record.created,
                operation: o.operation,
                failures: o.failures,
                wanted: record.spec.instances,
                ready: o.ready,
            });
            o.phase = match (&o.error, state) {
                (Some(e), State::Failed) => format!("{phase}: {e}"),
                // Healthy, on the configuration of an earlier revision.
                (_, State::Healthy) => record
                    .not_applied_phase()
                    .unwrap_or_else(|| phase.to_owned()),
                _ => phase.to_owned(),
            };
            let from = std::mem::replace(&mut o.state, state);
            (from != state).then(|| {
                ServiceEvent::new(
                    &self.paths.name,
                    from,
                    state,
                    &o.phase,
                    o.ready,
                    record.spec.instances,
                )
            })
        };
        if let Some(event) = transition {
            inner.events.record(event);
            inner.refresh_state_counts();
        }
        self.publish();
    }

    fn view(&self, r: &DatabaseRecord) -> Database {
        let o = self.observed();
        let port_of = |i: &record::InstanceRecord| format!("{HOST}:{}", i.port);
        let primary = r.primary();
        Database {
            name: r.spec.name.clone(),
            postgres_version: r.spec.postgres_version,
            instances: r.spec.instances,
            storage: r.spec.storage.clone(),
            parameters: r.spec.parameters.clone(),
            labels: r.spec.labels.clone(),
            owner: r.owner.clone(),
            state: o.state,
            phase: o.phase,
            ready_instances: o.ready,
            primary: primary.map(|p| self.paths.instance_name(p.ordinal)),
            endpoints: primary.map(|p| Endpoints {
                read_write: port_of(p),
                read_only: r.standbys().first().map_or_else(|| port_of(p), port_of),
            }),
            revision: r.revision,
            created_at: r.created_at,
            updated_at: r.updated_at,
            undone: r.failed.as_ref().map(|f| UndoneChange {
                revision: f.revision,
                reason: f.reason.clone(),
                at: f.at,
            }),
            instances_status: o.instances,
            source: Source::Api,
            declared_in: None,
        }
    }

    async fn persist(&self, record: &DatabaseRecord) -> Result<(), PgError> {
        let text = serde_json::to_vec_pretty(record).expect("a record always serializes");
        let path = self.paths.record();
        tokio::task::spawn_blocking(move || {
            files::replace(&path, &text, 0o600).map_err(PgError::file("write", &path))
        })
        .await
        .map_err(PgError::Task)?
    }
}

#[async_trait]
impl Backend for LocalBackend {
    async fn list(&self) -> Result<Vec<Database>, BackendError> {
        let entries: Vec<_> = self
            .inner
            .databases
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            out.push(e.view(&e.snapshot()));
        }
        Ok(out)
    }

    async fn get(&self, name: &str) -> Result<Database, BackendError> {
        let e = self
            .inner
            .entry(name)
            .ok_or_else(|| BackendError::NotFound(name.into()))?;
        Ok(e.view(&e.snapshot()))
    }

    async fn validate(&self, spec: &DatabaseSpec) -> Result<(), BackendError> {
        let refused = self
            .inner
            .pg
            .check_parameters(&self.inner.probe, &spec.parameters)
            .await
            .map_err(|e| BackendError::unavailable_by("cannot check parameters", e))?;
        if refused.is_empty() {
            return Ok(());
        }
        Err(BackendError::Invalid(Invalid(
            refused
                .into_iter()
                .map(|(name, reason)| FieldError::new(format!("parameters.{name}"), reason))
                .collect(),
        )))
    }

    async fn create(&self, spec: DatabaseSpec, change: &Change) -> Result<Database, BackendError> {
        let inner = &self.inner;
        let _admission = inner.admission.lock().await;
        if let Some(existing) = inner.entry(&spec.name) {
            let deleting = existing.snapshot().deleting;
            return Err(if deleting {
                BackendError::Busy(format!(
                    "database {} is still being deleted; try again shortly",
                    spec.name
                ))
            } else {
                BackendError::AlreadyExists(spec.name.clone())
            });
        }
        inner.check_quota(&spec.name, spec.instances).await?;
        let paths = Paths::new(&inner.root, &spec.name);
        let port = inner
            .allocate_port()
            .map_err(|e| BackendError::unavailable_by("no port is free for the database", e))?;
        let record = DatabaseRecord::new(spec, change, port);
        let secrets = Secrets::generate();
        let written = {
            let (paths, record, secrets) = (paths.clone(), record.clone(), secrets.clone());
            tokio::task::spawn_blocking(move || write_new(&paths, &record, &secrets))
                .await
                .map_err(|e| BackendError::internal("the record writer panicked", e))?
        };
        if let Err(e) = written {
            inner.free_port(port);
            let _ = tokio::fs::remove_dir_all(&paths.dir).await;
            return Err(BackendError::unavailable_by(
                "cannot record the database",
                e,
            ));
        }
        let entry = inner.adopt(
            paths,
            record,
            secrets,
            State::Creating,
            "Setting up primary",
        );
        Ok(entry.view(&entry.snapshot()))
    }

    async fn update(
        &self,
        spec: DatabaseSpec,
        expected_revision: u64,
        change: &Change,
    ) -> Result<Database, BackendError> {
        let e = self
            .inner
            .entry(&spec.name)
            .ok_or_else(|| BackendError::NotFound(spec.name.clone()))?;
        if spec.instances > e.snapshot().spec.instances {
            self.inner.check_quota(&spec.name, spec.instances).await?;
        }
        let _writing = e.writing.lock().await;
        let r = e.snapshot();
        if r.deleting {
            return Err(BackendError::Busy(format!(
                "database {} is being deleted",
                spec.name
            )));
        }
        if r.revision != expected_revision {
            return Err(BackendError::RevisionMismatch {
                expected: expected_revision,
                current: r.revision,
            });
        }
        if r.spec != spec || change.always_recorded() {
            // The state shows the operation at once; the reconciler takes it from here.
            let operation = if spec.instances > r.spec.instances {
                Some(Operation::AddingStandbys)
            } else if spec.instances < r.spec.instances {
                Some(Operation::RemovingStandbys)
            } else if spec.parameters != r.spec.parameters {
                Some(Operation::ApplyingParameters)
            } else {
                None
            };
            let mut next = DatabaseRecord::clone(&r);
            next.change_spec(spec, change, self.inner.history);
            e.persist(&next)
                .await
                .map_err(|e| BackendError::unavailable_by("cannot write the database record", e))?;
            let next = e.replace(next);
            if operation.is_some() {
                e.observe(&self.inner, &next, |o| o.operation = operation);
            }
            e.wake.notify_one();
        }
        Ok(e.view(&e.snapshot()))
    }

    async fn revisions(&self, name: &str) -> Result<Vec<Revision>, BackendError> {
        let e = self
            .inner
            .entry(name)
            .ok_or_else(|| BackendError::NotFound(name.into()))?;
        let history = e.snapshot().history();
        Ok(history)
    }

    async fn delete(&self, name: &str) -> Result<DeleteOutcome, BackendError> {
        let _admission = self.inner.admission.lock().await;
        let Some(e) = self.inner.entry(name) else {
            return Ok(DeleteOutcome::AlreadyGone);
        };
        let _writing = e.writing.lock().await;
        let r = e.snapshot();
        if !r.deleting {
            let mut next = DatabaseRecord::clone(&r);
            next.deleting = true;
            next.updated_at = Utc::now();
            e.persist(&next)
                .await
                .map_err(|e| BackendError::unavailable_by("cannot write the database record", e))?;
            let next = e.replace(next);
            e.observe(&self.inner, &next, |_| {});
            e.wake.notify_one();
        }
        Ok(DeleteOutcome::Started)
    }

    async fn credentials(&self, name: &str) -> Result<Credentials, BackendError> {
        let e = self
            .inner
            .entry(name)
            .ok_or_else(|| BackendError::NotFound(name.into()))?;
        let r = e.snapshot();
        let primary = r
            .primary()
            .ok_or_else(|| BackendError::Busy(format!("database {name} has no primary yet")))?;
        Ok(Credentials::new(
            "app",
            &e.secrets.app,
            HOST,
            primary.port,
            "app",
        ))
    }

    async fn ready(&self) -> Result<(), String> {
        match tokio::fs::metadata(&self.inner.root).await {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("data directory unusable: {e}")),
        }
    }

    fn feed(&self) -> &Feed {
        &self.inner.feed
    }

    fn shutdown(&self) {
        LocalBackend::shutdown(self);
    }
}

/// Locks the data directory (see [`lock_data_dir`]) and makes the
/// directories the backend needs. Blocking: run at start-up, off the
/// runtime's threads.
fn prepare_data_dir(data_dir: &Path, root: &Path) -> Result<std::fs::File, PgError> {
    let lock = lock_data_dir(data_dir)?;
    for dir in [data_dir, root] {
        std::fs::create_dir_all(dir).map_err(|e| {
            PgError::setting(
                "PGPLANE_DATA_DIR",
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        // The PostgreSQL account must pass through, but not list.
        set_mode(dir, 0o711)?;
    }
    Ok(lock)
}

/// Takes an exclusive lock on `<data_dir>/pgplane.lock` for as long as the
/// file stays open: two pgplanes reconciling the same databases would fight.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, PgError> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let bad = |reason: String| PgError::setting("PGPLANE_DATA_DIR", reason);
    std::fs::create_dir_all(data_dir)
        .map_err(|e| bad(format!("cannot create {}: {e}", data_dir.display())))?;
    let path = data_dir.join("pgplane.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| bad(format!("cannot open {}: {e}", path.display())))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| bad(format!("cannot make {} private: {e}", path.display())))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(bad(format!(
            "another pgplane (pid {}) is serving {}; stop it first",
            holder.trim(),
            data_dir.display()
        )));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

/// The directory [`Postgres::check_parameters`] points `postgres -C` at.
async fn make_probe(pg: &Postgres, probe: &Path) -> Result<(), PgError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::create_dir_all(probe)
        .await
        .map_err(PgError::file("create", probe))?;
    tokio::fs::set_permissions(probe, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(PgError::file("set the permissions of", probe))?;
    let conf = probe.join("postgresql.conf");
    let written = {
        let conf = conf.clone();
        tokio::task::spawn_blocking(move || {
            files::replace(
                &conf,
                b"# Empty: pgplane checks parameters against PostgreSQL's defaults here.\n",
                0o600,
            )
        })
        .await
        .map_err(PgError::Task)?
    };
    written.map_err(PgError::file("write", &conf))?;
    pg.give(probe).await?;
    pg.give(&conf).await
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PgError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        PgError::setting(
            "PGPLANE_DATA_DIR",
            format!("cannot set permissions of {}: {e}", path.display()),
        )
    })
}

/// Writes a new database's directory: secrets first, then the record, whose
/// appearance is the moment the database exists. Blocking.
fn write_new(paths: &Paths, record: &DatabaseRecord, secrets: &Secrets) -> std::io::Result<()> {
    std::fs::create_dir(&paths.dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&paths.dir, std::fs::Permissions::from_mode(0o711))?;
    files::write_private(
        &paths.secrets(),
        &serde_json::to_vec(secrets).expect("secrets serialize"),
    )?;
    files::replace(
        &paths.record(),
        &serde_json::to_vec_pretty(record).expect("records serialize"),
        0o600,
    )
}

/// Every database recorded under `root`, and the directories without a
/// record: what a crash in the middle of a create left behind, for the
/// caller to remove. Blocking: run at start-up, off the runtime's threads.
#[allow(clippy::type_complexity)]
fn load_records(root: &Path) -> Result<(Vec<(DatabaseRecord, Secrets)>, Vec<PathBuf>), PgError> {
    let mut records = Vec::new();
    let mut orphans = Vec::new();
    let list = PgError::file("list", root);
    for dirent in std::fs::read_dir(root).map_err(list)? {
        let dir = dirent.map_err(PgError::file("list", root))?.path();
        if !dir.is_dir() {
            continue;
        }
        let record_path = dir.join("database.json");
        let text = match std::fs::read(&record_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                orphans.push(dir);
                continue;
            }
            Err(e) => return Err(PgError::file("read", &record_path)(e)),
        };
        let record: DatabaseRecord = serde_json::from_slice(&text).map_err(|e| {
            PgError::setting(
                "PGPLANE_DATA_DIR",
                format!("{} is not a database record: {e}", record_path.display()),
            )
        })?;
        let secrets_path = dir.join("secrets.json");
        let text = std::fs::read(&secrets_path).map_err(PgError::file("read", &secrets_path))?;
        let secrets: Secrets = serde_json::from_slice(&text).map_err(|e| {
            PgError::setting(
                "PGPLANE_DATA_DIR",
                format!("{} is unreadable: {e}", secrets_path.display()),
            )
        })?;
        records.push((record, secrets));
    }
    Ok((records, orphans))
}
