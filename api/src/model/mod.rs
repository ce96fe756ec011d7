//! The domain, pure: what a database is ([`database`]), the rules a request
//! must satisfy ([`spec`], [`parameters`]), bad fields ([`invalid`]), roles
//! ([`role`]), paging ([`paging`]) and the revision history ([`revision`]).
//! No I/O, no HTTP, no backend.

pub mod database;
pub mod fixtures;
pub mod invalid;
pub mod paging;
pub mod parameters;
pub mod revision;
pub mod role;
pub mod spec;

pub use database::{
    Credentials, Database, DatabaseSpec, Endpoints, InstanceRole, InstanceState, InstanceStatus,
    Source, State, UndoneChange,
};
pub use invalid::{FieldError, Invalid};
pub use revision::{Change, Revision, RevisionKind};
pub use role::Role;
pub use spec::{
    apply_patch, check_label_key, check_name, format_bytes, parse_create, quantity_bytes,
    spec_changes, CreateDatabaseDoc, DatabasePatchDoc, Limits, DEFAULT_MAX_STORAGE_BYTES,
};
