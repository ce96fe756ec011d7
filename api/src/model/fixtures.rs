//! Builders for test objects, so tests read as sentences:
//! `DatabaseSpec::test().instances(3).label("team", "a")`. Shared by the
//! unit tests and by the integration tests of `api/tests` (which compile
//! the library without `cfg(test)`, hence not behind it).

use chrono::{TimeZone, Utc};

use super::database::{
    Database, DatabaseSpec, Endpoints, InstanceRole, InstanceState, InstanceStatus, Source, State,
};

impl DatabaseSpec {
    /// `orders`: one instance of PostgreSQL 15 on 1Gi, no parameters or labels.
    pub fn test() -> DatabaseSpec {
        DatabaseSpec {
            name: "orders".into(),
            postgres_version: 15,
            instances: 1,
            storage: "1Gi".into(),
            parameters: Default::default(),
            labels: Default::default(),
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    pub fn instances(mut self, n: u32) -> Self {
        self.instances = n;
        self
    }

    pub fn storage(mut self, quantity: &str) -> Self {
        self.storage = quantity.into();
        self
    }

    pub fn parameter(mut self, name: &str, value: &str) -> Self {
        self.parameters.insert(name.into(), value.into());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

impl Database {
    /// A healthy database of [`DatabaseSpec::test`], owned by alice, at revision 1.
    pub fn test() -> Database {
        Database::of(DatabaseSpec::test(), "alice")
    }

    /// A healthy database of `spec`, at revision 1, with its endpoints.
    pub fn of(spec: DatabaseSpec, owner: &str) -> Database {
        let at = Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap();
        Database {
            endpoints: Some(Endpoints {
                read_write: format!("{}-rw:5432", spec.name),
                read_only: format!("{}-ro:5432", spec.name),
            }),
            primary: Some(format!("{}-1", spec.name)),
            instances_status: (1..=spec.instances)
                .map(|ordinal| {
                    let (role, lag) = match ordinal {
                        1 => (InstanceRole::Primary, None),
                        _ => (InstanceRole::Standby, Some(0)),
                    };
                    InstanceStatus {
                        ready: true,
                        timeline: Some(1),
                        lag_bytes: lag,
                        lag_seconds: lag.map(|_| 0.0),
                        started_at: Some(at),
                        restarts: Some(0),
                        ..InstanceStatus::new(
                            format!("{}-{ordinal}", spec.name),
                            role,
                            InstanceState::Running,
                        )
                    }
                })
                .collect(),
            name: spec.name,
            postgres_version: spec.postgres_version,
            ready_instances: spec.instances,
            instances: spec.instances,
            storage: spec.storage,
            parameters: spec.parameters,
            labels: spec.labels,
            owner: owner.into(),
            state: State::Healthy,
            phase: "Cluster in healthy state".into(),
            revision: 1,
            created_at: at,
            updated_at: at,
            undone: None,
            source: Source::Api,
            declared_in: None,
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn in_state(mut self, state: State, ready_instances: u32) -> Self {
        self.state = state;
        self.ready_instances = ready_instances;
        for (at, i) in self.instances_status.iter_mut().enumerate() {
            i.ready = (at as u32) < ready_instances;
        }
        self
    }
}
