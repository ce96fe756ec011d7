//! Standbys: copying the primary into a new one (a replication slot, then
//! pg_basebackup), adding and removing them as the spec's instance count
//! changes, bringing back those that stopped, and waiting until they
//! stream from the primary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::super::postgres::{chain, PgError};
use super::super::record::{slot_name, DatabaseRecord, InstanceRecord};
use super::super::{Entry, Inner};
use super::config_files::{managed_conf, Upstream, MANAGED_CONF};
use super::health::Look;
use super::servers::{
    ensure_running, exists, fresh_instance_dir, remove_dir, server_status, write_owned,
    ServerStatus,
};
use super::sessions::{connect_admin, Sessions};
use super::{begin, operation_for_rebuild};
use crate::states::Operation;

/// How long a new standby may take to start streaming.
const STREAMING_DEADLINE: Duration = Duration::from_secs(60);
/// How long the slot of a just-stopped standby may stay held.
const SLOT_RELEASE_DEADLINE: Duration = Duration::from_secs(30);

/// Adds or removes standbys until there are as many as the spec asks for;
/// answers whether it added any (they are then still catching up).
pub(super) async fn scale(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
) -> Result<bool, PgError> {
    let wanted = record.spec.instances as usize - 1;
    let standbys = record.standbys();
    if standbys.len() < wanted {
        begin(inner, entry, Operation::AddingStandbys).await;
        let ports = (standbys.len()..wanted)
            .map(|_| inner.allocate_port())
            .collect::<Result<Vec<u16>, PgError>>()?;
        let updated = entry
            .update_record(|r| {
                for &port in &ports {
                    let ordinal = r.next_ordinal();
                    r.instances.push(InstanceRecord { ordinal, port });
                }
            })
            .await;
        let record = match updated {
            Ok(record) => record,
            Err(e) => {
                for port in ports {
                    inner.free_port(port);
                }
                return Err(e);
            }
        };
        let added: Vec<InstanceRecord> = record
            .instances
            .iter()
            .filter(|i| ports.contains(&i.port))
            .cloned()
            .collect();
        try_join_all(added.iter().map(|s| build(inner, entry, &record, s))).await?;
        Ok(true)
    } else {
        if standbys.len() > wanted {
            begin(inner, entry, Operation::RemovingStandbys).await;
            for surplus in standbys.iter().rev().take(standbys.len() - wanted) {
                remove(inner, entry, record, surplus).await?;
            }
        }
        Ok(false)
    }
}

/// What healing the standbys did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Healed {
    /// Started a standby that had stopped.
    pub started: bool,
    /// Copied a standby again (it is then still catching up).
    pub rebuilt: bool,
}

/// Starts the standbys that stopped, and copies again those that cannot
/// start or were never completed. `seen` is a look of this pass with
/// nothing done since, whose pid files need not be read again.
pub(super) async fn heal(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
    seen: Option<&Look>,
) -> Result<Healed, PgError> {
    let mut healed = Healed::default();
    for standby in record.standbys() {
        let pgdata = entry.paths.pgdata(standby.ordinal);
        if !exists(&entry.paths.built_marker(standby.ordinal)).await {
            begin(inner, entry, operation_for_rebuild(record)).await;
            build(inner, entry, record, &standby).await?;
            healed.rebuilt = true;
            continue;
        }
        let status = match seen.and_then(|l| l.server(standby.ordinal)) {
            Some(status) => status,
            None => server_status(&pgdata).await,
        };
        if status == ServerStatus::Stopped {
            begin(inner, entry, Operation::Healing).await;
            healed.started = true;
            if let Err(e) = ensure_running(inner, entry, &standby).await {
                // Its data is unusable: copy it again from the primary.
                tracing::warn!(database = %entry.paths.name, instance = standby.ordinal, error = %chain(&e), "rebuilding a standby that cannot start");
                build(inner, entry, record, &standby).await?;
                healed.rebuilt = true;
            }
        }
    }
    Ok(healed)
}

/// Where a standby streams from: the primary, through the standby's slot.
pub(super) fn upstream<'a>(
    entry: &'a Entry,
    primary: &InstanceRecord,
    slot: &'a str,
) -> Upstream<'a> {
    Upstream {
        port: primary.port,
        slot,
        password: &entry.secrets.replication,
    }
}

/// Copies the primary into a new standby and starts it.
async fn build(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
    standby: &InstanceRecord,
) -> Result<(), PgError> {
    let paths = &entry.paths;
    let primary = record.primary().expect("bootstrapped");
    let dir = paths.instance_dir(standby.ordinal);
    let pgdata = paths.pgdata(standby.ordinal);
    fresh_instance_dir(inner, &dir, &pgdata).await?;
    let slot = slot_name(standby.ordinal);
    let client = connect_admin(primary.port, &entry.secrets.superuser).await?;
    create_slot(&client, primary.port, &slot).await?;
    inner
        .pg
        .base_backup(&pgdata, primary.port, &slot, &entry.secrets.replication())
        .await?;
    let conf = managed_conf(
        &paths.instance_name(standby.ordinal),
        standby.port,
        Some(upstream(entry, primary, &slot)),
    );
    write_owned(inner, &pgdata.join(MANAGED_CONF), conf.as_bytes()).await?;
    write_owned(inner, &pgdata.join("standby.signal"), b"").await?;
    write_owned(inner, &paths.built_marker(standby.ordinal), b"").await?;
    inner.pg.start(&pgdata, &paths.log(standby.ordinal)).await
}

