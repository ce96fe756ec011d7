//! The routes that read the records: a database's service events and
//! audit records, and the whole audit trail. Thin handlers over
//! [`crate::app`]; both kinds page the same way (`limit`, `cursor`).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::databases::take_flag;
use super::extract::QueryPairs;
use super::problem::{HttpError, Problem};
use super::sse::{self, Hangup, Source};
use super::AppState;
use crate::app::{App, Resume};
use crate::auth::Caller;
use crate::model::{FieldError, Invalid};
use crate::records::events::parse_id;
use crate::records::{Action, AuditQuery, AuditRecord, EventQuery, ServiceEvent};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventList {
    /// Newest first.
    pub items: Vec<ServiceEvent>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One page of audit records, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The paging and time window both kinds of record take, for the OpenAPI
/// document only: [`EventQuery::parse`] and [`AuditQuery::parse`] read them
/// (and refuse unknown ones).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct RecordSpan {
    /// RFC 3339 time; records at or after it
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// RFC 3339 time; records before it
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// At most this many, 1 to 1000 (default 100)
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The next_cursor of the previous page
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// The audit filters, beside [`RecordSpan`].
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct AuditFilters {
    /// Only this action
    action: Option<Action>,
    /// Only this username
    #[param(min_length = 1, max_length = 256)]
    actor: Option<String>,
}

/// How the event routes stream (`follow=true`), for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Following {
    /// true: a text/event-stream of `service_event` events, each with its
    /// `id`: the stored ones the query selects (oldest first), then each
    /// new one as it is recorded. Not with `until` or `cursor`.
    follow: Option<bool>,
}

/// The header a reconnecting follower names its last event with.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct Resuming {
    /// With follow=true: the id of the last event received; the stream
    /// starts with every stored event after it.
    #[param(rename = "Last-Event-ID", pattern = "^[0-9]{1,19}$")]
    last_event_id: Option<String>,
}

/// The state transitions of a database, newest first; also after it is
/// deleted. With `follow=true`, a stream of them as they happen.
#[utoipa::path(get, path = "/api/v1/databases/{name}/events", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path), RecordSpan, Following, Resuming),
    responses(
        (status = 200, content(
            (EventList = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn database_events(
    State(app): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
    hangup: Option<Extension<Hangup>>,
    headers: HeaderMap,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, HttpError> {
    events_of(&app, Some(&name), caller, hangup, &headers, pairs).await
}

/// The state transitions of every database, newest first: the feed a
/// dashboard wants. With `follow=true`, a stream of them as they happen.
#[utoipa::path(get, path = "/api/v1/events", tag = "databases", security(("bearer" = [])),
    params(RecordSpan, Following, Resuming),
    responses(
        (status = 200, content(
            (EventList = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn events(
    State(app): State<AppState>,
    caller: Caller,
    hangup: Option<Extension<Hangup>>,
    headers: HeaderMap,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, HttpError> {
    events_of(&app, None, caller, hangup, &headers, pairs).await
}

async fn events_of(
    app: &App,
    database: Option<&str>,
    caller: Caller,
    hangup: Option<Extension<Hangup>>,
    headers: &HeaderMap,
    pairs: Vec<(String, String)>,
) -> Result<Response, HttpError> {
    let (follow, pairs) = take_flag(pairs, "follow")?;
    let query = EventQuery::parse(&pairs, database)?;
    if !follow {
        let page = app.events(&query).await?;
        return Ok(Json(EventList {
            items: page.items,
            next_cursor: page.next_cursor,
        })
        .into_response());
    }
    let resume = match headers.get("last-event-id") {
        None => Resume::Query,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(parse_id)
            .map(Resume::After)
            .ok_or_else(|| {
                HttpError::BadRequest("Last-Event-ID is not an event id this API sent".into())
            })?,
    };
    let not_with_follow: Vec<FieldError> = pairs
        .iter()
        .filter(|(k, _)| k == "until" || k == "cursor")
        .map(|(k, _)| FieldError::new(k.clone(), "is not taken with follow=true"))
        .collect();
    if !not_with_follow.is_empty() {
        return Err(Invalid(not_with_follow).into());
    }
    let (slot, stored, live) = app.follow_events(&query, resume).await?;
    Ok(sse::respond(
        slot,
        stored.iter().map(sse::event_frame).collect(),
        Source::Events(live),
        caller.expires_at,
        hangup.map(|Extension(h)| h),
    ))
}

/// Audit records of one database, newest first; also after it is deleted.
#[utoipa::path(get, path = "/api/v1/databases/{name}/audit", tag = "audit", security(("bearer" = [])),
    params(("name" = String, Path), RecordSpan, AuditFilters),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn database_audit(
    State(app): State<AppState>,
    Path(name): Path<String>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<AuditPage>, HttpError> {
    App::check_database_name(&name)?;
    let query = AuditQuery::parse(&pairs, Some(&name))?;
    let page = app.audit_records(&query).await?;
    Ok(Json(AuditPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Every audit record, newest first (admins only).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(
        RecordSpan,
        AuditFilters,
        ("database" = Option<String>, Query, description = "Only this database",
            pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length = 1, max_length = 50),
    ),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn audit(
    State(app): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<AuditPage>, HttpError> {
    let query = AuditQuery::parse(&pairs, None)?;
    let page = app.audit_records(&query).await?;
    Ok(Json(AuditPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}
