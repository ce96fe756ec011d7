//! Removing a database: every server stopped, every file removed, the
//! record last, so that a crash midway is resumed on the next start. Also
//! what a crash in the middle of a create left behind: a directory without
//! a record, whose servers the record cannot name.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};

use super::super::postgres::PgError;
use super::super::record::DatabaseRecord;
use super::super::{Entry, Inner};
use super::servers::{alive, live_postmaster, remove_dir, server_status, ServerStatus};

/// How long a server may take to go after SIGQUIT (immediate shutdown).
const QUIT_DEADLINE: Duration = Duration::from_secs(10);

/// Stops every server of the database and removes all its files.
pub(super) async fn remove_all(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
) -> Result<(), PgError> {
    for i in &record.instances {
        let pgdata = entry.paths.pgdata(i.ordinal);
        if server_status(&pgdata).await != ServerStatus::Stopped {
            inner.pg.stop(&pgdata, false).await?;
        }
    }
    for i in &record.instances {
        remove_dir(&entry.paths.instance_dir(i.ordinal)).await?;
    }
    // Also instances this record no longer names (a crash between steps).
    remove_database_dir(&entry.paths.dir).await?;
    for i in &record.instances {
        inner.free_port(i.port);
    }
    Ok(())
}

/// Stops whatever servers run under a database directory, by their pid
/// files rather than the record, and removes the directory.
pub(in crate::backend::local) async fn remove_database_dir(dir: &Path) -> Result<(), PgError> {
    stop_servers_under(dir).await?;
    remove_dir(dir).await
}

/// Stops, by their pid files, any servers whose data directories lie under
/// `dir` (two levels: `<instance>/pgdata`).
async fn stop_servers_under(dir: &Path) -> Result<(), PgError> {
    let mut instances = match tokio::fs::read_dir(dir).await {
        Ok(instances) => instances,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(PgError::file("list", dir)(e)),
    };
    while let Some(instance) = instances
        .next_entry()
        .await
        .map_err(PgError::file("list", dir))?
    {
        let pgdata = instance.path().join("pgdata");
        if let Some(pid) = live_postmaster(&pgdata).await {
            let _ = kill(pid, Signal::SIGQUIT);
            let started = Instant::now();
            while alive(pid) {
                if started.elapsed() > QUIT_DEADLINE {
                    return Err(PgError::StillRunning {
                        pid: pid.as_raw(),
                        waited: QUIT_DEADLINE,
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    Ok(())
}
