//! What each database operation does: the rules of the model, the
//! backend's own checks, the audit record written ahead of the change, the
//! merge-patch read-modify-write with its precondition, and the revision
//! history with its rollback.

use serde_json::{Map, Value};

use super::{App, AppError};
use crate::backend::{Adopted, BackendError, DeleteOutcome};
use crate::model::paging::{ListQuery, Page};
use crate::model::revision::{self, RevisionQuery};
use crate::model::{
    self, Change, Credentials, Database, DatabaseSpec, InstanceStatus, Invalid, Revision,
    RevisionKind, Source,
};
use crate::records::Draft;

/// How often a merge patch without `If-Match` is tried again when another
/// change lands between its read and its write.
const UPDATE_ATTEMPTS: usize = 5;

/// An accepted change: the database as it now stands, and what changed.
pub struct Updated {
    pub database: Database,
    pub changes: Map<String, Value>,
}

/// An accepted rollback: the database as it now stands, what changed, and
/// the storage kept because the revision had less (storage never shrinks).
pub struct RolledBack {
    pub database: Database,
    pub changes: Map<String, Value>,
    pub kept_storage: Option<String>,
}

/// What a delete found.
pub enum Deleted {
    /// It is going; this is how it stood just after the delete began.
    Going(Box<Database>),
    /// It was not there, or is gone already.
    Gone,
}

impl App {
    pub async fn list_databases(&self, query: &ListQuery) -> Result<Page<Database>, AppError> {
        Ok(self.backend.page(query).await?)
    }

    pub async fn database(&self, name: &str) -> Result<Database, AppError> {
        Ok(self.backend.get(name).await?)
    }

    /// Creates a database. The audit record is written ahead once the
    /// request is known to be valid, and before the backend makes anything.
    pub async fn create_database(
        &self,
        draft: &Draft,
        body: &Value,
        owner: &str,
    ) -> Result<Database, AppError> {
        if let Some(name) = body.get("name").and_then(Value::as_str) {
            if model::check_name(name).is_ok() {
                draft.set_database(name);
            }
        }
        let spec = model::parse_create(body, &self.limits)?;
        self.backend.validate(&spec).await?;
        draft.write_ahead(&self.audit, 202).await?;
        let change = Change::new(RevisionKind::Create, owner, Some(&draft.request_id()));
        Ok(self.backend.create(spec, &change).await?)
    }