/// Stops a standby, drops its slot, removes its files and its record.
async fn remove(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
    standby: &InstanceRecord,
) -> Result<(), PgError> {
    let pgdata = entry.paths.pgdata(standby.ordinal);
    if server_status(&pgdata).await != ServerStatus::Stopped {
        inner.pg.stop(&pgdata, false).await?;
    }
    let primary = record.primary().expect("bootstrapped");
    let client = connect_admin(primary.port, &entry.secrets.superuser).await?;
    let slot = slot_name(standby.ordinal);
    let deadline = Instant::now() + SLOT_RELEASE_DEADLINE;
    // The walsender of a just-stopped standby can hold the slot a moment longer.
    loop {
        let dropped = client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await;
        match dropped {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(PgError::sql(primary.port)(e)),
        }
    }
    remove_dir(&entry.paths.instance_dir(standby.ordinal)).await?;
    entry
        .update_record(|r| {
            r.instances.retain(|i| i.ordinal != standby.ordinal);
            r.restarts.remove(&standby.ordinal);
        })
        .await?;
    inner.free_port(standby.port);
    Ok(())
}

/// Creates a standby's physical replication slot unless it exists.
pub(super) async fn create_slot(client: &Client, port: u16, slot: &str) -> Result<(), PgError> {
    client
        .execute(
            "SELECT pg_create_physical_replication_slot($1) WHERE NOT EXISTS
               (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(PgError::sql(port))?;
    Ok(())
}

/// What the primary says of replication, in one query over its kept
/// management session.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Replication {
    /// Where the primary's WAL is written up to, and its timeline; `None`
    /// when the server is in recovery (not a primary at all).
    pub primary: Option<(Lsn, u32)>,
    /// The standbys streaming from it now.
    pub streaming: Vec<Streaming>,
}

/// A standby streaming from the primary.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Streaming {
    /// Its instance name (its `application_name`).
    pub name: String,
    /// How far its replay is behind, in seconds, as the primary last
    /// measured it (`replay_lag`, to a tenth); `None` once it caught up
    /// and nothing was written for a while.
    pub replay_lag: Option<f64>,
}

/// A WAL position, as a byte count.
pub(super) type Lsn = u64;

/// `X/Y`, PostgreSQL's text form of a WAL position.
pub(super) fn parse_lsn(text: &str) -> Option<Lsn> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The timeline of a WAL file name (its first eight hex digits).
fn timeline_of_walfile(name: &str) -> Option<u32> {
    u32::from_str_radix(name.get(..8)?, 16).ok()
}

/// One row per streaming standby, or one row of nulls beside the primary's
/// own position when none streams.
const REPLICATION: &str = "SELECT r.application_name, \
       round(extract(epoch FROM r.replay_lag)::numeric, 1)::text, \
       l.lsn::text, pg_walfile_name(l.lsn) \
     FROM (SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END AS lsn) l \
     LEFT JOIN pg_stat_replication r ON r.state = 'streaming'";

/// What the primary says of replication now.
pub(super) async fn replication(
    entry: &Entry,
    record: &DatabaseRecord,
    sessions: &mut Sessions,
) -> Result<Replication, PgError> {
    let port = record.primary().expect("bootstrapped").port;
    // A kept session cut since the last look (the primary restarted) is
    // not an answer: the second try connects anew.
    let mut tries = 2;
    loop {
        tries -= 1;
        let client = sessions.admin(port, &entry.secrets.superuser).await?;
        match client.simple_query(REPLICATION).await {
            Ok(messages) => return Ok(replication_of(&messages)),
            Err(e) => {
                sessions.drop_admin(port);
                if tries == 0 {
                    return Err(PgError::sql(port)(e));
                }
            }
        }
    }
}

fn replication_of(messages: &[SimpleQueryMessage]) -> Replication {
    let mut out = Replication::default();
    for m in messages {
        let SimpleQueryMessage::Row(row) = m else {
            continue;
        };
        if out.primary.is_none() {
            out.primary = row
                .get(2)
                .and_then(parse_lsn)
                .zip(row.get(3).and_then(timeline_of_walfile));
        }
        if let Some(name) = row.get(0) {
            out.streaming.push(Streaming {
                name: name.to_owned(),
                replay_lag: row.get(1).and_then(|l| l.parse().ok()),
            });
        }
    }
    out
}

/// The instance names of the standbys streaming from the primary now.
pub(super) async fn streaming_standbys(
    entry: &Entry,
    record: &DatabaseRecord,
    sessions: &mut Sessions,
) -> Result<Vec<String>, PgError> {
    let replication = replication(entry, record, sessions).await?;
    Ok(replication.streaming.into_iter().map(|s| s.name).collect())
}

/// Waits until every standby streams from the primary.
pub(super) async fn wait_streaming(
    entry: &Entry,
    record: &DatabaseRecord,
    sessions: &mut Sessions,
) -> Result<(), PgError> {
    let started = Instant::now();
    let names: Vec<String> = record
        .standbys()
        .iter()
        .map(|s| entry.paths.instance_name(s.ordinal))
        .collect();
    loop {
        let streaming = streaming_standbys(entry, record, sessions).await?;
        if names.iter().all(|n| streaming.contains(n)) {
            return Ok(());
        }
        if started.elapsed() > STREAMING_DEADLINE {
            return Err(PgError::NotStreaming {
                standbys: names,
                waited: STREAMING_DEADLINE,
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_positions_and_timelines_read_as_postgresql_writes_them() {
        assert_eq!(parse_lsn("0/3000148"), Some(0x3000148));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
        assert_eq!(timeline_of_walfile("0002"), None);
    }
}
