//! The watches: one on the managed Clusters, one on CNPG's Services. Each
//! feeds a kube-runtime reflector store, which every read of the API is
//! served from. The Cluster watch is also the watcher of DESIGN.md: each
//! object it delivers goes through [`cnpg_state`], and a state that differs
//! from the one last recorded becomes one `service_event` and one
//! Kubernetes Event on the Cluster.
//!
//! Transitions are found by comparing states, not by counting watch
//! events, so a restarted watch (410 Gone and a new list, a dropped
//! connection, an API server restart) can neither lose a transition whose
//! result it sees nor record one twice. The state last recorded is kept on
//! the Cluster itself (annotation `pgplane.io/recorded-state`), claimed with
//! the Cluster's resourceVersion as precondition before the event is
//! recorded: of several replicas of pgplane, one records each transition,
//! and a restarted pgplane (even without its data directory) starts from
//! there. A Cluster that is gone leaves nothing to annotate: its `deleting`
//! is claimed by creating its Kubernetes Event under a name made of the
//! Cluster's uid and transition count, which only one replica can create.
//! The transition is recorded by this process when the claim cannot be
//! written (no permission, server gone): a duplicate is preferred to a loss.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, watcher, Event};
use kube::{Api, Client, Resource, ResourceExt};

use super::cluster::{self, Cluster};
use super::Shared;
use crate::model::State;
use crate::records::ServiceEvent;
use crate::states::{cnpg_state, CnpgObservation};

/// The phase shown while a Cluster is being deleted, and once it is gone:
/// Kubernetes says it with `deletionTimestamp`, CNPG has no text for it.
pub const PHASE_DELETING: &str = "Deleting";
pub const PHASE_DELETED: &str = "Deleted";
/// The phase shown once a Cluster left pgplane without being deleted (its
/// label was taken off: released, or by hand).
pub const PHASE_RELEASED: &str = "Released: no longer managed by pgplane";

const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// After this many failures in a row of a reachable API server, the watch
/// starts over with a list instead of resuming from its resourceVersion:
/// some failures repeat for as long as that version is asked for.
const RELIST_AFTER: u32 = 5;
/// The field manager of the recorded-state annotation.
pub const WATCHER_MANAGER: &str = "pgplane-watcher";

/// What the watcher last saw of one database.
#[derive(Debug, Clone)]
pub struct Observed {
    pub state: State,
    pub phase: String,
    pub ready: u32,
    pub instances: u32,
    /// The database was healthy once: its `creating` is over.
    pub created: bool,
    /// The Cluster is gone; kept so that a new Cluster of the same name
    /// starts a new life instead of a transition from `deleting`.
    pub gone: bool,
    /// The Cluster's uid, and how many transitions its annotation counted:
    /// what names the claim of its `deleting` once it is gone.
    pub uid: Option<String>,
    pub recorded: u64,
}

/// Which watch an error belongs to, for readiness.
#[derive(Debug, Clone, Copy)]
pub enum Watched {
    Clusters,
    Services,
}

/// Runs the Cluster watch until the task is aborted.
pub async fn clusters(
    shared: Arc<Shared>,
    client: Client,
    mut writer: Writer<Cluster>,
    recorder: Recorder,
) {
    let api: Api<Cluster> = Api::namespaced(client.clone(), &shared.namespace);
    let kube_events: Api<K8sEvent> = Api::namespaced(client.clone(), &shared.namespace);
    let config = watcher::Config::default().labels(cluster::MANAGED_SELECTOR);
    let mut stream = watcher(api.clone(), config.clone()).boxed();
    let mut listed: Option<HashSet<String>> = None;
    let mut retry = Retry::default();
    loop {
        match stream.next().await {
            Some(Ok(event)) => {
                retry = Retry::default();
                shared.clear_error(Watched::Clusters);
                writer.apply_watcher_event(&event);
                match &event {
                    Event::Init => listed = Some(HashSet::new()),
                    Event::InitApply(c) => {
                        if let Some(names) = listed.as_mut() {
                            names.insert(c.name_any());
                        }
                        observe(&shared, &recorder, &api, c, true).await;
                    }
                    Event::InitDone => {
                        // What the new list lacks went away while the watch was down.
                        let names = listed.take().unwrap_or_default();
                        let vanished: Vec<String> = shared
                            .observed
                            .read()
                            .expect("not poisoned")
                            .iter()
                            .filter(|(n, o)| !o.gone && !names.contains(*n))
                            .map(|(n, _)| n.clone())
                            .collect();
                        for name in vanished {
                            gone(&shared, &kube_events, &name, None).await;
                        }
                        shared.refresh_counts();
                        shared.set_synced(Watched::Clusters);
                    }
                    Event::Apply(c) => observe(&shared, &recorder, &api, c, false).await,
                    Event::Delete(c) => gone(&shared, &kube_events, &c.name_any(), Some(c)).await,
                }
                publish(&shared, &event);
                shared.changed.send_modify(|n| *n += 1);
            }
            Some(Err(e)) => {
                let relist = retry.failed(&shared, Watched::Clusters, &e, &client).await;
                if relist {
                    stream = watcher(api.clone(), config.clone()).boxed();
                }
            }
            None => return,
        }
    }
}

