//! One client connection as hyper reads it: a TCP stream that lets through
//! only what [`super::framing`] passed, holds each request head to its
//! deadline, and ends idle keep-alive connections. A refused head never
//! reaches hyper: in its place hyper reads a fixed one-line request with
//! `Connection: close`, which the connection's service answers with the
//! refusal ([`Exchange::refusal`]); hyper so writes that answer in order,
//! after those of the requests before it, and then closes.
//!
//! Deadlines: the first head must be complete within the header timeout of
//! the accept; later ones within the header timeout of their first byte;
//! between requests, with no response under way, the connection may stay
//! idle for the idle timeout. A head that was started when its time ran out
//! is answered 408; a connection that sent nothing is closed without a word
//! (RFC 9112 §9.6: a client must expect an idle connection to close).
//!
//! When a connection closes while the client may still be sending (a refused
//! head, a body the handler did not read), the close lingers: the write side
//! is shut first and what still arrives is read and dropped for a moment, so
//! the client reads our answer instead of a reset.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::framing::{Advance, Framing, Limits, Refusal};

/// What hyper reads in place of a refused head.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n";

/// How long a closing connection reads and drops what still arrives.
const LINGER: Duration = Duration::from_secs(2);
/// ... and how much of it at most.
const LINGER_BYTES: usize = 1 << 20;

/// Each read from the socket.
const READ_SIZE: usize = 8 * 1024;

/// What a connection's refused request is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Early {
    /// The head was not complete within the header timeout (whole seconds).
    Timeout(u64),
    Refused(Refusal),
}

/// What the stream and the connection's service share: how far the
/// responses are, and the one refusal, if any.
#[derive(Debug)]
pub struct Exchange {
    /// Responses whose body has been written (or dropped).
    finished: AtomicU64,
    /// When the last of them finished.
    idle_since: Mutex<Instant>,
    /// The stream, waiting for the response under way to finish.
    waiting: AtomicWaker,
    /// The index (0-based, among the requests hyper read) of the stand-in
    /// request, and what it is to be answered with.
    refusal: OnceLock<(u64, Early)>,
}

impl Exchange {
    pub fn new() -> Exchange {
        Exchange {
            finished: AtomicU64::new(0),
            idle_since: Mutex::new(Instant::now()),
            waiting: AtomicWaker::new(),
            refusal: OnceLock::new(),
        }
    }

    /// The refusal that request number `index` stands in for, if it does.
    pub fn refusal(&self, index: u64) -> Option<Early> {
        self.refusal
            .get()
            .filter(|(at, _)| *at == index)
            .map(|(_, early)| *early)
    }

    /// A response is written (or abandoned): the idle time starts.
    pub fn finished(&self) {
        *self.idle_since.lock().expect("never poisoned") = Instant::now();
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.waiting.wake();
    }
}

/// The deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

#[derive(Debug)]
enum Phase {
    /// Passing what the framing passes.
    Open,
    /// Giving hyper the stand-in head; so many bytes of it given.
    StandingIn(usize),
    /// The stand-in is read: nothing more until hyper has answered and closes.
    Answering,
    /// The end of input (the peer's, or ours on an idle deadline).
    Ended,
}

/// What happens when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// A head was started: 408.
    Answer,
    /// Nothing was sent: close.
    Close,
}

pub struct GatedStream {
    io: TcpStream,
    framing: Framing,
    /// Received and not yet read by hyper; the first `passed` bytes may be.
    received: Vec<u8>,
    passed: usize,
    /// Heads hyper has been given (the stand-in included).
    heads: u64,
    phase: Phase,
    accepted: Instant,
    /// When the first byte of the head being read arrived (after the first).
    head_started: Option<Instant>,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
    exchange: std::sync::Arc<Exchange>,
    /// Whether the client may still be sending what nobody read.
    unread: bool,
    /// Closing: the write side is shut, and the drain ends at this instant.
    closing: Option<(Instant, usize)>,
}

impl GatedStream {
    pub fn new(
        io: TcpStream,
        limits: Limits,
        timeouts: Timeouts,
        exchange: std::sync::Arc<Exchange>,
    ) -> GatedStream {
        let accepted = Instant::now();
        GatedStream {
            io,
            framing: Framing::new(limits),
            received: Vec::new(),
            passed: 0,
            heads: 0,
            phase: Phase::Open,
            accepted,
            head_started: None,
            timeouts,
            timer: Box::pin(tokio::time::sleep_until(accepted + timeouts.header)),
            timer_at: accepted + timeouts.header,
            exchange,
            unread: false,
            closing: None,
        }
    }

