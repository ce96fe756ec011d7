//! A Server-Sent Events client for the stream tests: one response read
//! frame by frame, each with a deadline.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;

/// One event of a stream (comments are skipped).
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

pub struct Sse {
    response: Response,
    pending: String,
}

impl Sse {
    /// Opens the stream at `url` with `token` (and `Last-Event-ID` when given).
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        token: &str,
        last_id: Option<&str>,
    ) -> Sse {
        let mut r = client.get(url).bearer_auth(token);
        if let Some(id) = last_id {
            r = r.header("last-event-id", id);
        }
        let response = r.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{url}"
        );
        Sse {
            response,
            pending: String::new(),
        }
    }

    /// The next event within `deadline`; `None` when the stream ended.
    pub async fn next(&mut self, deadline: Duration) -> Option<Frame> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            while let Some(at) = self.pending.find("\n\n") {
                let text: String = self.pending.drain(..at + 2).collect();
                let mut frame = Frame {
                    event: String::new(),
                    id: None,
                    data: Value::Null,
                };
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        frame.event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        frame.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        frame.data = serde_json::from_str(v).unwrap();
                    }
                }
                if !frame.event.is_empty() {
                    return Some(frame);
                }
            }
            let chunk = tokio::time::timeout_at(until, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within {deadline:?}"))
                .expect("the stream reads");
            self.pending
                .push_str(std::str::from_utf8(&chunk?).expect("UTF-8 events"));
        }
    }

    /// The next event, which must be `event`.
    pub async fn expect(&mut self, event: &str, deadline: Duration) -> Frame {
        let frame = self.next(deadline).await.expect("the stream goes on");
        assert_eq!(frame.event, event, "{frame:?}");
        frame
    }
}
