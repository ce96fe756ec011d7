//! The change streams in process: what `watch=true` and `follow=true`
//! send, a client that never reads, the bound on open streams, and a token
//! that expires mid-stream.

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{header, Method, Request, StatusCode};
use futures::StreamExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{Harness, MAX_STREAMS, SECRET};
use crate::auth::token::Tokens;
use crate::backend::Backend;
use crate::http::sse::BUFFER;
use crate::model::{Role, State};
use crate::records::ServiceEvent;

/// How long any one expected frame may take to come.
const DEADLINE: Duration = Duration::from_secs(5);

/// One Server-Sent Event.
#[derive(Debug)]
struct Frame {
    event: String,
    id: Option<String>,
    data: Value,
}

/// A stream's body, read frame by frame.
struct Events {
    body: BodyDataStream,
    pending: String,
}

impl Events {
    async fn open(h: &Harness, uri: &str, token: &str, last_id: Option<&str>) -> Events {
        let mut r = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(id) = last_id {
            r = r.header("last-event-id", id);
        }
        let response = h
            .router
            .clone()
            .oneshot(r.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        Events {
            body: response.into_body().into_data_stream(),
            pending: String::new(),
        }
    }

    /// The next frame that is not a comment, or `None` at the body's end.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(at) = self.pending.find("\n\n") {
                let text: String = self.pending.drain(..at + 2).collect();
                let mut frame = Frame {
                    event: String::new(),
                    id: None,
                    data: Value::Null,
                };
                let mut comment = true;
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        frame.event = v.to_owned();
                        comment = false;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        frame.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        frame.data = serde_json::from_str(v).unwrap();
                    }
                }
                if comment {
                    continue;
                }
                return Some(frame);
            }
            let chunk = tokio::time::timeout(DEADLINE, self.body.next())
                .await
                .expect("a frame within the deadline")?;
            self.pending
                .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    }

    async fn expect(&mut self, event: &str) -> Frame {
        let frame = self.next().await.expect("the stream goes on");
        assert_eq!(frame.event, event, "{frame:?}");
        frame
    }
}

