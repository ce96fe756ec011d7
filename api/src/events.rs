//! Service events: one record per state transition of a database, written
//! as a JSON line to standard output (for a log shipper) and appended to
//! the local store, `events.jsonl` under the data directory, which answers
//! `GET /databases/{name}/events` — also after the database is gone.
//!
//! Recording never blocks the watcher: the event is printed at once, and
//! the journal's writer appends it (with `fdatasync`) in the order recorded.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::Loki;
use crate::journal::{Entry, Journal, OpenError, Window};
use crate::metrics::Metrics;
use crate::model::State;

pub const LOG_TYPE: &str = "service_event";
const FILE: &str = "events.jsonl";

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
            log_type: LOG_TYPE.into(),
            database: database.into(),
            from,
            to,
            phase: phase.into(),
            ready_instances,
            instances,
        }
    }
}

/// What `GET /databases/{name}/events` asks for.
#[derive(Debug, Clone)]
pub struct EventQuery {
    pub database: String,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// The local event store and the stdout stream.
pub struct Events {
    journal: Journal<ServiceEvent>,
    metrics: Arc<Metrics>,
    /// Loki, when records are pushed there too.
    push_to: OnceLock<Arc<Loki>>,
}

impl Entry for ServiceEvent {
    fn ts(&self) -> DateTime<Utc> {
        self.ts
    }
    fn database(&self) -> Option<&str> {
        Some(&self.database)
    }
}

impl Events {
    /// Reads the store under `data_dir` (a torn last line, from a crash
    /// mid-write, is dropped) and starts its writer.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> Result<Arc<Events>, OpenError> {
        Ok(Arc::new(Events {
            journal: Journal::open(&data_dir.join(FILE))?,
            metrics,
            push_to: OnceLock::new(),
        }))
    }

    /// Hands every event recorded from now on to Loki's push buffer
    /// (which drops it unless PGPLANE_LOKI_PUSH is on).
    pub fn push_to(&self, loki: Arc<Loki>) {
        let _ = self.push_to.set(loki);
    }

    /// Prints the event as a JSON line and appends it to the store in the
    /// background: the watcher never waits on the disk.
    pub fn record(&self, event: ServiceEvent) {
        self.metrics
            .transitions
            .with_label_values(&[event.from.as_str(), event.to.as_str()])
            .inc();
        crate::records::print_line(&event);
        if let Some(loki) = self.push_to.get() {
            loki.push_later(&event);
        }
        self.journal.append_later(event);
    }

    /// Waits until every event recorded so far is on disk: at shutdown.
    pub async fn flush(&self) {
        self.journal.flush().await;
    }

    /// Events of one database, newest first.
    pub fn query(&self, q: &EventQuery) -> Vec<ServiceEvent> {
        let window = Window {
            since: q.since,
            until: q.until,
            before_position: None,
        };
        self.journal
            .scan(Some(&q.database), &window, q.limit, |_| true)
            .into_iter()
            .map(|p| p.entry)
            .collect()
    }

    /// Whether any event of `database` was ever recorded.
    pub fn knows(&self, database: &str) -> bool {
        self.journal.last_of(database).is_some()
    }

    /// The state `database` was last recorded in, so a restart of pgplane
    /// does not record again a transition it already recorded.
    pub fn last_state(&self, database: &str) -> Option<State> {
        self.journal.last_of(database).map(|e| e.to)
    }

    /// `Err` with the reason when the last write to the store failed.
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

    #[test]
    fn events_survive_a_reopen_and_a_torn_last_line_is_dropped() {
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
            database: "a".into(),
            since: None,
            until: None,
            limit: 10,
        };
        let got: Vec<State> = events.query(&q).iter().map(|e| e.to).collect();
        assert_eq!(got, [State::Degraded, State::Healthy], "newest first");
        events.record(event("a", State::Healthy));
        wait_for_lines(&dir.path().join(FILE), 4);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        for line in text.lines() {
            serde_json::from_str::<ServiceEvent>(line).expect("every line whole");
        }
    }

    #[test]
    fn query_filters_by_time_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let events = Events::open(dir.path(), Arc::new(Metrics::new())).unwrap();
        let t0 = Utc::now();
        for i in 0..5 {
            let mut e = event("a", State::Healthy);
            e.ts = t0 + chrono::Duration::seconds(i);
            events.record(e);
        }
        let q = |since: Option<i64>, until: Option<i64>, limit| EventQuery {
            database: "a".into(),
            since: since.map(|s| t0 + chrono::Duration::seconds(s)),
            until: until.map(|s| t0 + chrono::Duration::seconds(s)),
            limit,
        };
        let secs = |v: Vec<ServiceEvent>| -> Vec<i64> {
            v.iter().map(|e| (e.ts - t0).num_seconds()).collect()
        };
        assert_eq!(secs(events.query(&q(None, None, 10))), [4, 3, 2, 1, 0]);
        assert_eq!(secs(events.query(&q(Some(1), Some(3), 10))), [2, 1]);
        assert_eq!(secs(events.query(&q(None, None, 2))), [4, 3]);
        assert!(events
            .query(&EventQuery {
                database: "b".into(),
                ..q(None, None, 10)
            })
            .is_empty());
    }
}