    /// Replaces the head being read by the stand-in that answers `early`.
    fn refuse(&mut self, early: Early) {
        // Only one head per connection is ever refused: it is the last.
        let _ = self.exchange.refusal.set((self.heads, early));
        self.heads += 1;
        self.received = Vec::new();
        self.passed = 0;
        self.phase = Phase::StandingIn(0);
        // A timed-out client has stopped sending; a refused one may not have.
        self.unread = matches!(early, Early::Refused(_));
    }

    /// The deadline that applies now, if any, and what it does.
    fn deadline(&mut self, cx: &Context<'_>) -> Option<(Instant, Expiry)> {
        if !self.framing.in_head() {
            // Mid-body: the handler reading it decides how long it waits.
            return None;
        }
        let started = !self.received.is_empty();
        let expiry = if started {
            Expiry::Answer
        } else {
            Expiry::Close
        };
        if self.heads == 0 {
            return Some((self.accepted + self.timeouts.header, expiry));
        }
        if started {
            let since = *self.head_started.get_or_insert_with(Instant::now);
            return Some((since + self.timeouts.header, expiry));
        }
        // Between requests: idle only once every response is out. Register
        // before looking, so that a response finishing now wakes us.
        self.exchange.waiting.register(cx.waker());
        if self.exchange.finished.load(Ordering::SeqCst) < self.heads {
            return None;
        }
        let idle_since = *self.exchange.idle_since.lock().expect("never poisoned");
        Some((idle_since + self.timeouts.idle, Expiry::Close))
    }

    /// Reads more from the socket into `received`: the count, 0 at its end.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut chunk = [0u8; READ_SIZE];
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        self.received.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    }

    /// Whether a close must linger: the client may still be sending.
    fn must_linger(&self) -> bool {
        self.unread || !self.framing.in_head() || !self.received.is_empty()
    }
}

impl hyper::rt::Read for GatedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut dst: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.passed > 0 {
                let n = this.passed.min(dst.remaining());
                dst.put_slice(&this.received[..n]);
                this.received.drain(..n);
                this.passed -= n;
                if this.received.is_empty() && this.received.capacity() > READ_SIZE {
                    // What a large head grew stays with no idle connection.
                    this.received = Vec::new();
                }
                return Poll::Ready(Ok(()));
            }
            match this.phase {
                Phase::Open => {}
                Phase::StandingIn(at) => {
                    let n = (STAND_IN.len() - at).min(dst.remaining());
                    dst.put_slice(&STAND_IN[at..at + n]);
                    this.phase = if at + n == STAND_IN.len() {
                        Phase::Answering
                    } else {
                        Phase::StandingIn(at + n)
                    };
                    return Poll::Ready(Ok(()));
                }
                // An end of input now would make hyper drop the answer.
                Phase::Answering => return Poll::Pending,
                Phase::Ended => return Poll::Ready(Ok(())),
            }
            match this.framing.advance(&this.received) {
                Advance::Pass { len, head } => {
                    this.passed = len;
                    if head {
                        this.heads += 1;
                        this.head_started = None;
                    }
                    continue;
                }
                Advance::Refuse(refusal) => {
                    this.refuse(Early::Refused(refusal));
                    continue;
                }
                Advance::Broken(why) => {
                    this.unread = true;
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
                }
                Advance::Need => {}
            }
            match this.poll_receive(cx) {
                Poll::Ready(Ok(0)) => {
                    // The client is done sending; hyper sees the end as it
                    // would have without us (a head cut short is dropped).
                    this.received.clear();
                    this.phase = Phase::Ended;
                    continue;
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            let Some((at, expiry)) = this.deadline(cx) else {
                return Poll::Pending;
            };
            if this.timer_at != at {
                this.timer.as_mut().reset(at);
                this.timer_at = at;
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match expiry {
                Expiry::Answer => {
                    let secs = this.timeouts.header.as_secs();
                    this.refuse(Early::Timeout(secs));
                }
                Expiry::Close => this.phase = Phase::Ended,
            }
        }
    }
}

impl hyper::rt::Write for GatedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// Shuts the write side (the client sees the end of our answer), then,
    /// when the client may still be sending, drains for a moment.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closing.is_none() {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            if !this.must_linger() {
                return Poll::Ready(Ok(()));
            }
            let until = Instant::now() + LINGER;
            this.timer.as_mut().reset(until);
            this.timer_at = until;
            this.closing = Some((until, 0));
            this.received = Vec::new();
        }
        loop {
            let mut chunk = [0u8; READ_SIZE];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    let (until, drained) = this.closing.expect("set above");
                    let drained = drained + buf.filled().len();
                    this.closing = Some((until, drained));
                    if drained > LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                // The client's end, or a reset: nothing is left to drain.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match this.timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
    }
}
