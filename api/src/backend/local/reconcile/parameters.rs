//! A database's parameters on its servers: `pgplane.user.conf` written on
//! every instance, the configuration reloaded, servers restarted where a
//! changed parameter needs it (primary first: a standby whose settings
//! fall below the primary's pauses until it is restarted too), then
//! checked: every server runs and passes the probe.
//!
//! Parameters the servers cannot run with are undone: the last
//! configuration that worked goes back, the revision and PostgreSQL's
//! reason are kept in the record, and that revision is not tried again (a
//! later one is). Whether there is anything to do is judged from the files
//! on the instances, not from a memory of what was done last.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::super::postgres::PgError;
use super::super::record::{DatabaseRecord, FailedRevision, InstanceRecord};
use super::super::{Entry, Inner};
use super::config_files::{user_conf, USER_CONF};
use super::health::{probe, Role};
use super::servers::{exists, holds_data, server_status, write_owned, ServerStatus};
use super::sessions::{connect_admin, Sessions};
use super::{begin, wanted_parameters};
use crate::states::Operation;

/// How long a server may take to read its configuration files again.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);
/// How long a server that just started or reloaded may refuse the probe
/// as not yet up ("the database system is starting up").
const VERIFY_DEADLINE: Duration = Duration::from_secs(10);

/// Whether the servers can run a configuration.
enum Verdict {
    Runs,
    /// They cannot: PostgreSQL's reason where it gave one.
    Broken(String),
}

/// The configuration step of a pass: when an instance's file does not hold
/// the wanted parameters, or a change was left unfinished, applies them,
/// and undoes them when the servers cannot run them. Answers whether it
/// did anything (servers may have restarted). `files_current` is what
/// [`files_hold`] answered for this very record earlier in the pass, if
/// it did.
pub(super) async fn step(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    sessions: &mut Sessions,
    record: &DatabaseRecord,
    files_current: Option<bool>,
) -> Result<bool, PgError> {
    let wanted = wanted_parameters(record);
    let holds = !record.configuring
        && match files_current {
            Some(known) => known,
            None => files_hold(entry, record, &wanted.parameters).await,
        };
    if holds {
        let behind = record
            .applied
            .as_ref()
            .is_none_or(|a| a.revision < record.revision);
        if !wanted.fallback && behind {
            // The servers run this revision's parameters already: it
            // changed something else, or they ran well with them before.
            entry
                .update_record(|r| r.mark_applied(record.revision, wanted.parameters))
                .await?;
        }
        return Ok(false);
    }
    begin(inner, entry, Operation::ApplyingParameters).await;
    if !record.configuring {
        entry.update_record(|r| r.configuring = true).await?;
    }
    let reason = match apply(inner, entry, sessions, record, &wanted.parameters).await? {
        Verdict::Runs => {
            entry
                .update_record(|r| {
                    r.configuring = false;
                    if !wanted.fallback {
                        r.mark_applied(record.revision, wanted.parameters.clone());
                    }
                })
                .await?;
            return Ok(true);
        }
        Verdict::Broken(reason) if wanted.fallback => {
            entry.update_record(|r| r.configuring = false).await?;
            return Err(PgError::Unworkable { reason });
        }
        Verdict::Broken(reason) => reason,
    };
    tracing::warn!(database = %entry.paths.name, revision = record.revision, %reason, "the servers cannot run the new parameters; putting back the last configuration that worked");
    // Kept before anything is undone: a restart from here on finishes the
    // undoing and never tries this revision again.
    let failed = FailedRevision {
        revision: record.revision,
        reason,
        at: Utc::now(),
    };
    entry.update_record(|r| r.failed = Some(failed)).await?;
    let verdict = apply(
        inner,
        entry,
        sessions,
        record,
        &record.fallback_parameters(),
    )
    .await?;
    entry.update_record(|r| r.configuring = false).await?;
    match verdict {
        Verdict::Runs => Ok(true),
        Verdict::Broken(reason) => Err(PgError::Unworkable { reason }),
    }
}

/// Whether every instance's `pgplane.user.conf` holds `parameters`.
pub(super) async fn files_hold(
    entry: &Entry,
    record: &DatabaseRecord,
    parameters: &BTreeMap<String, String>,
) -> bool {
    let text = user_conf(parameters);
    for (instance, _) in configured_instances(entry, record).await {
        let path = entry.paths.pgdata(instance.ordinal).join(USER_CONF);
        if tokio::fs::read_to_string(&path).await.ok().as_deref() != Some(text.as_str()) {
            return false;
        }
    }
    true
}

