//! The change streams against real PostgreSQL servers: a watch sees a
//! database's whole life in order and ends up holding exactly the list;
//! a follower that reconnects with `Last-Event-ID` (after its connection
//! was cut, and after pgplane restarted) gets every transition once.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::sse::{Frame, Sse};
use support::TestApp;

const SLOW: Duration = Duration::from_secs(120);

/// Applies a watch event to the list a client holds.
fn apply(held: &mut BTreeMap<String, Value>, frame: &Frame) {
    match frame.event.as_str() {
        "snapshot" => {
            held.clear();
            for db in frame.data["items"].as_array().unwrap() {
                held.insert(db["name"].as_str().unwrap().into(), db.clone());
            }
        }
        "changed" => {
            held.insert(
                frame.data["name"].as_str().unwrap().into(),
                frame.data.clone(),
            );
        }
        "deleted" => {
            held.remove(frame.data["name"].as_str().unwrap());
        }
        other => panic!("unexpected event {other}: {frame:?}"),
    }
}

/// Reads the watch until `done` holds for the held list; returns the
/// states `name` went through (each once, in order).
async fn watch_until(
    watch: &mut Sse,
    held: &mut BTreeMap<String, Value>,
    name: &str,
    states: &mut Vec<String>,
    done: impl Fn(&BTreeMap<String, Value>) -> bool,
) {
    while !done(held) {
        let frame = watch.next(SLOW).await.expect("the watch goes on");
        apply(held, &frame);
        if frame.data["name"] == name {
            let state = if frame.event == "deleted" {
                "(gone)".to_owned()
            } else {
                frame.data["state"].as_str().unwrap().to_owned()
            };
            if states.last() != Some(&state) {
                states.push(state);
            }
        }
    }
}

fn state_of<'a>(held: &'a BTreeMap<String, Value>, name: &str) -> Option<&'a str> {
    held.get(name).and_then(|d| d["state"].as_str())
}

#[tokio::test]
async fn a_watch_sees_a_whole_life_in_order_and_holds_the_list() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    let url = format!("{}/api/v1/databases?watch=true", app.base);
    let mut watch = Sse::open(&app.client, &url, &editor.token, None).await;
    let mut held = BTreeMap::new();
    apply(&mut held, &watch.expect("snapshot", SLOW).await);
    assert!(held.is_empty());

    let (status, _) = editor
        .post("/api/v1/databases", json!({"name": "kept", "instances": 1}))
        .await;
    assert_eq!(status, 202);
    let (status, _) = editor
        .post("/api/v1/databases", json!({"name": "life", "instances": 1}))
        .await;
    assert_eq!(status, 202);
    let mut states = Vec::new();
    watch_until(&mut watch, &mut held, "life", &mut states, |h| {
        state_of(h, "life") == Some("healthy") && state_of(h, "kept") == Some("healthy")
    })
    .await;

    let (status, _) = editor
        .patch("/api/v1/databases/life", json!({"instances": 2}))
        .await;
    assert_eq!(status, 202);
    watch_until(&mut watch, &mut held, "life", &mut states, |h| {
        h["life"]["state"] == "healthy" && h["life"]["ready_instances"] == 2
    })
    .await;

    let (status, _) = editor.delete("/api/v1/databases/life").await;
    assert_eq!(status, 202);
    watch_until(&mut watch, &mut held, "life", &mut states, |h| {
        !h.contains_key("life")
    })
    .await;
    assert_eq!(
        states,
        ["creating", "healthy", "scaling", "healthy", "deleting", "(gone)"],
        "the watch saw every state of the database's life, in order"
    );

    // What the stream built is the list, field for field.
    let (status, list) = editor.get("/api/v1/databases").await;
    assert_eq!(status, 200);
    let listed: BTreeMap<String, Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap().to_owned(), d.clone()))
        .collect();
    assert_eq!(held, listed);
}

