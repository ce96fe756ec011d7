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
use super::standbys::{parse_lsn, replication, Lsn};
use crate::model::{InstanceRole, InstanceState, InstanceStatus};

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
    pub timeline: Option<u32>,
    /// Of a standby: WAL bytes the primary wrote that it has not replayed.
    pub lag_bytes: Option<u64>,
    /// Of a standby: its replay lag in seconds, as the primary measures it.
    pub lag_seconds: Option<f64>,
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

    /// Every instance's status as the API shows it, by ordinal.
    pub fn statuses(&self, entry: &Entry, record: &DatabaseRecord) -> Vec<InstanceStatus> {
        let mut seen: Vec<&InstanceLook> = self.instances.iter().collect();
        seen.sort_by_key(|i| i.ordinal);
        seen.into_iter()
            .map(|i| InstanceStatus {
                ready: i.ready,
                timeline: i.timeline,
                lag_bytes: i.lag_bytes,
                lag_seconds: i.lag_seconds,
                started_at: i.server.started_at,
                restarts: Some(record.restarts.get(&i.ordinal).copied().unwrap_or(0)),
                ..InstanceStatus::new(
                    entry.paths.instance_name(i.ordinal),
                    match i.role {
                        Role::Primary => InstanceRole::Primary,
                        Role::Standby => InstanceRole::Standby,
                    },
                    match i.server.status {
                        ServerStatus::Ready => InstanceState::Running,
                        ServerStatus::Starting => InstanceState::Starting,
                        ServerStatus::Stopped => InstanceState::Stopped,
                    },
                )
            })
            .collect()
    }
}

/// Looks at every instance once: its pid file, whether it is ready, its
/// timeline and, of a standby, its lag. The primary is ready when it runs
/// and passes the probe; a standby when it also streams from a ready
/// primary and passes the probe. Everything goes over the sessions kept
/// between looks: the probe's, the primary's management session (one
/// query for replication, lag and its timeline) and each running
/// standby's (its replay position and timeline).
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
            timeline: None,
            lag_bytes: None,
            lag_seconds: None,
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
    let pid = look.instances[primary_at].server.pid;
    if record.standbys().is_empty() {
        // Alone, the primary's timeline changes only with its postmaster:
        // asked once per postmaster.
        look.instances[primary_at].timeline = match sessions.timeline(primary.port, pid) {
            Some(known) => Some(known),
            None => {
                let timeline = replication(entry, record, sessions)
                    .await
                    .ok()
                    .and_then(|r| r.primary)
                    .map(|(_, timeline)| timeline);
                if let Some(timeline) = timeline {
                    sessions.remember_timeline(primary.port, pid, timeline);
                }
                timeline
            }
        };
        return look;
    }
    let replication = replication(entry, record, sessions)
        .await
        .unwrap_or_default();
    let primary_lsn = replication.primary.map(|(lsn, _)| lsn);
    look.instances[primary_at].timeline = replication.primary.map(|(_, timeline)| timeline);
    for (at, i) in record.instances.iter().enumerate() {
        if at == primary_at || look.instances[at].server.status != ServerStatus::Ready {
            continue;
        }
        if let Some(replay) = standby_replay(entry, sessions, i).await {
            let lag = primary_lsn.map(|p| p.saturating_sub(replay.lsn));
            let seen = &mut look.instances[at];
            seen.timeline = replay.timeline;
            seen.lag_bytes = lag;
            seen.lag_seconds = lag.and_then(|bytes| {
                let name = entry.paths.instance_name(i.ordinal);
                let measured = replication
                    .streaming
                    .iter()
                    .find(|s| s.name == name)
                    .and_then(|s| s.replay_lag);
                // Caught up and idle, the primary stops measuring: no lag.
                measured.or((bytes == 0).then_some(0.0))
            });
        }
        let name = entry.paths.instance_name(i.ordinal);
        if replication.streaming.iter().any(|s| s.name == name) {
            look.instances[at].ready = serves(entry, sessions, i, &look.instances[at]).await;
        }
    }
    look
}

/// Where a standby's replay stands.
struct Replay {
    lsn: Lsn,
    timeline: Option<u32>,
}

/// The WAL position a standby has replayed up to and the timeline it
/// receives, over its kept management session; `None` when it does not
/// answer (it is then not ready either).
async fn standby_replay(
    entry: &Entry,
    sessions: &mut Sessions,
    standby: &InstanceRecord,
) -> Option<Replay> {
    const REPLAY: &str = "SELECT pg_last_wal_replay_lsn()::text, \
           coalesce((SELECT received_tli FROM pg_stat_wal_receiver), \
                    (SELECT timeline_id FROM pg_control_checkpoint()))::text";
    let client = sessions
        .admin(standby.port, &entry.secrets.superuser)
        .await
        .ok()?;
    let answer = tokio::time::timeout(QUERY_TIMEOUT, client.simple_query(REPLAY)).await;
    let messages = match answer {
        Ok(Ok(messages)) => messages,
        _ => {
            sessions.drop_admin(standby.port);
            return None;
        }
    };
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(Replay {
            lsn: row.get(0).and_then(parse_lsn)?,
            timeline: row.get(1).and_then(|t| t.parse().ok()),
        }),
        _ => None,
    })
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
