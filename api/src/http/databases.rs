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
use super::sse::{self, Hangup, Source};
use super::AppState;
use crate::app::{etag, Deleted, RolledBack, Updated};
use crate::auth::Caller;
use crate::model::paging::ListQuery;
use crate::model::revision::{RevisionQuery, RollbackDoc};
use crate::model::{
    CreateDatabaseDoc, Credentials, Database, DatabasePatchDoc, FieldError, InstanceStatus,
    Invalid, Revision,
};
use crate::records::Draft;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DatabaseList {
    pub items: Vec<Database>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Lists databases by name, a page at a time; with `watch=true`, a stream
/// of them instead (Server-Sent Events): one `snapshot` event with every
/// database the labels select, then `changed` (the whole database) and
/// `deleted` events as they happen. A client that falls behind gets
/// `resync` and is cut off; the stream ends with `expired` when the token
/// does, and with `end` when pgplane stops.
#[utoipa::path(get, path = "/api/v1/databases", tag = "databases", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500 (default 50); not with watch", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "The next_cursor of the previous page; not with watch", min_length = 1),
        ("label" = Option<Vec<String>>, Query, description = "key=value; repeat to require several", explode = true, pattern = "^[^=]+=.*$"),
        ("watch" = Option<bool>, Query, description = "true: a text/event-stream of the databases and their changes"),
    ),
    responses(
        (status = 200, content(
            (DatabaseList = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    hangup: Option<Extension<Hangup>>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, HttpError> {
    let (watch, pairs) = take_flag(pairs, "watch")?;
    if watch {
        let labels = ListQuery::parse_watch(&pairs)?;
        let (slot, snapshot, changes) = app.watch_databases(labels).await?;
        return Ok(sse::respond(
            slot,
            vec![sse::snapshot_frame(&snapshot)],
            Source::Databases(changes),
            caller.expires_at,
            hangup.map(|Extension(h)| h),
        ));
    }
    let query = ListQuery::parse(&pairs)?;
    let page = app.list_databases(&query).await?;
    Ok(Json(DatabaseList {
        items: page.items,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// Takes the boolean query parameter `name` (`true` or `false`, at most
/// once) out of `pairs`.
pub fn take_flag(
    pairs: Vec<(String, String)>,
    name: &str,
) -> Result<(bool, Vec<(String, String)>), Invalid> {
    let (flags, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == name);
    match flags.as_slice() {
        [] => Ok((false, rest)),
        [(_, v)] if v == "true" => Ok((true, rest)),
        [(_, v)] if v == "false" => Ok((false, rest)),
        _ => Err(Invalid(vec![FieldError::new(
            name,
            "must be given once, as true or false",
        )])),
    }
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
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    MergePatch(patch): MergePatch,
) -> Result<Response, HttpError> {
    let if_match = if_match(&headers)?;
    let Updated {
        database: db,
        changes,
    } = app
        .update_database(&draft, &name, &patch, if_match, &caller.username)
        .await?;
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

/// The `If-Match` header, when sent; a value that is not one is a 400.
fn if_match(headers: &HeaderMap) -> Result<Option<&str>, HttpError> {
    match headers.get(IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|t| is_entity_tag_list(t))
            .map(Some)
            .ok_or_else(|| {
                HttpError::BadRequest("If-Match must be * or entity tags, such as \"4\"".into())
            }),
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RevisionList {
    /// Newest first.
    pub items: Vec<Revision>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A database's kept revisions, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/databases/{name}/revisions", tag = "databases", security(("bearer" = [])),
    params(
        ("name" = String, Path),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "The next_cursor of the previous page", min_length = 1),
    ),
    responses(
        (status = 200, body = RevisionList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revisions(
    State(app): State<AppState>,
    Path(name): Path<String>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<RevisionList>, HttpError> {
    let query = RevisionQuery::parse(&pairs)?;
    let page = app.revisions(&name, &query).await?;
    Ok(Json(RevisionList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One revision: 404 when the database never had it, 410 when it was
/// pruned from the history (`PGPLANE_REVISION_HISTORY`).
#[utoipa::path(get, path = "/api/v1/databases/{name}/revisions/{revision}", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path), ("revision" = u64, Path, minimum = 0)),
    responses(
        (status = 200, body = Revision),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 410, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revision(
    State(app): State<AppState>,
    Path((name, revision)): Path<(String, String)>,
) -> Result<Json<Revision>, HttpError> {
    let n = revision.parse::<u64>().map_err(|_| {
        HttpError::BadRequest(format!(
            "the revision must be a number from 1, not {revision:?}"
        ))
    })?;
    Ok(Json(app.revision(&name, n).await?))
}

/// What a rollback did not take from its revision, kept as it is now.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Kept {
    /// The current storage, kept because the revision had less: storage
    /// never shrinks.
    #[schema(example = "20Gi")]
    pub storage: String,
}

/// The answer to a rollback: the database, and what was kept.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RolledBackDatabase {
    #[serde(flatten)]
    pub database: Database,
    /// Present when a field of the revision was not taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<Kept>,
}

/// Makes the spec of an earlier revision the next revision (storage is
/// never shrunk: a smaller one is kept as it is, and `kept` says so).
#[utoipa::path(post, path = "/api/v1/databases/{name}/rollback", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, nullable = false, description = "ETag the rollback applies to (strong comparison: a weak tag never matches)",
        pattern = r#"^(\*| *((W/)?"[^"]*")? *(, *((W/)?"[^"]*")? *)*)$"#)),
    request_body = RollbackDoc,
    responses(
        (status = 202, body = RolledBackDatabase, headers(("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 410, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rollback(
    State(app): State<AppState>,
    Extension(draft): Extension<Draft>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, HttpError> {
    let if_match = if_match(&headers)?;
    let RolledBack {
        database,
        changes,
        kept_storage,
    } = app
        .rollback_database(&draft, &name, &body, if_match, &caller.username)
        .await?;
    tracing::info!(database = %database.name, revision = database.revision,
        changed = ?changes.keys().collect::<Vec<_>>(), "database rollback accepted");
    let tag = etag(database.revision);
    let answer = RolledBackDatabase {
        database,
        kept: kept_storage.map(|storage| Kept { storage }),
    };
    Ok((StatusCode::ACCEPTED, [(ETAG, tag)], Json(answer)).into_response())
}

/// The answer to an adoption: the database the Cluster now is, and what
/// of it pgplane leaves to whoever set it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AdoptedDatabase {
    #[serde(flatten)]
    pub database: Database,
    /// Each field pgplane does not manage, by path (such as
    /// `spec.monitoring` or `metadata.labels.team`): left as it is, never
    /// shown or changed through the API.
    #[schema(example = json!(["spec.monitoring", "spec.storage.storageClass"]))]
    pub left_alone: Vec<String>,
}

/// Takes an existing CloudNativePG Cluster of the namespace under
/// management (kubernetes backend): pgplane's label and annotations are
/// added by server-side apply, nothing of its spec changes.
#[utoipa::path(post, path = "/api/v1/databases/{name}/adopt", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 200, body = AdoptedDatabase, headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn adopt(
    State(app): State<AppState>,
    Extension(draft): Extension<Draft>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    let adopted = app.adopt_database(&draft, &name, &caller.username).await?;
    let tag = etag(adopted.database.revision);
    let answer = AdoptedDatabase {
        database: adopted.database,
        left_alone: adopted.left_alone,
    };
    Ok(([(ETAG, tag)], Json(answer)).into_response())
}

/// Gives a database back (kubernetes backend): pgplane's label,
/// annotations and revision history go, the Cluster stays as it is, and
/// pgplane stops seeing it.
#[utoipa::path(post, path = "/api/v1/databases/{name}/release", tag = "databases", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "Released"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn release(
    State(app): State<AppState>,
    Extension(draft): Extension<Draft>,
    Path(name): Path<String>,
) -> Result<StatusCode, HttpError> {
    app.release_database(&draft, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a header is `*` or a list of entity tags (RFC 9110 13.1.1,
/// `"*" / #entity-tag`): `"4"`, `W/"4"`, separated by commas. A list may be
/// empty, or have empty elements; an empty list matches no revision (412).
fn is_entity_tag_list(value: &str) -> bool {
    crate::app::entity_tags(value).is_some()
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
            "W/\"+,B\"",
            "\"a b\", W/\"\"",
        ] {
            assert!(is_entity_tag_list(good), "{good}");
        }
        for bad in ["4", "\"4", "\"a\"b\"", "*, \"4\"", "W/4", "null", "{}"] {
            assert!(!is_entity_tag_list(bad), "{bad}");
        }
    }
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
