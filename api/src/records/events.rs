//! Service events: one record per state transition of a database, written
//! as a JSON line to standard output (for a log shipper) and appended to
//! the local store, `events.jsonl` under the data directory, which answers
//! `GET /databases/{name}/events` — also after the database is gone.
//!
//! Recording never blocks the watcher: the event is printed at once, sent
//! to the followers of the event streams, and the journal's writer appends
//! it (with `fdatasync`) in the order recorded.
//!
//! An event's id is its time in nanoseconds since the Unix epoch, which
//! this process keeps strictly increasing: ids order events as they were
//! recorded, survive a restart (they are in every stored line, also in
//! lines of older versions and in Loki), and "every event after id n" is
//! a time window any store answers.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use super::journal::{Journal, OpenError};
use super::{page, EventQuery, Loki, Pusher, Record, RecordsError, Source};
use crate::metrics::Metrics;
use crate::model::paging::Page;
use crate::model::State;

const FILE: &str = "events.jsonl";

/// How many events a follower may fall behind before it is told it lost
/// some (its stream then asks the client to resync).
const LIVE_CAPACITY: usize = 1024;

/// The largest number of stored events one replay reads.
pub const MAX_REPLAY: usize = 100_000;

/// One state transition (DESIGN.md "Records").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceEvent {
    pub ts: DateTime<Utc>,
    /// Always `service_event`.
    pub log_type: String,
    pub database: String,
    pub from: State,
    pub to: State,
    /// The backend's own text for the new state, verbatim.
    pub phase: String,
    pub ready_instances: u32,
    pub instances: u32,
}

impl ServiceEvent {
    pub fn new(
        database: &str,
        from: State,
        to: State,
        phase: &str,
        ready_instances: u32,
        instances: u32,
    ) -> ServiceEvent {
        ServiceEvent {
            ts: Utc::now(),
            log_type: Self::LOG_TYPE.into(),
            database: database.into(),
            from,
            to,
            phase: phase.into(),
            ready_instances,
            instances,
        }
    }
}

impl ServiceEvent {
    /// The event's id: its time in nanoseconds since the epoch.
    pub fn id(&self) -> i64 {
        id_of(self.ts)
    }
}

