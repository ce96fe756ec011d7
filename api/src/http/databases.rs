//! The `/databases` routes: thin handlers over [`crate::app`]. Who may call
//! each one and how it is audited is declared in [`super::routes`].

use axum::extract::{Path, State};
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{JsonBody, MergePatch, QueryPairs};
use super::problem::{HttpError, Problem};
use super::AppState;
use crate::app::{etag, Deleted, Updated};
use crate::auth::Caller;
use crate::model::paging::ListQuery;
use crate::model::{CreateDatabaseDoc, Credentials, Database, DatabasePatchDoc, InstanceStatus};
use crate::records::Draft;

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
        ("cursor" = Option<String>, Query, description = "The next_cursor of the previous page", min_length = 1),
        ("label" = Option<Vec<String>>, Query, description = "key=value; repeat to require several", explode = true, pattern = "^[^=]+=.*$"),
    ),
    responses(
        (status = 200, body = DatabaseList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<DatabaseList>, HttpError> {
    let query = ListQuery::parse(&pairs)?;
    let page = app.list_databases(&query).await?;
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
) -> Result<Response, HttpError> {
    let db = app.create_database(&draft, &body, &caller.username).await?;
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
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    let db = app.database(&name).await?;
    Ok(([(ETAG, etag(db.revision))], Json(db)).into_response())
}

/// Changes instances, storage (grow only), parameters or labels, by JSON merge patch.
#[utoipa::path(patch, path = "/api/v1/databases/{name}", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, nullable = false, description = "ETag the change applies to (strong comparison: a weak tag never matches)",
        pattern = r#"^(\*| *((W/)?"[^"]*")? *(, *((W/)?"[^"]*")? *)*)$"#)),
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
    Path(name): Path<String>,
    headers: HeaderMap,
    MergePatch(patch): MergePatch,
) -> Result<Response, HttpError> {
    let if_match = match headers.get(IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|t| is_entity_tag_list(t))
                .ok_or_else(|| {
                    HttpError::BadRequest("If-Match must be * or entity tags, such as \"4\"".into())
                })?,
        ),
    };
    let Updated {
        database: db,
        changes,
    } = app.update_database(&draft, &name, &patch, if_match).await?;
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
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    Ok(match app.delete_database(&draft, &name).await? {
        Deleted::Going(db) => (StatusCode::ACCEPTED, Json(db)).into_response(),
        Deleted::Gone => StatusCode::NO_CONTENT.into_response(),
    })
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
    Path(name): Path<String>,
) -> Result<Json<Credentials>, HttpError> {
    Ok(Json(app.credentials(&name).await?))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct InstanceList {
    /// Every instance of the database, primary and standbys, by name.
    pub items: Vec<InstanceStatus>,
}

/// Every instance of a database: role, state, readiness, timeline, lag,
/// as the backend last saw them (the same as `instances_status` in the
/// database).
#[utoipa::path(get, path = "/api/v1/databases/{name}/instances", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 200, body = InstanceList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn instances(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<InstanceList>, HttpError> {
    let items = app.instances(&name).await?;
    Ok(Json(InstanceList { items }))
}

/// Whether a header is `*` or a list of entity tags (RFC 9110 13.1.1,
/// `"*" / #entity-tag`): `"4"`, `W/"4"`, separated by commas. A list may be
/// empty, or have empty elements; an empty list matches no revision (412).
fn is_entity_tag_list(value: &str) -> bool {
    let value = value.trim();
    value == "*"
        || value
            .split(',')
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .all(|tag| {
                let opaque = tag.strip_prefix("W/").unwrap_or(tag);
                opaque.len() >= 2
                    && opaque.starts_with('"')
                    && opaque.ends_with('"')
                    && !opaque[1..opaque.len() - 1].contains('"')
            })
}

#[cfg(test)]
mod tests {
    use super::is_entity_tag_list;

    #[test]
    fn entity_tag_lists() {
        for good in [
            "*",
            "\"4\"",
            "W/\"4\"",
            "\"3\", \"4\"",
            " \"4\" ",
            "",
            " ",
            "\"4\",,",
        ] {
            assert!(is_entity_tag_list(good), "{good}");
        }
        for bad in ["4", "\"4", "\"a\"b\"", "*, \"4\"", "W/4", "null", "{}"] {
            assert!(!is_entity_tag_list(bad), "{bad}");
        }
    }
}