/// The `to` of each service event frame.
fn tos(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f.data["to"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_follower_resumes_after_its_last_event_across_a_cut_and_a_restart() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    let (status, _) = editor
        .post(
            "/api/v1/databases",
            json!({"name": "followed", "instances": 1}),
        )
        .await;
    assert_eq!(status, 202);
    let url = format!("{}/api/v1/databases/followed/events?follow=true", app.base);
    let mut follow = Sse::open(&app.client, &url, &editor.token, None).await;
    // Stored or live, the transitions up to healthy.
    let mut seen = Vec::new();
    while seen
        .last()
        .is_none_or(|f: &Frame| f.data["to"] != "healthy")
    {
        seen.push(follow.expect("service_event", SLOW).await);
    }
    let last_id = seen.last().unwrap().id.clone().expect("events carry ids");

    // The connection is cut; transitions happen meanwhile.
    drop(follow);
    let (status, _) = editor
        .patch(
            "/api/v1/databases/followed",
            json!({"parameters": {"work_mem": "8MB"}}),
        )
        .await;
    assert_eq!(status, 202);
    app.wait_state(&editor, "followed", "healthy", SLOW).await;
    let after = editor.events("followed").await;
    let mut missed = after.len() - seen.len();
    assert!(missed >= 2, "the change made transitions: {after:?}");

    let mut again = Sse::open(&app.client, &url, &editor.token, Some(&last_id)).await;
    let mut resumed = Vec::new();
    while missed > 0 {
        resumed.push(again.expect("service_event", SLOW).await);
        missed -= 1;
    }
    let stored: Vec<Value> = after.iter().rev().skip(seen.len()).cloned().collect();
    assert_eq!(
        tos(&resumed),
        stored
            .iter()
            .map(|e| e["to"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        "after the cut: every transition since the last one received, in order"
    );
    let last_id = resumed.last().unwrap().id.clone().unwrap();
    drop(again);

    // pgplane restarts; the stream resumes from the stored events.
    let app = app.start_over().await;
    let editor = app.as_user("editor").await;
    app.wait_state(&editor, "followed", "healthy", SLOW).await;
    let (status, _) = editor
        .patch(
            "/api/v1/databases/followed",
            json!({"parameters": {"work_mem": "16MB"}}),
        )
        .await;
    assert_eq!(status, 202);
    let url = format!("{}/api/v1/databases/followed/events?follow=true", app.base);
    let mut third = Sse::open(&app.client, &url, &editor.token, Some(&last_id)).await;
    let first = third.expect("service_event", SLOW).await;
    assert_eq!(first.data["from"], "healthy", "none twice: {first:?}");
    let mut after_restart = vec![first];
    while after_restart.last().unwrap().data["to"] != "healthy" {
        after_restart.push(third.expect("service_event", SLOW).await);
    }
    let ids: Vec<i64> = after_restart
        .iter()
        .map(|f| f.id.as_ref().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > last_id.parse::<i64>().unwrap(),
        "ids increase across the restart: {ids:?}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_the_others_keep_their_pace() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    let (status, _) = editor
        .post("/api/v1/databases", json!({"name": "busy", "instances": 1}))
        .await;
    assert_eq!(status, 202);

    // A client that asks for the stream and then never reads, with a small
    // receive window, so what it does not read backs up into pgplane.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.base.trim_start_matches("http://").parse().unwrap();
    let mut stalled = socket.connect(address).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /api/v1/databases?watch=true HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\n\r\n",
                editor.token
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let url = format!("{}/api/v1/databases?watch=true", app.base);
    let mut reader = Sse::open(&app.client, &url, &editor.token, None).await;
    reader.expect("snapshot", SLOW).await;
    let deadline = tokio::time::Instant::now() + SLOW;
    while app.metric("pgplane_streams_open").await < 2.0 {
        assert!(tokio::time::Instant::now() < deadline, "both streams open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Large changes (32 labels of 63 characters), until the stalled client
    // is cut off; the reader must get each one promptly all along.
    let mut slowest = Duration::ZERO;
    let mut changes = 0;
    loop {
        changes += 1;
        assert!(changes <= 5000, "the stalled client was never cut off");
        let labels: serde_json::Map<String, Value> = (0..32)
            .map(|k| {
                (
                    format!("label-{k:02}-{}", "k".repeat(50)),
                    json!(format!("{changes:06}-{}", "v".repeat(55))),
                )
            })
            .collect();
        let (status, _) = editor
            .patch("/api/v1/databases/busy", json!({"labels": labels}))
            .await;
        assert_eq!(status, 202);
        let sent = tokio::time::Instant::now();
        let want = format!("{changes:06}-");
        loop {
            let frame = reader
                .next(SLOW)
                .await
                .expect("the reader's stream goes on");
            apply(&mut BTreeMap::new(), &frame);
            let first = frame.data["labels"]
                .as_object()
                .and_then(|l| l.values().next())
                .and_then(Value::as_str)
                .unwrap_or("");
            if first.starts_with(&want) {
                break;
            }
        }
        slowest = slowest.max(sent.elapsed());
        if changes % 20 == 0 && app.metric("pgplane_streams_open").await < 2.0 {
            break;
        }
    }
    assert!(
        slowest < Duration::from_secs(1),
        "the reader kept its pace: slowest change {slowest:?} over {changes}"
    );
    assert!(app.metric("pgplane_stream_events_dropped_total").await >= 1.0);

    // The stalled connection was closed under it: reading it now finds
    // its end (after what the kernel held for it).
    let mut sink = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(SLOW, async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled connection is closed");
}
