//! The kubernetes backend: one CloudNativePG `Cluster` per database in
//! `PGPLANE_NAMESPACE`, labelled `app.kubernetes.io/managed-by=pgplane`.
//!
//! - Reads come from reflector stores fed by the watches of [`watch`]; no
//!   read of the API costs a request to the API server, except credentials,
//!   which are read from the `<name>-app` Secret when asked and not kept.
//! - Writes are server-side applies with field manager `pgplane` of the
//!   object [`cluster::render`] makes, so pgplane owns only the fields it
//!   sets. A write returns once the cache shows it (read your writes).
//! - Clusters without the label are never listed, changed or deleted; a
//!   create of a name such a Cluster holds is refused.
//! - Each database's revisions are `ControllerRevision`s of its Cluster
//!   ([`history`]), read by a labelled list when asked (rare reads of a
//!   bounded history: not worth a watch and every replica's memory).
//! - The permissions used are declared in [`rbac`]; readiness checks them.

mod adoption;
pub mod cluster;
pub mod history;
pub mod rbac;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Config};
use tokio::task::AbortHandle;

use super::{Adopted, Backend, BackendError, DeleteOutcome, Feed};
use crate::config::SettingError;
use crate::metrics::Metrics;
use crate::model::paging::{ListQuery, Page};
use crate::model::revision::prune;
use crate::model::{Change, Credentials, Database, DatabaseSpec, Endpoints, Revision, Source};
use crate::records::Events;
use crate::states::{cnpg_state, CnpgObservation};
use cluster::{Cluster, Stamp};
use watch::{Observed, Watched};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "pgplane";
/// How long a write waits for the watch to bring its result into the cache.
const CACHE_WAIT: Duration = Duration::from_secs(5);
/// How often the permissions are checked again.
const RBAC_RECHECK: Duration = Duration::from_secs(60);
/// PostgreSQL's port on CNPG's Services when a Service does not say.
const DEFAULT_PORT: i32 = 5432;
/// A revision object older than this whose Cluster never reached its
/// revision was left by a writer that died between the two writes (both
/// take seconds at most): it may be replaced.
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// What the kubernetes backend needs from the settings.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub namespace: String,
    /// A kubeconfig file; `None`: in-cluster, or `KUBECONFIG`/`~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Revisions kept per database (`PGPLANE_REVISION_HISTORY`).
    pub revision_history: u32,
}

pub struct KubeBackend {
    shared: Arc<Shared>,
    /// For writes, Secrets and access reviews: with timeouts (the watch
    /// client has none, its streams are long).
    client: Client,
    clusters: Api<Cluster>,
    revisions: Api<ControllerRevision>,
    history: u32,
    /// Serializes creates and deletes in this process.
    admission: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// What the watch tasks and the request handlers share.
pub struct Shared {
    pub namespace: String,
    server: String,
    clusters: Store<Cluster>,
    services: Store<Service>,
    observed: RwLock<HashMap<String, Observed>>,
    health: Mutex<Health>,
    /// Ticks after every watch event the stores applied.
    changed: tokio::sync::watch::Sender<u64>,
    feed: Feed,
    events: Arc<Events>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Health {
    clusters_synced: bool,
    services_synced: bool,
    clusters_error: Option<String>,
    services_error: Option<String>,
    /// Permissions the access reviews found missing; `None` before the first check.
    missing: Option<Vec<String>>,
    review_error: Option<String>,
}

impl KubeBackend {
    /// Reads the client configuration and starts the watches. Does not wait
    /// for the API server: `/readyz` says when the first list is in.
    pub async fn start(
        settings: &KubeSettings,
        metrics: Arc<Metrics>,
        events: Arc<Events>,
    ) -> Result<KubeBackend, SettingError> {
        let config = match &settings.kubeconfig {
            Some(path) => {
                let bad = |e: String| SettingError {
                    var: "PGPLANE_KUBECONFIG",
                    reason: format!("{}: {e}", path.display()),
                };
                let kubeconfig =
                    kube::config::Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
                Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .map_err(|e| bad(e.to_string()))?
            }
            None => Config::infer().await.map_err(|e| SettingError {
                var: "PGPLANE_KUBECONFIG",
                reason: format!(
                    "not set, and neither an in-cluster service account nor a kubeconfig was found: {e}"
                ),
            })?,
        };
        let server = config.cluster_url.to_string();
        let client_error = |e: kube::Error| SettingError {
            var: "PGPLANE_KUBECONFIG",
            reason: format!("cannot make a client for {server}: {e}"),
        };
        let watch_client = Client::try_from(config.clone()).map_err(client_error)?;
        let mut write_config = config;
        write_config.connect_timeout = Some(Duration::from_secs(5));
        write_config.read_timeout = Some(Duration::from_secs(15));
        write_config.reset_reader_on_write = true;
        let client = Client::try_from(write_config).map_err(client_error)?;

        let (cluster_store, cluster_writer) = reflector::store::<Cluster>();
        let (service_store, service_writer) = reflector::store::<Service>();
        let shared = Arc::new(Shared {
            namespace: settings.namespace.clone(),
            server,
            clusters: cluster_store,
            services: service_store,
            observed: RwLock::new(HashMap::new()),
            health: Mutex::new(Health::default()),
            changed: tokio::sync::watch::channel(0).0,
            feed: Feed::default(),
            events,
            metrics,
        });
        let recorder = Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER));
        let tasks = vec![
            tokio::spawn(watch::clusters(
                shared.clone(),
                watch_client.clone(),
                cluster_writer,
                recorder,
            ))
            .abort_handle(),
            tokio::spawn(watch::services(
                shared.clone(),
                watch_client,
                service_writer,
            ))
            .abort_handle(),
            tokio::spawn(review_permissions(shared.clone(), client.clone())).abort_handle(),
        ];
        Ok(KubeBackend {
            clusters: Api::namespaced(client.clone(), &settings.namespace),
            revisions: Api::namespaced(client.clone(), &settings.namespace),
            history: settings.revision_history.max(1),
            shared,
            client,
            admission: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(tasks),
        })
    }