fn id_of(ts: DateTime<Utc>) -> i64 {
    ts.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The time an event id stands for; `None` for a text that is no id.
pub fn parse_id(text: &str) -> Option<DateTime<Utc>> {
    let nanos: i64 = text.trim().parse().ok().filter(|n| *n >= 0)?;
    Some(DateTime::from_timestamp_nanos(nanos))
}

impl Record for ServiceEvent {
    const LOG_TYPE: &'static str = "service_event";

    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn database(&self) -> Option<&str> {
        Some(&self.database)
    }
}

/// The service events: always kept in the local journal (it is also the
/// watcher's memory of what it recorded), queried there or in Loki.
pub struct Events {
    journal: Journal<ServiceEvent>,
    metrics: Arc<Metrics>,
    /// Set when `PGPLANE_EVENT_STORE=loki`: queries go there.
    query_loki: Option<Arc<Loki>>,
    pusher: Option<Arc<Pusher>>,
    live: broadcast::Sender<ServiceEvent>,
    /// The time of the last event recorded, for strictly increasing ids.
    last_ts: Mutex<DateTime<Utc>>,
}

impl Events {
    /// Reads the journal under `data_dir` (a torn last line, from a crash
    /// mid-write, is dropped) and starts its writer.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> Result<Events, OpenError> {
        let journal = Journal::open(&data_dir.join(FILE))?;
        metrics
            .records_unreadable
            .with_label_values(&["local"])
            .inc_by(journal.unreadable());
        let last_ts = journal
            .last()
            .map_or(DateTime::<Utc>::MIN_UTC, |e: ServiceEvent| e.ts);
        Ok(Events {
            journal,
            metrics,
            query_loki: None,
            pusher: None,
            live: broadcast::channel(LIVE_CAPACITY).0,
            last_ts: Mutex::new(last_ts),
        })
    }

    /// Answers queries from Loki instead of the journal.
    pub fn query_from(mut self, loki: Arc<Loki>) -> Events {
        self.query_loki = Some(loki);
        self
    }

    /// Pushes every event recorded from now on to Loki.
    pub fn push_to(mut self, pusher: Arc<Pusher>) -> Events {
        self.pusher = Some(pusher);
        self
    }

    /// Prints the event as a JSON line and appends it to the journal in the
    /// background: the watcher never waits on the disk.
    pub fn record(&self, mut event: ServiceEvent) {
        {
            let mut last = self.last_ts.lock().expect("not poisoned");
            if event.ts <= *last {
                event.ts = *last + chrono::Duration::nanoseconds(1);
            }
            *last = event.ts;
            // Sent under the same lock: followers get events in id order.
            let _ = self.live.send(event.clone());
        }
        self.metrics
            .transitions
            .with_label_values(&[event.from.as_str(), event.to.as_str()])
            .inc();
        super::stdout::print_line(&event);
        if let Some(pusher) = &self.pusher {
            pusher.push_later(&event);
        }
        self.journal.append_later(event);
    }

    /// Waits until every event recorded so far is on disk: at shutdown.
    pub async fn flush(&self) {
        self.journal.flush().await;
    }

    /// A page of events, newest first.
    pub async fn query(&self, q: &EventQuery) -> Result<Page<ServiceEvent>, RecordsError> {
        let source = match &self.query_loki {
            Some(loki) => Source::Loki(loki),
            None => Source::Journal(&self.journal),
        };
        page(source, &q.span, q.database.as_deref(), &q.labels(), |e| {
            q.matches(e)
        })
        .await
    }

    /// The events recorded from now on, as they are.
    pub fn follow(&self) -> broadcast::Receiver<ServiceEvent> {
        self.live.subscribe()
    }

    /// The stored events of `database` (or of all) after `after`, or at or
    /// after it when `inclusive`, oldest first; at most [`MAX_REPLAY`], the
    /// newest of them.
    pub async fn replay(
        &self,
        database: Option<&str>,
        after: DateTime<Utc>,
        inclusive: bool,
    ) -> Result<Vec<ServiceEvent>, RecordsError> {
        let mut query = EventQuery {
            database: database.map(str::to_owned),
            span: super::Span {
                since: Some(after),
                limit: super::query::MAX_LIMIT,
                ..super::Span::default()
            },
        };
        let mut newest_first = Vec::new();
        loop {
            let page = self.query(&query).await?;
            newest_first.extend(page.items);
            match page.next_cursor {
                Some(cursor) if newest_first.len() < MAX_REPLAY => {
                    query.span.cursor = Some(
                        crate::model::paging::decode_cursor(&cursor)
                            .ok_or(RecordsError::ForeignCursor)?,
                    );
                }
                _ => break,
            }
        }
        newest_first.truncate(MAX_REPLAY);
        newest_first.retain(|e| inclusive || e.ts > after);
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Whether any event of `database` was ever recorded here.
    pub fn knows(&self, database: &str) -> bool {
        self.journal.last_of(database).is_some()
    }

    /// The state `database` was last recorded in, so a restart of pgplane
    /// does not record again a transition it already recorded.
    pub fn last_state(&self, database: &str) -> Option<State> {
        self.journal.last_of(database).map(|e| e.to)
    }

    /// `Err` with the reason when the last write to the journal failed.
    pub fn ready(&self) -> Result<(), String> {
        if self.journal.healthy() {
            Ok(())
        } else {
            Err(format!(
                "the event store {} cannot be written",
                self.journal.path().display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Span;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn event(db: &str, to: State) -> ServiceEvent {
        ServiceEvent::new(db, State::Creating, to, "p", 1, 1)
    }

    fn wait_for_lines(path: &Path, n: usize) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(path).map_or(0, |t| t.lines().count()) < n {
            assert!(std::time::Instant::now() < until, "{n} lines written");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[tokio::test]
    async fn events_survive_a_reopen_and_a_torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let events = Events::open(dir.path(), metrics.clone()).unwrap();
        events.record(event("a", State::Healthy));
        events.record(event("b", State::Healthy));
        events.record(event("a", State::Degraded));
        wait_for_lines(&dir.path().join(FILE), 3);
        drop(events);
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        f.write_all(b"{\"ts\":\"2026-").unwrap();
        let events = Events::open(dir.path(), metrics).unwrap();
        assert_eq!(events.last_state("a"), Some(State::Degraded));
        assert_eq!(events.last_state("c"), None);
        let q = EventQuery {
            database: Some("a".into()),
            span: Span::default(),
        };
        let got: Vec<State> = events
            .query(&q)
            .await
            .unwrap()
            .items
            .iter()
            .map(|e| e.to)
            .collect();
        assert_eq!(got, [State::Degraded, State::Healthy], "newest first");
        events.record(event("a", State::Healthy));
        wait_for_lines(&dir.path().join(FILE), 4);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        for line in text.lines() {
            serde_json::from_str::<ServiceEvent>(line).expect("every line whole");
        }
    }

    #[tokio::test]
    async fn query_filters_by_time_limits_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let events = Events::open(dir.path(), Arc::new(Metrics::new())).unwrap();
        let t0 = Utc::now();
        for i in 0..5 {
            let mut e = event("a", State::Healthy);
            e.ts = t0 + chrono::Duration::seconds(i);
            events.record(e);
        }
        let q = |since: Option<i64>, until: Option<i64>, limit| EventQuery {
            database: Some("a".into()),
            span: Span {
                since: since.map(|s| t0 + chrono::Duration::seconds(s)),
                until: until.map(|s| t0 + chrono::Duration::seconds(s)),
                limit,
                cursor: None,
            },
        };
        let secs = |p: Page<ServiceEvent>| -> Vec<i64> {
            p.items.iter().map(|e| (e.ts - t0).num_seconds()).collect()
        };
        let run = |q: EventQuery| {
            let events = &events;
            async move { events.query(&q).await.unwrap() }
        };
        assert_eq!(secs(run(q(None, None, 10)).await), [4, 3, 2, 1, 0]);
        assert_eq!(secs(run(q(Some(1), Some(3), 10)).await), [2, 1]);
        let first = run(q(None, None, 2)).await;
        let cursor = first.next_cursor.clone().expect("more than one page");
        assert_eq!(secs(first), [4, 3]);
        let mut next = q(None, None, 2);
        next.span.cursor = crate::model::paging::decode_cursor(&cursor);
        assert_eq!(secs(run(next).await), [2, 1]);
        let other = EventQuery {
            database: Some("b".into()),
            ..q(None, None, 10)
        };
        assert!(run(other).await.items.is_empty());
        let everyone = EventQuery {
            database: None,
            ..q(None, None, 10)
        };
        assert_eq!(run(everyone).await.items.len(), 5);
    }
}
