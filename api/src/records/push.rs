//! Pushing records to Loki, for installs without a log shipper
//! (`PGPLANE_LOKI_PUSH=true`): audit records and service events alike, in
//! the stream the selector names, whatever store their queries use.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::loki::{cause, client};
use super::Record;
use crate::config::LokiSettings;
use crate::metrics::Metrics;

/// Lines waiting to be pushed; beyond this the oldest are dropped (and counted).
const PUSH_BUFFER: usize = 10_000;
const PUSH_BATCH: usize = 500;

pub struct Pusher {
    url: String,
    client: reqwest::Client,
    /// Labels of the pushed stream: the selector's matchers.
    labels: HashMap<String, String>,
    buffer: Mutex<VecDeque<(i64, String)>>,
    wake: Notify,
    metrics: Arc<Metrics>,
}

impl Pusher {
    /// Starts the pushing task (so call it inside the runtime); `None` when
    /// the settings do not ask for pushing.
    pub fn start(
        settings: &LokiSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Pusher>>, reqwest::Error> {
        let Some(labels) = &settings.push_labels else {
            return Ok(None);
        };
        let pusher = Arc::new(Pusher {
            url: settings.url.trim_end_matches('/').to_owned(),
            client: client(settings.timeout)?,
            labels: labels.clone(),
            buffer: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            metrics,
        });
        tokio::spawn(push_loop(pusher.clone()));
        Ok(Some(pusher))
    }

    /// Queues a record for `/loki/api/v1/push`.
    pub fn push_later<T: Record>(&self, record: &T) {
        let line = serde_json::to_string(record).expect("a record serializes");
        let ts = record.ts().timestamp_nanos_opt().unwrap_or(0);
        let mut buffer = self.buffer.lock().expect("not poisoned");
        if buffer.len() >= PUSH_BUFFER {
            buffer.pop_front();
            self.metrics.loki_push_dropped.inc();
        }
        buffer.push_back((ts, line));
        drop(buffer);
        self.wake.notify_one();
    }
}

/// Pushes what is buffered, in batches, retrying with a growing pause while
/// Loki is away; nothing leaves the buffer until Loki took it.
async fn push_loop(p: Arc<Pusher>) {
    let url = format!("{}/loki/api/v1/push", p.url);
    let mut pause = Duration::from_millis(200);
    loop {
        let batch: Vec<(i64, String)> = {
            let buffer = p.buffer.lock().expect("not poisoned");
            buffer.iter().take(PUSH_BATCH).cloned().collect()
        };
        if batch.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), p.wake.notified()).await;
            continue;
        }
        let body = serde_json::json!({
            "streams": [{
                "stream": p.labels,
                "values": batch.iter().map(|(ts, line)| [ts.to_string(), line.clone()]).collect::<Vec<_>>(),
            }]
        });
        match p.client.post(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                let mut buffer = p.buffer.lock().expect("not poisoned");
                // Lines dropped for room meanwhile shortened the front.
                let sent = batch.len().min(buffer.len());
                let still_front = buffer.iter().take(sent).eq(batch.iter().take(sent));
                if still_front {
                    buffer.drain(..sent);
                } else {
                    buffer.retain(|e| !batch.contains(e));
                }
                pause = Duration::from_millis(200);
            }
            other => {
                let why = match other {
                    Ok(r) => format!("status {}", r.status()),
                    Err(e) => cause(&e),
                };
                tracing::warn!(url = %p.url, error = %why, buffered = p.buffer.lock().expect("not poisoned").len(),
                    "cannot push to Loki; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}