/// Runs the Service watch (CNPG labels its Services `cnpg.io/cluster`).
pub async fn services(shared: Arc<Shared>, client: Client, mut writer: Writer<Service>) {
    let api: Api<Service> = Api::namespaced(client.clone(), &shared.namespace);
    let config = watcher::Config::default().labels("cnpg.io/cluster");
    let mut stream = watcher(api.clone(), config.clone()).boxed();
    let mut retry = Retry::default();
    loop {
        match stream.next().await {
            Some(Ok(event)) => {
                retry = Retry::default();
                shared.clear_error(Watched::Services);
                writer.apply_watcher_event(&event);
                match &event {
                    Event::InitDone => {
                        shared.set_synced(Watched::Services);
                        // Endpoints may have changed while the watch was down.
                        for name in shared.feed.names() {
                            shared.publish(&name);
                        }
                    }
                    Event::Apply(s) | Event::Delete(s) => {
                        if let Some(name) = s.labels().get("cnpg.io/cluster") {
                            shared.publish(name);
                        }
                    }
                    Event::Init | Event::InitApply(_) => {}
                }
                shared.changed.send_modify(|n| *n += 1);
            }
            Some(Err(e)) => {
                if retry.failed(&shared, Watched::Services, &e, &client).await {
                    stream = watcher(api.clone(), config.clone()).boxed();
                }
            }
            None => return,
        }
    }
}

/// Shows the feed what a Cluster watch event changed, once the store and
/// the observed state have it.
fn publish(shared: &Shared, event: &Event<Cluster>) {
    match event {
        Event::Init => {}
        Event::InitApply(c) | Event::Apply(c) | Event::Delete(c) => shared.publish(&c.name_any()),
        Event::InitDone => {
            // What the new list lacks is gone from the store already.
            for name in shared.feed.names() {
                shared.publish(&name);
            }
        }
    }
}

/// How a watch recovers from its errors.
struct Retry {
    backoff: Duration,
    /// Failures in a row while the API server answered.
    failures: u32,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            backoff: Duration::from_millis(100),
            failures: 0,
        }
    }
}

impl Retry {
    /// Notes the error and waits as [`Shared::watch_failed`] says; `true`
    /// when the watch must start over with a list rather than resume.
    async fn failed(
        &mut self,
        shared: &Shared,
        watched: Watched,
        e: &watcher::Error,
        client: &Client,
    ) -> bool {
        if matches!(e, watcher::Error::WatchError(_)) && is_gone(e) {
            // A 410 in the stream: the watcher lists again by itself.
            return false;
        }
        if !is_unreachable(e) {
            self.failures += 1;
        }
        self.backoff = shared.watch_failed(watched, e, client, self.backoff).await;
        // A 410 answering the watch request itself leaves the watcher
        // resuming from the version that is gone, as do failures that
        // repeat for that version: start over with a list.
        if is_gone(e) || self.failures >= RELIST_AFTER {
            tracing::warn!(error = %e, failures = self.failures, "a watch cannot resume; listing again");
            self.failures = 0;
            return true;
        }
        false
    }
}

fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::InitialListFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

/// Whether the error means the API server could not be reached at all.
pub fn is_unreachable(e: &watcher::Error) -> bool {
    matches!(
        e,
        watcher::Error::WatchFailed(k)
            | watcher::Error::WatchStartFailed(k)
            | watcher::Error::InitialListFailed(k)
            if !matches!(k, kube::Error::Api(_))
    )
}

/// The next backoff after `current`.
pub fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(MAX_BACKOFF)
}

