//! What `healthy` promises, checked: a client can connect to every ready
//! instance as `app` over TCP and run a query, the primary takes writes,
//! and the standbys stream from it. The watcher looks twice a second over
//! the sessions [`Sessions`] keeps; after a configuration change the next
//! look connects anew.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use super::super::postgres::chain;
use super::super::record::{DatabaseRecord, InstanceRecord};
use super::super::Entry;
use super::servers::{server, Server, ServerStatus};
use super::sessions::{Sessions, CONNECT_TIMEOUT};
use super::standbys::streaming_standbys;

/// How long the probe's query may take on a session that is up.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// One round trip: that the session can run a query, and whether its
/// transactions are read-only (on a standby they always are).
const QUERY: &str = "SELECT current_setting('transaction_read_only')";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Must also take writes.
    Primary,
    Standby,
}

/// Why an instance failed the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProbeFailure {
    /// PostgreSQL's own words where it sent any (`FATAL: ...`).
    pub reason: String,
    /// The server answered with a refusal that asking again will not
    /// change, rather than not being up yet.
    pub lasting: bool,
}

/// Checks one instance as a client of the database would use it.
pub(super) async fn probe(
    sessions: &mut Sessions,
    port: u16,
    password: &str,
    role: Role,
) -> Result<(), ProbeFailure> {
    let (outcome, kept) = look(sessions, port, password, role).await;
    let outcome = match outcome {
        // A kept session may have been cut since the last look (a restart,
        // an idle timeout), which says nothing of new ones: ask a new one.
        Err(_) if kept => {
            sessions.drop_probe(port);
            look(sessions, port, password, role).await.0
        }
        outcome => outcome,
    };
    if outcome.is_err() {
        sessions.drop_probe(port);
    }
    outcome
}

/// One look, and whether it used a session kept from before.
async fn look(
    sessions: &mut Sessions,
    port: u16,
    password: &str,
    role: Role,
) -> (Result<(), ProbeFailure>, bool) {
    let (client, kept) =
        match tokio::time::timeout(CONNECT_TIMEOUT, sessions.app(port, password)).await {
            Err(_) => return (Err(no_answer("connecting", CONNECT_TIMEOUT)), false),
            Ok(Err(e)) => return (Err(refusal(&e)), false),
            Ok(Ok(session)) => session,
        };
    let outcome = match tokio::time::timeout(QUERY_TIMEOUT, client.simple_query(QUERY)).await {
        Err(_) => Err(no_answer("a query", QUERY_TIMEOUT)),
        Ok(Err(e)) => Err(refusal(&e)),
        Ok(Ok(messages)) => judge(read_only(&messages), role),
    };
    (outcome, kept)
}

/// The value of `transaction_read_only` in the probe's answer.
fn read_only(messages: &[SimpleQueryMessage]) -> Option<&str> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    })
}

/// What the probe's answer (`transaction_read_only`) says of an instance
/// in `role`.
fn judge(read_only: Option<&str>, role: Role) -> Result<(), ProbeFailure> {
    match (role, read_only) {
        (_, None) => Err(ProbeFailure {
            reason: "the probe's query answered no row".into(),
            lasting: false,
        }),
        (Role::Primary, Some("on")) => Err(ProbeFailure {
            reason: "the primary does not take writes: transactions of app are read-only (transaction_read_only is on)".into(),
            lasting: true,
        }),
        _ => Ok(()),
    }
}

fn refusal(e: &tokio_postgres::Error) -> ProbeFailure {
    match e.as_db_error() {
        Some(db) => ProbeFailure {
            reason: format!("{}: {}", db.severity(), db.message()),
            // "the database system is starting up" and the like pass.
            lasting: db.code() != &SqlState::CANNOT_CONNECT_NOW,
        },
        None => ProbeFailure {
            reason: chain(e),
            lasting: false,
        },
    }
}