    /// The managed Cluster of this name in the cache.
    fn cached(&self, name: &str) -> Option<Arc<Cluster>> {
        self.shared
            .clusters
            .get(&ObjectRef::new(name).within(&self.shared.namespace))
    }

    /// Refuses work until both watches have listed once.
    fn require_synced(&self) -> Result<(), BackendError> {
        let h = self.shared.health.lock().expect("not poisoned");
        if h.clusters_synced && h.services_synced {
            return Ok(());
        }
        Err(BackendError::unavailable(format!(
            "the cache of Clusters is not filled yet: {}",
            h.clusters_error
                .as_deref()
                .or(h.services_error.as_deref())
                .unwrap_or("waiting for the first list")
        )))
    }

    fn view(&self, c: &Cluster) -> Database {
        self.shared.view(c)
    }

    /// Waits (bounded) until the cache shows the Cluster `name` in a state
    /// `done` accepts, so that a read right after a write sees the write.
    async fn wait_for_cache(&self, name: &str, done: impl Fn(Option<&Cluster>) -> bool) {
        let mut ticks = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + CACHE_WAIT;
        loop {
            if done(self.cached(name).as_deref()) {
                return;
            }
            match tokio::time::timeout_at(deadline, ticks.changed()).await {
                Ok(Ok(())) => continue,
                _ => {
                    tracing::warn!(database = %name, "the watch did not bring a write into the cache in time");
                    return;
                }
            }
        }
    }

    /// Applies `object` (server-side, field manager `pgplane`) and waits
    /// until the cache has the result.
    async fn apply(&self, object: &Cluster, force: bool) -> Result<Cluster, kube::Error> {
        let name = object.metadata.name.clone().unwrap_or_default();
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = force;
        let applied = self
            .clusters
            .patch(&name, &params, &Patch::Apply(object))
            .await?;
        let rv = applied.metadata.resource_version.clone();
        self.wait_for_cache(&name, |c| {
            c.is_some_and(|c| at_least(c.metadata.resource_version.as_deref(), rv.as_deref()))
        })
        .await;
        Ok(applied)
    }

    /// The revision objects labelled for database `name`, of any Cluster
    /// that had the name.
    async fn revision_objects(&self, name: &str) -> Result<Vec<ControllerRevision>, BackendError> {
        let params = ListParams::default().labels(&history::selector(name));
        match self.revisions.list(&params).await {
            Ok(list) => Ok(list.items),
            Err(e) => Err(write_error(e, name)),
        }
    }

    /// The kept history of `cluster`, newest first: its own revision
    /// objects (a former Cluster of the name owns the others) up to its
    /// revision (a later one is a write under way or abandoned), and one
    /// made up for its current spec when it has none (made before
    /// histories, or a create whose writer died after the Cluster).
    async fn history_of(&self, cluster: &Cluster) -> Result<Vec<Revision>, BackendError> {
        let name = cluster.metadata.name.clone().unwrap_or_default();
        let uid = cluster.metadata.uid.as_deref();
        let current = cluster::revision_of(cluster);
        let mut kept: Vec<Revision> = self
            .revision_objects(&name)
            .await?
            .iter()
            .filter(|o| history::owner_uid(o) == uid)
            .filter_map(history::revision_of)
            .filter(|r| r.revision <= current)
            .collect();
        if !kept.iter().any(|r| r.revision == current) {
            let db = self.view(cluster);
            kept.push(Revision::synthetic(
                current,
                &cluster::spec_of(cluster),
                &db.owner,
                db.updated_at,
            ));
        }
        prune(&mut kept, self.history);
        Ok(kept)
    }

