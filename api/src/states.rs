//! From what a backend observes to the states of DESIGN.md, as pure
//! functions: the watchers call them, tests call them with tables. The
//! local backend observes processes ([`local_state`]); the kubernetes
//! backend reads CloudNativePG's phase text ([`cnpg_state`]).

use crate::model::State;

/// What the local backend's reconciler is busy with, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Making the primary and its first standbys.
    Bootstrapping,
    AddingStandbys,
    RemovingStandbys,
    ApplyingParameters,
    /// Promoting a standby because the primary is gone.
    FailingOver,
    /// Restarting or rebuilding an instance that stopped.
    Healing,
}

/// One look at a local database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalObservation {
    pub deleting: bool,
    /// The database has been healthy once: `creating` is over.
    pub created: bool,
    pub operation: Option<Operation>,
    /// Consecutive failed reconcile steps.
    pub failures: u32,
    pub wanted: u32,
    pub ready: u32,
}

/// Consecutive failures after which a database counts as `failed`.
pub const FAILURES_UNTIL_FAILED: u32 = 3;

/// The state and a CNPG-like phase for one observation. Deletion wins over
/// everything; repeated failure over any operation; `creating` lasts until
/// the database is healthy once; then an operation names the state, and
/// without one the ready count decides between `healthy` and `degraded`.
pub fn local_state(o: &LocalObservation) -> (State, &'static str) {
    use Operation::*;
    if o.deleting {
        return (State::Deleting, "Deleting");
    }
    if o.failures >= FAILURES_UNTIL_FAILED {
        return (
            State::Failed,
            "Cluster is unrecoverable and needs manual intervention",
        );
    }
    if !o.created {
        let phase = match o.operation {
            Some(AddingStandbys) => "Creating a new replica",
            _ => "Setting up primary",
        };
        return (State::Creating, phase);
    }
    match o.operation {
        Some(FailingOver) => (State::FailingOver, "Failing over"),
        Some(AddingStandbys) => (State::Scaling, "Creating a new replica"),
        Some(RemovingStandbys) => (State::Scaling, "Scaling down"),
        Some(ApplyingParameters) => (State::Updating, "Applying configuration"),
        Some(Healing) | Some(Bootstrapping) | None => {
            if o.ready >= o.wanted && o.operation.is_none() {
                (State::Healthy, "Cluster in healthy state")
            } else {
                (
                    State::Degraded,
                    "Waiting for the instances to become active",
                )
            }
        }
    }
}

/// Every phase text of CloudNativePG v1.30 (`api/v1/cluster_types.go`,
/// the `Phase*` constants) with the state it means. Two texts of older
/// releases are kept, so an operator not yet upgraded is still understood.
pub const CNPG_PHASES: &[(&str, CnpgPhase)] = &[
    ("Setting up primary", CnpgPhase::Bootstrap),
    ("Creating a new replica", CnpgPhase::AddingReplica),
    (
        "Waiting for the instances to become active",
        CnpgPhase::WaitingForInstances,
    ),
    ("Cluster in healthy state", CnpgPhase::Is(State::Healthy)),
    ("Switchover in progress", CnpgPhase::Is(State::FailingOver)),
    ("Failing over", CnpgPhase::Is(State::FailingOver)),
    ("Upgrading cluster", CnpgPhase::Is(State::Updating)),
    (
        "Upgrading Postgres major version",
        CnpgPhase::Is(State::Updating),
    ),
    ("Cluster upgrade delayed", CnpgPhase::Is(State::Updating)),
    ("Online upgrade in progress", CnpgPhase::Is(State::Updating)),
    ("Applying configuration", CnpgPhase::Is(State::Updating)),
    (
        "Primary instance is being restarted in-place",
        CnpgPhase::Is(State::Updating),
    ),
    (
        "Primary instance is being restarted without a switchover",
        CnpgPhase::Is(State::Updating),
    ),
    // A supervised update waits for someone to promote or restart.
    ("Waiting for user action", CnpgPhase::Is(State::Updating)),
    (
        "Promoting to primary cluster",
        CnpgPhase::Is(State::Updating),
    ),
    (
        "Cluster is unrecoverable and needs manual intervention",
        CnpgPhase::Is(State::Failed),
    ),
    (
        "Cluster cannot proceed to reconciliation due to an unknown plugin being required",
        CnpgPhase::Is(State::Failed),
    ),
    (
        "Cluster cannot proceed to reconciliation due to an error while interacting with plugins",
        CnpgPhase::Is(State::Failed),
    ),
    (
        "Cluster has incomplete or invalid image catalog",
        CnpgPhase::Is(State::Failed),
    ),
    (
        "Cluster cannot execute instance online upgrade due to missing architecture binary",
        CnpgPhase::Is(State::Failed),
    ),
    (
        "Unable to create required cluster objects",
        CnpgPhase::Is(State::Failed),
    ),
    // Texts of releases before 1.25.
    (
        "Cluster is in an unrecoverable state, needs manual intervention",
        CnpgPhase::Is(State::Failed),
    ),
    (
        "Cluster cannot proceed to reconciliation due to an unknown image catalog error",
        CnpgPhase::Is(State::Failed),
    ),
];

