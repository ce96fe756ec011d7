//! The Loki store: audit records and service events are log lines in Loki
//! (shipped from standard output, or pushed by pgplane), and queries are
//! LogQL over `/loki/api/v1/query_range`.
//!
//! Every filter value is put in the query as an escaped string literal, so
//! no value can change the query. Loki answers at most a limited number of
//! entries per query and over a limited time range, so a page is gathered
//! by walking back in time: by batches inside a window, and by windows.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::Notify;

use super::query::{AuditPage, AuditQuery, Cursor};
use super::AuditRecord;
use crate::events::{EventQuery, ServiceEvent};
use crate::journal::Entry;
use crate::metrics::Metrics;

/// Entries asked of Loki per query: below its default per-query limit.
const BATCH: usize = 500;
const HOUR_NS: i64 = 3600 * 1_000_000_000;
/// Loki refuses ranges longer than `max_query_length` (721h by default).
const WINDOW_NS: i64 = 720 * HOUR_NS;
/// How far back a query without `since` looks.
const DEFAULT_LOOKBACK_NS: i64 = WINDOW_NS;
/// Lines waiting to be pushed; beyond this the oldest are dropped (and counted).
const PUSH_BUFFER: usize = 10_000;
const PUSH_BATCH: usize = 500;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LokiError {
    #[error("Loki at {url} cannot be reached: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("Loki at {url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("Loki at {url} answered something that is not a query result: {cause}")]
    Malformed { url: String, cause: String },
}

/// The settings of the Loki store.
#[derive(Debug, Clone)]
pub struct LokiSettings {
    /// Base URL, e.g. `http://loki.monitoring:3100`.
    pub url: String,
    /// Stream selector, e.g. `{namespace="pgplane", app="pgplane"}`.
    pub selector: String,
    pub push: bool,
    pub timeout: Duration,
}

pub struct Loki {
    url: String,
    selector: String,
    client: reqwest::Client,
    /// Labels of pushed streams: the selector's matchers, when pushing.
    push: Option<Pusher>,
}

struct Pusher {
    labels: HashMap<String, String>,
    buffer: Mutex<VecDeque<(i64, String)>>,
    wake: Notify,
    metrics: Arc<Metrics>,
}

