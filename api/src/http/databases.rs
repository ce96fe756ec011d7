//! The `/databases` routes: thin handlers over [`crate::operations`].

use axum::extract::{Path, State};
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{JsonBody, MergePatch, QueryPairs};
use super::AppState;
use crate::audit::Draft;
use crate::auth::{Caller, Role};
use crate::backend::DeleteOutcome;
use crate::error::{ApiError, Problem};
use crate::events::ServiceEvent;
use crate::model::{CreateDatabaseDoc, Credentials, Database, DatabasePatchDoc};
use crate::operations::{self, etag, ListQuery, WriteAhead};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DatabaseList {
    pub items: Vec<Database>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Lists databases by name, a page at a time.
#[utoipa::path(get, path = "/api/v1/databases", tag = "databases", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50)", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "The next_cursor of the previous page"),
        ("label" = Option<Vec<String>>, Query, description = "key=value; repeat to require several", explode = true),
    ),
    responses(
        (status = 200, body = DatabaseList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<DatabaseList>, ApiError> {
    caller.require(Role::Viewer)?;
    let query = ListQuery::parse(&pairs)?;
    let page = app.backend.page(&query).await?;
    Ok(Json(DatabaseList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Creates a database; it is made in the background (state `creating`).
#[utoipa::path(post, path = "/api/v1/databases", tag = "databases", security(("bearer" = [])),
    request_body = CreateDatabaseDoc,
    responses(
        (status = 202, body = Database, headers(("Location" = String), ("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    Extension(draft): Extension<Draft>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(Role::Editor)?;
    let ahead = WriteAhead {
        audit: &app.audit,
        draft: &draft,
    };
    let db = operations::create(
        app.backend.as_ref(),
        &app.limits,
        &body,
        &caller.username,
        ahead,
    )
    .await?;
    tracing::info!(database = %db.name, "database create accepted");
    let location = format!("/api/v1/databases/{}", db.name);
    Ok((
        StatusCode::ACCEPTED,
        [(LOCATION, location), (ETAG, etag(db.revision))],
        Json(db),
    )
        .into_response())
}

/// One database, with its revision as `ETag`.
#[utoipa::path(get, path = "/api/v1/databases/{name}", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 200, body = Database, headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let db = app.backend.get(&name).await?;
    Ok(([(ETAG, etag(db.revision))], Json(db)).into_response())
}

/// Changes instances, storage (grow only), parameters or labels, by JSON merge patch.
#[utoipa::path(patch, path = "/api/v1/databases/{name}", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "ETag the change applies to")),
    request_body(content = DatabasePatchDoc, content_type = "application/merge-patch+json"),
    responses(
        (status = 202, body = Database, headers(("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(app): State<AppState>,
    Extension(draft): Extension<Draft>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    MergePatch(patch): MergePatch,
) -> Result<Response, ApiError> {
    caller.require(Role::Editor)?;
    let if_match = match headers.get(IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest("If-Match is not text".into()))?,
        ),
    };
    let ahead = WriteAhead {
        audit: &app.audit,
        draft: &draft,
    };
    let (db, changes) =
        operations::update(app.backend.as_ref(), &name, &patch, if_match, ahead).await?;
    tracing::info!(database = %db.name, changed = ?changes.keys().collect::<Vec<_>>(), "database update accepted");
    Ok((StatusCode::ACCEPTED, [(ETAG, etag(db.revision))], Json(db)).into_response())
}

/// Deletes a database and everything it owns; 204 when it is already gone.
#[utoipa::path(delete, path = "/api/v1/databases/{name}", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 202, description = "Deletion under way", body = Database),
        (status = 204, description = "Already gone"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(app): State<AppState>,
    Extension(draft): Extension<Draft>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Editor)?;
    let ahead = WriteAhead {
        audit: &app.audit,
        draft: &draft,
    };
    match operations::delete(app.backend.as_ref(), &name, ahead).await? {
        DeleteOutcome::AlreadyGone => Ok(StatusCode::NO_CONTENT.into_response()),
        DeleteOutcome::Started => {
            tracing::info!(database = %name, "database delete accepted");
            // The database may vanish between the two calls: then it is gone.
            match app.backend.get(&name).await {
                Ok(db) => Ok((StatusCode::ACCEPTED, Json(db)).into_response()),
                Err(_) => Ok(StatusCode::NO_CONTENT.into_response()),
            }
        }
    }
}

/// Connection details of the `app` role.
#[utoipa::path(get, path = "/api/v1/databases/{name}/credentials", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 200, body = Credentials),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn credentials(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Credentials>, ApiError> {
    caller.require(Role::Editor)?;
    let creds = app.backend.credentials(&name).await?;
    tracing::info!(database = %name, "credentials read");
    Ok(Json(creds))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventList {
    /// Newest first.
    pub items: Vec<ServiceEvent>,
}

/// The state transitions of a database, newest first; also after it is deleted.
#[utoipa::path(get, path = "/api/v1/databases/{name}/events", tag = "databases", security(("bearer" = [])),
    params(
        ("name" = String, Path),
        ("since" = Option<String>, Query, description = "RFC 3339 time; events at or after it", format = DateTime),
        ("until" = Option<String>, Query, description = "RFC 3339 time; events before it", format = DateTime),
        ("limit" = Option<u32>, Query, description = "At most this many, 1 to 1000 (default 100)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, body = EventList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn events(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<EventList>, ApiError> {
    caller.require(Role::Viewer)?;
    let query = operations::event_query(&name, &pairs)?;
    let items = match &app.loki {
        Some(loki) => loki
            .events(&query)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?,
        None => app.events.query(&query),
    };
    if items.is_empty() && !app.events.knows(&name) && app.backend.get(&name).await.is_err() {
        return Err(ApiError::NotFound(format!(
            "no database {name}, now or before"
        )));
    }
    Ok(Json(EventList { items }))
}
