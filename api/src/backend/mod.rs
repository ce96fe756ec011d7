//! The contract every backend fulfils: the databases it manages, their
//! observed state, and the operations on them. The application layer
//! ([`crate::app`]) sees only this trait; Kubernetes types and PostgreSQL
//! processes stay behind it.

pub mod feed;
pub mod kubernetes;
pub mod local;
#[cfg(test)]
pub mod memory;

use async_trait::async_trait;

use crate::model::paging::{ListQuery, Page};
use crate::model::{Change, Credentials, Database, DatabaseSpec, Invalid, Revision};
pub use feed::{Feed, FeedEvent, Published, Subscription};

/// The underlying failure of a backend error, kept for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What a backend operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("database {0} does not exist")]
    NotFound(String),
    #[error("a database named {0} already exists")]
    AlreadyExists(String),
    #[error("the database changed since revision {expected}; it is now at revision {current}")]
    RevisionMismatch { expected: u64, current: u64 },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    QuotaExceeded(String),
    /// The database is in a state that does not allow the operation now.
    #[error("{0}")]
    Busy(String),
    /// What the backend depends on cannot serve now; `reason` is for the
    /// caller, the cause for the log.
    #[error("{reason}")]
    Unavailable {
        reason: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The backend's own system refused the change (for Kubernetes:
    /// admission, quota or schema); the text is its message.
    #[error("{0}")]
    Rejected(String),
    /// A failure the caller cannot act on: logged, never shown.
    #[error("{what}")]
    Internal {
        what: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl BackendError {
    pub fn unavailable(reason: impl Into<String>) -> BackendError {
        BackendError::Unavailable {
            reason: reason.into(),
            cause: None,
        }
    }

    pub fn unavailable_by(reason: impl Into<String>, cause: impl Into<Cause>) -> BackendError {
        BackendError::Unavailable {
            reason: reason.into(),
            cause: Some(cause.into()),
        }
    }

    pub fn internal(what: impl Into<String>, cause: impl Into<Cause>) -> BackendError {
        BackendError::Internal {
            what: what.into(),
            cause: Some(cause.into()),
        }
    }
}

/// An adopted Cluster: the database it now is, and each field of it that
/// pgplane leaves to whoever set it (its path, such as `spec.monitoring`).
#[derive(Debug, Clone)]
pub struct Adopted {
    pub database: Database,
    pub left_alone: Vec<String>,
}

/// Whether a delete started now or the database was already gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Started,
    AlreadyGone,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Every database, sorted by name.
    async fn list(&self) -> Result<Vec<Database>, BackendError>;

    async fn get(&self, name: &str) -> Result<Database, BackendError>;

    /// One page of the databases a query selects, sorted by name. A backend
    /// with many databases in memory can avoid building every one per page.
    async fn page(&self, query: &ListQuery) -> Result<Page<Database>, BackendError> {
        Ok(query.page(self.list().await?))
    }

    /// Checks what only this backend can judge (for example that a parameter
    /// exists in its PostgreSQL); the pure rules of [`crate::model`] have run.
    async fn validate(&self, spec: &DatabaseSpec) -> Result<(), BackendError>;

    /// Records the database, owned by `change.by`, with its first revision,
    /// and starts making it; answers at once with the database in state
    /// `creating`. `AlreadyExists` when the name is taken.
    async fn create(&self, spec: DatabaseSpec, change: &Change) -> Result<Database, BackendError>;

    /// Replaces the spec if the database is still at `expected_revision`,
    /// bumping the revision, and starts the work in the background. The new
    /// revision is kept with the spec, in the same step, and the history
    /// pruned to its depth; a change that leaves the spec as it is makes no
    /// revision unless [`Change::always_recorded`].
    async fn update(
        &self,
        spec: DatabaseSpec,
        expected_revision: u64,
        change: &Change,
    ) -> Result<Database, BackendError>;

    /// The revisions kept of a database, newest first; `NotFound` when the
    /// database does not exist. A database made before revisions were kept
    /// shows one for its current spec.
    async fn revisions(&self, name: &str) -> Result<Vec<Revision>, BackendError>;

    /// Starts removing the database and everything it owns.
    async fn delete(&self, name: &str) -> Result<DeleteOutcome, BackendError>;

    async fn credentials(&self, name: &str) -> Result<Credentials, BackendError>;

    /// Takes an existing, unmanaged database of the platform under
    /// management without changing its spec. Only the kubernetes backend
    /// has such databases.
    async fn adopt(&self, name: &str, by: &str) -> Result<Adopted, BackendError> {
        let _ = by;
        // Here every database is pgplane's own: there is none to adopt.
        self.get(name).await?;
        Err(BackendError::Busy(format!(
            "database {name} is pgplane's own already; only the kubernetes backend adopts existing Clusters"
        )))
    }

    /// Removes pgplane's marks from a database it manages, leaving the rest
    /// as it is; pgplane stops seeing it.
    async fn release(&self, name: &str) -> Result<(), BackendError> {
        self.get(name).await?;
        Err(BackendError::Busy(format!(
            "database {name} cannot be released: pgplane runs its servers itself; only the kubernetes backend releases Clusters"
        )))
    }

    /// Every database as last shown, and each change from now on: what
    /// `watch=true` streams are made of.
    fn feed(&self) -> &Feed;

    /// `Err(reason)` when the backend cannot serve requests.
    async fn ready(&self) -> Result<(), String>;

    /// `Some(reason)` while reads are served from a cache that may be
    /// behind (the kubernetes backend when the API server is unreachable).
    fn stale(&self) -> Option<String> {
        None
    }

    /// Stops the backend's background work (on shutdown, and in tests).
    fn shutdown(&self) {}
}
