//! The audit trail (DESIGN.md "Records"): who did what to which database,
//! and whether it was allowed. One record per login, per create, update and
//! delete (accepted or refused) and per credentials read.
//!
//! With the local store, a change is recorded on disk before it is made
//! (write-ahead, see [`Draft`]); when that write fails, the request answers
//! 503 and changes nothing. With the Loki store, the line on standard output
//! is the record (a log shipper takes it to Loki) and queries go to Loki.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::journal::{Journal, OpenError};
use super::{page, AuditQuery, Loki, Pusher, Record, RecordsError, Source};
use crate::metrics::Metrics;
use crate::model::paging::Page;
use crate::model::Role;

const FILE: &str = "audit.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Action {
    #[serde(rename = "auth.login")]
    Login,
    #[serde(rename = "auth.login_failed")]
    LoginFailed,
    #[serde(rename = "database.create")]
    Create,
    #[serde(rename = "database.update")]
    Update,
    #[serde(rename = "database.delete")]
    Delete,
    #[serde(rename = "database.rollback")]
    Rollback,
    #[serde(rename = "database.credentials_read")]
    CredentialsRead,
    #[serde(rename = "database.adopt")]
    Adopt,
    #[serde(rename = "database.release")]
    Release,
    /// A refused read of the audit trail (reads that are allowed are not
    /// recorded, so that reading the trail does not grow it).
    #[serde(rename = "audit.read")]
    AuditRead,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::Login,
        Action::LoginFailed,
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Rollback,
        Action::CredentialsRead,
        Action::Adopt,
        Action::Release,
        Action::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "auth.login",
            Action::LoginFailed => "auth.login_failed",
            Action::Create => "database.create",
            Action::Update => "database.update",
            Action::Delete => "database.delete",
            Action::Rollback => "database.rollback",
            Action::Adopt => "database.adopt",
            Action::Release => "database.release",
            Action::CredentialsRead => "database.credentials_read",
            Action::AuditRead => "audit.read",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Denied,
    Invalid,
    Error,
}

impl Outcome {
    /// What an HTTP status says about the request.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            200..=399 => Outcome::Success,
            401 | 403 | 429 => Outcome::Denied,
            400..=499 => Outcome::Invalid,
            _ => Outcome::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }
}

/// One audit record, as printed, stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub ts: DateTime<Utc>,
    /// Always `audit`.
    pub log_type: String,
    /// Unique per record (the request id comes from the client when it
    /// sends one, so it need not be). A line without one (the contract's
    /// shape, as another writer may ship it) gets one from where it is.
    #[serde(default)]
    pub id: String,
    pub request_id: String,
    /// The username; for a failed login, the name that was tried; `anonymous`
    /// when the request carried no valid token.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub outcome: Outcome,
    /// The HTTP status answered.
    pub status: u16,
    pub source_ip: String,
    /// For updates and rollbacks: each changed field as `[before, after]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub changes: Option<Map<String, Value>>,
}

impl Record for AuditRecord {
    const LOG_TYPE: &'static str = "audit";

    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }
    fn key(&self) -> Option<&str> {
        Some(&self.id)
    }
    fn complete(&mut self, ts_ns: i64, line_hash: &str) {
        if self.id.is_empty() {
            self.id = format!("loki-{ts_ns}-{line_hash}");
        }
    }
}

/// Where audit records are kept and queried.
enum Store {
    /// `audit.jsonl` under the data directory, synced before each answer.
    Local(Journal<AuditRecord>),
    /// The line on standard output is the record; queries go to Loki.
    Loki(Arc<Loki>),
}

pub struct Audit {
    store: Store,
    metrics: Arc<Metrics>,
    pusher: Option<Arc<Pusher>>,
}

impl Audit {
    /// The local store: `audit.jsonl` under the data directory.
    pub fn local(data_dir: &std::path::Path, metrics: Arc<Metrics>) -> Result<Audit, OpenError> {
        let journal = Journal::open(&data_dir.join(FILE))?;
        metrics
            .records_unreadable
            .with_label_values(&["local"])
            .inc_by(journal.unreadable());
        Ok(Audit {
            store: Store::Local(journal),
            metrics,
            pusher: None,
        })
    }

    pub fn loki(loki: Arc<Loki>, metrics: Arc<Metrics>) -> Audit {
        Audit {
            store: Store::Loki(loki),
            metrics,
            pusher: None,
        }
    }