    /// Applies a merge patch. With `if_match`, the database must still be
    /// at that revision; without, a concurrent change is merged by trying
    /// again.
    pub async fn update_database(
        &self,
        draft: &Draft,
        name: &str,
        patch: &Value,
        if_match: Option<&str>,
        by: &str,
    ) -> Result<Updated, AppError> {
        let change = Change::new(RevisionKind::Update, by, Some(&draft.request_id()));
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.backend.get(name).await?;
            changeable(&current)?;
            // A patch that is wrong whatever the revision is refused as such
            // before the precondition is looked at.
            let next = model::apply_patch(&current.spec(), patch, &self.limits)?;
            precondition(if_match, current.revision)?;
            if let Some((database, changes)) = self
                .write_spec(draft, &current, next, if_match, &change)
                .await?
            {
                return Ok(Updated { database, changes });
            }
        }
        Err(AppError::TooManyConflicts(name.to_owned()))
    }

    /// The write of every spec change, after its read: the backend checks
    /// `next`, the audit record is written ahead with what changed, and the
    /// backend makes it the revision after `current`'s. `None` when another
    /// change landed in between and, without `if_match`, the caller reads
    /// again and retries.
    async fn write_spec(
        &self,
        draft: &Draft,
        current: &Database,
        next: DatabaseSpec,
        if_match: Option<&str>,
        change: &Change,
    ) -> Result<Option<(Database, Map<String, Value>)>, AppError> {
        self.backend.validate(&next).await?;
        let changes = model::spec_changes(&current.spec(), &next);
        draft.set_changes(changes.clone());
        draft.write_ahead(&self.audit, 202).await?;
        match self.backend.update(next, current.revision, change).await {
            Ok(database) => Ok(Some((database, changes))),
            Err(BackendError::RevisionMismatch { .. }) if if_match.is_none() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A page of a database's revisions, newest first.
    pub async fn revisions(
        &self,
        name: &str,
        query: &RevisionQuery,
    ) -> Result<Page<Revision>, AppError> {
        Ok(query.page(self.backend.revisions(name).await?))
    }

    /// Revision `n` of a database: never made, or pruned since, are told apart.
    pub async fn revision(&self, name: &str, n: u64) -> Result<Revision, AppError> {
        let current = self.backend.get(name).await?;
        let history = self.backend.revisions(name).await?;
        revision::find(&history, current.revision, n)
            .cloned()
            .map_err(|missing| AppError::Revision {
                name: name.to_owned(),
                missing,
            })
    }

    /// Makes the spec of revision `n` (from the body) the next revision,
    /// keeping the current storage when `n` had less. The rules of a patch
    /// judge the result, as they stand now, so a rollback can make nothing
    /// that an update could not. Rolling back to a revision whose spec is
    /// the current one still makes a revision: it was asked for by name,
    /// and the history says so.
    pub async fn rollback_database(
        &self,
        draft: &Draft,
        name: &str,
        body: &Value,
        if_match: Option<&str>,
        by: &str,
    ) -> Result<RolledBack, AppError> {
        let n = revision::parse_rollback(body)?;
        let change = Change::rollback(n, by, Some(&draft.request_id()));
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.backend.get(name).await?;
            changeable(&current)?;
            precondition(if_match, current.revision)?;
            let history = self.backend.revisions(name).await?;
            let target = revision::find(&history, current.revision, n).map_err(|missing| {
                AppError::Revision {
                    name: name.to_owned(),
                    missing,
                }
            })?;
            let spec = current.spec();
            let (patch, kept_storage) = revision::rollback_patch(&spec, &target.spec);
            let next = model::apply_patch(&spec, &patch, &self.limits)?;
            if let Some((database, changes)) = self
                .write_spec(draft, &current, next, if_match, &change)
                .await?
            {
                return Ok(RolledBack {
                    database,
                    changes,
                    kept_storage,
                });
            }
        }
        Err(AppError::TooManyConflicts(name.to_owned()))
    }

    /// Deletes a database; one that is gone already needs no record written
    /// ahead, since nothing changes.
    pub async fn delete_database(&self, draft: &Draft, name: &str) -> Result<Deleted, AppError> {
        match self.backend.get(name).await {
            Err(BackendError::NotFound(_)) => return Ok(Deleted::Gone),
            Err(e) => return Err(e.into()),
            Ok(current) => changeable(&current)?,
        }
        draft.write_ahead(&self.audit, 202).await?;
        match self.backend.delete(name).await? {
            DeleteOutcome::AlreadyGone => Ok(Deleted::Gone),
            DeleteOutcome::Started => {
                tracing::info!(database = %name, "database delete accepted");
                // The database may vanish between the two calls: then it is gone.
                Ok(match self.backend.get(name).await {
                    Ok(db) => Deleted::Going(Box::new(db)),
                    Err(_) => Deleted::Gone,
                })
            }
        }
    }

    /// Every instance of a database, as its backend last saw them.
    pub async fn instances(&self, name: &str) -> Result<Vec<InstanceStatus>, AppError> {
        Ok(self.backend.get(name).await?.instances_status)
    }

    /// Takes an existing Cluster under management, as `by`; the answer
    /// names what of it pgplane leaves alone.
    pub async fn adopt_database(
        &self,
        draft: &Draft,
        name: &str,
        by: &str,
    ) -> Result<Adopted, AppError> {
        model::check_name(name).map_err(|e| {
            Invalid(vec![model::FieldError::new(
                "name",
                format!("{name:?} cannot be a pgplane database's name: it {e}"),
            )])
        })?;
        draft.write_ahead(&self.audit, 200).await?;
        let adopted = self.backend.adopt(name, by).await?;
        tracing::info!(database = %name, "database adopted");
        Ok(adopted)
    }

    /// Gives a database back: pgplane's marks leave it, nothing else
    /// changes. Also one declared in git: after its spec left git, this is
    /// how it leaves pgplane.
    pub async fn release_database(&self, draft: &Draft, name: &str) -> Result<(), AppError> {
        self.backend.get(name).await?;
        draft.write_ahead(&self.audit, 204).await?;
        self.backend.release(name).await?;
        tracing::info!(database = %name, "database released");
        Ok(())
    }

    pub async fn credentials(&self, name: &str) -> Result<Credentials, AppError> {
        let credentials = self.backend.credentials(name).await?;
        tracing::info!(database = %name, "credentials read");
        Ok(credentials)
    }
}

