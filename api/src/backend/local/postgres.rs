//! The PostgreSQL programs the local backend drives: finding them, running
//! them as the unprivileged account when pgplane is root, and what each step
//! of an instance's life takes (initdb, start, stop, base backup, reload).
//! No policy here: the reconciler decides what to run and when.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::config::SettingError;
use crate::secret::Secret;

/// Longest any one PostgreSQL program may run before it counts as failed.
const PROGRAM_DEADLINE: Duration = Duration::from_secs(300);

/// What the local backend's steps fail with. The message says what failed;
/// the cause is kept as its `source()`, and [`chain`] writes both.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// Start-up cannot go on because of what a setting names.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// A PostgreSQL program ran and failed; `output` is what it said.
    #[error("{program} failed: {output}")]
    Program {
        program: &'static str,
        output: String,
    },
    #[error("{program} did not finish in {} s", .deadline.as_secs())]
    Timeout {
        program: &'static str,
        deadline: Duration,
    },
    #[error("cannot run {program}")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A server did not start; `reason` is PostgreSQL's own line from its
    /// log (`FATAL: ...`), or what pg_ctl said when the log has none.
    #[error("the server of {} did not start: {reason}", .pgdata.display())]
    NoStart { pgdata: PathBuf, reason: String },
    #[error("cannot {action} {}", .path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SQL on port {port} failed")]
    Sql {
        port: u16,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the server on port {port} did not answer in {} s", .waited.as_secs())]
    NoAnswer { port: u16, waited: Duration },
    #[error("the server on port {port} did not read its configuration again in {} s", .waited.as_secs())]
    NotReloaded { port: u16, waited: Duration },
    #[error("a file task did not finish")]
    Task(#[source] tokio::task::JoinError),
    #[error("cannot bind a loopback port")]
    Port(#[source] std::io::Error),
    #[error("no free loopback port found")]
    NoFreePort,
    #[error("{} holds no usable data directory", .pgdata.display())]
    NoUsableData { pgdata: PathBuf },
    #[error("the primary is lost and no standby is running to take over")]
    NoStandbyToPromote,
    #[error("standbys {standbys:?} did not start streaming in {} s", .waited.as_secs())]
    NotStreaming {
        standbys: Vec<String>,
        waited: Duration,
    },
    #[error("pid {pid} still runs {} s after SIGQUIT", .waited.as_secs())]
    StillRunning { pid: i32, waited: Duration },
    /// Neither the parameters asked for nor the last configuration that
    /// worked let the servers run: the cause lies elsewhere.
    #[error("the servers do not run on the last configuration that worked either: {reason}")]
    Unworkable { reason: String },
}

impl PgError {
    pub fn setting(var: &'static str, reason: impl Into<String>) -> PgError {
        PgError::Setting(SettingError {
            var,
            reason: reason.into(),
        })
    }

    /// For `map_err`: a failed file operation on `path`.
    pub fn file(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PgError {
        let path = path.to_path_buf();
        move |source| PgError::File {
            action,
            path,
            source,
        }
    }

    /// For `map_err`: a failed statement on the server at `port`.
    pub fn sql(port: u16) -> impl FnOnce(tokio_postgres::Error) -> PgError {
        move |source| PgError::Sql { port, source }
    }
}

pub(super) use crate::chain::chain;

/// The account PostgreSQL runs as, when it differs from ours.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// How to run the PostgreSQL programs of one installation.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub bindir: PathBuf,
    pub major: u32,
    pub run_as: Option<RunAs>,
}

impl Postgres {
    /// Finds the binaries (setting, then `initdb` on `PATH`, then
    /// `pg_config --bindir`), their major version and the account to use.
    pub async fn discover(bindir: Option<&Path>, pg_user: &str) -> Result<Postgres, PgError> {
        let bindir = match bindir {
            Some(dir) => dir.to_path_buf(),
            None => find_bindir().await.ok_or_else(|| {
                PgError::setting(
                    "PGPLANE_PG_BINDIR",
                    "no PostgreSQL server binaries found: put initdb on PATH, install pg_config, or set PGPLANE_PG_BINDIR",
                )
            })?,
        };
        for program in ["initdb", "pg_ctl", "postgres", "pg_basebackup"] {
            if !is_file(&bindir.join(program)).await {
                return Err(PgError::setting(
                    "PGPLANE_PG_BINDIR",
                    format!("{} has no {program}", bindir.display()),
                ));
            }
        }
        let version = output(Command::new(bindir.join("pg_ctl")).arg("--version")).await?;
        let major = version
            .split_whitespace()
            .last()
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                PgError::setting(
                    "PGPLANE_PG_BINDIR",
                    format!("cannot read a version from {version:?}"),
                )
            })?;
        let run_as = if nix::unistd::geteuid().is_root() {
            // Reads the account databases (/etc/passwd, NSS): blocking.
            let name = pg_user.to_owned();
            let user = tokio::task::spawn_blocking(move || nix::unistd::User::from_name(&name))
                .await
                .map_err(PgError::Task)?
                .map_err(|e| PgError::setting("PGPLANE_PG_USER", format!("cannot look up account {pg_user}: {e}")))?
                .ok_or_else(|| {
                    PgError::setting("PGPLANE_PG_USER", format!(
                        "pgplane runs as root and PostgreSQL refuses to; account {pg_user} does not exist (set PGPLANE_PG_USER)"
                    ))
                })?;
            if user.uid.is_root() {
                return Err(PgError::setting(
                    "PGPLANE_PG_USER",
                    format!("account {pg_user} is root; PostgreSQL refuses to run as root"),
                ));
            }
            Some(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })
        } else {
            None
        };
        Ok(Postgres {
            bindir,
            major,
            run_as,
        })
    }

    /// A command for one of the binaries, as the PostgreSQL account, with a
    /// clean environment and its own process group (so a terminal's Ctrl-C
    /// to pgplane does not reach the servers).
    pub fn command(&self, program: &str, cwd: &Path) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .current_dir(cwd)
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(RunAs { uid, gid }) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Hands a path pgplane created to the PostgreSQL account. Blocking:
    /// for start-up and `spawn_blocking`; async code calls [`Postgres::give`].
    pub fn give_now(&self, path: &Path) -> Result<(), PgError> {
        if let Some(RunAs { uid, gid }) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(PgError::file("change the owner of", path))?;
        }
        Ok(())
    }

    /// [`Postgres::give_now`] off the runtime's threads.
    pub async fn give(&self, path: &Path) -> Result<(), PgError> {
        if self.run_as.is_none() {
            return Ok(());
        }
        let (pg, path) = (self.clone(), path.to_path_buf());
        tokio::task::spawn_blocking(move || pg.give_now(&path))
            .await
            .map_err(PgError::Task)?
    }

    /// Checks that the PostgreSQL account can reach `dir`.
    pub async fn check_reachable(&self, dir: &Path) -> Result<(), PgError> {
        let Some(RunAs { uid, gid }) = self.run_as else {
            return Ok(());
        };
        let out = Command::new("/bin/sh")
            .args(["-c", "cd \"$1\"", "sh"])
            .arg(dir)
            .env_clear()
            .stdin(Stdio::null())
            .uid(uid)
            .gid(gid)
            .output()
            .await
            .map_err(|source| PgError::Spawn {
                program: "/bin/sh",
                source,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(PgError::setting("PGPLANE_DATA_DIR", format!(
                "{} is not reachable by the PostgreSQL account (uid {uid}): every parent directory needs o+x; choose a data directory outside /root",
                dir.display(),
            )))
        }
    }

    pub async fn initdb(&self, pgdata: &Path, pwfile: &Path) -> Result<(), PgError> {
        let mut cmd = self.command("initdb", parent(pgdata));
        cmd.arg("-D")
            .arg(pgdata)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ])
            // Durability starts with the first checkpoint of the running
            // server; a crash before that makes the reconciler redo initdb.
            .arg("--no-sync")
            .arg(format!("--pwfile={}", pwfile.display()));
        run(cmd, "initdb").await
    }

    /// Starts a server and waits until it accepts connections. When it
    /// does not start, the error carries PostgreSQL's own reason from `log`.
    pub async fn start(&self, pgdata: &Path, log: &Path) -> Result<(), PgError> {
        let mut cmd = self.command("pg_ctl", parent(pgdata));
        cmd.arg("start")
            .arg("-D")
            .arg(pgdata)
            .arg("-l")
            .arg(log)
            .args(["-w", "-t", "120", "-s"]);
        run_logged(cmd, "pg_ctl start", pgdata, log).await
    }

    /// Stops a server; `fast` disconnects clients and checkpoints,
    /// otherwise `immediate` (for servers about to be removed).
    pub async fn stop(&self, pgdata: &Path, fast: bool) -> Result<(), PgError> {
        let mut cmd = self.command("pg_ctl", parent(pgdata));
        cmd.arg("stop").arg("-D").arg(pgdata).args([
            "-m",
            if fast { "fast" } else { "immediate" },
            "-w",
            "-t",
            "120",
            "-s",
        ]);
        run(cmd, "pg_ctl stop").await
    }

    /// Stops and starts a server, like [`Postgres::start`] in what its
    /// failure says.
    pub async fn restart(&self, pgdata: &Path, log: &Path) -> Result<(), PgError> {
        let mut cmd = self.command("pg_ctl", parent(pgdata));
        cmd.arg("restart")
            .arg("-D")
            .arg(pgdata)
            .arg("-l")
            .arg(log)
            .args(["-m", "fast", "-w", "-t", "120", "-s"]);
        run_logged(cmd, "pg_ctl restart", pgdata, log).await
    }

    /// Ends recovery: the standby becomes a primary.
    pub async fn promote(&self, pgdata: &Path) -> Result<(), PgError> {
        let mut cmd = self.command("pg_ctl", parent(pgdata));
        cmd.arg("promote")
            .arg("-D")
            .arg(pgdata)
            .args(["-w", "-t", "60", "-s"]);
        run(cmd, "pg_ctl promote").await
    }

    /// Signals the server to read its configuration files again; returns
    /// before it has.
    pub async fn reload(&self, pgdata: &Path) -> Result<(), PgError> {
        let mut cmd = self.command("pg_ctl", parent(pgdata));
        cmd.arg("reload").arg("-D").arg(pgdata).arg("-s");
        run(cmd, "pg_ctl reload").await
    }

    /// Copies the primary listening on `port` into `pgdata`, streaming WAL
    /// through replication slot `slot`.
    pub async fn base_backup(
        &self,
        pgdata: &Path,
        port: u16,
        slot: &str,
        password: &Secret<String>,
    ) -> Result<(), PgError> {
        let mut cmd = self.command("pg_basebackup", parent(pgdata));
        cmd.arg("-D")
            .arg(pgdata)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                REPLICATION_USER,
            ])
            .args(["-S", slot, "-X", "stream", "-c", "fast", "--no-sync", "-w"])
            .env("PGPASSWORD", password.expose())
            .env("PGCONNECT_TIMEOUT", "10");
        run(cmd, "pg_basebackup").await
    }

    /// Asks PostgreSQL itself whether it accepts these parameters, using
    /// `probe` (a directory holding an empty postgresql.conf): `postgres -C`
    /// parses every `-c` exactly as a server start would, without starting
    /// one. Returns the refused parameters with PostgreSQL's reason.
    pub async fn check_parameters(
        &self,
        probe: &Path,
        params: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, String)>, PgError> {
        if params.is_empty() || self.probe(probe, params.iter()).await?.is_none() {
            return Ok(Vec::new());
        }
        // Something is refused: ask per parameter, to say which.
        let checks = params
            .iter()
            .map(|p| async move { (p.0.clone(), self.probe(probe, std::iter::once(p)).await) });
        let mut refused = Vec::new();
        for (name, verdict) in futures::future::join_all(checks).await {
            if let Some(reason) = verdict? {
                refused.push((name, reason));
            }
        }
        Ok(refused)
    }

    async fn probe<'a>(
        &self,
        probe: &Path,
        params: impl Iterator<Item = (&'a String, &'a String)>,
    ) -> Result<Option<String>, PgError> {
        let mut cmd = self.command("postgres", probe);
        cmd.arg("-D").arg(probe).args(["-C", "port"]);
        for (name, value) in params {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        let out = cmd.output().await.map_err(|source| PgError::Spawn {
            program: "postgres -C",
            source,
        })?;
        if out.status.success() {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr
            .lines()
            .filter_map(|l| {
                l.split_once("FATAL:")
                    .or_else(|| l.split_once("HINT:"))
                    .map(|(_, m)| m.trim())
            })
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Some(if reason.is_empty() {
            stderr.trim().to_owned()
        } else {
            reason
        }))
    }
}

