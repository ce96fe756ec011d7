//! The audit routes, and the middleware that gives every audited request
//! exactly one record: it opens a [`Draft`] before the handler runs and
//! closes it with the status answered. When the record cannot be kept, the
//! answer is replaced by a 503 (a handler that changes something has written
//! the record ahead already, so it never gets that far with a broken store).

use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::extract::{QueryPairs, RequestId};
use super::AppState;
use crate::audit::{Action, AuditError, AuditPage, AuditQuery, Draft, Outcome};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, Problem};
use crate::model::FieldError;

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::ForeignCursor => {
                ApiError::Invalid(vec![FieldError::new("cursor", e.to_string())])
            }
            AuditError::Write(_) | AuditError::Query(_) => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// The action a request is audited as, by method and route template.
fn action_of(method: &Method, route: &str) -> Option<Action> {
    Some(match (method.as_str(), route) {
        ("POST", "/api/v1/auth/login") => Action::Login,
        ("POST", "/api/v1/databases") => Action::Create,
        ("PATCH", "/api/v1/databases/{name}") => Action::Update,
        ("DELETE", "/api/v1/databases/{name}") => Action::Delete,
        ("GET", "/api/v1/databases/{name}/credentials") => Action::CredentialsRead,
        ("GET", "/api/v1/databases/{name}/audit" | "/api/v1/audit") => Action::AuditRead,
        _ => return None,
    })
}

pub async fn audited(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str());
    let Some(action) = route.and_then(|r| action_of(req.method(), r)) else {
        return next.run(req).await;
    };
    let names_database = route.is_some_and(|r| r.contains("{name}"));
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map_or_else(String::new, |r| r.0.clone());
    let source_ip = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::Ipv4Addr::LOCALHOST.into(), |c| c.0.ip());
    let draft = Draft::new(&request_id, source_ip, action);
    // The database of /databases/{name}/..., known even when the request is
    // refused before its handler runs.
    if let Some(name) = req
        .uri()
        .path()
        .split('/')
        .nth(4)
        .filter(|_| names_database)
    {
        if crate::model::check_name(name).is_ok() {
            draft.set_database(name);
        }
    }
    req.extensions_mut().insert(draft.clone());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    // Reading the trail is recorded only when refused.
    if action == Action::AuditRead && Outcome::of_status(status) != Outcome::Denied {
        return response;
    }
    match draft.close(&app.audit, status).await {
        Ok(()) => response,
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The query parameters both audit routes take, for the OpenAPI document
/// only: [`AuditQuery::parse`] reads them (and refuses unknown ones).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct AuditFilters {
    /// RFC 3339 time; records at or after it
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// RFC 3339 time; records before it
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// Only this action
    action: Option<Action>,
    /// Only this username
    #[param(min_length = 1, max_length = 256)]
    actor: Option<String>,
    /// At most this many, 1 to 1000 (default 100)
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The next_cursor of the previous page
    cursor: Option<String>,
}

/// Audit records of one database, newest first; also after it is deleted.
#[utoipa::path(get, path = "/api/v1/databases/{name}/audit", tag = "audit", security(("bearer" = [])),
    params(
        ("name" = String, Path),
        AuditFilters,
    ),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn of_database(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Role::Editor)?;
    crate::model::check_name(&name)
        .map_err(|why| ApiError::NotFound(format!("no database {name:?}: {why}")))?;
    let query = AuditQuery::parse(&pairs, Some(&name))?;
    Ok(Json(app.audit.query(&query).await?))
}

/// Every audit record, newest first (admins only).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(
        AuditFilters,
        ("database" = Option<String>, Query, description = "Only this database"),
    ),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn all(
    State(app): State<AppState>,
    caller: Caller,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Role::Admin)?;
    let query = AuditQuery::parse(&pairs, None)?;
    Ok(Json(app.audit.query(&query).await?))
}
