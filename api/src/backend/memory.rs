//! A backend that keeps databases in memory, for the HTTP contract tests
//! only (`http::contract`): it answers at once and can be told to fail the
//! next call, so every error a real backend can give reaches the HTTP layer
//! without PostgreSQL or an API server. The real backends keep their own
//! tests against the real things.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use super::{Backend, BackendError, DeleteOutcome, Feed};
use crate::model::{Credentials, Database, DatabaseSpec, State};

#[derive(Default)]
pub struct MemoryBackend {
    databases: Mutex<BTreeMap<String, Database>>,
    /// The error the next call answers with, whatever it is.
    next_failure: Mutex<Option<BackendError>>,
    feed: Feed,
}

impl MemoryBackend {
    /// Makes the next call fail with `e`.
    pub fn fail_next(&self, e: BackendError) {
        *self.next_failure.lock().expect("not poisoned") = Some(e);
    }

    fn check(&self) -> Result<(), BackendError> {
        match self.next_failure.lock().expect("not poisoned").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn databases(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Database>> {
        self.databases.lock().expect("not poisoned")
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn list(&self) -> Result<Vec<Database>, BackendError> {
        self.check()?;
        Ok(self.databases().values().cloned().collect())
    }

    async fn get(&self, name: &str) -> Result<Database, BackendError> {
        self.check()?;
        self.databases()
            .get(name)
            .cloned()
            .ok_or_else(|| BackendError::NotFound(name.into()))
    }

    async fn validate(&self, _spec: &DatabaseSpec) -> Result<(), BackendError> {
        self.check()
    }

    async fn create(&self, spec: DatabaseSpec, owner: &str) -> Result<Database, BackendError> {
        self.check()?;
        let mut all = self.databases();
        if all.contains_key(&spec.name) {
            return Err(BackendError::AlreadyExists(spec.name));
        }
        let mut db = Database::of(spec, owner).in_state(State::Creating, 0);
        db.created_at = Utc::now();
        db.updated_at = db.created_at;
        all.insert(db.name.clone(), db.clone());
        self.feed.publish(db.clone());
        Ok(db)
    }

    async fn update(
        &self,
        spec: DatabaseSpec,
        expected_revision: u64,
    ) -> Result<Database, BackendError> {
        self.check()?;
        let mut all = self.databases();
        let db = all
            .get_mut(&spec.name)
            .ok_or_else(|| BackendError::NotFound(spec.name.clone()))?;
        if db.revision != expected_revision {
            return Err(BackendError::RevisionMismatch {
                expected: expected_revision,
                current: db.revision,
            });
        }
        let revision = db.revision + 1;
        *db = Database {
            revision,
            created_at: db.created_at,
            updated_at: Utc::now(),
            ..Database::of(spec, &db.owner).in_state(State::Updating, db.ready_instances)
        };
        self.feed.publish(db.clone());
        Ok(db.clone())
    }

    async fn delete(&self, name: &str) -> Result<DeleteOutcome, BackendError> {
        self.check()?;
        Ok(match self.databases().get_mut(name) {
            Some(db) => {
                db.state = State::Deleting;
                self.feed.publish(db.clone());
                DeleteOutcome::Started
            }
            None => DeleteOutcome::AlreadyGone,
        })
    }

    async fn credentials(&self, name: &str) -> Result<Credentials, BackendError> {
        self.check()?;
        let db = self.get(name).await?;
        Ok(Credentials::new(
            "app",
            "memory-secret",
            "127.0.0.1",
            5432,
            &db.name,
        ))
    }

    fn feed(&self) -> &Feed {
        &self.feed
    }

    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}