/// Derives the state of a Cluster the watch delivered and records a
/// transition when it differs from the one last recorded.
async fn observe(
    shared: &Shared,
    recorder: &Recorder,
    api: &Api<Cluster>,
    c: &Cluster,
    initial: bool,
) {
    let name = c.name_any();
    let phase_text = cluster::phase_of(c);
    let ready_condition = c.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|k| k.kind == "Ready" && k.status == "True")
    });
    let deleting = cluster::is_deleting(c);
    let recorded = cluster::recorded_state_of(c);
    let (prev, state, phase, entry) = {
        let mut observed = shared.observed.write().expect("not poisoned");
        let remembered = match observed.get(&name) {
            Some(o) if !o.gone => Some((o.state, o.created)),
            _ => None,
        };
        // The state last recorded: on the Cluster, else in memory, else in
        // the event store (a Cluster never claimed, pgplane restarted).
        let (prev, created) = match (recorded.map(|(s, _)| s), remembered) {
            (Some(s), Some((_, created))) => (Some(s), created || s != State::Creating),
            (Some(s), None) => (Some(s), s != State::Creating || ready_condition),
            (None, Some((s, created))) => (Some(s), created),
            (None, None) => match shared.events.last_state(&name) {
                // A database deleted before, now made again: a new life.
                Some(State::Deleting) | None => (None, ready_condition),
                Some(s) => (Some(s), s != State::Creating || ready_condition),
            },
        };
        let state = cnpg_state(&CnpgObservation {
            deleting,
            phase: phase_text,
            created,
            unobserved: cluster::spec_unobserved(c),
        });
        let phase = if deleting {
            PHASE_DELETING.to_owned()
        } else {
            phase_text.to_owned()
        };
        let entry = Observed {
            state,
            phase: phase.clone(),
            ready: cluster::ready_of(c),
            instances: c.spec.instances,
            created: created || state == State::Healthy,
            gone: false,
            uid: c.metadata.uid.clone(),
            recorded: recorded.map_or(0, |(_, n)| n),
        };
        observed.insert(name.clone(), entry.clone());
        (prev, state, phase, entry)
    };
    if !initial {
        shared.refresh_counts();
    }
    let Some(from) = prev.filter(|p| *p != state) else {
        return;
    };
    if claim(api, c, recorded, state).await {
        let event = ServiceEvent::new(&name, from, state, &phase, entry.ready, entry.instances);
        record(shared, recorder, event, Some(c));
    }
}

/// Writes `state` as the recorded state of the Cluster if nobody recorded
/// anything since `recorded` (the value this process saw). `true`: this
/// process records the transition.
async fn claim(
    api: &Api<Cluster>,
    c: &Cluster,
    recorded: Option<(State, u64)>,
    state: State,
) -> bool {
    let name = c.name_any();
    let params = PatchParams {
        field_manager: Some(WATCHER_MANAGER.into()),
        ..PatchParams::default()
    };
    let mut version = c.metadata.resource_version.clone();
    for _ in 0..5 {
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": version,
            "annotations": {cluster::RECORDED_STATE: cluster::recorded_value(
                state,
                recorded.map_or(1, |(_, n)| n + 1),
            )},
        }});
        match api.patch(&name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => return true,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Changed since: by CNPG (claim again on the new version),
                // or by another pgplane that recorded it (leave it).
                match api.get_opt(&name).await {
                    Ok(Some(live)) if cluster::recorded_state_of(&live) == recorded => {
                        version = live.metadata.resource_version.clone();
                    }
                    Ok(Some(_)) => return false,
                    Ok(None) => return false,
                    Err(e) => {
                        tracing::warn!(database = %name, error = %e, "cannot read the Cluster back to claim a transition; recording it here");
                        return true;
                    }
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return false,
            Err(e) => {
                tracing::warn!(database = %name, error = %e, "cannot write the recorded state on the Cluster; recording the transition here");
                return true;
            }
        }
    }
    tracing::warn!(database = %name, "the Cluster kept changing while a transition was claimed; recording it here");
    true
}

/// A Cluster left the watch (deleted, or no longer labelled as pgplane's).
/// `last` is the object as it went, when the watch saw it go.
async fn gone(shared: &Shared, kube_events: &Api<K8sEvent>, name: &str, last: Option<&Cluster>) {
    let claim = {
        let mut observed = shared.observed.write().expect("not poisoned");
        let Some(o) = observed.get_mut(name).filter(|o| !o.gone) else {
            return;
        };
        if let Some(c) = last {
            o.uid = c.metadata.uid.clone().or(o.uid.take());
            o.recorded = cluster::recorded_state_of(c).map_or(o.recorded, |(_, n)| n);
        }
        let phase = match last {
            Some(c) if !cluster::is_managed(c) && !cluster::is_deleting(c) => PHASE_RELEASED,
            _ => PHASE_DELETED,
        };
        let claim = (o.state != State::Deleting).then(|| {
            let event = ServiceEvent::new(name, o.state, State::Deleting, phase, 0, o.instances);
            (event, o.uid.clone(), o.recorded + 1)
        });
        o.state = State::Deleting;
        o.phase = phase.into();
        o.gone = true;
        claim
    };
    let Some((event, uid, count)) = claim else {
        shared.refresh_counts();
        return;
    };
    let reference = last.map_or_else(
        || ObjectReference {
            api_version: Some("postgresql.cnpg.io/v1".into()),
            kind: Some("Cluster".into()),
            name: Some(name.into()),
            namespace: Some(shared.namespace.clone()),
            uid: uid.clone(),
            ..ObjectReference::default()
        },
        |c| c.object_ref(&()),
    );
    if claim_gone(kube_events, reference, uid.as_deref(), count, &event).await {
        shared.events.record(event);
    }
    shared.refresh_counts();
}