/// What a CNPG phase says; three depend on whether the database has been
/// ready once (its `creating` is over), as with the local backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CnpgPhase {
    Bootstrap,
    /// `creating` while the database is first made, `scaling` after.
    AddingReplica,
    /// `creating` while the database is first made, `degraded` after.
    WaitingForInstances,
    Is(State),
}

/// One look at a CNPG Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CnpgObservation<'a> {
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `status.phase`, "" before the operator wrote a status.
    pub phase: &'a str,
    /// The database left `creating` before (it was healthy once).
    pub created: bool,
    /// The operator has not acted on the latest spec yet (its Ready
    /// condition is of an older generation).
    pub unobserved: bool,
}

/// The state of a CNPG Cluster. Deletion wins; no status yet is
/// `creating`; a phase text this version does not know is `unknown` (the
/// API shows the text itself as `phase`).
pub fn cnpg_state(o: &CnpgObservation) -> State {
    if o.deleting {
        return State::Deleting;
    }
    if o.phase.is_empty() {
        return State::Creating;
    }
    let Some((_, meaning)) = CNPG_PHASES.iter().find(|(text, _)| *text == o.phase) else {
        return State::Unknown;
    };
    match (meaning, o.created) {
        (CnpgPhase::Bootstrap, _) => State::Creating,
        (CnpgPhase::AddingReplica, false) | (CnpgPhase::WaitingForInstances, false) => {
            State::Creating
        }
        (CnpgPhase::AddingReplica, true) => State::Scaling,
        (CnpgPhase::WaitingForInstances, true) => State::Degraded,
        // Healthy as of an older spec: the latest change is still to come.
        (CnpgPhase::Is(State::Healthy), _) if o.unobserved => State::Updating,
        (CnpgPhase::Is(s), _) => *s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    /// Builders, so that the tables read as what each case is.
    impl LocalObservation {
        /// A database made before (`creating` is over), of one instance
        /// that is ready, with nothing going on.
        fn test() -> LocalObservation {
            LocalObservation {
                deleting: false,
                created: true,
                operation: None,
                failures: 0,
                wanted: 1,
                ready: 1,
            }
        }

        /// Still being made: never healthy before.
        fn not_created(self) -> Self {
            LocalObservation {
                created: false,
                ..self
            }
        }

        fn deleting(self) -> Self {
            LocalObservation {
                deleting: true,
                ..self
            }
        }

        fn instances(self, wanted: u32) -> Self {
            LocalObservation { wanted, ..self }
        }

        fn ready(self, ready: u32) -> Self {
            LocalObservation { ready, ..self }
        }

        fn during(self, operation: Operation) -> Self {
            LocalObservation {
                operation: Some(operation),
                ..self
            }
        }

        /// After this many failed reconcile steps in a row.
        fn failures(self, failures: u32) -> Self {
            LocalObservation { failures, ..self }
        }
    }

    fn obs() -> LocalObservation {
        LocalObservation::test()
    }

    #[test]
    fn local_states_table() {
        let table = [
            // (observation, state)
            (
                obs()
                    .not_created()
                    .instances(2)
                    .ready(0)
                    .during(Bootstrapping),
                State::Creating,
            ),
            (
                obs()
                    .not_created()
                    .instances(2)
                    .ready(1)
                    .during(AddingStandbys),
                State::Creating,
            ),
            (obs().not_created().instances(2).ready(1), State::Creating),
            (
                obs().not_created().instances(2).ready(0).failures(3),
                State::Failed,
            ),
            (obs().instances(2).ready(2), State::Healthy),
            (obs().instances(3).ready(2), State::Degraded),
            (obs().instances(1).ready(0), State::Degraded),
            (obs().instances(2).ready(2).during(Healing), State::Degraded),
            (obs().instances(2).ready(1).during(Healing), State::Degraded),
            (
                obs().instances(3).ready(2).during(AddingStandbys),
                State::Scaling,
            ),
            (
                obs().instances(1).ready(2).during(RemovingStandbys),
                State::Scaling,
            ),
            (
                obs().instances(2).ready(2).during(ApplyingParameters),
                State::Updating,
            ),
            (
                obs().instances(2).ready(0).during(FailingOver),
                State::FailingOver,
            ),
            (
                obs().instances(2).ready(0).during(FailingOver).failures(2),
                State::FailingOver,
            ),
            (
                obs().instances(2).ready(0).during(FailingOver).failures(3),
                State::Failed,
            ),
            (obs().instances(2).ready(2).failures(5), State::Failed),
            (
                obs().deleting().instances(2).ready(2).failures(5),
                State::Deleting,
            ),
            (
                obs()
                    .deleting()
                    .not_created()
                    .instances(2)
                    .ready(0)
                    .during(Bootstrapping),
                State::Deleting,
            ),
            (obs().instances(2).ready(3), State::Healthy),
        ];
        for (o, want) in table {
            assert_eq!(local_state(&o).0, want, "{o:?}");
        }
    }

    #[test]
    fn healthy_and_creating_phases_match_cnpg_text() {
        assert_eq!(
            local_state(&obs().instances(1).ready(1)).1,
            "Cluster in healthy state"
        );
        assert_eq!(
            local_state(
                &obs()
                    .not_created()
                    .instances(1)
                    .ready(0)
                    .during(Bootstrapping)
            )
            .1,
            "Setting up primary"
        );
        assert_eq!(
            local_state(&obs().instances(2).ready(1).during(AddingStandbys)).1,
            "Creating a new replica"
        );
    }

    /// Builders for CNPG observations: a phase text, on a Cluster that
    /// was never ready and is not being deleted, unless told.
    impl<'a> CnpgObservation<'a> {
        fn test(phase: &'a str) -> CnpgObservation<'a> {
            CnpgObservation {
                deleting: false,
                phase,
                created: false,
                unobserved: false,
            }
        }

        /// The database left `creating` before.
        fn created(self) -> Self {
            CnpgObservation {
                created: true,
                ..self
            }
        }

        fn unobserved(self) -> Self {
            CnpgObservation {
                unobserved: true,
                ..self
            }
        }

        fn deleting(self) -> Self {
            CnpgObservation {
                deleting: true,
                ..self
            }
        }
    }

    #[test]
    fn cnpg_phases_table() {
        let phase = CnpgObservation::test;
        let table = [
            (phase(""), State::Creating),
            (phase("Setting up primary"), State::Creating),
            (phase("Creating a new replica"), State::Creating),
            (phase("Creating a new replica").created(), State::Scaling),
            (
                phase("Waiting for the instances to become active"),
                State::Creating,
            ),
            (
                phase("Waiting for the instances to become active").created(),
                State::Degraded,
            ),
            (phase("Cluster in healthy state"), State::Healthy),
            (phase("Cluster in healthy state").created(), State::Healthy),
            // Healthy as of an older spec: the change is still to come.
            (
                phase("Cluster in healthy state").created().unobserved(),
                State::Updating,
            ),
            (
                phase("Waiting for the instances to become active")
                    .created()
                    .unobserved(),
                State::Degraded,
            ),
            (phase("Failing over").created(), State::FailingOver),
            (
                phase("Switchover in progress").created(),
                State::FailingOver,
            ),
            (phase("Upgrading cluster").created(), State::Updating),
            (phase("Applying configuration").created(), State::Updating),
            (
                phase("Upgrading Postgres major version").created(),
                State::Updating,
            ),
            (
                phase("Cluster is unrecoverable and needs manual intervention").created(),
                State::Failed,
            ),
            (
                phase("Unable to create required cluster objects"),
                State::Failed,
            ),
            (
                phase("Cluster in healthy state").created().deleting(),
                State::Deleting,
            ),
            (phase("").deleting(), State::Deleting),
            (phase("Something new in CNPG 2.0").created(), State::Unknown),
            (phase("cluster in healthy state").created(), State::Unknown),
            (phase("Cluster in healthy state ").created(), State::Unknown),
        ];
        for (obs, want) in table {
            assert_eq!(cnpg_state(&obs), want, "{obs:?}");
        }
    }

    #[test]
    fn every_cnpg_phase_is_mapped_once_and_none_is_unknown() {
        let mut texts: Vec<&str> = CNPG_PHASES.iter().map(|(t, _)| *t).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(
            texts.len(),
            CNPG_PHASES.len(),
            "a phase text is listed twice"
        );
        for (text, _) in CNPG_PHASES {
            for created in [false, true] {
                let s = cnpg_state(&CnpgObservation {
                    deleting: false,
                    phase: text,
                    created,
                    unobserved: false,
                });
                assert_ne!(s, State::Unknown, "{text}");
            }
        }
        // The examples of DESIGN.md "States".
        let design = [
            ("Setting up primary", State::Creating),
            ("Creating a new replica", State::Scaling),
            ("Cluster in healthy state", State::Healthy),
            ("Failing over", State::FailingOver),
            ("Switchover in progress", State::FailingOver),
            ("Upgrading cluster", State::Updating),
            ("Applying configuration", State::Updating),
            (
                "Cluster is unrecoverable and needs manual intervention",
                State::Failed,
            ),
        ];
        for (text, want) in design {
            let got = cnpg_state(&CnpgObservation {
                deleting: false,
                phase: text,
                created: true,
                unobserved: false,
            });
            assert_eq!(got, want, "{text}");
        }
    }
}