impl Loki {
    /// Checks the settings; with `push`, starts the pushing task (so call it
    /// inside the runtime).
    pub fn new(settings: &LokiSettings, metrics: Arc<Metrics>) -> Result<Arc<Loki>, String> {
        let url = settings.url.trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(3)))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let push = match settings.push {
            false => None,
            true => Some(Pusher {
                labels: selector_labels(&settings.selector)?,
                buffer: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                metrics,
            }),
        };
        let loki = Arc::new(Loki {
            url,
            selector: settings.selector.trim().to_owned(),
            client,
            push,
        });
        if loki.push.is_some() {
            tokio::spawn(push_loop(loki.clone()));
        }
        Ok(loki)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `Err` names Loki and why, for `/readyz`.
    pub async fn ready(&self) -> Result<(), String> {
        let url = format!("{}/ready", self.url);
        match self
            .client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!(
                "Loki at {} is not ready ({})",
                self.url,
                r.status()
            )),
            Err(e) => Err(format!(
                "Loki at {} cannot be reached: {}",
                self.url,
                cause(&e)
            )),
        }
    }

    /// Queues a record for `/loki/api/v1/push` (when pushing is on).
    pub fn push_later<T: Entry>(&self, record: &T) {
        let Some(p) = &self.push else { return };
        let line = serde_json::to_string(record).expect("a record serializes");
        let ts = record.ts().timestamp_nanos_opt().unwrap_or(0);
        let mut buffer = p.buffer.lock().expect("not poisoned");
        if buffer.len() >= PUSH_BUFFER {
            buffer.pop_front();
            p.metrics.loki_push_dropped.inc();
        }
        buffer.push_back((ts, line));
        drop(buffer);
        p.wake.notify_one();
    }

    /// The LogQL of a query: the selector, the JSON parser, then one exact
    /// label match per filter, each value an escaped string literal.
    pub fn logql(&self, log_type: &str, filters: &[(&str, &str)]) -> String {
        let mut q = format!(
            "{} | json | log_type={}",
            self.selector,
            string_literal(log_type)
        );
        for (label, value) in filters {
            q.push_str(&format!(" | {label}={}", string_literal(value)));
        }
        q
    }

    /// A page of audit records; `cursor` is where the last page ended.
    pub async fn audit(
        &self,
        q: &AuditQuery,
        cursor: Option<(i64, Vec<String>)>,
    ) -> Result<AuditPage, LokiError> {
        let mut filters = Vec::new();
        if let Some(d) = &q.database {
            filters.push(("database", d.as_str()));
        }
        if let Some(a) = &q.actor {
            filters.push(("actor", a.as_str()));
        }
        if let Some(a) = q.action {
            filters.push(("action", a.as_str()));
        }
        let query = self.logql(super::LOG_TYPE, &filters);
        let (items, next) = self
            .page::<AuditRecord>(&query, q.since, q.until, q.limit, cursor)
            .await?;
        Ok(AuditPage {
            items,
            next_cursor: next.map(|c| c.encode()),
        })
    }

    pub async fn events(&self, q: &EventQuery) -> Result<Vec<ServiceEvent>, LokiError> {
        let query = self.logql(crate::events::LOG_TYPE, &[("database", &q.database)]);
        let (items, _) = self
            .page::<ServiceEvent>(&query, q.since, q.until, q.limit, None)
            .await?;
        Ok(items)
    }

    /// One page of `limit` records, newest first, walking back from the
    /// cursor (or `until`, or now) to `since` (or the default lookback).
    async fn page<T: DeserializeOwned>(
        &self,
        query: &str,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: usize,
        cursor: Option<(i64, Vec<String>)>,
    ) -> Result<(Vec<T>, Option<Cursor>), LokiError> {
        let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MAX);
        // Entries before `top` (exclusive), or at the cursor's instant.
        let top = match &cursor {
            Some((ts, _)) => ts + 1,
            None => until.map_or_else(|| ns(Utc::now()) + 1, ns),
        };
        let floor = since.map_or(top - DEFAULT_LOOKBACK_NS, ns);
        let seen_before: HashSet<String> = cursor
            .map(|(_, s)| s)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut taken: Vec<(i64, String)> = Vec::new();
        let mut lines_taken: HashSet<String> = HashSet::new();
        let mut end = top;
        // Loki's cost grows with the range (it splits queries by interval),
        // and most pages are recent: start with an hour, widen as needed.
        let mut span = HOUR_NS;
        while taken.len() <= limit && end > floor {
            let start = floor.max(end - span);
            let want = BATCH.min(limit + 1 - taken.len() + seen_before.len());
            let batch = self.query_range(query, start, end, want).await?;
            let full = batch.len() >= want;
            let oldest = batch.last().map(|(ts, _)| *ts);
            let mut added = 0;
            for (ts, line) in batch {
                if ts >= top || ts < floor {
                    continue;
                }
                if seen_before.contains(&line_id(&line)) || !lines_taken.insert(line.clone()) {
                    continue;
                }
                taken.push((ts, line));
                added += 1;
            }
            end = match (full, oldest) {
                // More may share the oldest instant: ask again up to and
                // including it; what was taken already is skipped.
                (true, Some(oldest)) if added > 0 => oldest + 1,
                // A full batch of nothing new: more entries share one
                // nanosecond than a batch holds; move past that instant.
                (true, Some(oldest)) => oldest,
                _ => {
                    span = (span * 8).min(WINDOW_NS);
                    start
                }
            };
        }
        taken.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let more = taken.len() > limit;
        taken.truncate(limit);
        let next = match taken.last() {
            Some((last_ts, _)) if more => {
                let mut seen: Vec<String> = taken
                    .iter()
                    .filter(|(ts, _)| ts == last_ts)
                    .map(|(_, l)| line_id(l))
                    .collect();
                // Still at the previous cursor's instant: what it had seen stays seen.
                if top == last_ts + 1 {
                    seen.extend(seen_before.iter().cloned());
                }
                Some(Cursor::Loki {
                    ts_ns: *last_ts,
                    seen,
                })
            }
            _ => None,
        };
        let items = taken
            .into_iter()
            .filter_map(|(_, line)| match serde_json::from_str::<T>(&line) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a Loki line that is not a record");
                    None
                }
            })
            .collect();
        Ok((items, next))
    }

    /// One `query_range` call: entries in `[start, end)`, newest first.
    async fn query_range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, LokiError> {
        let url = format!("{}/loki/api/v1/query_range", self.url);
        let response = self
            .client
            .get(&url)
            .query(&[
                ("query", query),
                ("start", &start.to_string()),
                ("end", &end.to_string()),
                ("limit", &limit.to_string()),
                ("direction", "backward"),
            ])
            .send()
            .await
            .map_err(|e| LokiError::Unreachable {
                url: self.url.clone(),
                cause: cause(&e),
            })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| LokiError::Unreachable {
            url: self.url.clone(),
            cause: cause(&e),
        })?;
        if !status.is_success() {
            return Err(LokiError::Refused {
                url: self.url.clone(),
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
        let malformed = |cause: String| LokiError::Malformed {
            url: self.url.clone(),
            cause,
        };
        let parsed: QueryResponse =
            serde_json::from_str(&body).map_err(|e| malformed(e.to_string()))?;
        if parsed.data.result_type != "streams" {
            return Err(malformed(format!(
                "result type {}",
                parsed.data.result_type
            )));
        }
        let mut entries = Vec::new();
        for stream in parsed.data.result {
            for (ts, line) in stream.values {
                let ts = ts
                    .parse::<i64>()
                    .map_err(|_| malformed(format!("timestamp {ts:?}")))?;
                entries.push((ts, line));
            }
        }
        // Streams come one after another; merge them newest first.
        entries.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        entries.truncate(limit);
        Ok(entries)
    }
}

#[derive(Deserialize)]
struct QueryResponse {
    data: QueryData,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<StreamResult>,
}

#[derive(Deserialize)]
struct StreamResult {
    values: Vec<(String, String)>,
}

/// A LogQL double-quoted string literal holding exactly `value` (LogQL
/// unquotes like Go's `strconv.Unquote`).
pub fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The labels of a selector made only of `name="value"` matchers, which is
/// what pushed streams must carry for the selector to find them.
pub fn selector_labels(selector: &str) -> Result<HashMap<String, String>, String> {
    let bad = |why: &str| format!("{selector:?} {why}");
    let inner = selector
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| bad("is not a stream selector such as {app=\"pgplane\"}"))?;
    let mut labels = HashMap::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| bad("has a matcher without ="))?;
        let name = rest[..eq].trim();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if !valid_name {
            return Err(bad("has a label name that is not [a-zA-Z_][a-zA-Z0-9_]*"));
        }
        let after = &rest[eq + 1..];
        let value_part = after.strip_prefix('"').ok_or_else(|| {
            bad("must use only name=\"value\" matchers to push (no =~, != or !~)")
        })?;
        let mut value = String::new();
        let mut chars = value_part.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => value.push(e),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err(bad("has an escape other than \\\" \\\\ \\n")),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| bad("has an unterminated string"))?;
        labels.insert(name.to_owned(), value);
        rest = value_part[end + 1..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.is_empty() => rest,
            None => return Err(bad("needs a comma between matchers")),
        };
    }
    if labels.is_empty() {
        return Err(bad("has no label matcher"));
    }
    Ok(labels)
}