    /// Deletes one revision object, only that very one (its uid).
    async fn delete_revision_object(&self, object: &ControllerRevision) -> Result<(), kube::Error> {
        let name = object.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: object.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.revisions.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the object of `revision` for `cluster`. `Ok(None)` when
    /// another writer holds that revision's name (it made the revision, or
    /// is making it). An object of the name left by a former Cluster, or
    /// abandoned by a writer that died, is replaced.
    async fn make_revision(
        &self,
        cluster: &Cluster,
        revision: &Revision,
    ) -> Result<Option<ControllerRevision>, BackendError> {
        let name = cluster.metadata.name.clone().unwrap_or_default();
        let object = history::render(revision, cluster, &self.shared.namespace);
        for attempt in 0..2 {
            match self.revisions.create(&PostParams::default(), &object).await {
                Ok(made) => return Ok(Some(made)),
                Err(kube::Error::Api(s)) if s.code == 409 && attempt == 0 => {
                    let existing = self
                        .revision_objects(&name)
                        .await?
                        .into_iter()
                        .find(|o| o.metadata.name == object.metadata.name);
                    let Some(existing) = existing else {
                        continue;
                    };
                    if history::owner_uid(&existing) == cluster.metadata.uid.as_deref() {
                        let old = existing
                            .metadata
                            .creation_timestamp
                            .as_ref()
                            .is_some_and(|t| Utc::now() - cluster::to_chrono(t) > ABANDONED_AFTER);
                        if !old {
                            return Ok(None);
                        }
                        match self.clusters.get_opt(&name).await {
                            Ok(Some(live)) if cluster::revision_of(&live) < revision.revision => {}
                            Ok(_) => return Ok(None),
                            Err(e) => return Err(write_error(e, &name)),
                        }
                    }
                    self.delete_revision_object(&existing)
                        .await
                        .map_err(|e| write_error(e, &name))?;
                }
                Err(e) => return Err(write_error(e, &name)),
            }
        }
        Ok(None)
    }

    /// Removes a revision object a failed change made, so the history holds
    /// only accepted changes; one that cannot be removed is ignored by
    /// reads (it is after the Cluster's revision) and replaced later.
    async fn unmake_revision(&self, object: &ControllerRevision) {
        if let Err(e) = self.delete_revision_object(object).await {
            tracing::warn!(revision = ?object.metadata.name, error = %crate::chain::chain(&e),
                "cannot remove the revision object of a change that failed");
        }
    }

    /// Deletes the revision objects of `name` that are beyond the history
    /// depth, or owned by `uid` when the Cluster is going (`all`). A failure
    /// is logged: reads prune to the depth anyway, and the next change
    /// tries again.
    async fn prune_objects(&self, name: &str, uid: Option<&str>, newest: u64, all: bool) {
        let objects = match self.revision_objects(name).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(database = %name, error = %crate::chain::chain(&e), "cannot list revisions to prune");
                return;
            }
        };
        let oldest_kept = newest.saturating_sub(u64::from(self.history)) + 1;
        for o in objects.iter().filter(|o| history::owner_uid(o) == uid) {
            let number = u64::try_from(o.revision).unwrap_or(0);
            if all || number < oldest_kept {
                if let Err(e) = self.delete_revision_object(o).await {
                    tracing::warn!(database = %name, revision = number, error = %crate::chain::chain(&e),
                        "cannot delete a revision object");
                }
            }
        }
    }

    /// The update of [`Backend::update`]: first the revision object (whose
    /// name only one writer can take), then the Cluster with its
    /// resourceVersion as precondition, so no acknowledged change lacks
    /// its revision. `made` is the revision object once made, for the
    /// caller to remove when the change fails.
    async fn update_with_revision(
        &self,
        spec: DatabaseSpec,
        expected_revision: u64,
        change: &Change,
        made: &mut Option<ControllerRevision>,
    ) -> Result<Database, BackendError> {
        let name = spec.name.clone();
        let mut current = self
            .cached(&name)
            .ok_or_else(|| BackendError::NotFound(name.clone()))?;
        for _ in 0..5 {
            if cluster::is_deleting(&current) {
                return Err(BackendError::Busy(format!(
                    "database {name} is being deleted"
                )));
            }
            let revision = cluster::revision_of(&current);
            if revision != expected_revision {
                return Err(BackendError::RevisionMismatch {
                    expected: expected_revision,
                    current: revision,
                });
            }
            let before = cluster::spec_of(&current);
            if before == spec && !change.always_recorded() {
                return Ok(self.view(&current));
            }
            let now = Utc::now();
            if made.is_none() {
                let next = Revision::new(revision + 1, &spec, Some(&before), change, now);
                match self.make_revision(&current, &next).await? {
                    Some(object) => *made = Some(object),
                    None => return Err(self.taken(&name, expected_revision).await),
                }
            }
            let source = cluster::source_of(&current);
            let mut object = cluster::render(
                &spec,
                &self.shared.namespace,
                &Stamp {
                    source,
                    ..Stamp::api(cluster::owner_of(&current), revision + 1, Some(now))
                },
            );
            if source == Source::Adopted {
                // Only what the API changes: an adopted Cluster keeps the
                // image and bootstrap it was made with, owned by whoever
                // set them.
                object.spec.image_name = None;
                object.spec.bootstrap = None;
            }
            // The precondition: nobody changed the Cluster since it was read.
            object.metadata.resource_version = current.metadata.resource_version.clone();
            match self.apply(&object, true).await {
                Ok(applied) => {
                    self.prune_objects(&name, applied.metadata.uid.as_deref(), revision + 1, false)
                        .await;
                    return Ok(self.view(&applied));
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Often only CNPG's status moved on: read the Cluster
                    // again and apply if its revision is still the same.
                    match self.clusters.get_opt(&name).await {
                        Ok(Some(live)) if cluster::is_managed(&live) => current = Arc::new(live),
                        Ok(_) => return Err(BackendError::NotFound(name)),
                        Err(e) => return Err(write_error(e, &name)),
                    }
                }
                Err(e) => return Err(write_error(e, &name)),
            }
        }
        Err(BackendError::Busy(format!(
            "database {name} is changing too fast; try again"
        )))
    }

    /// Why the next revision's name was taken: another change made the
    /// revision (the cache is behind), or is making it now.
    async fn taken(&self, name: &str, expected: u64) -> BackendError {
        match self.clusters.get_opt(name).await {
            Ok(Some(live)) if cluster::revision_of(&live) != expected => {
                BackendError::RevisionMismatch {
                    expected,
                    current: cluster::revision_of(&live),
                }
            }
            Ok(Some(_)) => BackendError::Busy(format!(
                "database {name} is changing at the same time; try again"
            )),
            Ok(None) => BackendError::NotFound(name.into()),
            Err(e) => write_error(e, name),
        }
    }

    /// Observes `backend_operation_duration_seconds{operation}` when dropped.
    fn timer(&self, operation: &str) -> prometheus::HistogramTimer {
        self.shared
            .metrics
            .backend_duration
            .with_label_values(&[operation])
            .start_timer()
    }

    pub fn shutdown(&self) {
        for task in self.tasks.lock().expect("not poisoned").drain(..) {
            task.abort();
        }
    }
}