/// The role standbys replicate as.
pub const REPLICATION_USER: &str = "streaming_replica";

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("/"))
}

async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file())
}

async fn find_bindir() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let initdb = dir.join("initdb");
        if is_file(&initdb).await {
            if let Ok(real) = tokio::fs::canonicalize(&initdb).await {
                let bindir = real.parent()?.to_path_buf();
                if is_file(&bindir.join("pg_ctl")).await
                    && is_file(&bindir.join("pg_basebackup")).await
                {
                    return Some(bindir);
                }
            }
        }
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .await
        .ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && is_file(&dir.join("initdb")).await).then_some(dir)
}

async fn output(cmd: &mut Command) -> Result<String, PgError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| PgError::Spawn {
            program: "pg_ctl --version",
            source,
        })?;
    if !out.status.success() {
        return Err(PgError::setting(
            "PGPLANE_PG_BINDIR",
            format!(
                "{:?} failed: {}",
                cmd.as_std().get_program(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn run(mut cmd: Command, program: &'static str) -> Result<(), PgError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = tokio::time::timeout(PROGRAM_DEADLINE, cmd.output())
        .await
        .map_err(|_| PgError::Timeout {
            program,
            deadline: PROGRAM_DEADLINE,
        })?
        .map_err(|source| PgError::Spawn { program, source })?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(PgError::Program {
        program,
        output: text.lines().take(5).collect::<Vec<_>>().join(" / "),
    })
}

/// [`run`] for a program that starts a server writing to `log`: a failure
/// says why in the server's words, from what the log gained meanwhile.
async fn run_logged(
    cmd: Command,
    program: &'static str,
    pgdata: &Path,
    log: &Path,
) -> Result<(), PgError> {
    let before = tokio::fs::metadata(log).await.map_or(0, |m| m.len());
    match run(cmd, program).await {
        Err(PgError::Program { output, .. }) => {
            let written = read_from(log, before).await.unwrap_or_default();
            Err(PgError::NoStart {
                pgdata: pgdata.to_path_buf(),
                reason: last_fatal(&written).unwrap_or(output),
            })
        }
        other => other,
    }
}

/// At most the first 64 KiB of `path` from byte `offset`.
async fn read_from(path: &Path, offset: u64) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut bytes = Vec::new();
    file.take(64 * 1024).read_to_end(&mut bytes).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The last `FATAL:` or `PANIC:` line of what a server logged while it
/// failed to start, without the log line prefix: its reason. (Earlier
/// ones can be the sessions a restart cut.)
fn last_fatal(log: &str) -> Option<String> {
    log.lines().rev().find_map(|line| {
        ["FATAL:", "PANIC:"].iter().find_map(|level| {
            line.split_once(level)
                .map(|(_, message)| format!("{level} {}", message.trim()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_a_server_did_not_start_is_its_last_fatal_line() {
        let table = [
            (
                "2026-12-01 23:25:08.965 UTC [20982] FATAL:  could not map anonymous shared memory: Cannot allocate memory\n\
                 2026-12-01 23:25:08.965 UTC [20982] HINT:  This error usually means ...\n\
                 2026-12-01 23:25:08.966 UTC [20982] LOG:  database system is shut down",
                Some("FATAL: could not map anonymous shared memory: Cannot allocate memory"),
            ),
            (
                "LOG:  received fast shutdown request\n\
                 FATAL:  terminating connection due to administrator command\n\
                 LOG:  database system is shut down\n\
                 LOG:  syntax error in file \"/d/pgplane.user.conf\" line 2\n\
                 FATAL:  configuration file \"/d/postgresql.conf\" contains errors\n",
                Some("FATAL: configuration file \"/d/postgresql.conf\" contains errors"),
            ),
            ("PANIC:  could not locate a valid checkpoint record", Some("PANIC: could not locate a valid checkpoint record")),
            ("LOG:  database system is ready to accept connections\n", None),
            ("", None),
        ];
        for (log, want) in table {
            assert_eq!(last_fatal(log).as_deref(), want, "{log}");
        }
    }

    #[test]
    fn errors_keep_their_cause() {
        use std::error::Error;
        let e = PgError::file("read", Path::new("/x/y"))(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        ));
        assert_eq!(e.to_string(), "cannot read /x/y");
        assert_eq!(chain(&e), "cannot read /x/y: entity not found");
        let cause = e.source().expect("the cause is kept");
        assert_eq!(
            cause.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
    }
}
