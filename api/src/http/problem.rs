//! The one place where a failure becomes an answer: every layer's error
//! reaches [`HttpError`], and [`HttpError::problem`] decides its status and
//! its `application/problem+json` body (RFC 9457). Causes of server-side
//! failures go to the log, never to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppError;
use crate::auth::AuthError;
use crate::backend::BackendError;
use crate::model::revision::Missing;
use crate::model::{FieldError, Invalid};
use crate::records::RecordsError;

/// What a request can fail with, as the HTTP layer sees it: the layers'
/// errors, and what only HTTP can get wrong.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("{0}")]
    BadRequest(String),
    #[error("the body must be sent as {0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("no such route")]
    NoRoute,
    #[error("a handler panicked")]
    Panicked,
    /// The connection layer's refusals, made before any route is looked at.
    #[error("the request head was not complete within {0} s")]
    RequestTimeout(u64),
    #[error("the request target is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("all {0} connections are in use; try again shortly")]
    TooManyConnections(u32),
}

impl From<Invalid> for HttpError {
    fn from(e: Invalid) -> Self {
        HttpError::App(e.into())
    }
}

impl From<AuthError> for HttpError {
    fn from(e: AuthError) -> Self {
        HttpError::App(e.into())
    }
}

impl From<BackendError> for HttpError {
    fn from(e: BackendError) -> Self {
        HttpError::App(e.into())
    }
}

impl From<RecordsError> for HttpError {
    fn from(e: RecordsError) -> Self {
        HttpError::App(e.into())
    }
}

/// The `application/problem+json` body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// One entry per invalid field, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
}

/// How a kind of failure is answered.
struct Answer {
    status: StatusCode,
    slug: &'static str,
    /// What the client is told; `None` for server-side failures, whose
    /// cause is logged instead.
    shown: bool,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
}