impl Drop for KubeBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Whether resource version `have` is `want` or newer. Versions are opaque
/// to clients; etcd-backed servers give increasing integers, so those are
/// compared as numbers, anything else only for equality.
fn at_least(have: Option<&str>, want: Option<&str>) -> bool {
    match (have, want) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(h), Some(w)) => match (h.parse::<u64>(), w.parse::<u64>()) {
            (Ok(h), Ok(w)) => h >= w,
            _ => h == w,
        },
    }
}

impl Shared {
    /// The database a cached Cluster shows, as every read and the feed see it.
    pub fn view(&self, c: &Cluster) -> Database {
        let name = c.metadata.name.clone().unwrap_or_default();
        let (state, phase) = match self
            .observed
            .read()
            .expect("not poisoned")
            .get(&name)
            .filter(|o| !o.gone)
        {
            Some(o) => (o.state, o.phase.clone()),
            // Not yet through the watcher (a write's own answer).
            None => (
                cnpg_state(&CnpgObservation {
                    deleting: cluster::is_deleting(c),
                    phase: cluster::phase_of(c),
                    created: false,
                    unobserved: cluster::spec_unobserved(c),
                }),
                cluster::phase_of(c).to_owned(),
            ),
        };
        cluster::database_of(c, state, &phase, self.endpoints(&name))
    }

    /// `host:port` of the `-rw` and `-ro` Services, once CNPG made both.
    fn endpoints(&self, name: &str) -> Option<Endpoints> {
        let ns = &self.namespace;
        let address = |suffix: &str| {
            let svc = format!("{name}-{suffix}");
            let service = self.services.get(&ObjectRef::new(&svc).within(ns))?;
            let port = service
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .and_then(|p| p.first())
                .map_or(DEFAULT_PORT, |p| p.port);
            Some(format!("{svc}.{ns}.svc:{port}"))
        };
        Some(Endpoints {
            read_write: address("rw")?,
            read_only: address("ro")?,
        })
    }