/// The instances whose configuration counts, primary first: those with a
/// data directory, and of the standbys only complete copies (a standby
/// being copied gets the primary's files).
async fn configured_instances(
    entry: &Entry,
    record: &DatabaseRecord,
) -> Vec<(InstanceRecord, Role)> {
    let primary = record.primary().expect("bootstrapped").clone();
    let mut out = Vec::new();
    if exists(&entry.paths.pgdata(primary.ordinal).join("PG_VERSION")).await {
        out.push((primary, Role::Primary));
    }
    for standby in record.standbys() {
        if exists(&entry.paths.built_marker(standby.ordinal)).await
            && exists(&entry.paths.pgdata(standby.ordinal).join("PG_VERSION")).await
        {
            out.push((standby, Role::Standby));
        }
    }
    out
}

/// Makes every instance run `parameters` (writing, reloading, restarting,
/// and starting those that stopped) and checks that they serve.
async fn apply(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    sessions: &mut Sessions,
    record: &DatabaseRecord,
    parameters: &BTreeMap<String, String>,
) -> Result<Verdict, PgError> {
    let text = user_conf(parameters);
    let instances = configured_instances(entry, record).await;
    for (instance, _) in &instances {
        let pgdata = entry.paths.pgdata(instance.ordinal);
        let path = pgdata.join(USER_CONF);
        if tokio::fs::read_to_string(&path).await.ok().as_deref() != Some(text.as_str()) {
            write_owned(inner, &path, text.as_bytes()).await?;
        }
        let log = entry.paths.log(instance.ordinal);
        let started = match server_status(&pgdata).await {
            ServerStatus::Stopped if holds_data(&pgdata).await => {
                let started = inner.pg.start(&pgdata, &log).await;
                if started.is_ok() {
                    entry
                        .update_record(|r| r.count_restart(instance.ordinal))
                        .await?;
                }
                started
            }
            // Nothing to start: healing copies it again.
            ServerStatus::Stopped => Ok(()),
            // Not taking connections yet: it reads the files as it comes up.
            ServerStatus::Starting => inner.pg.reload(&pgdata).await,
            ServerStatus::Ready => match reload(instance.port, &entry.secrets.superuser).await {
                Ok(true) => inner.pg.restart(&pgdata, &log).await,
                Ok(false) => Ok(()),
                Err(e @ PgError::NotReloaded { .. }) => return Ok(Verdict::Broken(e.to_string())),
                Err(e) => return Err(e),
            },
        };
        match started {
            Err(PgError::NoStart { reason, .. }) => return Ok(Verdict::Broken(reason)),
            other => other?,
        }
    }
    // What only new sessions get (preloaded libraries) is seen by new ones.
    sessions.renew_probes();
    for (instance, role) in &instances {
        if server_status(&entry.paths.pgdata(instance.ordinal)).await != ServerStatus::Ready {
            continue;
        }
        if let Err(reason) = verify(sessions, instance.port, &entry.secrets.app, *role).await {
            return Ok(Verdict::Broken(reason));
        }
    }
    Ok(Verdict::Runs)
}

/// Makes the server on `port` read its configuration files again and
/// waits until it has; answers whether a changed parameter waits for a
/// restart.
async fn reload(port: u16, password: &str) -> Result<bool, PgError> {
    let client = connect_admin(port, password).await?;
    let before: String = client
        .query_one("SELECT pg_conf_load_time()::text", &[])
        .await
        .map_err(PgError::sql(port))?
        .get(0);
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .map_err(PgError::sql(port))?;
    let started = Instant::now();
    loop {
        // This session reads the files too, after the postmaster; once it
        // has, its pg_settings knows which changes wait for a restart.
        let row = client
            .query_one(
                "SELECT pg_conf_load_time() > $1::text::timestamptz,
                        EXISTS (SELECT FROM pg_settings WHERE pending_restart)",
                &[&before],
            )
            .await
            .map_err(PgError::sql(port))?;
        if row.get::<_, bool>(0) {
            return Ok(row.get(1));
        }
        if started.elapsed() > RELOAD_DEADLINE {
            return Err(PgError::NotReloaded {
                port,
                waited: RELOAD_DEADLINE,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Probes an instance until it passes, refuses for good, or the deadline
/// passes; the reason when it does not pass.
async fn verify(
    sessions: &mut Sessions,
    port: u16,
    password: &str,
    role: Role,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match probe(sessions, port, password, role).await {
            Ok(()) => return Ok(()),
            Err(f) if f.lasting || started.elapsed() > VERIFY_DEADLINE => return Err(f.reason),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
