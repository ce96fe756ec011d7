//! What a call to the API can fail with, as a client sees it: the server
//! could not be reached, TLS failed, or the server answered with a problem.

use std::time::Duration;

use serde::Deserialize;

/// A `problem+json` answer (RFC 9457), as pgplane sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub errors: Vec<FieldProblem>,
    /// From the `Retry-After` header, not the body.
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("TLS with {server} failed: {reason}")]
    Tls { server: String, reason: String },
    #[error("{} {}: {}", .0.status, .0.title, .0.detail)]
    Problem(Problem),
    #[error("{server} answered {what}")]
    Unexpected { server: String, what: String },
    #[error("{server:?} is not a server URL: {why}")]
    BadServer { server: String, why: String },
    #[error("{server} sent nothing for {secs} s, not even a keep-alive")]
    Silent { server: String, secs: u64 },
}

impl ClientError {
    /// Sorts a transport failure: TLS when rustls said so anywhere in the
    /// chain, otherwise the server was out of reach.
    pub(super) fn transport(server: &str, e: reqwest::Error) -> ClientError {
        let reason = innermost(&e);
        if tls_failed(&e) {
            ClientError::Tls {
                server: server.to_owned(),
                reason,
            }
        } else if e.is_timeout() {
            ClientError::Unreachable {
                server: server.to_owned(),
                reason: "no answer in time".into(),
            }
        } else if e.is_connect() || e.is_request() {
            ClientError::Unreachable {
                server: server.to_owned(),
                reason,
            }
        } else {
            ClientError::Unexpected {
                server: server.to_owned(),
                what: reason,
            }
        }
    }

    /// Whether trying again later may succeed: the server was out of reach
    /// or overloaded (a server starting up answers 503), or the stream went
    /// quiet. A refusal (401, 403, 404…) will not change by waiting.
    pub fn retriable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::Silent { .. } => true,
            ClientError::Problem(p) => matches!(p.status, 502..=504),
            ClientError::Unexpected { .. } => true,
            ClientError::Tls { .. } | ClientError::BadServer { .. } => false,
        }
    }

    /// The answer's status, when the server gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Problem(p) => Some(p.status),
            _ => None,
        }
    }
}

/// The deepest cause's text: reqwest's own text ("error sending request")
/// says nothing a user can act on.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        last = cause.to_string();
        next = match cause.downcast_ref::<std::io::Error>() {
            // An io::Error's source skips its own inner error.
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => cause.source(),
        };
    }
    last
}

fn tls_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(cause) = next {
        if cause.is::<rustls::Error>() {
            return true;
        }
        next = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => cause.source(),
        };
    }
    false
}