    fn clear_error(&self, which: Watched) {
        let mut h = self.health.lock().expect("not poisoned");
        match which {
            Watched::Clusters => h.clusters_error = None,
            Watched::Services => h.services_error = None,
        }
    }

    fn set_synced(&self, which: Watched) {
        let mut h = self.health.lock().expect("not poisoned");
        match which {
            Watched::Clusters => h.clusters_synced = true,
            Watched::Services => h.services_synced = true,
        }
    }

    /// Notes why a watch failed and waits before it tries again. When the
    /// server was unreachable, waits until it answers again.
    async fn watch_failed(
        &self,
        which: Watched,
        e: &watcher::Error,
        client: &Client,
        backoff: Duration,
    ) -> Duration {
        let why = self.describe(which, e);
        let first = {
            let mut h = self.health.lock().expect("not poisoned");
            let slot = match which {
                Watched::Clusters => &mut h.clusters_error,
                Watched::Services => &mut h.services_error,
            };
            let first = slot.as_deref() != Some(why.as_str());
            *slot = Some(why.clone());
            first
        };
        if first {
            tracing::warn!(error = %why, "a watch of the Kubernetes API failed");
        }
        let mut backoff = backoff;
        if watch::is_unreachable(e) {
            // The cache keeps serving (marked stale) until the server answers.
            loop {
                tokio::time::sleep(backoff).await;
                backoff = watch::next_backoff(backoff);
                if client.apiserver_version().await.is_ok() {
                    self.clear_error(which);
                    return Duration::from_millis(100);
                }
            }
        }
        tokio::time::sleep(backoff).await;
        watch::next_backoff(backoff)
    }

    fn describe(&self, which: Watched, e: &watcher::Error) -> String {
        let (group, resource, what) = match which {
            Watched::Clusters => (
                "postgresql.cnpg.io",
                "clusters",
                "CNPG Clusters (postgresql.cnpg.io/v1)",
            ),
            Watched::Services => ("", "services", "Services"),
        };
        let verb = match e {
            watcher::Error::InitialListFailed(_) => "list",
            _ => "watch",
        };
        let inner = match e {
            watcher::Error::InitialListFailed(k)
            | watcher::Error::WatchStartFailed(k)
            | watcher::Error::WatchFailed(k) => k,
            other => return format!("the watch of {what} failed: {other}"),
        };
        match inner {
            kube::Error::Api(s) if s.code == 404 && matches!(which, Watched::Clusters) => format!(
                "the CRD clusters.postgresql.cnpg.io is not installed: the API server has no {what} \
                 (install CloudNativePG)"
            ),
            kube::Error::Api(s) if s.code == 404 => {
                format!("namespace {} not found: {}", self.namespace, s.message)
            }
            kube::Error::Api(s) if s.code == 403 => format!(
                "RBAC forbids it: missing permission {} ({})",
                rbac::describe(group, resource, verb, &self.namespace),
                s.message
            ),
            kube::Error::Api(s) if s.code == 401 => format!(
                "the API server at {} refuses pgplane's credentials: {}",
                self.server, s.message
            ),
            kube::Error::Api(s) => format!(
                "the API server answered {} to the {verb} of {what}: {}",
                s.code, s.message
            ),
            other => format!(
                "the Kubernetes API server at {} is unreachable: {other}",
                self.server
            ),
        }
    }

    /// Shows the database of the Cluster `name` to the feed as the cache
    /// has it now, or its going when the cache has none.
    fn publish(&self, name: &str) {
        let cached = self
            .clusters
            .get(&ObjectRef::new(name).within(&self.namespace));
        match cached {
            Some(c) => self.feed.publish(self.view(&c)),
            None => self.feed.remove(name),
        }
    }

    fn refresh_counts(&self) {
        let states = watch::present_states(&self.observed.read().expect("not poisoned"));
        self.metrics.set_database_counts(states);
    }
}

