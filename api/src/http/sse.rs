//! Server-Sent Events: how a change stream reaches its client. Each stream
//! has a small task that takes what its source yields ([`crate::app`]
//! decides what that is), frames it, and hands it to the response body
//! through a bounded buffer. The task never waits on the client: a client
//! that does not keep up fills its buffer, is sent `resync` and cut off,
//! and no other stream or the feed waits on it. With nothing to send, a
//! stream costs a timer: a comment line every [`KEEP_ALIVE`], so proxies
//! keep the connection, and nothing else.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::app::{DatabaseWatch, EventFollow, Next, StreamSlot};
use crate::backend::{FeedEvent, Published};
use crate::model::Database;
use crate::records::ServiceEvent;

/// The longest a stream stays silent.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Frames a client may have waiting before it counts as not keeping up.
/// Besides these, hyper and the kernel buffer what the client has not read.
pub const BUFFER: usize = 64;

/// How long a client that was cut off has to take its last frames before
/// its connection is closed under it.
const GRACE: Duration = Duration::from_secs(5);

pub const EVENT_STREAM: &str = "text/event-stream";

/// Closes the connection a request came on. The accept loop puts one in
/// every request's extensions; a stream whose client stopped reading uses
/// it, since a body nobody reads is never polled to its end.
#[derive(Clone, Default)]
pub struct Hangup(Arc<Notify>);

impl Hangup {
    pub fn hang_up(&self) {
        self.0.notify_one();
    }

    /// Resolves once [`Hangup::hang_up`] was called.
    pub async fn heard(&self) {
        self.0.notified().await;
    }
}

/// What a stream sends after its first frames.
pub enum Source {
    Databases(DatabaseWatch),
    Events(EventFollow),
}

impl Source {
    async fn next(&mut self) -> Next<Bytes> {
        match self {
            Source::Databases(watch) => match watch.next().await {
                Next::Item(p) => Next::Item(p.encoded(change_frame)),
                Next::Lost(n) => Next::Lost(n),
                Next::End => Next::End,
            },
            Source::Events(follow) => match follow.next().await {
                Next::Item(e) => Next::Item(event_frame(&e)),
                Next::Lost(n) => Next::Lost(n),
                Next::End => Next::End,
            },
        }
    }
}

/// One event: its name, its id when it has one, and its data on one line
/// (compact JSON has no line breaks).
fn frame(event: &str, id: Option<i64>, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + event.len() + 40);
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn json_frame(event: &str, id: Option<i64>, data: &impl Serialize) -> Bytes {
    frame(
        event,
        id,
        &serde_json::to_vec(data).expect("stream data always serializes"),
    )
}

#[derive(Serialize)]
struct Snapshot<'a> {
    items: &'a [Database],
}

pub fn snapshot_frame(databases: &[Database]) -> Bytes {
    json_frame("snapshot", None, &Snapshot { items: databases })
}

fn change_frame(p: &Published) -> Bytes {
    let name = match p.change {
        FeedEvent::Changed(_) => "changed",
        FeedEvent::Deleted(_) => "deleted",
    };
    frame(name, None, &p.json())
}

pub fn event_frame(e: &ServiceEvent) -> Bytes {
    json_frame("service_event", Some(e.id()), e)
}

#[derive(Serialize)]
struct Reason<'a> {
    reason: &'a str,
}

/// A stream's last event: why it ends, and what the client does next.
fn notice(event: &str, reason: &str) -> Bytes {
    json_frame(event, None, &Reason { reason })
}

/// Why a stream ended.
enum Ending {
    /// The client went away.
    Gone,
    Expired,
    Stopping,
    Behind,
}

/// The response of a stream: `first` at once, then what `source` yields,
/// until the client goes, the token expires (`expires_at`, seconds since
/// the epoch) or pgplane stops.
pub fn respond(
    slot: StreamSlot,
    first: Vec<Bytes>,
    source: Source,
    expires_at: u64,
    hangup: Option<Hangup>,
) -> Response {
    let (tx, mut rx) = mpsc::channel::<Bytes>(BUFFER);
    let (done, body_ended) = oneshot::channel::<()>();
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let expires = Instant::now() + Duration::from_secs(expires_at.saturating_sub(now));
    tokio::spawn(pump(
        Pump {
            slot,
            first,
            source,
            expires,
            hangup,
        },
        tx,
        body_ended,
    ));
    let body = futures::stream::poll_fn(move |cx| {
        // Dropped with the body: tells the pump the client took it all.
        let _done = &done;
        rx.poll_recv(cx).map(|frame| frame.map(Ok::<_, Infallible>))
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer responses (NGINX) would hold the changes back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

struct Pump {
    slot: StreamSlot,
    first: Vec<Bytes>,
    source: Source,
    expires: Instant,
    hangup: Option<Hangup>,
}

async fn pump(mut p: Pump, tx: mpsc::Sender<Bytes>, body_ended: oneshot::Receiver<()>) {
    // The stored part waits on the client: it is all there is to send yet.
    for frame in std::mem::take(&mut p.first) {
        if tx.send(frame).await.is_err() {
            return;
        }
    }
    let mut stopping = p.slot.stopping.clone();
    let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ending = loop {
        let frame = tokio::select! {
            () = tx.closed() => break Ending::Gone,
            _ = stopping.wait_for(|s| *s) => break Ending::Stopping,
            () = tokio::time::sleep_until(p.expires) => break Ending::Expired,
            _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            next = p.source.next() => match next {
                Next::Item(frame) => frame,
                Next::Lost(n) => {
                    p.slot.dropped(n);
                    break Ending::Behind;
                }
                Next::End => break Ending::Stopping,
            },
        };
        // One place is kept for the resync.
        if tx.capacity() <= 1 {
            p.slot.dropped(1);
            break Ending::Behind;
        }
        let _ = tx.try_send(frame);
    };
    let last = match ending {
        Ending::Gone => return,
        Ending::Expired => notice(
            "expired",
            "the token expired: log in again and open a new stream",
        ),
        Ending::Stopping => notice("end", "pgplane is shutting down: open a new stream shortly"),
        Ending::Behind => notice(
            "resync",
            "this client fell behind and missed changes: read the list again and open a new stream",
        ),
    };
    let _ = tx.try_send(last);
    drop(tx);
    if matches!(ending, Ending::Behind) {
        // A client that takes the rest soon ends the body itself.
        if tokio::time::timeout(GRACE, body_ended).await.is_err() {
            if let Some(hangup) = &p.hangup {
                tracing::info!("closing the connection of a stream client that stopped reading");
                hangup.hang_up();
            }
        }
    }
}