/// A short, stable name for a line, for the cursor's `seen` list (FNV-1a).
fn line_id(line: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in line.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The innermost cause of a client error, without the URL (named already).
fn cause(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// Pushes what is buffered, in batches, retrying with a growing pause while
/// Loki is away; nothing leaves the buffer until Loki took it.
async fn push_loop(loki: Arc<Loki>) {
    let p = loki.push.as_ref().expect("pushing is on");
    let url = format!("{}/loki/api/v1/push", loki.url);
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
        match loki.client.post(&url).json(&body).send().await {
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
                tracing::warn!(url = %loki.url, error = %why, buffered = p.buffer.lock().expect("not poisoned").len(),
                    "cannot push to Loki; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_escape_everything_that_could_end_them() {
        let table = [
            ("orders", r#""orders""#),
            (r#"a"b"#, r#""a\"b""#),
            (r"back\slash", r#""back\\slash""#),
            ("x\" | action=\"y", r#""x\" | action=\"y""#),
            ("}{|`", r#""}{|`""#),
            ("line\nbreak\t", r#""line\nbreak\t""#),
            ("\u{1}", r#""\u0001""#),
            ("ünï", r#""ünï""#),
        ];
        for (value, literal) in table {
            assert_eq!(string_literal(value), literal, "{value:?}");
        }
    }

    #[test]
    fn selectors_give_the_labels_to_push_with() {
        let l = selector_labels(r#"{namespace="pgplane", app="pgplane"}"#).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l["namespace"], "pgplane");
        let l = selector_labels(r#"{job="a\"b,c}"}"#).unwrap();
        assert_eq!(l["job"], "a\"b,c}");
        for bad in [
            "app=\"x\"",
            "{}",
            "{app=~\"x\"}",
            "{app!=\"x\"}",
            "{app=\"x\" job=\"y\"}",
            "{9app=\"x\"}",
            "{app=\"x}",
        ] {
            assert!(selector_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn line_ids_are_stable() {
        assert_eq!(line_id(""), "cbf29ce484222325");
        assert_ne!(line_id("a"), line_id("b"));
    }
}