/// Asks the API server, for each declared permission, whether pgplane has
/// it; readiness names what is missing. Runs at start and then now and again.
async fn review_permissions(shared: Arc<Shared>, client: Client) {
    let api: Api<SelfSubjectAccessReview> = Api::all(client);
    loop {
        let mut missing = Vec::new();
        let mut error = None;
        'review: for p in rbac::PERMISSIONS {
            for verb in p.verbs {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(ResourceAttributes {
                            group: Some(p.group.into()),
                            resource: Some(p.resource.into()),
                            verb: Some((*verb).into()),
                            namespace: Some(shared.namespace.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &review).await {
                    Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => {}
                    Ok(_) => {
                        missing.push(rbac::describe(p.group, p.resource, verb, &shared.namespace))
                    }
                    Err(e) => {
                        error = Some(format!("cannot review pgplane's permissions: {e}"));
                        break 'review;
                    }
                }
            }
        }
        {
            let mut h = shared.health.lock().expect("not poisoned");
            if error.is_none() {
                if !missing.is_empty() && h.missing.as_ref() != Some(&missing) {
                    tracing::warn!(missing = ?missing, "pgplane lacks Kubernetes permissions");
                }
                h.missing = Some(missing);
            }
            h.review_error = error.clone();
        }
        let again = if error.is_some() {
            Duration::from_secs(2)
        } else {
            RBAC_RECHECK
        };
        tokio::time::sleep(again).await;
    }
}

/// Maps an API error of a write to the backend's errors.
fn write_error(e: kube::Error, name: &str) -> BackendError {
    match e {
        kube::Error::Api(s) => match s.code {
            404 => BackendError::NotFound(name.into()),
            409 => BackendError::Busy(format!(
                "database {name} changed at the same time; try again ({})",
                s.message
            )),
            401 => BackendError::unavailable(format!(
                "the Kubernetes API server refuses pgplane's credentials: {}",
                s.message
            )),
            403 if is_rbac_denial(&s.message) => BackendError::unavailable(format!(
                "pgplane lacks a Kubernetes permission: {}",
                s.message
            )),
            // Admission, quota, schema: the server's own words.
            400 | 403 | 422 => BackendError::Rejected(s.message),
            429 | 500 | 502 | 503 | 504 => BackendError::unavailable(format!(
                "the Kubernetes API server is unavailable: {}",
                s.message
            )),
            code => BackendError::internal(
                format!("the API server answered {code} to a write"),
                kube::Error::Api(s),
            ),
        },
        e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
            BackendError::unavailable_by("the Kubernetes API server is unreachable", e)
        }
        other => BackendError::internal("a write to the API server failed", other),
    }
}

/// RBAC's denials read `... is forbidden: User "x" cannot create resource ...`,
/// or, when a server-side apply would create an object its caller may not
/// create, `... is forbidden: ` with nothing after; a quota or an admission
/// plugin also answers 403, with its reason after the colon.
fn is_rbac_denial(message: &str) -> bool {
    (message.contains(" cannot ") && message.contains(" resource \""))
        || message.trim_end().ends_with("is forbidden:")
}