    /// Pushes every record published from now on to Loki, whatever the store.
    pub fn push_to(mut self, pusher: Arc<Pusher>) -> Audit {
        self.pusher = Some(pusher);
        self
    }

    /// Keeps `record` durably. Locally that is the journal's `fdatasync`;
    /// with Loki, the line printed by [`Audit::publish`] is the record.
    async fn keep(&self, record: &AuditRecord) -> Result<(), RecordsError> {
        match &self.store {
            Store::Local(journal) => journal
                .append(record.clone())
                .await
                .map_err(RecordsError::Write),
            Store::Loki(_) => Ok(()),
        }
    }

    /// The final record goes out: one line on standard output, the metric,
    /// and the push buffer when pushing is on.
    fn publish(&self, record: &AuditRecord) {
        super::stdout::print_line(record);
        self.metrics
            .audit_records
            .with_label_values(&[record.action.as_str(), record.outcome.as_str()])
            .inc();
        if let Some(pusher) = &self.pusher {
            pusher.push_later(record);
        }
    }

    /// A page of records, newest first.
    pub async fn query(&self, q: &AuditQuery) -> Result<Page<AuditRecord>, RecordsError> {
        let source = match &self.store {
            Store::Local(journal) => Source::Journal(journal),
            Store::Loki(loki) => Source::Loki(loki),
        };
        page(source, &q.span, q.database.as_deref(), &q.labels(), |r| {
            q.matches(r)
        })
        .await
    }

    /// `Err` names the store when it cannot serve.
    pub async fn ready(&self) -> Result<(), String> {
        match &self.store {
            Store::Local(journal) if journal.healthy() => Ok(()),
            Store::Local(journal) => Err(format!(
                "the last write to {} failed",
                journal.path().display()
            )),
            Store::Loki(loki) => loki.ready().await,
        }
    }
}

/// The record of one request while it is handled. The HTTP layer opens it
/// for every audited route and closes it with the answer's status; the
/// caller's identity, the database and the changes are filled in on the
/// way. A handler about to change something calls [`Draft::write_ahead`],
/// so the record is on disk before the change; when the answer turns out
/// different, closing corrects the record (same `request_id`, replaced in
/// the store, by its id) instead of adding a second one.
#[derive(Clone)]
pub struct Draft(Arc<Mutex<DraftState>>);

struct DraftState {
    id: String,
    request_id: String,
    source_ip: IpAddr,
    action: Action,
    actor: Option<String>,
    role: Option<Role>,
    database: Option<String>,
    changes: Option<Map<String, Value>>,
    written: Option<AuditRecord>,
}