/// Creates the Kubernetes Event of a gone Cluster's `deleting` under the
/// name `<name>.<uid>.<count>`: of several replicas, the one whose create
/// succeeds records the transition. `true` also when the Event cannot be
/// created for another reason (a duplicate is preferred to a loss).
async fn claim_gone(
    kube_events: &Api<K8sEvent>,
    reference: ObjectReference,
    uid: Option<&str>,
    count: u64,
    event: &ServiceEvent,
) -> bool {
    let Some(uid) = uid else {
        // Never seen with a uid (cannot happen with a real API server).
        return true;
    };
    let object = K8sEvent {
        metadata: ObjectMeta {
            name: Some(format!("{}.{uid}.{count}", event.database)),
            namespace: reference.namespace.clone(),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        action: Some("StateTransition".into()),
        reason: Some(reason(State::Deleting).into()),
        note: Some(note(event)),
        type_: Some("Normal".into()),
        regarding: Some(reference),
        reporting_controller: Some(super::FIELD_MANAGER.into()),
        reporting_instance: Some(reporting_instance()),
        ..K8sEvent::default()
    };
    match kube_events.create(&PostParams::default(), &object).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 409 => false,
        Err(e) => {
            tracing::warn!(database = %event.database, error = %e, "cannot create the Kubernetes Event that claims a deletion; recording it here");
            true
        }
    }
}

/// This replica, as the Recorder names it: the host (the pod) name.
fn reporting_instance() -> String {
    Reporter::from(super::FIELD_MANAGER)
        .instance
        .unwrap_or_else(|| super::FIELD_MANAGER.into())
}

/// One transition: the service event (stdout and the store) at once, the
/// Kubernetes Event in the background (it is an API call).
fn record(shared: &Shared, recorder: &Recorder, event: ServiceEvent, on: Option<&Cluster>) {
    tracing::debug!(database = %event.database, from = event.from.as_str(), to = event.to.as_str(), "transition");
    if let Some(c) = on {
        let reference = c.object_ref(&());
        let kube_event = KubeEvent {
            type_: match event.to {
                State::Degraded | State::Failed | State::Unknown | State::FailingOver => {
                    EventType::Warning
                }
                _ => EventType::Normal,
            },
            reason: reason(event.to).into(),
            note: Some(note(&event)),
            action: "StateTransition".into(),
            secondary: None,
        };
        let recorder = recorder.clone();
        let database = event.database.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&kube_event, &reference).await {
                tracing::warn!(database = %database, error = %e, "cannot publish the Kubernetes Event of a transition");
            }
        });
    }
    shared.events.record(event);
}

/// The Event `reason` of a transition into `state`: CamelCase, as Kubernetes writes reasons.
fn reason(state: State) -> &'static str {
    match state {
        State::Creating => "Creating",
        State::Healthy => "Healthy",
        State::Scaling => "Scaling",
        State::Updating => "Updating",
        State::Degraded => "Degraded",
        State::FailingOver => "FailingOver",
        State::Deleting => "Deleting",
        State::Failed => "Failed",
        State::Unknown => "UnknownPhase",
    }
}

/// The Event `note` of a transition (Kubernetes allows 1 kB).
fn note(event: &ServiceEvent) -> String {
    truncate(
        &format!(
            "{} -> {}: {} ({}/{} instances ready)",
            event.from.as_str(),
            event.to.as_str(),
            event.phase,
            event.ready_instances,
            event.instances
        ),
        1000,
    )
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The states of the databases now present, for the `databases{state}` gauge.
pub fn present_states(observed: &HashMap<String, Observed>) -> Vec<State> {
    observed
        .values()
        .filter(|o| !o.gone)
        .map(|o| o.state)
        .collect()
}
