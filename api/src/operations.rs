//! What each database operation does, between the HTTP layer (which parses
//! and shapes answers) and the backend (which makes it happen): the rules
//! of the model, the backend's own checks, paging, and the merge-patch
//! read-modify-write with its precondition.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use crate::audit::{Audit, Draft};
use crate::backend::{Backend, BackendError, DeleteOutcome};
use crate::error::ApiError;
use crate::events::EventQuery;
use crate::model::{self, Database, FieldError, Limits, PatchErrors};

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;

/// One page of a listing.
pub struct Page {
    pub items: Vec<Database>,
    pub next_cursor: Option<String>,
}

/// What `GET /databases` may filter and page by.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub limit: usize,
    /// Names after which the page starts.
    pub after: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl ListQuery {
    /// Parses `limit`, `cursor` and any number of `label=k=v`.
    pub fn parse(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
        let mut q = ListQuery {
            limit: DEFAULT_PAGE,
            ..Default::default()
        };
        let mut errors = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "limit" => q.limit = parse_limit(value, MAX_PAGE, &mut errors).unwrap_or(q.limit),
                "cursor" => match decode_cursor(value) {
                    Some(name) => q.after = Some(name),
                    None => errors.push(FieldError::new(
                        "cursor",
                        "is not a cursor this API returned",
                    )),
                },
                "label" => match value.split_once('=') {
                    Some((k, v)) if !k.is_empty() => {
                        q.labels.insert(k.to_owned(), v.to_owned());
                    }
                    _ => errors.push(FieldError::new("label", "must be key=value")),
                },
                other => errors.push(FieldError::new(other, "unknown query parameter")),
            }
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(ApiError::Invalid(errors))
        }
    }
}

pub const DEFAULT_EVENTS: usize = 100;
pub const MAX_EVENTS: usize = 1000;

/// Parses `since`, `until` (RFC 3339) and `limit` of an events query.
pub fn event_query(database: &str, pairs: &[(String, String)]) -> Result<EventQuery, ApiError> {
    let mut q = EventQuery {
        database: database.to_owned(),
        since: None,
        until: None,
        limit: DEFAULT_EVENTS,
    };
    let mut errors = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "since" => q.since = parse_time(key, value, &mut errors),
            "until" => q.until = parse_time(key, value, &mut errors),
            "limit" => q.limit = parse_limit(value, MAX_EVENTS, &mut errors).unwrap_or(q.limit),
            other => errors.push(FieldError::new(other, "unknown query parameter")),
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// A `limit` query parameter from 1 to `max`, or a field error.
pub fn parse_limit(value: &str, max: usize, errors: &mut Vec<FieldError>) -> Option<usize> {
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Some(n),
        _ => {
            errors.push(FieldError::new(
                "limit",
                format!("must be an integer from 1 to {max}"),
            ));
            None
        }
    }
}

/// An RFC 3339 time query parameter, or a field error.
pub fn parse_time(
    key: &str,
    value: &str,
    errors: &mut Vec<FieldError>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    match chrono::DateTime::parse_from_rfc3339(value) {
        Ok(t) => Some(t.with_timezone(&chrono::Utc)),
        Err(_) => {
            errors.push(FieldError::new(
                key,
                "must be an RFC 3339 time such as 2026-11-20T10:00:00Z",
            ));
            None
        }
    }
}

/// The cursor of the page that ends with `name`.
pub fn encode_cursor(name: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let name = String::from_utf8(bytes).ok()?;
    model::check_name(&name).is_ok().then_some(name)
}

/// Pages through databases sorted by name. The cursor is the last name of
/// the page, so pages stay stable while databases come and go.
pub fn page(mut all: Vec<Database>, q: &ListQuery) -> Page {
    all.retain(|d| {
        q.after
            .as_ref()
            .is_none_or(|after| d.name.as_str() > after.as_str())
            && q.labels.iter().all(|(k, v)| d.labels.get(k) == Some(v))
    });
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let more = all.len() > q.limit;
    all.truncate(q.limit);
    let next_cursor = more.then(|| encode_cursor(&all.last().expect("a full page").name));
    Page {
        items: all,
        next_cursor,
    }
}

/// Creates a database. The audit record is written ahead once the request
/// is known to be valid, and before the backend makes anything.
pub async fn create(
    backend: &dyn Backend,
    limits: &Limits,
    body: &Value,
    owner: &str,
    ahead: WriteAhead<'_>,
) -> Result<Database, ApiError> {
    if let Some(name) = body.get("name").and_then(Value::as_str) {
        if model::check_name(name).is_ok() {
            ahead.draft.set_database(name);
        }
    }
    let spec = model::parse_create(body, limits).map_err(ApiError::Invalid)?;
    backend.validate(&spec).await?;
    ahead.write(202).await?;
    Ok(backend.create(spec, owner).await?)
}

