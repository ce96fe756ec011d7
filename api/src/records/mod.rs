//! The records pgplane keeps for operators (DESIGN.md "Records"): audit
//! records ([`audit`]) and service events ([`events`]). Each is one JSON
//! line on standard output ([`stdout`]), where a log shipper takes it to
//! Loki, and is kept in the store its own setting chooses: the local
//! journal ([`journal`]) or Loki ([`loki`]); [`push`] sends both kinds to
//! Loki when the install has no shipper. Queries of both kinds page the
//! same way ([`query`]).

pub mod audit;
pub mod events;
pub mod journal;
pub mod loki;
pub mod push;
pub mod query;
pub mod stdout;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use audit::{Action, Audit, AuditRecord, Draft, Outcome};
pub use events::{Events, ServiceEvent};
pub use loki::{Loki, LokiError};
pub use push::Pusher;
pub use query::{AuditQuery, Cursor, EventQuery, Span};

use crate::model::paging::Page;
use journal::{Journal, Window, WriteError};

/// What the stores hold: a kind of record.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The `log_type` of its lines, and the store's name in metrics.
    const LOG_TYPE: &'static str;

    fn ts(&self) -> DateTime<Utc>;
    /// The database the record is about, for the per-database index.
    fn database(&self) -> Option<&str>;
    /// Records with the same key replace each other in place: a later line
    /// corrects an earlier one (an audit record whose outcome changed).
    fn key(&self) -> Option<&str> {
        None
    }
    /// Fills in what a line in the contract's shape may lack because this
    /// version added it (an audit record's `id`), from where the line is:
    /// its time in nanoseconds and a stable hash of its text.
    fn complete(&mut self, _ts_ns: i64, _line_hash: &str) {}
}

/// What keeping or reading records can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("the audit trail cannot be written; nothing was changed")]
    Write(#[source] WriteError),
    #[error("the {0} store in Loki cannot be queried")]
    Query(&'static str, #[source] LokiError),
    /// A cursor of the other kind of store: not one this API returned.
    #[error("is not a cursor this API returned")]
    ForeignCursor,
}

/// Where the queries of one kind of record go.
enum Source<'a, T: Record> {
    Journal(&'a Journal<T>),
    Loki(&'a Loki),
}

/// One page of the records a query selects. Each store reads only its own
/// kind of cursor; `labels` is the query's filter for LogQL and `keep` the
/// same filter for the journal.
async fn page<T: Record>(
    source: Source<'_, T>,
    span: &Span,
    database: Option<&str>,
    labels: &[(&str, &str)],
    keep: impl Fn(&T) -> bool,
) -> Result<Page<T>, RecordsError> {
    match (source, &span.cursor) {
        (Source::Loki(loki), None | Some(Cursor::Loki { .. })) => loki
            .page::<T>(labels, span)
            .await
            .map_err(|e| RecordsError::Query(T::LOG_TYPE, e)),
        (Source::Journal(journal), None | Some(Cursor::Local(_))) => {
            let window = Window {
                since: span.since,
                until: span.until,
                before_position: match span.cursor {
                    Some(Cursor::Local(p)) => Some(p),
                    _ => None,
                },
            };
            let found = journal.scan(database, &window, span.limit + 1, keep);
            Ok(
                Page::from_items(found, span.limit, |last| Cursor::Local(last.position))
                    .map(|p| p.entry),
            )
        }
        _ => Err(RecordsError::ForeignCursor),
    }
}