/// `DeclaredInGit` for a database whose spec lives in git.
fn changeable(db: &Database) -> Result<(), AppError> {
    match db.source {
        Source::Git => Err(AppError::DeclaredInGit {
            name: db.name.clone(),
            path: db
                .declared_in
                .clone()
                .unwrap_or_else(|| "its spec file".into()),
        }),
        Source::Api | Source::Adopted => Ok(()),
    }
}

/// `PreconditionFailed` unless `if_match` (when given) names `revision`.
fn precondition(if_match: Option<&str>, revision: u64) -> Result<(), AppError> {
    match if_match {
        Some(tag) if !etag_matches(tag, revision) => Err(AppError::PreconditionFailed {
            if_match: tag.to_owned(),
            current: revision,
        }),
        _ => Ok(()),
    }
}

/// The `ETag` of a revision: a strong validator.
pub fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

/// One entity tag of an `If-Match` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityTag<'a> {
    pub weak: bool,
    /// Between the quotes.
    pub opaque: &'a str,
}

/// The entity tags of an `If-Match` value (RFC 9110 §13.1.1: `*`, or a
/// comma-separated list, empty elements allowed); `Some(None)` for `*`,
/// `None` when it is neither. A tag is read to its closing quote, so a
/// comma inside one is part of it.
pub fn entity_tags(value: &str) -> Option<Option<Vec<EntityTag<'_>>>> {
    const OWS: [char; 2] = [' ', '\t'];
    if value.trim_matches(OWS) == "*" {
        return Some(None);
    }
    let mut tags = Vec::new();
    let mut rest = value.trim_start_matches(OWS);
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start_matches(OWS);
            continue;
        }
        let (weak, tag) = match rest.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, rest),
        };
        let quoted = tag.strip_prefix('"')?;
        let end = quoted.find('"')?;
        tags.push(EntityTag {
            weak,
            opaque: &quoted[..end],
        });
        rest = quoted[end + 1..].trim_start_matches(OWS);
        if !rest.is_empty() && !rest.starts_with(',') {
            return None;
        }
    }
    Some(Some(tags))
}

/// Whether an `If-Match` value names `revision` (`*` matches any). The
/// comparison is strong (RFC 9110 13.1.1): a weak tag never matches.
pub fn etag_matches(if_match: &str, revision: u64) -> bool {
    let want = revision.to_string();
    match entity_tags(if_match) {
        Some(None) => true,
        Some(Some(tags)) => tags.iter().any(|t| !t.weak && t.opaque == want),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_strongly() {
        assert!(etag_matches("\"4\"", 4));
        assert!(etag_matches("\"3\", \"4\"", 4));
        assert!(etag_matches("*", 4));
        assert!(!etag_matches("W/\"4\"", 4), "a weak tag never matches");
        assert!(!etag_matches("4", 4), "an unquoted tag is not a tag");
        assert!(!etag_matches("\"5\"", 4));
        assert!(!etag_matches("", 4));
        assert!(
            etag_matches("W/\"+,B\", \"4\"", 4),
            "a comma inside a tag is part of it"
        );
        assert!(!etag_matches("\"4,5\"", 4));
    }
}