#[async_trait]
impl Backend for KubeBackend {
    async fn list(&self) -> Result<Vec<Database>, BackendError> {
        self.require_synced()?;
        let mut all: Vec<Database> = self
            .shared
            .clusters
            .state()
            .iter()
            .map(|c| self.view(c))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Filters and sorts the cached Clusters by name and labels first, and
    /// builds only the databases of the page.
    async fn page(&self, query: &ListQuery) -> Result<Page<Database>, BackendError> {
        self.require_synced()?;
        let no_labels = BTreeMap::new();
        let mut candidates: Vec<Arc<Cluster>> = self
            .shared
            .clusters
            .state()
            .into_iter()
            .filter(|c| {
                let name = c.metadata.name.as_deref().unwrap_or_default();
                query.selects(name, c.metadata.labels.as_ref().unwrap_or(&no_labels))
            })
            .collect();
        candidates.sort_unstable_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        // The database's labels are those pgplane applied (see cluster::spec_of).
        let selected = candidates
            .iter()
            .map(|c| self.view(c))
            .filter(|db| query.selects(&db.name, &db.labels));
        Ok(query.page_of_selected(selected))
    }

    async fn get(&self, name: &str) -> Result<Database, BackendError> {
        self.require_synced()?;
        self.cached(name)
            .map(|c| self.view(&c))
            .ok_or_else(|| BackendError::NotFound(name.into()))
    }

    async fn validate(&self, _spec: &DatabaseSpec) -> Result<(), BackendError> {
        // CNPG checks parameters itself; the model's rules have run.
        Ok(())
    }

    async fn create(&self, spec: DatabaseSpec, change: &Change) -> Result<Database, BackendError> {
        self.require_synced()?;
        let _timer = self.timer("create");
        let _admission = self.admission.lock().await;
        if self.cached(&spec.name).is_some() {
            return Err(BackendError::AlreadyExists(spec.name));
        }
        // The cache holds only pgplane's Clusters: ask the server about others.
        match self.clusters.get_opt(&spec.name).await {
            Ok(None) => {}
            Ok(Some(_)) => return Err(BackendError::AlreadyExists(spec.name)),
            Err(e) => return Err(write_error(e, &spec.name)),
        }
        let now = Utc::now();
        let object = cluster::render(
            &spec,
            &self.shared.namespace,
            &Stamp::api(change.by.clone(), 1, Some(now)),
        );
        // Not forced: a Cluster made by someone else in the meantime
        // conflicts instead of being taken over.
        let applied = match self.apply(&object, false).await {
            Ok(applied) => applied,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Err(BackendError::AlreadyExists(spec.name))
            }
            Err(e) => return Err(write_error(e, &spec.name)),
        };
        // The revision object is owned by the Cluster, so it follows it:
        // when it cannot be made, the Cluster goes again and the create
        // fails whole.
        let first = Revision::new(1, &spec, None, change, now);
        let failure = match self.make_revision(&applied, &first).await {
            Ok(Some(_)) => return Ok(self.view(&applied)),
            Ok(None) => BackendError::Busy(format!(
                "database {} is being made at the same time; try again",
                spec.name
            )),
            Err(e) => e,
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: applied.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.clusters.delete(&spec.name, &params).await {
            Ok(_) => {
                self.wait_for_cache(&spec.name, |c| c.is_none_or(cluster::is_deleting))
                    .await
            }
            Err(e) => tracing::error!(database = %spec.name, error = %crate::chain::chain(&e),
                "cannot delete the Cluster of a create whose first revision failed"),
        }
        Err(failure)
    }

    async fn update(
        &self,
        spec: DatabaseSpec,
        expected_revision: u64,
        change: &Change,
    ) -> Result<Database, BackendError> {
        self.require_synced()?;
        let _timer = self.timer("update");
        let mut made = None;
        let result = self
            .update_with_revision(spec, expected_revision, change, &mut made)
            .await;
        if let (Err(_), Some(object)) = (&result, &made) {
            self.unmake_revision(object).await;
        }
        result
    }

    async fn revisions(&self, name: &str) -> Result<Vec<Revision>, BackendError> {
        self.require_synced()?;
        let _timer = self.timer("revisions");
        let current = self
            .cached(name)
            .ok_or_else(|| BackendError::NotFound(name.into()))?;
        self.history_of(&current).await
    }

    async fn delete(&self, name: &str) -> Result<DeleteOutcome, BackendError> {
        self.require_synced()?;
        let _timer = self.timer("delete");
        let _admission = self.admission.lock().await;
        // Only a Cluster pgplane manages, and only that very one (its uid).
        let Some(current) = self.cached(name) else {
            return Ok(DeleteOutcome::AlreadyGone);
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: current.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.clusters.delete(name, &params).await {
            Ok(_) => {
                // No garbage collector may run (as in the tests), and the
                // history goes with the database: its audit trail stays.
                self.prune_objects(name, current.metadata.uid.as_deref(), 0, true)
                    .await;
                self.wait_for_cache(name, |c| c.is_none_or(cluster::is_deleting))
                    .await;
                Ok(DeleteOutcome::Started)
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                // Gone already, or replaced by another Cluster of that name.
                Ok(DeleteOutcome::AlreadyGone)
            }
            Err(e) => Err(write_error(e, name)),
        }
    }

    async fn adopt(&self, name: &str, by: &str) -> Result<Adopted, BackendError> {
        self.require_synced()?;
        let _timer = self.timer("adopt");
        let _admission = self.admission.lock().await;
        // Read whole: the typed Cluster keeps only the fields pgplane sets.
        let raw: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.shared.namespace,
            &ApiResource::erase::<Cluster>(&()),
        );
        let found = match raw.get_opt(name).await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(BackendError::NotFound(name.into())),
            Err(e) => return Err(write_error(e, name)),
        };
        let found = serde_json::to_value(found)
            .map_err(|e| BackendError::internal("cannot read a Cluster as JSON", e))?;
        if let Some(why) = adoption::refusal(&found) {
            return Err(BackendError::Busy(why));
        }
        let left_alone = adoption::left_alone(&found);
        // Not forced: a field of the marks another tool owns conflicts; the
        // resourceVersion makes it this very Cluster, unchanged since read.
        let params = PatchParams::apply(FIELD_MANAGER);
        let marks = adoption::adoption(&found, by, Utc::now());
        let applied = self
            .clusters
            .patch(name, &params, &Patch::Apply(&marks))
            .await
            .map_err(|e| write_error(e, name))?;
        // Revision 1 is the spec as adopted, so a rollback can come back to it.
        let first = Revision::synthetic(1, &cluster::spec_of(&applied), by, Utc::now());
        if let Err(e) = self.make_revision(&applied, &first).await {
            tracing::warn!(database = %name, error = %crate::chain::chain(&e),
                "cannot keep the adopted spec as revision 1");
        }
        let rv = applied.metadata.resource_version.clone();
        self.wait_for_cache(name, |c| {
            c.is_some_and(|c| at_least(c.metadata.resource_version.as_deref(), rv.as_deref()))
        })
        .await;
        Ok(Adopted {
            database: self.view(&applied),
            left_alone,
        })
    }