impl Answer {
    fn new(status: StatusCode, slug: &'static str) -> Answer {
        Answer {
            status,
            slug,
            shown: true,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    fn hidden(mut self) -> Answer {
        self.shown = false;
        self
    }

    fn fields(mut self, errors: &[FieldError]) -> Answer {
        self.errors = errors.to_vec();
        self
    }

    fn retry_after(mut self, secs: u64) -> Answer {
        self.retry_after = Some(secs);
        self
    }
}

impl HttpError {
    /// The one decision of status, kind and detail for every failure.
    fn answer(&self) -> Answer {
        use StatusCode as S;
        match self {
            HttpError::BadRequest(_) => Answer::new(S::BAD_REQUEST, "bad-request"),
            HttpError::UnsupportedMediaType(_) => {
                Answer::new(S::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
            }
            HttpError::PayloadTooLarge(_) => Answer::new(S::PAYLOAD_TOO_LARGE, "payload-too-large"),
            HttpError::MethodNotAllowed => Answer::new(S::METHOD_NOT_ALLOWED, "method-not-allowed"),
            HttpError::NoRoute => Answer::new(S::NOT_FOUND, "not-found"),
            HttpError::Panicked => Answer::new(S::INTERNAL_SERVER_ERROR, "internal").hidden(),
            HttpError::RequestTimeout(_) => Answer::new(S::REQUEST_TIMEOUT, "request-timeout"),
            HttpError::UriTooLong(_) => Answer::new(S::URI_TOO_LONG, "uri-too-long"),
            HttpError::HeadersTooLarge(_) => {
                Answer::new(S::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large")
            }
            HttpError::TooManyConnections(_) => {
                Answer::new(S::SERVICE_UNAVAILABLE, "too-many-connections").retry_after(1)
            }
            HttpError::App(e) => match e {
                AppError::Invalid(Invalid(errors)) => {
                    Answer::new(S::UNPROCESSABLE_ENTITY, "validation").fields(errors)
                }
                AppError::Auth(e) => match e {
                    AuthError::Forbidden { .. } => Answer::new(S::FORBIDDEN, "forbidden"),
                    AuthError::RateLimited { retry_after_secs } => {
                        Answer::new(S::TOO_MANY_REQUESTS, "rate-limited")
                            .retry_after(*retry_after_secs)
                    }
                    AuthError::MissingToken
                    | AuthError::MalformedHeader
                    | AuthError::InvalidToken
                    | AuthError::UnknownUser
                    | AuthError::WrongPassword => Answer::new(S::UNAUTHORIZED, "unauthorized"),
                },
                AppError::Backend(e) => match e {
                    BackendError::NotFound(_) => Answer::new(S::NOT_FOUND, "not-found"),
                    BackendError::AlreadyExists(_) | BackendError::Busy(_) => {
                        Answer::new(S::CONFLICT, "conflict")
                    }
                    BackendError::RevisionMismatch { .. } => {
                        Answer::new(S::PRECONDITION_FAILED, "precondition-failed")
                    }
                    BackendError::Invalid(Invalid(errors)) => {
                        Answer::new(S::UNPROCESSABLE_ENTITY, "validation").fields(errors)
                    }
                    BackendError::QuotaExceeded(_) => Answer::new(S::FORBIDDEN, "quota-exceeded"),
                    BackendError::Unavailable { .. } => {
                        Answer::new(S::SERVICE_UNAVAILABLE, "unavailable").retry_after(5)
                    }
                    BackendError::Rejected(_) => Answer::new(S::UNPROCESSABLE_ENTITY, "rejected"),
                    BackendError::Internal { .. } => {
                        Answer::new(S::INTERNAL_SERVER_ERROR, "internal").hidden()
                    }
                },
                AppError::Records(e) => match e {
                    RecordsError::ForeignCursor => {
                        let errors = [FieldError::new("cursor", e.to_string())];
                        Answer::new(S::UNPROCESSABLE_ENTITY, "validation").fields(&errors)
                    }
                    RecordsError::Write(_) | RecordsError::Query(..) => {
                        Answer::new(S::SERVICE_UNAVAILABLE, "unavailable").retry_after(5)
                    }
                },
                AppError::PreconditionFailed { .. } => {
                    Answer::new(S::PRECONDITION_FAILED, "precondition-failed")
                }
                AppError::NeverExisted(_) => Answer::new(S::NOT_FOUND, "not-found"),
                AppError::TooManyConflicts(_) => Answer::new(S::CONFLICT, "conflict"),
                AppError::TooManyStreams(_) => {
                    Answer::new(S::SERVICE_UNAVAILABLE, "too-many-streams").retry_after(5)
                }
                AppError::DeclaredInGit { .. } => Answer::new(S::CONFLICT, "declared-in-git"),
                AppError::Revision { missing, .. } => match missing {
                    Missing::NeverExisted(_) => Answer::new(S::NOT_FOUND, "not-found"),
                    Missing::Pruned(_) => Answer::new(S::GONE, "gone"),
                },
            },
        }
    }

    pub fn status(&self) -> StatusCode {
        self.answer().status
    }

    pub fn problem(&self) -> Problem {
        let answer = self.answer();
        Problem {
            kind: format!("urn:pgplane:problem:{}", answer.slug),
            title: answer
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_owned(),
            status: answer.status.as_u16(),
            detail: if answer.shown {
                self.to_string()
            } else {
                "the server failed to handle the request; see its logs".into()
            },
            errors: answer.errors,
        }
    }
}

pub use crate::chain::chain;

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let answer = self.answer();
        // Shedding load past the connection bound is pgplane working as
        // meant (the accept loop logs it, once in a while): not an error.
        let shedding = matches!(self, HttpError::TooManyConnections(_));
        if answer.status.is_server_error() && !shedding {
            tracing::error!(error = %chain(&self), status = answer.status.as_u16(), "request failed");
        }
        let problem = self.problem();
        let mut response = (
            answer.status,
            serde_json::to_string(&problem).expect("a problem always serializes"),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = answer.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if answer.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