impl Draft {
    pub fn new(request_id: &str, source_ip: IpAddr, action: Action) -> Draft {
        Draft(Arc::new(Mutex::new(DraftState {
            id: uuid::Uuid::new_v4().to_string(),
            request_id: request_id.to_owned(),
            source_ip,
            action,
            actor: None,
            role: None,
            database: None,
            changes: None,
            written: None,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, DraftState> {
        self.0.lock().expect("not poisoned")
    }

    pub fn set_caller(&self, actor: &str, role: Option<Role>) {
        let mut s = self.state();
        s.actor = Some(actor.to_owned());
        s.role = role;
    }

    pub fn set_database(&self, database: &str) {
        self.state().database = Some(database.to_owned());
    }

    /// The request's id as the client sent it or pgplane made it.
    pub fn request_id(&self) -> String {
        self.state().request_id.clone()
    }

    pub fn set_changes(&self, changes: Map<String, Value>) {
        self.state().changes = Some(changes);
    }

    fn record(&self, status: u16) -> AuditRecord {
        let s = self.state();
        let outcome = Outcome::of_status(status);
        let action = match s.action {
            Action::Login if outcome != Outcome::Success => Action::LoginFailed,
            other => other,
        };
        AuditRecord {
            ts: s.written.as_ref().map_or_else(Utc::now, |w| w.ts),
            log_type: AuditRecord::LOG_TYPE.into(),
            id: s.id.clone(),
            request_id: s.request_id.clone(),
            actor: s.actor.clone().unwrap_or_else(|| "anonymous".into()),
            role: s.role,
            action,
            database: s.database.clone(),
            outcome,
            status,
            source_ip: s.source_ip.to_string(),
            changes: s.changes.clone(),
        }
    }

    /// Records that the request succeeds with `status`, before the change
    /// is made. On `Err`, the handler must change nothing.
    pub async fn write_ahead(&self, audit: &Audit, status: u16) -> Result<(), RecordsError> {
        let record = self.record(status);
        audit.keep(&record).await?;
        self.state().written = Some(record);
        Ok(())
    }

    /// Closes the record with the status answered. `Err` when it could not
    /// be kept and nothing was written ahead: the answer must then not go out.
    pub async fn close(&self, audit: &Audit, status: u16) -> Result<(), RecordsError> {
        let record = self.record(status);
        let ahead = self.state().written.clone();
        match ahead {
            Some(w) if w == record => {}
            Some(_) => {
                // The change was written ahead as succeeding but the answer
                // differs (the backend refused): correct it. The request has
                // failed already; a failure here is logged, not answered.
                if let Err(e) = audit.keep(&record).await {
                    tracing::error!(error = %e, id = %record.id,
                        "cannot correct an audit record written ahead");
                }
            }
            None => audit.keep(&record).await?,
        }
        audit.publish(&record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Cursor;

    #[test]
    fn outcomes_follow_the_status() {
        let table = [
            (200, Outcome::Success),
            (202, Outcome::Success),
            (204, Outcome::Success),
            (400, Outcome::Invalid),
            (401, Outcome::Denied),
            (403, Outcome::Denied),
            (404, Outcome::Invalid),
            (409, Outcome::Invalid),
            (412, Outcome::Invalid),
            (422, Outcome::Invalid),
            (429, Outcome::Denied),
            (500, Outcome::Error),
            (503, Outcome::Error),
        ];
        for (status, outcome) in table {
            assert_eq!(Outcome::of_status(status), outcome, "{status}");
        }
    }

    #[test]
    fn actions_round_trip_through_their_names() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                Value::String(a.as_str().into())
            );
        }
        assert_eq!(Action::parse("database.drop"), None);
    }

    #[tokio::test]
    async fn each_store_refuses_the_cursor_of_the_other_before_any_query() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let local = Audit::local(dir.path(), metrics.clone()).unwrap();
        // Nothing listens there: a query that reached Loki would fail otherwise.
        let settings = crate::config::LokiSettings {
            url: "http://127.0.0.1:9".into(),
            selector: "{app=\"pgplane\"}".into(),
            push_labels: None,
            timeout: std::time::Duration::from_secs(1),
        };
        let remote = Audit::loki(Loki::new(&settings, metrics.clone()).unwrap(), metrics);
        let with = |cursor: Cursor| {
            let text = crate::model::paging::encode_cursor(&cursor);
            AuditQuery::parse(&[("cursor".into(), text)], None).unwrap()
        };
        let loki_cursor = with(Cursor::Loki {
            ts_ns: 1,
            seen: vec![],
        });
        assert!(matches!(
            local.query(&loki_cursor).await,
            Err(RecordsError::ForeignCursor)
        ));
        assert!(matches!(
            remote.query(&with(Cursor::Local(3))).await,
            Err(RecordsError::ForeignCursor)
        ));
        assert!(local.query(&with(Cursor::Local(3))).await.is_ok());
        assert!(matches!(
            remote.query(&loki_cursor).await,
            Err(RecordsError::Query(..))
        ));
    }

    #[tokio::test]
    async fn a_record_written_ahead_is_corrected_in_place_when_the_answer_differs() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::local(dir.path(), Arc::new(Metrics::new())).unwrap();
        let draft = Draft::new("r1", "10.0.0.7".parse().unwrap(), Action::Create);
        draft.set_caller("alice", Some(Role::Editor));
        draft.set_database("orders");
        draft.write_ahead(&audit, 202).await.unwrap();
        draft.close(&audit, 409).await.unwrap();
        let page = audit.query(&AuditQuery::default()).await.unwrap();
        assert_eq!(page.items.len(), 1, "one record per request");
        let r = &page.items[0];
        assert_eq!((r.status, r.outcome), (409, Outcome::Invalid));
        assert_eq!(r.actor, "alice");
        assert_eq!(r.database.as_deref(), Some("orders"));

        let login = Draft::new("r2", "10.0.0.8".parse().unwrap(), Action::Login);
        login.set_caller("mallory", None);
        login.close(&audit, 401).await.unwrap();
        let page = audit.query(&AuditQuery::default()).await.unwrap();
        assert_eq!(page.items[0].action, Action::LoginFailed);
        assert_eq!(page.items[0].outcome, Outcome::Denied);
    }
}
