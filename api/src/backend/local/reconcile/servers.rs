//! One instance's server as its files show it, and the small steps on an
//! instance's files and process that the other steps share: its status
//! from the pid file, starting it when it stopped, fresh directories, and
//! files the PostgreSQL account owns. Every file access goes through
//! `tokio::fs`, off the runtime's threads.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::unistd::Pid;

use super::super::postgres::PgError;
use super::super::record::InstanceRecord;
use super::super::{Entry, Inner};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerStatus {
    Stopped,
    Starting,
    Ready,
}

/// One read of an instance's pid file, checked against a live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Server {
    pub status: ServerStatus,
    /// The postmaster, while it runs.
    pub pid: Option<Pid>,
    /// When it started (the pid file's third line), while it runs.
    pub started_at: Option<DateTime<Utc>>,
}

/// What the postmaster's pid file says, checked against a live process.
pub(super) async fn server_status(pgdata: &Path) -> ServerStatus {
    server(pgdata).await.status
}

/// The status and postmaster of `pgdata`, from one read of its pid file.
pub(super) async fn server(pgdata: &Path) -> Server {
    match tokio::fs::read_to_string(pgdata.join("postmaster.pid")).await {
        Ok(text) => server_of(&text, alive),
        Err(_) => Server::STOPPED,
    }
}

/// The postmaster of `pgdata`, when one runs.
pub(super) async fn live_postmaster(pgdata: &Path) -> Option<Pid> {
    let text = tokio::fs::read_to_string(pgdata.join("postmaster.pid"))
        .await
        .ok()?;
    postmaster_pid(&text).filter(|&pid| alive(pid))
}

/// What a pid file gives: the status by its eighth line, the postmaster's
/// (PostgreSQL's `LOCK_FILE_LINE_PM_STATUS`), when its pid lives.
fn server_of(pid_file: &str, alive: impl Fn(Pid) -> bool) -> Server {
    let Some(pid) = postmaster_pid(pid_file).filter(|&pid| alive(pid)) else {
        return Server::STOPPED;
    };
    let status = match pid_file.lines().nth(7).map(str::trim) {
        Some("ready") | Some("standby") => ServerStatus::Ready,
        _ => ServerStatus::Starting,
    };
    let started_at = pid_file
        .lines()
        .nth(2)
        .and_then(|t| t.trim().parse::<i64>().ok())
        .and_then(|t| DateTime::from_timestamp(t, 0));
    Server {
        status,
        pid: Some(pid),
        started_at,
    }
}

impl Server {
    const STOPPED: Server = Server {
        status: ServerStatus::Stopped,
        pid: None,
        started_at: None,
    };
}

fn postmaster_pid(pid_file: &str) -> Option<Pid> {
    let pid: i32 = pid_file.lines().next()?.trim().parse().ok()?;
    (pid > 0).then(|| Pid::from_raw(pid))
}

pub(super) fn alive(pid: Pid) -> bool {
    super::super::exits::running(pid.as_raw())
}

pub(super) async fn exists(path: &Path) -> bool {
    tokio::fs::try_exists(path).await.unwrap_or(false)
}

/// The data directory was made (by initdb or a base backup) and has
/// what a server needs to start.
pub(super) async fn holds_data(pgdata: &Path) -> bool {
    exists(&pgdata.join("global/pg_control")).await
}

/// How long a postmaster that ended may wait to be reaped by its parent.
const REAP_DEADLINE: Duration = Duration::from_secs(10);

