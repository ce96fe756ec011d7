//! The Loki store: audit records and service events are log lines in Loki
//! (shipped from standard output, or pushed by [`super::push`]), and
//! queries are LogQL over `/loki/api/v1/query_range`.
//!
//! Every filter value is put in the query as an escaped string literal, so
//! no value can change the query. Loki answers at most a limited number of
//! entries per query and over a limited time range, so a page is gathered
//! by walking back in time: by batches inside a window, and by windows.
//!
//! Reading is tolerant: a line in the contract's shape that lacks a field
//! this version added is read (see [`Record::complete`]); a line that is
//! not a record at all is counted (`pgplane_records_unreadable_total`),
//! logged once per query, and skipped without making the page short.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::query::{Cursor, Span};
use super::Record;
use crate::config::LokiSettings;
use crate::metrics::Metrics;
use crate::model::paging::Page;

/// Entries asked of Loki per query: below its default per-query limit.
const BATCH: usize = 500;
const HOUR_NS: i64 = 3600 * 1_000_000_000;
/// Loki refuses ranges longer than `max_query_length` (721h by default).
const WINDOW_NS: i64 = 720 * HOUR_NS;
/// How far back a query without `since` looks.
const DEFAULT_LOOKBACK_NS: i64 = WINDOW_NS;

#[derive(Debug, thiserror::Error)]
pub enum LokiError {
    #[error("Loki at {url} cannot be reached")]
    Unreachable {
        url: String,
        #[source]
        cause: reqwest::Error,
    },
    #[error("Loki at {url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("Loki at {url} answered something that is not a query result: {what}")]
    Malformed { url: String, what: String },
}

pub struct Loki {
    url: String,
    selector: String,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl Loki {
    pub fn new(
        settings: &LokiSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Loki>, reqwest::Error> {
        Ok(Arc::new(Loki {
            url: settings.url.trim_end_matches('/').to_owned(),
            selector: settings.selector.trim().to_owned(),
            client: client(settings.timeout)?,
            metrics,
        }))
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

    /// One page of `span.limit` records of kind `T` matching `filters`,
    /// newest first, walking back from the cursor (or `until`, or now) to
    /// `since` (or the default lookback).
    pub async fn page<T: Record>(
        &self,
        filters: &[(&str, &str)],
        span: &Span,
    ) -> Result<Page<T>, LokiError> {
        let query = self.logql(T::LOG_TYPE, filters);
        let limit = span.limit;
        let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MAX);
        // Entries before `top` (exclusive), or at the cursor's instant.
        let (top, seen_before): (i64, HashSet<String>) = match &span.cursor {
            Some(Cursor::Loki { ts_ns, seen }) => (ts_ns + 1, seen.iter().cloned().collect()),
            _ => (
                span.until.map_or_else(|| ns(Utc::now()) + 1, ns),
                HashSet::new(),
            ),
        };
        let floor = span.since.map_or(top - DEFAULT_LOOKBACK_NS, ns);
        let mut taken: Vec<Line<T>> = Vec::new();
        // Lines that are not records, skipped; kept so that a cursor at
        // their instant counts them as seen.
        let mut unreadable: Vec<(i64, String)> = Vec::new();
        let mut looked_at: HashSet<String> = HashSet::new();
        let mut end = top;
        // Loki's cost grows with the range (it splits queries by interval),
        // and most pages are recent: start with an hour, widen as needed.
        let mut width = HOUR_NS;
        while taken.len() <= limit && end > floor {
            let start = floor.max(end - width);
            let want = BATCH.min(limit + 1 - taken.len() + seen_before.len() + unreadable.len());
            let batch = self.query_range(&query, start, end, want).await?;
            let full = batch.len() >= want;
            let oldest = batch.last().map(|(ts, _)| *ts);
            let mut added = 0;
            for (ts, text) in batch {
                if ts >= top || ts < floor {
                    continue;
                }
                let id = line_id(&text);
                if seen_before.contains(&id) || !looked_at.insert(id.clone()) {
                    continue;
                }
                added += 1;
                match serde_json::from_str::<T>(&text) {
                    Ok(mut record) => {
                        record.complete(ts, &id);
                        taken.push(Line { ts, id, record });
                    }
                    Err(e) => {
                        if unreadable.is_empty() {
                            tracing::warn!(store = T::LOG_TYPE, ts_ns = ts, error = %e,
                                "skipping Loki lines that are not records (the first of this query)");
                        }
                        unreadable.push((ts, id));
                    }
                }
            }
            end = match (full, oldest) {
                // More may share the oldest instant: ask again up to and
                // including it; what was looked at already is skipped.
                (true, Some(oldest)) if added > 0 => oldest + 1,
                // A full batch of nothing new: more entries share one
                // nanosecond than a batch holds; move past that instant.
                (true, Some(oldest)) => oldest,
                _ => {
                    width = (width * 8).min(WINDOW_NS);
                    start
                }
            };
        }
        if !unreadable.is_empty() {
            self.metrics
                .records_unreadable
                .with_label_values(&["loki"])
                .inc_by(unreadable.len() as u64);
        }
        taken.sort_by(|a, b| b.ts.cmp(&a.ts).then_with(|| a.id.cmp(&b.id)));
        // Where the page ends: everything at its last instant that it has
        // answered or skipped is seen, and, still at the previous cursor's
        // instant, what that cursor had seen.
        let cursor = match taken.get(limit.saturating_sub(1)) {
            Some(last) if taken.len() > limit => {
                let at = last.ts;
                let mut seen: Vec<String> = taken[..limit]
                    .iter()
                    .filter(|l| l.ts == at)
                    .map(|l| l.id.clone())
                    .chain(
                        unreadable
                            .iter()
                            .filter(|(ts, _)| *ts == at)
                            .map(|(_, id)| id.clone()),
                    )
                    .collect();
                if top == at + 1 {
                    seen.extend(seen_before.iter().cloned());
                }
                Some(Cursor::Loki { ts_ns: at, seen })
            }
            _ => None,
        };
        let records = taken.into_iter().map(|l| l.record).collect();
        Ok(Page::from_items(records, limit, move |_| {
            cursor.expect("a cursor whenever there are more")
        }))
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
            .map_err(|cause| LokiError::Unreachable {
                url: self.url.clone(),
                cause,
            })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|cause| LokiError::Unreachable {
                url: self.url.clone(),
                cause,
            })?;
        if !status.is_success() {
            return Err(LokiError::Refused {
                url: self.url.clone(),
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
        let malformed = |what: String| LokiError::Malformed {
            url: self.url.clone(),
            what,
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

/// A record read from Loki, with its time and line id.
struct Line<T> {
    ts: i64,
    id: String,
    record: T,
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

/// A short, stable name for a line, for the cursor's `seen` list (FNV-1a).
fn line_id(line: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in line.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// An HTTP client for Loki with the configured timeout.
pub(super) fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .build()
}

/// The innermost cause of a client error, without the URL (named already).
pub(super) fn cause(e: &reqwest::Error) -> String {
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
    fn line_ids_are_stable() {
        assert_eq!(line_id(""), "cbf29ce484222325");
        assert_ne!(line_id("a"), line_id("b"));
    }
}
