//! The accept loop: every client connection is served by hyper (HTTP/1.1)
//! over a [`GatedStream`], bounded in number, with the client's address
//! given to handlers as `ConnectInfo<SocketAddr>`, and drained on shutdown.
//!
//! The bound: `PGPLANE_MAX_CONNECTIONS` connections are served at once.
//! Past it, [`OVERFLOW_CONNECTIONS`] more are still accepted, but each is
//! only read for one request, with a short head deadline, and answered:
//! `GET /healthz` as usual (so a liveness probe still sees a live process),
//! anything else `503` problem+json with `Retry-After: 1`; then closed.
//! `/readyz` is among the rest on purpose: a replica at its bound is not
//! ready for more, so its Service sends new clients to the others, while
//! its liveness probe keeps it from being restarted. Past those too, a
//! connection is accepted and closed at once, so a client never hangs in
//! the listen queue. Both bounds together stay below the file limit, with
//! room for pgplane's own files (see `config.rs`).
//!
//! Shutdown: the listener closes, idle connections close, those with a
//! request under way finish it (answered with `Connection: close`), and
//! connections still open after [`DRAIN_DEADLINE`] are dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use super::framing::{Limits, Refusal, MAX_HEADERS};
use super::stream::{Early, Exchange, GatedStream, Timeouts};
use crate::config::{ConnectionSettings, OVERFLOW_CONNECTIONS};
use crate::http::extract::BODY_LIMIT;
use crate::http::problem::HttpError;
use crate::http::sse::Hangup;

/// The bounds of a request head. 16 KiB is what Node.js allows; a bearer
/// token is well under 1 KiB. 8 KiB of target is nginx's line buffer.
pub const LIMITS: Limits = Limits {
    head: 16 * 1024,
    target: 8 * 1024,
    body: BODY_LIMIT as u64,
};

