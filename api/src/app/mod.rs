//! The application layer: what each request does, between the HTTP layer
//! (which parses and shapes answers) and the layers below. Who may do what
//! ([`App::admit`]), the audit record written ahead of every change, "does
//! this database exist", the merge-patch read-modify-write with its
//! precondition, the re-read after a delete. No HTTP types here: errors
//! are [`AppError`], which `http::problem` turns into answers.

mod databases;
mod records;
pub mod render;
mod streams;

use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::{Auth, AuthError, Caller, Login};
use crate::backend::{Backend, BackendError};
use crate::metrics::Metrics;
use crate::model::revision::Missing;
use crate::model::{Invalid, Limits, Role};
use crate::records::{Audit, Draft, Events, RecordsError};

pub use databases::{entity_tags, etag, Deleted, RolledBack, Updated};
pub use streams::{DatabaseWatch, EventFollow, Next, Resume, StreamSlot, Streams};

/// What every request may use.
pub struct App {
    pub backend: Arc<dyn Backend>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<Events>,
    pub audit: Arc<Audit>,
    pub limits: Limits,
    /// The Kubernetes namespace a rendered `Cluster` is put in.
    pub namespace: String,
    pub streams: Streams,
}

/// Everything a request can fail with below the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// `If-Match` named another revision than the current one.
    #[error("the database changed since {if_match}; it is now at revision {current}")]
    PreconditionFailed { if_match: String, current: u64 },
    /// A database that does not exist and never existed here.
    #[error("no database {0}, now or before")]
    NeverExisted(String),
    #[error("database {0} is changing too fast; try again")]
    TooManyConflicts(String),
    #[error("{0} change streams are open, as many as this server allows (PGPLANE_MAX_STREAMS); try again later")]
    TooManyStreams(usize),
    /// A revision of a database that exists, never made or pruned since.
    #[error("database {name}: {missing}")]
    Revision { name: String, missing: Missing },
    /// A change to a database whose spec lives in git: it belongs there.
    #[error("database {name} is declared in git, in {path}: change it there (Argo CD applies it); the API does not")]
    DeclaredInGit { name: String, path: String },
}

/// The actor of a failed login whose username is no user's.
pub const UNKNOWN_USER: &str = "(unknown user)";

impl App {
    /// The caller a bearer token stands for, if its role is at least
    /// `needs`. The draft (of an audited route) learns who the caller is
    /// even when the role falls short, so a refusal names them.
    pub fn admit(
        &self,
        bearer: Result<&str, AuthError>,
        needs: Role,
        draft: Option<&Draft>,
    ) -> Result<Caller, AuthError> {
        let caller = self.auth.authenticate(bearer?)?;
        if let Some(draft) = draft {
            draft.set_caller(&caller.username, Some(caller.role));
        }
        caller.require(needs)?;
        Ok(caller)
    }

    /// Checks a username and password; the record names the user only when
    /// the name is a user's (an unknown name may be a mistyped password).
    pub async fn login(
        &self,
        draft: &Draft,
        username: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<Login, AuthError> {
        let known = self.auth.is_user(username);
        draft.set_caller(if known { username } else { UNKNOWN_USER }, None);
        let login = self.auth.login(username, password, from).await?;
        draft.set_caller(username, Some(login.role));
        Ok(login)
    }
}
