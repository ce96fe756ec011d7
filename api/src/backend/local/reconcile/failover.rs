//! A primary that stopped: started again where it can be, otherwise
//! replaced by the most advanced running standby, which is promoted; the
//! other standbys follow it, and the old primary comes back as a standby
//! of the new one.

use std::sync::Arc;

use super::super::postgres::{chain, PgError};
use super::super::record::{slot_name, DatabaseRecord, InstanceRecord};
use super::super::{Entry, Inner};
use super::begin;
use super::config_files::{managed_conf, MANAGED_CONF};
use super::servers::{ensure_running, exists, server_status, write_owned, ServerStatus};
use super::sessions::connect_admin;
use super::standbys::{create_slot, upstream};
use crate::states::Operation;

/// Starts the primary when it stopped, or fails over when it cannot start
/// and a standby can take its place. `seen` is its server as a look of
/// this pass saw it with nothing done since, which saves reading its pid
/// file again. Answers whether it did anything.
pub(super) async fn heal_primary(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
    seen: Option<ServerStatus>,
) -> Result<bool, PgError> {
    let primary = record
        .primary()
        .expect("a bootstrapped database has a primary");
    let status = match seen {
        Some(status) => status,
        None => server_status(&entry.paths.pgdata(primary.ordinal)).await,
    };
    if status != ServerStatus::Stopped {
        return Ok(false);
    }
    begin(inner, entry, Operation::Healing).await;
    if let Err(e) = ensure_running(inner, entry, primary).await {
        if record.standbys().is_empty() {
            return Err(e);
        }
        tracing::warn!(database = %entry.paths.name, error = %chain(&e), "the primary cannot start; failing over");
        begin(inner, entry, Operation::FailingOver).await;
        fail_over(inner, entry, record).await?;
    }
    Ok(true)
}

/// Promotes the most advanced running standby, makes it the primary in the
/// record, and points the other standbys at it. The old primary stays in
/// the record without its built marker, so the next pass rebuilds it as a
/// standby of the new one.
async fn fail_over(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
) -> Result<(), PgError> {
    let old = record.primary().expect("bootstrapped");
    let mut best: Option<(u64, InstanceRecord)> = None;
    for s in record.standbys() {
        if server_status(&entry.paths.pgdata(s.ordinal)).await != ServerStatus::Ready {
            continue;
        }
        let Ok(client) = connect_admin(s.port, &entry.secrets.superuser).await else {
            continue;
        };
        let lsn: Option<String> = client
            .query_one(
                "SELECT pg_wal_lsn_diff(coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0')::bigint::text",
                &[],
            )
            .await
            .ok()
            .and_then(|r| r.get(0));
        let lsn = lsn.and_then(|l| l.parse::<u64>().ok()).unwrap_or(0);
        if best.as_ref().is_none_or(|(b, _)| lsn > *b) {
            best = Some((lsn, s));
        }
    }
    let Some((lsn, new)) = best else {
        return Err(PgError::NoStandbyToPromote);
    };
    tracing::warn!(database = %entry.paths.name, from = old.ordinal, to = new.ordinal, lsn, "promoting a standby");
    let new_pgdata = entry.paths.pgdata(new.ordinal);
    inner.pg.promote(&new_pgdata).await?;
    let conf = managed_conf(&entry.paths.instance_name(new.ordinal), new.port, None);
    write_owned(inner, &new_pgdata.join(MANAGED_CONF), conf.as_bytes()).await?;
    inner.pg.reload(&new_pgdata).await?;
    // The old primary's files are unusable: it comes back as a standby.
    let marker = entry.paths.built_marker(old.ordinal);
    if let Err(e) = tokio::fs::remove_file(&marker).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(PgError::file("remove", &marker)(e));
        }
    }
    entry.update_record(|r| r.primary = new.ordinal).await?;
    let client = connect_admin(new.port, &entry.secrets.superuser).await?;
    for s in record.standbys() {
        if s.ordinal == new.ordinal {
            continue;
        }
        let slot = slot_name(s.ordinal);
        create_slot(&client, new.port, &slot).await?;
        let pgdata = entry.paths.pgdata(s.ordinal);
        if exists(&pgdata.join("PG_VERSION")).await {
            // primary_conninfo and primary_slot_name take effect on reload.
            let conf = managed_conf(
                &entry.paths.instance_name(s.ordinal),
                s.port,
                Some(upstream(entry, &new, &slot)),
            );
            write_owned(inner, &pgdata.join(MANAGED_CONF), conf.as_bytes()).await?;
            if server_status(&pgdata).await != ServerStatus::Stopped {
                inner.pg.reload(&pgdata).await?;
            }
        }
    }
    Ok(())
}