/// How long a connection past the bound has for its one request head.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long shutdown waits for requests under way: within the Deployment's
/// 30 s grace after its 5 s preStop, with time left to flush the events.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// How often a bound reached, or a failing accept, is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ConnectionSettings,
    shutdown: impl Future<Output = ()>,
) {
    let served = Arc::new(Semaphore::new(settings.max_connections as usize));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS as usize));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut bound_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e, &mut bound_logged).await;
                continue;
            }
        };
        let (permit, kind) = match served.clone().try_acquire_owned() {
            Ok(permit) => (permit, Kind::Served),
            Err(_) => {
                if bound_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    tracing::warn!(
                        max_connections = settings.max_connections,
                        "connection bound reached: new connections are answered 503"
                    );
                    bound_logged = Some(Instant::now());
                }
                match overflow.clone().try_acquire_owned() {
                    Ok(permit) => (permit, Kind::Overflow),
                    // Closed at once: better than a hang in the listen queue.
                    Err(_) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            kind,
            router.clone(),
            settings,
            stopping.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = async {
        let _all = served.acquire_many(settings.max_connections).await;
        let _all = overflow.acquire_many(OVERFLOW_CONNECTIONS).await;
    };
    if tokio::time::timeout(DRAIN_DEADLINE, drained).await.is_err() {
        tracing::warn!(
            open = settings.max_connections as usize - served.available_permits(),
            "connections still open after the drain deadline are dropped"
        );
    }
}

/// An accept that failed: a connection gone before it was accepted is
/// nothing; anything else (such as the file limit reached) is logged, and
/// accepting pauses a moment, since retrying at once would fail again.
async fn accept_failed(e: std::io::Error, logged: &mut Option<Instant>) {
    use std::io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused
    ) {
        return;
    }
    if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
        tracing::error!(error = %e, "cannot accept connections");
        *logged = Some(Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Within the bound: served with keep-alive.
    Served,
    /// Past it: one request, answered and closed.
    Overflow,
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    kind: Kind,
    router: Router,
    settings: ConnectionSettings,
    mut stopping: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let exchange = Arc::new(Exchange::new());
    let header = match kind {
        Kind::Served => settings.header_timeout,
        Kind::Overflow => settings.header_timeout.min(OVERFLOW_HEADER_TIMEOUT),
    };
    let timeouts = Timeouts {
        header,
        idle: settings.idle_timeout,
    };
    let io = GatedStream::new(stream, LIMITS, timeouts, exchange.clone());
    let hangup = Hangup::default();
    let service = Requests {
        router,
        peer,
        exchange,
        seen: Arc::new(AtomicU64::new(0)),
        overflow: (kind == Kind::Overflow).then_some(settings.max_connections),
        hangup: hangup.clone(),
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(kind == Kind::Served)
        .max_headers(MAX_HEADERS)
        // The stream keeps the deadlines: hyper's would close without an answer.
        .header_read_timeout(None);
    let mut conn = pin!(http.serve_connection(io, service));
    let stop = async {
        // The guard `wait_for` returns is not Send: drop it here.
        let _ = stopping.wait_for(|stop| *stop).await.is_ok();
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        // Dropping the connection closes its socket, whatever hyper was writing.
        () = hangup.heard() => Ok(()),
        () = stop => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
    }
}

/// The service of one connection: the router, given the client's address,
/// except for the stand-in of a refused head and, past the bound, anything
/// but `/healthz`.
#[derive(Clone)]
struct Requests {
    router: Router,
    peer: SocketAddr,
    exchange: Arc<Exchange>,
    /// Requests hyper has handed over on this connection.
    seen: Arc<AtomicU64>,
    /// Past the bound: the bound.
    overflow: Option<u32>,
    /// Closes this connection (a stream whose client stopped reading).
    hangup: Hangup,
}

type Answer = Response<Finishing>;

impl hyper::service::Service<Request<Incoming>> for Requests {
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let index = self.seen.fetch_add(1, Ordering::SeqCst);
        let finish = Finish(self.exchange.clone());
        if let Some(early) = self.exchange.refusal(index) {
            let error = refusal_error(early);
            tracing::info!(
                client = %self.peer,
                status = error.status().as_u16(),
                reason = %error,
                "request refused before routing"
            );
            return Box::pin(std::future::ready(Ok(finishing(
                error.into_response(),
                finish,
            ))));
        }
        let probe = matches!(*req.method(), Method::GET | Method::HEAD) && req.uri() == "/healthz";
        if let (Some(bound), false) = (self.overflow, probe) {
            let response = HttpError::TooManyConnections(bound).into_response();
            return Box::pin(std::future::ready(Ok(finishing(response, finish))));
        }
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        req.extensions_mut().insert(self.hangup.clone());
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(req).await.unwrap_or_else(|e| match e {});
            Ok(finishing(response, finish))
        })
    }
}

/// The problem a refused head is answered with.
fn refusal_error(early: Early) -> HttpError {
    match early {
        Early::Timeout(secs) => HttpError::RequestTimeout(secs),
        Early::Refused(refusal) => match refusal {
            Refusal::Malformed(why) => HttpError::BadRequest(why.to_owned()),
            Refusal::TargetTooLong => HttpError::UriTooLong(LIMITS.target),
            Refusal::HeadTooLarge => HttpError::HeadersTooLarge(format!(
                "the request head is larger than {} bytes",
                LIMITS.head
            )),
            Refusal::TooManyHeaders => HttpError::HeadersTooLarge(format!(
                "the request has more than {MAX_HEADERS} header fields"
            )),
            Refusal::BodyTooLarge => HttpError::PayloadTooLarge(BODY_LIMIT),
        },
    }
}

/// Tells the connection, when dropped, that its response is over.
struct Finish(Arc<Exchange>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finished();
    }
}

fn finishing(response: axum::response::Response, finish: Finish) -> Answer {
    response.map(|body| Finishing {
        body,
        _finish: finish,
    })
}

/// A response body that says when it is written, or given up (dropped).
struct Finishing {
    body: Body,
    _finish: Finish,
}

impl http_body::Body for Finishing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