fn no_answer(to: &str, waited: Duration) -> ProbeFailure {
    ProbeFailure {
        reason: format!("no answer to {to} in {} s", waited.as_secs()),
        lasting: false,
    }
}

/// What one look at a database's instances saw, in the record's order.
#[derive(Debug, Clone)]
pub(super) struct Look {
    pub instances: Vec<InstanceLook>,
}

/// One instance as a look saw it.
#[derive(Debug, Clone)]
pub(super) struct InstanceLook {
    pub ordinal: u32,
    pub role: Role,
    /// Its pid file, read once per look.
    pub server: Server,
    /// Ready as [`look_at`] judges it.
    pub ready: bool,
}

impl Look {
    /// How many instances are ready.
    pub fn ready(&self) -> u32 {
        self.instances.iter().filter(|i| i.ready).count() as u32
    }

    /// The server of instance `ordinal` as seen.
    pub fn server(&self, ordinal: u32) -> Option<ServerStatus> {
        self.instances
            .iter()
            .find(|i| i.ordinal == ordinal)
            .map(|i| i.server.status)
    }

    /// The postmasters that were running.
    pub fn postmasters(&self) -> Vec<i32> {
        self.instances
            .iter()
            .filter_map(|i| i.server.pid)
            .map(|pid| pid.as_raw())
            .collect()
    }
}

/// Looks at every instance once: its pid file, and whether it is ready.
/// The primary is ready when it runs and passes the probe; a standby when
/// it also streams from a ready primary and passes the probe.
pub(super) async fn look_at(
    entry: &Entry,
    record: &DatabaseRecord,
    sessions: &mut Sessions,
) -> Look {
    let ports: Vec<u16> = record.instances.iter().map(|i| i.port).collect();
    sessions.retain(&ports);
    let mut instances = Vec::with_capacity(record.instances.len());
    for i in &record.instances {
        instances.push(InstanceLook {
            ordinal: i.ordinal,
            role: if i.ordinal == record.primary {
                Role::Primary
            } else {
                Role::Standby
            },
            server: server(&entry.paths.pgdata(i.ordinal)).await,
            ready: false,
        });
    }
    let mut look = Look { instances };
    let primary = record.primary().expect("bootstrapped");
    let primary_at = look
        .instances
        .iter()
        .position(|i| i.ordinal == primary.ordinal)
        .expect("the primary is an instance");
    if !serves(entry, sessions, primary, &look.instances[primary_at]).await {
        return look;
    }
    look.instances[primary_at].ready = true;
    let standbys = record.standbys();
    if standbys.is_empty() {
        return look;
    }
    let streaming = streaming_standbys(entry, record, sessions)
        .await
        .unwrap_or_default();
    for (at, i) in record.instances.iter().enumerate() {
        if at == primary_at || !streaming.contains(&entry.paths.instance_name(i.ordinal)) {
            continue;
        }
        look.instances[at].ready = serves(entry, sessions, i, &look.instances[at]).await;
    }
    look
}

async fn serves(
    entry: &Entry,
    sessions: &mut Sessions,
    instance: &InstanceRecord,
    seen: &InstanceLook,
) -> bool {
    if seen.server.status != ServerStatus::Ready {
        return false;
    }
    match probe(sessions, instance.port, &entry.secrets.app, seen.role).await {
        Ok(()) => true,
        Err(failure) => {
            tracing::debug!(database = %entry.paths.name, instance = instance.ordinal, reason = %failure.reason, "instance failed the probe");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_must_take_writes_and_a_standby_need_not() {
        use Role::*;
        let table = [
            (Some("off"), Primary, Ok(())),
            (Some("off"), Standby, Ok(())),
            (Some("on"), Standby, Ok(())),
            (Some("on"), Primary, Err(true)),
            (None, Primary, Err(false)),
            (None, Standby, Err(false)),
        ];
        for (read_only, role, want) in table {
            let got = judge(read_only, role).map_err(|f| f.lasting);
            assert_eq!(got, want, "{read_only:?} on a {role:?}");
        }
    }
}
