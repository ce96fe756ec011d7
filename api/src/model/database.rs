//! What a database is, as the API shows it and as a backend is asked to
//! make it: the spec a caller asks for, the observed state, the endpoints
//! and the connection details. Pure data; the rules live in [`super::spec`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the caller asks for: the desired state of one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseSpec {
    #[schema(example = "orders")]
    pub name: String,
    #[schema(example = 16)]
    pub postgres_version: u32,
    #[schema(example = 3, minimum = 1, maximum = 9)]
    pub instances: u32,
    #[schema(example = "10Gi")]
    pub storage: String,
    pub parameters: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Where a database stands, in the words of the contract (DESIGN.md "States").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Creating,
    Healthy,
    Scaling,
    Updating,
    Degraded,
    FailingOver,
    Deleting,
    Failed,
    Unknown,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Creating,
        State::Healthy,
        State::Scaling,
        State::Updating,
        State::Degraded,
        State::FailingOver,
        State::Deleting,
        State::Failed,
        State::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Healthy => "healthy",
            State::Scaling => "scaling",
            State::Updating => "updating",
            State::Degraded => "degraded",
            State::FailingOver => "failing_over",
            State::Deleting => "deleting",
            State::Failed => "failed",
            State::Unknown => "unknown",
        }
    }
}

/// Connection addresses, `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Endpoints {
    pub read_write: String,
    pub read_only: String,
}

/// A database as the API shows it: the spec plus what the backend observes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Database {
    #[schema(example = "orders")]
    pub name: String,
    #[schema(example = 15)]
    pub postgres_version: u32,
    #[schema(example = 3, minimum = 1, maximum = 9)]
    pub instances: u32,
    #[schema(example = "10Gi")]
    pub storage: String,
    pub parameters: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub owner: String,
    pub state: State,
    /// The backend's own text for where the database stands, verbatim.
    pub phase: String,
    pub ready_instances: u32,
    pub primary: Option<String>,
    pub endpoints: Option<Endpoints>,
    /// Counts spec changes; also the `ETag`.
    pub revision: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The latest change the servers could not run, put back to the last
    /// configuration that worked; absent once a later change is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone: Option<UndoneChange>,
    /// Every instance as the backend last saw it, by name; empty until the
    /// first look.
    #[serde(default)]
    #[schema(required = true)]
    pub instances_status: Vec<InstanceStatus>,
    /// Where the database is declared: changes to a `git` one belong in
    /// its spec file, not in the API.
    #[serde(default)]
    #[schema(required = true)]
    pub source: Source,
    /// Of a `git` database: the spec's path in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "gitops/databases/inventory.yaml")]
    pub declared_in: Option<String>,
}

/// Where a database comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Made through the API.
    #[default]
    Api,
    /// Rendered from a spec in git and applied by Argo CD: read-only here.
    Git,
    /// An existing Cluster taken under management; managed as `api` ones are.
    Adopted,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Git => "git",
            Source::Adopted => "adopted",
        }
    }
}

/// One instance (one PostgreSQL server) of a database, as the backend last
/// saw it. What a backend cannot tell is absent, never guessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceStatus {
    #[schema(example = "orders-2")]
    pub name: String,
    pub role: InstanceRole,
    pub state: InstanceState,
    /// A client can use it: it serves queries, and a standby streams from
    /// the primary.
    pub ready: bool,
    /// The PostgreSQL timeline it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1, example = 1)]
    pub timeline: Option<u32>,
    /// Of a standby: bytes of WAL the primary has written that it has not
    /// replayed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0, example = 0)]
    pub lag_bytes: Option<u64>,
    /// Of a standby: how far its replay is behind the primary in time, in
    /// seconds (to a tenth), where the backend can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0, example = 0.0)]
    pub lag_seconds: Option<f64>,
    /// When its server last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub started_at: Option<DateTime<Utc>>,
    /// How often pgplane started it again after it had stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0, example = 0)]
    pub restarts: Option<u32>,
}

impl InstanceStatus {
    /// An instance seen with nothing more known than its name, role and
    /// state.
    pub fn new(name: impl Into<String>, role: InstanceRole, state: InstanceState) -> Self {
        InstanceStatus {
            name: name.into(),
            role,
            state,
            ready: false,
            timeline: None,
            lag_bytes: None,
            lag_seconds: None,
            started_at: None,
            restarts: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceRole {
    Primary,
    Standby,
}

/// Where an instance's server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Its server runs and takes connections.
    Running,
    /// Its server is starting (on Kubernetes: its pod is being made and
    /// joins the cluster).
    Starting,
    Stopped,
    /// The backend says it failed.
    Failed,
    /// The backend says nothing of it yet.
    Unknown,
}

/// A spec change that broke the database and was undone: it is not tried
/// again until the spec changes again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UndoneChange {
    /// The revision whose configuration was undone.
    pub revision: u64,
    /// Why, in PostgreSQL's own words where it gave any.
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl Database {
    /// What was asked for, without what is observed.
    pub fn spec(&self) -> DatabaseSpec {
        DatabaseSpec {
            name: self.name.clone(),
            postgres_version: self.postgres_version,
            instances: self.instances,
            storage: self.storage.clone(),
            parameters: self.parameters.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// Connection details for the application role.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub uri: String,
    pub jdbc_uri: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Builds the URIs from the parts, percent-encoding what needs it.
    pub fn new(username: &str, password: &str, host: &str, port: u16, dbname: &str) -> Self {
        let (u, p, d) = (encode(username), encode(password), encode(dbname));
        Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
            host: host.to_owned(),
            port,
            dbname: dbname.to_owned(),
            uri: format!("postgresql://{u}:{p}@{host}:{port}/{d}"),
            jdbc_uri: format!("jdbc:postgresql://{host}:{port}/{d}?user={u}&password={p}"),
        }
    }
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_encode_uri_parts() {
        let c = Credentials::new("app", "p@ss:w/rd", "127.0.0.1", 5432, "app");
        assert_eq!(c.uri, "postgresql://app:p%40ss%3Aw%2Frd@127.0.0.1:5432/app");
        assert!(!format!("{c:?}").contains("p@ss"));
    }
}
