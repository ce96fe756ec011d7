//! The routes that read the records: a database's service events and
//! audit records, and the whole audit trail. Thin handlers over
//! [`crate::app`]; both kinds page the same way (`limit`, `cursor`).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::QueryPairs;
use super::problem::{HttpError, Problem};
use super::AppState;
use crate::app::App;
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

/// The state transitions of a database, newest first; also after it is deleted.
#[utoipa::path(get, path = "/api/v1/databases/{name}/events", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path), RecordSpan),
    responses(
        (status = 200, body = EventList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn database_events(
    State(app): State<AppState>,
    Path(name): Path<String>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<EventList>, HttpError> {
    let query = EventQuery::parse(&pairs, Some(&name))?;
    let page = app.events(&query).await?;
    Ok(Json(EventList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
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
