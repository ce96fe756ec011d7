//! From what a backend observes to the states of DESIGN.md, as pure
//! functions: the watcher calls them, tests call them with tables.

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

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    fn obs(
        deleting: bool,
        created: bool,
        operation: Option<Operation>,
        failures: u32,
        wanted: u32,
        ready: u32,
    ) -> LocalObservation {
        LocalObservation {
            deleting,
            created,
            operation,
            failures,
            wanted,
            ready,
        }
    }

    #[test]
    fn local_states_table() {
        let table = [
            // (observation, state)
            (
                obs(false, false, Some(Bootstrapping), 0, 2, 0),
                State::Creating,
            ),
            (
                obs(false, false, Some(AddingStandbys), 0, 2, 1),
                State::Creating,
            ),
            (obs(false, false, None, 0, 2, 1), State::Creating),
            (obs(false, false, None, 3, 2, 0), State::Failed),
            (obs(false, true, None, 0, 2, 2), State::Healthy),
            (obs(false, true, None, 0, 3, 2), State::Degraded),
            (obs(false, true, None, 0, 1, 0), State::Degraded),
            (obs(false, true, Some(Healing), 0, 2, 2), State::Degraded),
            (obs(false, true, Some(Healing), 0, 2, 1), State::Degraded),
            (
                obs(false, true, Some(AddingStandbys), 0, 3, 2),
                State::Scaling,
            ),
            (
                obs(false, true, Some(RemovingStandbys), 0, 1, 2),
                State::Scaling,
            ),
            (
                obs(false, true, Some(ApplyingParameters), 0, 2, 2),
                State::Updating,
            ),
            (
                obs(false, true, Some(FailingOver), 0, 2, 0),
                State::FailingOver,
            ),
            (
                obs(false, true, Some(FailingOver), 2, 2, 0),
                State::FailingOver,
            ),
            (obs(false, true, Some(FailingOver), 3, 2, 0), State::Failed),
            (obs(false, true, None, 5, 2, 2), State::Failed),
            (obs(true, true, None, 5, 2, 2), State::Deleting),
            (
                obs(true, false, Some(Bootstrapping), 0, 2, 0),
                State::Deleting,
            ),
            (obs(false, true, None, 0, 2, 3), State::Healthy),
        ];
        for (o, want) in table {
            assert_eq!(local_state(&o).0, want, "{o:?}");
        }
    }

    #[test]
    fn healthy_and_creating_phases_match_cnpg_text() {
        assert_eq!(
            local_state(&obs(false, true, None, 0, 1, 1)).1,
            "Cluster in healthy state"
        );
        assert_eq!(
            local_state(&obs(false, false, Some(Bootstrapping), 0, 1, 0)).1,
            "Setting up primary"
        );
        assert_eq!(
            local_state(&obs(false, true, Some(AddingStandbys), 0, 2, 1)).1,
            "Creating a new replica"
        );
    }
}
