//! What the local backend keeps on disk per database, so that nothing of a
//! database's state lives only in memory: `database.json` (the desired spec
//! and the instances that exist or are being made) and `secrets.json` (the
//! generated passwords, readable by pgplane's account only).
//!
//! Layout under `PGPLANE_DATA_DIR/databases/<name>/`:
//! `database.json`, `secrets.json`, and one `<name>-<n>/` per instance
//! holding `pgdata/` and `postgres.log`, owned by the PostgreSQL account.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::DatabaseSpec;
use crate::secret::{random_token, Secret};

/// One PostgreSQL server of a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub ordinal: u32,
    pub port: u16,
}

/// The persisted truth about one database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseRecord {
    pub spec: DatabaseSpec,
    pub owner: String,
    pub revision: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set by DELETE; the reconciler then removes everything.
    pub deleting: bool,
    /// Instances that exist or are being built, primary included.
    pub instances: Vec<InstanceRecord>,
    /// Ordinal of the primary.
    pub primary: u32,
    /// The `app` role and database exist on the primary.
    pub bootstrapped: bool,
    /// The database has been healthy once: `creating` is over.
    pub created: bool,
    /// The parameters the servers were last configured with.
    pub applied_parameters: BTreeMap<String, String>,
}

impl DatabaseRecord {
    pub fn new(spec: DatabaseSpec, owner: &str, primary_port: u16) -> DatabaseRecord {
        let now = Utc::now();
        DatabaseRecord {
            spec,
            owner: owner.to_owned(),
            revision: 1,
            created_at: now,
            updated_at: now,
            deleting: false,
            instances: vec![InstanceRecord {
                ordinal: 1,
                port: primary_port,
            }],
            primary: 1,
            bootstrapped: false,
            created: false,
            applied_parameters: BTreeMap::new(),
        }
    }

    pub fn primary(&self) -> Option<&InstanceRecord> {
        self.instances.iter().find(|i| i.ordinal == self.primary)
    }

    /// Standbys by ordinal.
    pub fn standbys(&self) -> Vec<InstanceRecord> {
        let mut s: Vec<_> = self
            .instances
            .iter()
            .filter(|i| i.ordinal != self.primary)
            .cloned()
            .collect();
        s.sort_by_key(|i| i.ordinal);
        s
    }

    pub fn next_ordinal(&self) -> u32 {
        self.instances.iter().map(|i| i.ordinal).max().unwrap_or(0) + 1
    }
}

/// The passwords a database's servers were made with.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secrets {
    pub superuser: String,
    pub replication: String,
    pub app: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(***)")
    }
}

impl Secrets {
    pub fn generate() -> Secrets {
        Secrets {
            superuser: random_token(32),
            replication: random_token(32),
            app: random_token(32),
        }
    }

    pub fn replication(&self) -> Secret<String> {
        Secret::new(self.replication.clone())
    }
}

/// Paths of one database's files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub name: String,
}

impl Paths {
    pub fn new(root: &Path, name: &str) -> Paths {
        Paths {
            dir: root.join(name),
            name: name.to_owned(),
        }
    }

    pub fn record(&self) -> PathBuf {
        self.dir.join("database.json")
    }

    pub fn secrets(&self) -> PathBuf {
        self.dir.join("secrets.json")
    }

    pub fn instance_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    pub fn instance_dir(&self, ordinal: u32) -> PathBuf {
        self.dir.join(self.instance_name(ordinal))
    }

    pub fn pgdata(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("pgdata")
    }

    pub fn log(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("postgres.log")
    }

    /// Written once a standby's copy is complete and configured.
    pub fn built_marker(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("built")
    }
}

/// The replication slot of a standby on its primary.
pub fn slot_name(ordinal: u32) -> String {
    format!("pgplane_instance_{ordinal}")
}