    async fn release(&self, name: &str) -> Result<(), BackendError> {
        self.require_synced()?;
        let _timer = self.timer("release");
        let _admission = self.admission.lock().await;
        // The live Cluster: the cache's resourceVersion is often behind the
        // watcher's own annotation writes.
        let live = match self.clusters.get_opt(name).await {
            Ok(Some(live)) if cluster::is_managed(&live) => live,
            Ok(_) => return Err(BackendError::NotFound(name.into())),
            Err(e) => return Err(write_error(e, name)),
        };
        let metadata = serde_json::to_value(&live.metadata)
            .map_err(|e| BackendError::internal("cannot read a Cluster's metadata", e))?;
        let patch = adoption::release(&metadata, Utc::now());
        let params = PatchParams {
            field_manager: Some(format!("{FIELD_MANAGER}-release")),
            ..PatchParams::default()
        };
        self.clusters
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| write_error(e, name))?;
        // pgplane's own objects go; the Cluster and what CNPG made stay.
        self.prune_objects(name, live.metadata.uid.as_deref(), 0, true)
            .await;
        self.wait_for_cache(name, |c| c.is_none()).await;
        Ok(())
    }

    async fn credentials(&self, name: &str) -> Result<Credentials, BackendError> {
        self.require_synced()?;
        let _timer = self.timer("credentials");
        if self.cached(name).is_none() {
            return Err(BackendError::NotFound(name.into()));
        }
        let secret_name = format!("{name}-app");
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.shared.namespace);
        // Read now and dropped with this request: never kept in memory.
        let secret = match secrets.get_opt(&secret_name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(BackendError::Busy(format!(
                    "database {name} has no credentials yet (CloudNativePG has not made Secret {secret_name})"
                )))
            }
            Err(e) => return Err(write_error(e, name)),
        };
        let data = secret.data.unwrap_or_default();
        let field = |key: &str| {
            data.get(key)
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .filter(|v| !v.is_empty())
        };
        let (Some(username), Some(password)) = (field("username"), field("password")) else {
            return Err(BackendError::Busy(format!(
                "Secret {secret_name} has no username and password yet"
            )));
        };
        let dbname = field("dbname").unwrap_or_else(|| cluster::APP.into());
        let port = field("port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(DEFAULT_PORT as u16);
        let host = format!("{name}-rw.{}.svc", self.shared.namespace);
        Ok(Credentials::new(&username, &password, &host, port, &dbname))
    }

    fn feed(&self) -> &Feed {
        &self.shared.feed
    }

    async fn ready(&self) -> Result<(), String> {
        let h = self.shared.health.lock().expect("not poisoned");
        let mut failing = Vec::new();
        for (synced, error, what) in [
            (h.clusters_synced, &h.clusters_error, "Clusters"),
            (h.services_synced, &h.services_error, "Services"),
        ] {
            match (synced, error) {
                (_, Some(e)) => failing.push(e.clone()),
                (false, None) => failing.push(format!("waiting for the first list of {what}")),
                (true, None) => {}
            }
        }
        match (&h.missing, &h.review_error) {
            (_, Some(e)) => failing.push(e.clone()),
            (None, None) => failing.push("checking pgplane's permissions".into()),
            (Some(m), None) if !m.is_empty() => {
                failing.push(format!("RBAC: missing permission {}", m.join(", ")))
            }
            _ => {}
        }
        failing.dedup();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing.join("; "))
        }
    }

    fn stale(&self) -> Option<String> {
        let h = self.shared.health.lock().expect("not poisoned");
        if !h.clusters_synced {
            return None;
        }
        h.clusters_error
            .clone()
            .or_else(|| h.services_error.clone())
    }

    fn shutdown(&self) {
        KubeBackend::shutdown(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_versions() {
        assert!(at_least(Some("12"), Some("12")));
        assert!(at_least(Some("13"), Some("12")));
        assert!(!at_least(Some("11"), Some("12")));
        assert!(!at_least(None, Some("1")));
        assert!(at_least(None, None));
        assert!(at_least(Some("abc"), Some("abc")));
        assert!(!at_least(Some("abd"), Some("abc")));
    }

    #[test]
    fn rbac_denials_are_told_from_quota_and_admission() {
        assert!(is_rbac_denial(
            "clusters.postgresql.cnpg.io is forbidden: User \"system:serviceaccount:databases:pgplane\" cannot create resource \"clusters\" in API group \"postgresql.cnpg.io\" in the namespace \"databases\""
        ));
        assert!(!is_rbac_denial(
            "clusters.postgresql.cnpg.io \"x\" is forbidden: exceeded quota: q, requested: count/clusters.postgresql.cnpg.io=1"
        ));
        assert!(is_rbac_denial(
            "clusters.postgresql.cnpg.io \"fresh\" is forbidden: "
        ));
        assert!(!is_rbac_denial(
            "admission webhook \"vcluster.cnpg.io\" denied the request: spec.instances: Invalid value"
        ));
    }
}