/// The audit record of the request, to write before changing anything.
#[derive(Clone, Copy)]
pub struct WriteAhead<'a> {
    pub audit: &'a Audit,
    pub draft: &'a Draft,
}

impl WriteAhead<'_> {
    async fn write(&self, status: u16) -> Result<(), ApiError> {
        Ok(self.draft.write_ahead(self.audit, status).await?)
    }
}

/// Applies a merge patch. With `if_match`, the database must still be at
/// that revision; without, a concurrent change is merged by trying again.
pub async fn update(
    backend: &dyn Backend,
    name: &str,
    patch: &Value,
    if_match: Option<&str>,
    ahead: WriteAhead<'_>,
) -> Result<(Database, serde_json::Map<String, Value>), ApiError> {
    for _ in 0..5 {
        let current = backend.get(name).await?;
        if let Some(tag) = if_match {
            if !etag_matches(tag, current.revision) {
                return Err(ApiError::PreconditionFailed {
                    expected: tag.to_owned(),
                    current: current.revision,
                });
            }
        }
        let spec = spec_of(&current);
        let next =
            model::apply_patch(&spec, patch).map_err(|PatchErrors(e)| ApiError::Invalid(e))?;
        backend.validate(&next).await?;
        let changes = model::spec_changes(&spec, &next);
        ahead.draft.set_changes(changes.clone());
        ahead.write(202).await?;
        match backend.update(next, current.revision).await {
            Ok(db) => return Ok((db, changes)),
            Err(BackendError::RevisionMismatch { .. }) if if_match.is_none() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(format!(
        "database {name} is changing too fast; try again"
    )))
}

/// Deletes a database; a database that is gone already needs no record
/// written ahead, since nothing changes.
pub async fn delete(
    backend: &dyn Backend,
    name: &str,
    ahead: WriteAhead<'_>,
) -> Result<DeleteOutcome, ApiError> {
    match backend.get(name).await {
        Err(BackendError::NotFound(_)) => return Ok(DeleteOutcome::AlreadyGone),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    ahead.write(202).await?;
    Ok(backend.delete(name).await?)
}

/// The `ETag` of a revision.
pub fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

/// Whether an `If-Match` value names `revision` (`*` matches any).
pub fn etag_matches(if_match: &str, revision: u64) -> bool {
    let want = etag(revision);
    if_match.split(',').map(str::trim).any(|t| {
        t == "*"
            || t == want
            || t.strip_prefix("W/") == Some(want.as_str())
            || t == revision.to_string()
    })
}

fn spec_of(db: &Database) -> model::DatabaseSpec {
    model::DatabaseSpec {
        name: db.name.clone(),
        postgres_version: db.postgres_version,
        instances: db.instances,
        storage: db.storage.clone(),
        parameters: db.parameters.clone(),
        labels: db.labels.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Database, State};

    fn db(name: &str, team: &str) -> Database {
        Database {
            name: name.into(),
            postgres_version: 15,
            instances: 1,
            storage: "1Gi".into(),
            parameters: Default::default(),
            labels: BTreeMap::from([("team".into(), team.into())]),
            owner: "alice".into(),
            state: State::Healthy,
            phase: String::new(),
            ready_instances: 1,
            primary: None,
            endpoints: None,
            revision: 1,
            created_at: Default::default(),
            updated_at: Default::default(),
        }
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn pages_follow_cursors_to_the_end() {
        let all: Vec<_> = (0..7)
            .map(|i| db(&format!("db{i}"), if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        let mut q = ListQuery::parse(&pairs("limit=3")).unwrap();
        let mut seen = Vec::new();
        loop {
            let p = page(all.clone(), &q);
            seen.extend(p.items.iter().map(|d| d.name.clone()));
            match p.next_cursor {
                Some(c) => q = ListQuery::parse(&pairs(&format!("limit=3&cursor={c}"))).unwrap(),
                None => break,
            }
        }
        assert_eq!(seen, (0..7).map(|i| format!("db{i}")).collect::<Vec<_>>());
        let q = ListQuery::parse(&pairs("label=team%3Db")).unwrap();
        let names: Vec<_> = page(all, &q).items.into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["db1", "db3", "db5"]);
    }

    #[test]
    fn bad_list_queries() {
        for q in [
            "limit=0",
            "limit=501",
            "limit=x",
            "cursor=%%%",
            "cursor=QUJD",
            "label=novalue",
            "colour=red",
        ] {
            assert!(
                matches!(ListQuery::parse(&pairs(q)), Err(ApiError::Invalid(_))),
                "{q}"
            );
        }
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"4\"", 4));
        assert!(etag_matches("W/\"4\"", 4));
        assert!(etag_matches("\"3\", \"4\"", 4));
        assert!(etag_matches("*", 4));
        assert!(!etag_matches("\"5\"", 4));
        assert!(!etag_matches("", 4));
    }
}