fn names(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_watch_sends_the_snapshot_then_every_change_the_labels_select() {
    let h = Harness::new();
    h.create("alpha").await;
    let token = h.token(Role::Viewer);
    let mut all = Events::open(&h, "/api/v1/databases?watch=true", &token, None).await;
    let mut team_b = Events::open(
        &h,
        "/api/v1/databases?watch=true&label=team=b",
        &token,
        None,
    )
    .await;

    let snapshot = all.expect("snapshot").await;
    assert_eq!(names(&snapshot.data["items"]), ["alpha"]);
    assert_eq!(snapshot.data["items"][0]["state"], "creating");
    assert_eq!(
        names(&team_b.expect("snapshot").await.data["items"]),
        [""; 0]
    );

    h.create("beta").await;
    let changed = all.expect("changed").await;
    assert_eq!(changed.data["name"], "beta");
    assert_eq!(changed.data["revision"], 1);

    // alpha moves into team b: the filtered stream sees it appear, then go.
    let patch = Some(json!({"labels": {"team": "b"}}));
    h.call(
        Method::PATCH,
        "/api/v1/databases/alpha",
        Role::Editor,
        patch,
    )
    .await;
    assert_eq!(all.expect("changed").await.data["labels"]["team"], "b");
    assert_eq!(team_b.expect("changed").await.data["name"], "alpha");
    let patch = Some(json!({"labels": {"team": "c"}}));
    h.call(
        Method::PATCH,
        "/api/v1/databases/alpha",
        Role::Editor,
        patch,
    )
    .await;
    assert_eq!(all.expect("changed").await.data["revision"], 3);
    let left = team_b.expect("deleted").await;
    assert_eq!(left.data["name"], "alpha");

    h.call(Method::DELETE, "/api/v1/databases/beta", Role::Editor, None)
        .await;
    let deleting = all.expect("changed").await;
    assert_eq!(
        (
            deleting.data["name"].as_str(),
            deleting.data["state"].as_str()
        ),
        (Some("beta"), Some("deleting"))
    );
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_with_resync_and_others_keep_up() {
    let h = Harness::new();
    h.create("busy").await;
    let token = h.token(Role::Viewer);
    // Opened and never read while the changes come.
    let mut stalled = Events::open(&h, "/api/v1/databases?watch=true", &token, None).await;
    let mut reader = Events::open(&h, "/api/v1/databases?watch=true", &token, None).await;
    reader.expect("snapshot").await;

    let base = h.backend.get("busy").await.unwrap();
    let changes = BUFFER as u32 * 2;
    for ready in 1..=changes {
        h.backend
            .feed()
            .publish(base.clone().in_state(State::Creating, ready));
        // The reader takes each change as it comes.
        let frame = reader.expect("changed").await;
        assert_eq!(frame.data["ready_instances"], ready);
    }

    assert_eq!(stalled.expect("snapshot").await.event, "snapshot");
    let mut got = 0;
    loop {
        let frame = stalled.next().await.expect("a resync before the end");
        if frame.event == "resync" {
            break;
        }
        assert_eq!(frame.event, "changed");
        got += 1;
    }
    assert!(
        got < changes && got <= BUFFER as u32,
        "the stalled client got {got} of {changes} before its resync"
    );
    assert!(
        stalled.next().await.is_none(),
        "the stream ends after resync"
    );
    let dropped = h.app.metrics.stream_events_dropped.get();
    assert!(dropped >= 1, "dropped changes are counted");
}

#[tokio::test]
async fn streams_past_the_bound_are_refused_503_and_a_closed_one_frees_its_place() {
    let h = Harness::new();
    let token = h.token(Role::Viewer);
    let mut open = Vec::new();
    for _ in 0..MAX_STREAMS {
        open.push(Events::open(&h, "/api/v1/databases?watch=true", &token, None).await);
    }
    assert_eq!(h.app.metrics.streams_open.get(), i64::from(MAX_STREAMS));
    let refused = h
        .call(
            Method::GET,
            "/api/v1/databases?watch=true",
            Role::Viewer,
            None,
        )
        .await;
    refused.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers.contains_key(header::RETRY_AFTER));

    drop(open.pop());
    // The place is given back once the stream's task sees its client gone.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while h.app.metrics.streams_open.get() == i64::from(MAX_STREAMS) {
        assert!(tokio::time::Instant::now() < deadline, "the place is freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Events::open(&h, "/api/v1/databases?watch=true", &token, None).await;
}

#[tokio::test]
async fn a_stream_ends_with_expired_when_its_token_does() {
    let h = Harness::new();
    let short = Tokens::new(SECRET, Duration::from_secs(1)).issue("viewer");
    let mut s = Events::open(&h, "/api/v1/databases?watch=true", &short, None).await;
    s.expect("snapshot").await;
    let expired = s.expect("expired").await;
    assert!(expired.data["reason"].as_str().unwrap().contains("log in"));
    assert!(s.next().await.is_none());
}

#[tokio::test]
async fn watch_takes_no_paging_and_flags_are_true_or_false() {
    let h = Harness::new();
    for uri in [
        "/api/v1/databases?watch=true&limit=5",
        "/api/v1/databases?watch=true&cursor=abc",
        "/api/v1/databases?watch=yes",
        "/api/v1/databases?watch=true&watch=true",
        "/api/v1/events?follow=true&until=2026-01-01T00:00:00Z",
    ] {
        h.call(Method::GET, uri, Role::Viewer, None)
            .await
            .problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    let list = h
        .call(
            Method::GET,
            "/api/v1/databases?watch=false",
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body["items"].is_array());
}

fn event(db: &str, to: State) -> ServiceEvent {
    ServiceEvent::new(db, State::Creating, to, "phase", 1, 1)
}

#[tokio::test]
async fn a_follower_gets_the_stored_events_then_the_live_ones_and_resumes_after_its_last() {
    let h = Harness::new();
    let events = &h.app.events;
    events.record(event("one", State::Healthy));
    events.record(event("two", State::Healthy));
    events.flush().await;
    let token = h.token(Role::Viewer);

    let mut one = Events::open(&h, "/api/v1/databases/one/events?follow=true", &token, None).await;
    let mut all = Events::open(&h, "/api/v1/events?follow=true", &token, None).await;
    let stored = one.expect("service_event").await;
    assert_eq!(stored.data["to"], "healthy");
    assert_eq!(all.expect("service_event").await.data["database"], "one");
    assert_eq!(all.expect("service_event").await.data["database"], "two");

    events.record(event("two", State::Degraded));
    events.record(event("one", State::Degraded));
    let live = one.expect("service_event").await;
    assert_eq!(
        (live.data["database"].as_str(), live.data["to"].as_str()),
        (Some("one"), Some("degraded")),
        "the follower of one skips two's events"
    );
    let first_id = stored.id.clone().unwrap();
    let live_id = live.id.clone().unwrap();
    assert!(live_id.parse::<i64>().unwrap() > first_id.parse::<i64>().unwrap());
    assert_eq!(all.expect("service_event").await.data["database"], "two");
    assert_eq!(all.expect("service_event").await.data["database"], "one");
    drop(one);

    // A reconnect names the stored event: it gets what came after, once.
    events.record(event("one", State::Healthy));
    events.flush().await;
    let mut again = Events::open(
        &h,
        "/api/v1/databases/one/events?follow=true",
        &token,
        Some(&first_id),
    )
    .await;
    let tos: Vec<String> = [
        again.expect("service_event").await,
        again.expect("service_event").await,
    ]
    .iter()
    .map(|f| f.data["to"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(tos, ["degraded", "healthy"]);
    events.record(event("one", State::Updating));
    assert_eq!(again.expect("service_event").await.data["to"], "updating");

    let bad = Request::builder()
        .uri("/api/v1/events?follow=true")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("last-event-id", "not-an-id")
        .body(Body::empty())
        .unwrap();
    h.send(bad).await.problem(StatusCode::BAD_REQUEST);
    h.call(
        Method::GET,
        "/api/v1/databases/never/events?follow=true",
        Role::Viewer,
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}