/// Starts a stopped instance. PostgreSQL refuses to start while the pid
/// in its pid file exists, which a killed postmaster's does until init
/// reaps it, so that is waited for; its children can hold its shared
/// memory a few milliseconds longer, so a failed start is tried again
/// before it counts. Data without `global/pg_control` is beyond starting
/// at all.
pub(super) async fn ensure_running(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    instance: &InstanceRecord,
) -> Result<(), PgError> {
    const ATTEMPTS: u32 = 3;
    let pgdata = entry.paths.pgdata(instance.ordinal);
    let mut attempt = 1;
    loop {
        if server_status(&pgdata).await != ServerStatus::Stopped {
            return Ok(());
        }
        if !holds_data(&pgdata).await {
            return Err(PgError::NoUsableData { pgdata });
        }
        wait_reaped(&pgdata).await;
        tracing::info!(database = %entry.paths.name, instance = instance.ordinal, attempt, "starting a stopped instance");
        match inner
            .pg
            .start(&pgdata, &entry.paths.log(instance.ordinal))
            .await
        {
            Ok(()) => {
                entry
                    .update_record(|r| r.count_restart(instance.ordinal))
                    .await?;
                return Ok(());
            }
            Err(e) if attempt == ATTEMPTS => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
        attempt += 1;
    }
}

/// Waits, up to [`REAP_DEADLINE`], until the pid of the pid file names
/// no process, not even one waiting to be reaped.
async fn wait_reaped(pgdata: &Path) {
    let Ok(text) = tokio::fs::read_to_string(pgdata.join("postmaster.pid")).await else {
        return;
    };
    let Some(pid) = postmaster_pid(&text) else {
        return;
    };
    let started = Instant::now();
    while nix::sys::signal::kill(pid, None).is_ok() && started.elapsed() < REAP_DEADLINE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An empty instance directory owned by the PostgreSQL account, in place
/// of whatever was there (stopping its server first).
pub(super) async fn fresh_instance_dir(
    inner: &Arc<Inner>,
    dir: &Path,
    pgdata: &Path,
) -> Result<(), PgError> {
    if server_status(pgdata).await != ServerStatus::Stopped {
        inner.pg.stop(pgdata, false).await?;
    }
    remove_dir(dir).await?;
    tokio::fs::create_dir(dir)
        .await
        .map_err(PgError::file("create", dir))?;
    set_mode(dir, 0o700).await?;
    inner.pg.give(dir).await
}

/// Removes a directory and everything in it; one already gone is fine.
pub(super) async fn remove_dir(dir: &Path) -> Result<(), PgError> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PgError::file("remove", dir)(e)),
        _ => Ok(()),
    }
}

async fn set_mode(path: &Path, mode: u32) -> Result<(), PgError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(PgError::file("set the permissions of", path))
}

/// Writes a file the PostgreSQL account owns.
pub(super) async fn write_owned(
    inner: &Arc<Inner>,
    path: &Path,
    contents: &[u8],
) -> Result<(), PgError> {
    tokio::fs::write(path, contents)
        .await
        .map_err(PgError::file("write", path))?;
    set_mode(path, 0o600).await?;
    inner.pg.give(path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_gives_the_status_of_a_live_postmaster_only() {
        let pid_file = |status: &str| {
            format!("4242\n/d/pgdata\n1700000000\n5433\n\n127.0.0.1\n  1234  5678\n{status}\n")
        };
        let live: fn(Pid) -> bool = |pid| pid.as_raw() == 4242;
        let dead: fn(Pid) -> bool = |_| false;
        let table = [
            (pid_file("ready   "), live, ServerStatus::Ready),
            (pid_file("standby "), live, ServerStatus::Ready),
            (pid_file("starting"), live, ServerStatus::Starting),
            (pid_file("stopping"), live, ServerStatus::Starting),
            ("4242\n/d/pgdata\n".to_owned(), live, ServerStatus::Starting),
            (pid_file("ready   "), dead, ServerStatus::Stopped),
            ("-4242\n".to_owned(), live, ServerStatus::Stopped),
            ("".to_owned(), live, ServerStatus::Stopped),
        ];
        for (text, alive, want) in table {
            assert_eq!(server_of(&text, alive).status, want, "{text:?}");
        }
        let ready = server_of(&pid_file("ready   "), live);
        assert_eq!(ready.pid, Some(Pid::from_raw(4242)));
        assert_eq!(
            ready.started_at,
            DateTime::from_timestamp(1_700_000_000, 0),
            "the third line is the start time"
        );
    }
}
