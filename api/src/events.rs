//! Service events: one record per state transition of a database, written
//! as a JSON line to standard output (for a log shipper) and appended to
//! the local store, `events.jsonl` under the data directory, which answers
//! `GET /databases/{name}/events` — also after the database is gone.
//!
//! Recording never blocks the watcher: the event is visible to queries at
//! once, and a writer thread prints it and appends it (with `fdatasync`)
//! in the order recorded.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    /// Every event, in the order recorded (so by time).
    events: RwLock<Vec<ServiceEvent>>,
    writer: mpsc::Sender<ServiceEvent>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the event store {path}: {cause}")]
pub struct StoreError {
    path: String,
    cause: String,
}

impl Events {
    /// Reads the store under `data_dir` (a torn last line, from a crash
    /// mid-write, is dropped) and starts its writer.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> Result<Arc<Events>, StoreError> {
        let path = data_dir.join(FILE);
        let shown = path.display().to_string();
        let err = |e: std::io::Error| StoreError {
            path: shown.clone(),
            cause: e.to_string(),
        };
        let (events, valid_len) = read_store(&path).map_err(err)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        file.set_len(valid_len).map_err(err)?;
        let (writer, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("pgplane-events".into())
            .spawn(move || write_loop(file, path, rx))
            .map_err(err)?;
        Ok(Arc::new(Events {
            events: RwLock::new(events),
            writer,
            metrics,
        }))
    }

    pub fn record(&self, event: ServiceEvent) {
        self.metrics
            .transitions
            .with_label_values(&[event.from.as_str(), event.to.as_str()])
            .inc();
        self.events
            .write()
            .expect("not poisoned")
            .push(event.clone());
        // The writer lives as long as the process; a send cannot fail before.
        let _ = self.writer.send(event);
    }

    /// Events of one database, newest first.
    pub fn query(&self, q: &EventQuery) -> Vec<ServiceEvent> {
        self.events
            .read()
            .expect("not poisoned")
            .iter()
            .rev()
            .filter(|e| {
                e.database == q.database
                    && q.since.is_none_or(|s| e.ts >= s)
                    && q.until.is_none_or(|u| e.ts < u)
            })
            .take(q.limit)
            .cloned()
            .collect()
    }

    /// Whether any event of `database` was ever recorded.
    pub fn knows(&self, database: &str) -> bool {
        self.events
            .read()
            .expect("not poisoned")
            .iter()
            .any(|e| e.database == database)
    }

    /// The state `database` was last recorded in, so a restart of pgplane
    /// does not record again a transition it already recorded.
    pub fn last_state(&self, database: &str) -> Option<State> {
        self.events
            .read()
            .expect("not poisoned")
            .iter()
            .rev()
            .find(|e| e.database == database)
            .map(|e| e.to)
    }
}

/// The events in the file and the length of its whole lines.
fn read_store(path: &Path) -> std::io::Result<(Vec<ServiceEvent>, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut events = Vec::new();
    let mut valid = 0u64;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        match serde_json::from_str::<ServiceEvent>(&line) {
            Ok(e) => events.push(e),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable line of the event store"),
        }
        valid += n as u64;
    }
    Ok((events, valid))
}

fn write_loop(mut file: File, path: PathBuf, rx: mpsc::Receiver<ServiceEvent>) {
    for event in rx {
        let mut line = serde_json::to_string(&event).expect("an event always serializes");
        line.push('\n');
        {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        if let Err(e) = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
        {
            tracing::error!(path = %path.display(), error = %e, "cannot append to the event store");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
