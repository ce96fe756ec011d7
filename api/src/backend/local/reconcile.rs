//! The reconciler of one local database: drives the servers on disk towards
//! the record (primary, bootstrap, parameters, standbys, deletion), one step
//! at a time, and reports what it sees. Every step is idempotent, so a crash
//! or restart at any point is followed by the same steps again.
//!
//! It is also the watcher: between passes it waits on the postmasters' exit
//! (pidfds, so a dead instance is seen at once) and looks at replication
//! twice a second. Each pass observes before it acts, so an instance that
//! died is recorded (`degraded`, or `failing_over` for a lost primary)
//! before it is healed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use tokio_postgres::{Client, NoTls};

use super::postgres::{conf_quote, PgError, REPLICATION_USER};
use super::record::{slot_name, DatabaseRecord, InstanceRecord};
use super::{Entry, Inner, HOST};
use crate::states::Operation;

/// How often replication is looked at when nothing wakes the reconciler.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How long a new standby may take to start streaming.
const STREAMING_DEADLINE: Duration = Duration::from_secs(60);

enum Outcome {
    Converged,
    Deleted,
}

/// Runs until the database is deleted (or the task is aborted on shutdown).
pub(super) async fn run(inner: Arc<Inner>, entry: Arc<Entry>) {
    loop {
        let started = Instant::now();
        let outcome = reconcile(&inner, &entry).await;
        let record = entry.record.lock().await.clone();
        let failures = match outcome {
            Ok(Outcome::Deleted) => {
                inner.forget(&entry.paths.name);
                tracing::info!(database = %entry.paths.name, "database deleted");
                return;
            }
            Ok(Outcome::Converged) => {
                entry.observe(&inner, &record, |o| {
                    o.failures = 0;
                    o.error = None;
                    o.operation = None;
                });
                0
            }
            Err(e) => {
                tracing::warn!(database = %entry.paths.name, error = %e, "reconcile step failed");
                let mut failures = 0;
                entry.observe(&inner, &record, |o| {
                    o.failures += 1;
                    o.error = Some(e.to_string());
                    failures = o.failures;
                });
                failures
            }
        };
        inner
            .metrics
            .backend_duration
            .with_label_values(&["reconcile"])
            .observe(started.elapsed().as_secs_f64());
        let pause = if failures == 0 {
            LOOK_EVERY
        } else {
            LOOK_EVERY * 2u32.pow(failures.min(5))
        };
        let pids: Vec<i32> = record
            .instances
            .iter()
            .filter_map(|i| live_postmaster(&entry.paths.pgdata(i.ordinal)))
            .map(|p| p.as_raw())
            .collect();
        tokio::select! {
            _ = entry.wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
            _ = super::exits::first_exit(&pids) => {}
        }
    }
}

/// Marks what the reconciler is doing; the state follows.
async fn begin(inner: &Inner, entry: &Entry, operation: Operation) {
    let record = entry.record.lock().await.clone();
    entry.observe(inner, &record, |o| o.operation = Some(operation));
}

async fn reconcile(inner: &Arc<Inner>, entry: &Arc<Entry>) -> Result<Outcome, PgError> {
    let record = entry.record.lock().await.clone();
    if record.deleting {
        entry.observe(inner, &record, |_| {});
        remove_all(inner, entry, &record).await?;
        return Ok(Outcome::Deleted);
    }
    if !record.bootstrapped {
        begin(inner, entry, Operation::Bootstrapping).await;
        init_primary(inner, entry, &record).await?;
    } else {
        // Look before acting, so what died is recorded before it is healed;
        // an operation the record still asks for (after a restart) goes on.
        let ready = count_ready(entry, &record).await;
        entry.observe(inner, &record, |o| {
            o.ready = ready;
            o.operation = o.operation.or(pending_operation(&record));
        });
    }
    let record = entry.record.lock().await.clone();
    let primary = record
        .primary()
        .cloned()
        .expect("a bootstrapped database has a primary");
    if server_status(&entry.paths.pgdata(primary.ordinal)) == ServerStatus::Stopped {
        begin(inner, entry, Operation::Healing).await;
        if let Err(e) = ensure_running(inner, entry, &primary).await {
            if record.standbys().is_empty() {
                return Err(e);
            }
            tracing::warn!(database = %entry.paths.name, error = %e, "the primary cannot start; failing over");
            begin(inner, entry, Operation::FailingOver).await;
            fail_over(inner, entry, &record).await?;
        }
    }

    let record = entry.record.lock().await.clone();
    if record.applied_parameters != record.spec.parameters {
        begin(inner, entry, Operation::ApplyingParameters).await;
        apply_parameters(inner, entry, &record).await?;
    }

    let record = entry.record.lock().await.clone();
    let wanted = record.spec.instances as usize - 1;
    let standbys = record.standbys();
    if standbys.len() < wanted {
        begin(inner, entry, Operation::AddingStandbys).await;
        let mut added = Vec::new();
        {
            let mut r = entry.record.lock().await;
            for _ in standbys.len()..wanted {
                let port = inner.allocate_port()?;
                let instance = InstanceRecord {
                    ordinal: r.next_ordinal(),
                    port,
                };
                r.instances.push(instance.clone());
                added.push(instance);
            }
            entry
                .persist(&r)
                .await
                .map_err(|e| PgError::Io(e.to_string()))?;
        }
        try_join_all(
            added
                .iter()
                .map(|s| build_standby(inner, entry, &record, s)),
        )
        .await?;
    } else if standbys.len() > wanted {
        begin(inner, entry, Operation::RemovingStandbys).await;
        for surplus in standbys.iter().rev().take(standbys.len() - wanted) {
            remove_standby(inner, entry, &record, surplus).await?;
        }
    }

    let record = entry.record.lock().await.clone();
    let mut rebuilt = false;
    for standby in record.standbys() {
        let pgdata = entry.paths.pgdata(standby.ordinal);
        if !entry.paths.built_marker(standby.ordinal).exists() {
            begin(inner, entry, operation_for_rebuild(&record)).await;
            build_standby(inner, entry, &record, &standby).await?;
            rebuilt = true;
        } else if server_status(&pgdata) == ServerStatus::Stopped {
            begin(inner, entry, Operation::Healing).await;
            if let Err(e) = ensure_running(inner, entry, &standby).await {
                // Its data is unusable: copy it again from the primary.
                tracing::warn!(database = %entry.paths.name, instance = standby.ordinal, error = %e, "rebuilding a standby that cannot start");
                build_standby(inner, entry, &record, &standby).await?;
                rebuilt = true;
            }
        }
    }
    if rebuilt || standbys.len() < wanted {
        wait_streaming(entry, &record).await?;
    }
    let ready = observe(inner, entry).await;
    let record = entry.record.lock().await.clone();
    if !record.created && ready == record.spec.instances {
        let mut r = entry.record.lock().await;
        r.created = true;
        entry
            .persist(&r)
            .await
            .map_err(|e| PgError::Io(e.to_string()))?;
    }
    Ok(Outcome::Converged)
}

/// The operation a record asks for, judged from the record alone.
fn pending_operation(record: &DatabaseRecord) -> Option<Operation> {
    let have = record.instances.len() as u32;
    if have < record.spec.instances {
        Some(Operation::AddingStandbys)
    } else if have > record.spec.instances {
        Some(Operation::RemovingStandbys)
    } else if record.applied_parameters != record.spec.parameters {
        Some(Operation::ApplyingParameters)
    } else {
        None
    }
}

/// A standby rebuilt during `creating` is part of the creation; later, a
/// missing standby is being healed.
fn operation_for_rebuild(record: &DatabaseRecord) -> Operation {
    if record.created {
        Operation::Healing
    } else {
        Operation::AddingStandbys
    }
}

/// Counts ready instances and records the count (and so the state).
async fn observe(inner: &Arc<Inner>, entry: &Arc<Entry>) -> u32 {
    let record = entry.record.lock().await.clone();
    let ready = count_ready(entry, &record).await;
    entry.observe(inner, &record, |o| o.ready = ready);
    ready
}

/// Ready instances: the primary when it accepts connections, and the
/// standbys that stream from it.
async fn count_ready(entry: &Entry, record: &DatabaseRecord) -> u32 {
    let primary = record.primary().cloned().expect("bootstrapped");
    let mut ready = 0;
    if server_status(&entry.paths.pgdata(primary.ordinal)) == ServerStatus::Ready {
        ready += 1;
        // Each look is a new connection (a forked backend and a SCRAM
        // exchange), twice per pass: skip it when no standby can stream.
        if record.standbys().is_empty() {
            return ready;
        }
        let streaming = streaming_standbys(entry, record).await.unwrap_or_default();
        ready += record
            .standbys()
            .iter()
            .filter(|s| {
                streaming.contains(&entry.paths.instance_name(s.ordinal))
                    && server_status(&entry.paths.pgdata(s.ordinal)) == ServerStatus::Ready
            })
            .count() as u32;
    }
    ready
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
    let old = record.primary().cloned().expect("bootstrapped");
    let mut best: Option<(u64, InstanceRecord)> = None;
    for s in record.standbys() {
        if server_status(&entry.paths.pgdata(s.ordinal)) != ServerStatus::Ready {
            continue;
        }
        let Ok(client) = connect(s.port, &entry.secrets.superuser).await else {
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
        return Err(PgError::Io(
            "the primary is lost and no standby is running to take over".into(),
        ));
    };
    tracing::warn!(database = %entry.paths.name, from = old.ordinal, to = new.ordinal, lsn, "promoting a standby");
    let new_pgdata = entry.paths.pgdata(new.ordinal);
    inner.pg.promote(&new_pgdata).await?;
    write_owned(
        inner,
        &new_pgdata.join(MANAGED_CONF),
        managed_conf(entry, &new, None).as_bytes(),
    )
    .await?;
    inner.pg.reload(&new_pgdata).await?;
    // The old primary's files are unusable: it comes back as a standby.
    let _ = tokio::fs::remove_file(entry.paths.built_marker(old.ordinal)).await;
    {
        let mut r = entry.record.lock().await;
        r.primary = new.ordinal;
        entry
            .persist(&r)
            .await
            .map_err(|e| PgError::Io(e.to_string()))?;
    }
    let client = connect(new.port, &entry.secrets.superuser).await?;
    for s in record.standbys() {
        if s.ordinal == new.ordinal {
            continue;
        }
        create_slot(&client, new.port, &slot_name(s.ordinal)).await?;
        let pgdata = entry.paths.pgdata(s.ordinal);
        if pgdata.join("PG_VERSION").exists() {
            // primary_conninfo and primary_slot_name take effect on reload.
            write_owned(
                inner,
                &pgdata.join(MANAGED_CONF),
                managed_conf(entry, &s, Some(&new)).as_bytes(),
            )
            .await?;
            if server_status(&pgdata) != ServerStatus::Stopped {
                inner.pg.reload(&pgdata).await?;
            }
        }
    }
    Ok(())
}

async fn create_slot(client: &Client, port: u16, slot: &str) -> Result<(), PgError> {
    client
        .execute(
            "SELECT pg_create_physical_replication_slot($1) WHERE NOT EXISTS
               (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(|e| sql_error(port, e))?;
    Ok(())
}

async fn streaming_standbys(
    entry: &Entry,
    record: &DatabaseRecord,
) -> Result<Vec<String>, PgError> {
    let primary = record.primary().expect("bootstrapped");
    let client = connect(primary.port, &entry.secrets.superuser).await?;
    let rows = client
        .query(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            &[],
        )
        .await
        .map_err(|e| sql_error(primary.port, e))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// Waits until every standby streams from the primary.
async fn wait_streaming(entry: &Entry, record: &DatabaseRecord) -> Result<(), PgError> {
    let deadline = Instant::now() + STREAMING_DEADLINE;
    let names: Vec<String> = record
        .standbys()
        .iter()
        .map(|s| entry.paths.instance_name(s.ordinal))
        .collect();
    loop {
        let streaming = streaming_standbys(entry, record).await?;
        if names.iter().all(|n| streaming.contains(n)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(PgError::Io(format!(
                "standbys {names:?} did not start streaming in time"
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Makes the primary from nothing: initdb, configuration, start, then the
/// roles and the `app` database. Anything a crashed earlier try left is
/// removed first, since nothing of value exists before the bootstrap ends.
async fn init_primary(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
) -> Result<(), PgError> {
    let pg = &inner.pg;
    let primary = record
        .primary()
        .cloned()
        .expect("a new record has its primary");
    let dir = entry.paths.instance_dir(primary.ordinal);
    let pgdata = entry.paths.pgdata(primary.ordinal);
    fresh_instance_dir(inner, &dir, &pgdata).await?;
    let pwfile = dir.join("pwfile");
    write_owned(inner, &pwfile, entry.secrets.superuser.as_bytes()).await?;
    let made = pg.initdb(&pgdata, &pwfile).await;
    tokio::fs::remove_file(&pwfile).await?;
    made?;
    write_owned(inner, &pgdata.join("pg_hba.conf"), HBA.as_bytes()).await?;
    write_owned(inner, &pgdata.join(DEFAULTS_CONF), DEFAULTS.as_bytes()).await?;
    write_owned(
        inner,
        &pgdata.join(USER_CONF),
        user_conf(&record.spec.parameters).as_bytes(),
    )
    .await?;
    write_owned(
        inner,
        &pgdata.join(MANAGED_CONF),
        managed_conf(entry, &primary, None).as_bytes(),
    )
    .await?;
    let conf = pgdata.join("postgresql.conf");
    let mut text = tokio::fs::read_to_string(&conf).await?;
    text.push_str(&format!(
        "\n# pgplane: defaults, then the database's parameters, then what pgplane manages.\n\
         include_if_exists '{DEFAULTS_CONF}'\ninclude_if_exists '{USER_CONF}'\ninclude '{MANAGED_CONF}'\n"
    ));
    write_owned(inner, &conf, text.as_bytes()).await?;
    pg.start(&pgdata, &entry.paths.log(primary.ordinal)).await?;

    let client = connect(primary.port, &entry.secrets.superuser).await?;
    let s = &entry.secrets;
    // One statement per call: CREATE DATABASE refuses to run in the implicit
    // transaction of a multi-statement query.
    for statement in [
        format!(
            "CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN PASSWORD {}",
            sql_literal(&s.replication)
        ),
        format!(
            "CREATE ROLE app WITH LOGIN PASSWORD {}",
            sql_literal(&s.app)
        ),
        "CREATE DATABASE app OWNER app".to_owned(),
    ] {
        client
            .batch_execute(&statement)
            .await
            .map_err(|e| sql_error(primary.port, e))?;
    }
    let mut r = entry.record.lock().await;
    r.bootstrapped = true;
    r.applied_parameters = record.spec.parameters.clone();
    entry
        .persist(&r)
        .await
        .map_err(|e| PgError::Io(e.to_string()))
}

/// Copies the primary into a new standby and starts it.
async fn build_standby(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
    standby: &InstanceRecord,
) -> Result<(), PgError> {
    let paths = &entry.paths;
    let primary = record.primary().cloned().expect("bootstrapped");
    let dir = paths.instance_dir(standby.ordinal);
    let pgdata = paths.pgdata(standby.ordinal);
    fresh_instance_dir(inner, &dir, &pgdata).await?;
    let slot = slot_name(standby.ordinal);
    let client = connect(primary.port, &entry.secrets.superuser).await?;
    create_slot(&client, primary.port, &slot).await?;
    inner
        .pg
        .base_backup(&pgdata, primary.port, &slot, &entry.secrets.replication())
        .await?;
    write_owned(
        inner,
        &pgdata.join(MANAGED_CONF),
        managed_conf(entry, standby, Some(&primary)).as_bytes(),
    )
    .await?;
    write_owned(inner, &pgdata.join("standby.signal"), b"").await?;
    write_owned(inner, &paths.built_marker(standby.ordinal), b"").await?;
    inner.pg.start(&pgdata, &paths.log(standby.ordinal)).await
}

/// Stops a standby, drops its slot, removes its files and its record.
async fn remove_standby(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
    standby: &InstanceRecord,
) -> Result<(), PgError> {
    let pgdata = entry.paths.pgdata(standby.ordinal);
    if server_status(&pgdata) != ServerStatus::Stopped {
        inner.pg.stop(&pgdata, false).await?;
    }
    let primary = record.primary().expect("bootstrapped");
    let client = connect(primary.port, &entry.secrets.superuser).await?;
    let slot = slot_name(standby.ordinal);
    let deadline = Instant::now() + Duration::from_secs(30);
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
            Err(e) => return Err(sql_error(primary.port, e)),
        }
    }
    remove_dir(&entry.paths.instance_dir(standby.ordinal)).await?;
    let mut r = entry.record.lock().await;
    r.instances.retain(|i| i.ordinal != standby.ordinal);
    entry
        .persist(&r)
        .await
        .map_err(|e| PgError::Io(e.to_string()))?;
    inner.free_port(standby.port);
    Ok(())
}

/// Writes the parameters to every instance, reloads, and restarts when a
/// changed parameter needs it (primary first: a standby whose settings fall
/// below the primary's pauses until it is restarted too). The values were
/// checked by PostgreSQL itself when the API accepted them.
async fn apply_parameters(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
) -> Result<(), PgError> {
    let pg = &inner.pg;
    let primary = record.primary().cloned().expect("bootstrapped");
    let mut order = vec![primary.clone()];
    order.extend(record.standbys());
    let write_all = |params: BTreeMap<String, String>| {
        let order = order.clone();
        async move {
            for i in &order {
                let pgdata = entry.paths.pgdata(i.ordinal);
                if pgdata.join("PG_VERSION").exists() {
                    write_owned(
                        inner,
                        &pgdata.join(USER_CONF),
                        user_conf(&params).as_bytes(),
                    )
                    .await?;
                    if server_status(&pgdata) != ServerStatus::Stopped {
                        pg.reload(&pgdata).await?;
                    }
                }
            }
            Ok::<_, PgError>(())
        }
    };
    write_all(record.spec.parameters.clone()).await?;
    let client = connect(primary.port, &entry.secrets.superuser).await?;
    let pending: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_settings WHERE pending_restart",
            &[],
        )
        .await
        .map_err(|e| sql_error(primary.port, e))?
        .get(0);
    drop(client);
    if pending > 0 {
        for i in &order {
            let pgdata = entry.paths.pgdata(i.ordinal);
            if server_status(&pgdata) != ServerStatus::Stopped {
                pg.restart(&pgdata, &entry.paths.log(i.ordinal)).await?;
            }
        }
    }
    let mut r = entry.record.lock().await;
    r.applied_parameters = record.spec.parameters.clone();
    entry
        .persist(&r)
        .await
        .map_err(|e| PgError::Io(e.to_string()))
}

/// Stops every server of the database and removes all its files; the
/// record goes last, so a crash midway is resumed on the next start.
async fn remove_all(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
) -> Result<(), PgError> {
    for i in &record.instances {
        let pgdata = entry.paths.pgdata(i.ordinal);
        if server_status(&pgdata) != ServerStatus::Stopped {
            inner.pg.stop(&pgdata, false).await?;
        }
    }
    for i in &record.instances {
        remove_dir(&entry.paths.instance_dir(i.ordinal)).await?;
    }
    let dir = entry.paths.dir.clone();
    tokio::task::spawn_blocking(move || {
        // Instances this record no longer names (a crash between steps).
        stop_servers_under(&dir);
        std::fs::remove_dir_all(&dir)
    })
    .await
    .map_err(|e| PgError::Io(e.to_string()))??;
    for i in &record.instances {
        inner.free_port(i.port);
    }
    Ok(())
}

/// Stops, by their pid files, any servers whose data directories lie under
/// `dir` (two levels: `<instance>/pgdata`). Used where the record cannot say
/// which servers exist.
pub(super) fn stop_servers_under(dir: &Path) {
    let Ok(instances) = std::fs::read_dir(dir) else {
        return;
    };
    for instance in instances.flatten() {
        let pgdata = instance.path().join("pgdata");
        if let Some(pid) = live_postmaster(&pgdata) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Starts a stopped instance. A postmaster killed a moment ago can leave
/// children holding its shared memory for a few milliseconds, so a failed
/// start is tried again before it counts; data without `global/pg_control`
/// is beyond starting at all.
async fn ensure_running(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    instance: &InstanceRecord,
) -> Result<(), PgError> {
    const ATTEMPTS: u32 = 3;
    let pgdata = entry.paths.pgdata(instance.ordinal);
    for attempt in 1..=ATTEMPTS {
        if server_status(&pgdata) != ServerStatus::Stopped {
            return Ok(());
        }
        if !pgdata.join("global/pg_control").exists() {
            return Err(PgError::Io(format!(
                "{} holds no usable data directory",
                pgdata.display()
            )));
        }
        tracing::info!(database = %entry.paths.name, instance = instance.ordinal, attempt, "starting a stopped instance");
        match inner
            .pg
            .start(&pgdata, &entry.paths.log(instance.ordinal))
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) if attempt == ATTEMPTS => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    unreachable!("the last attempt returns")
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum ServerStatus {
    Stopped,
    Starting,
    Ready,
}

/// What the postmaster's pid file says, checked against a live process.
pub(super) fn server_status(pgdata: &Path) -> ServerStatus {
    let Ok(text) = std::fs::read_to_string(pgdata.join("postmaster.pid")) else {
        return ServerStatus::Stopped;
    };
    if live_postmaster(pgdata).is_none() {
        return ServerStatus::Stopped;
    }
    match text.lines().nth(7).map(str::trim) {
        Some("ready") | Some("standby") => ServerStatus::Ready,
        _ => ServerStatus::Starting,
    }
}

fn live_postmaster(pgdata: &Path) -> Option<nix::unistd::Pid> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let pid = nix::unistd::Pid::from_raw(pid);
    (pid.as_raw() > 0 && nix::sys::signal::kill(pid, None).is_ok()).then_some(pid)
}

async fn fresh_instance_dir(inner: &Arc<Inner>, dir: &Path, pgdata: &Path) -> Result<(), PgError> {
    if server_status(pgdata) != ServerStatus::Stopped {
        inner.pg.stop(pgdata, false).await?;
    }
    remove_dir(dir).await?;
    tokio::fs::create_dir(dir).await?;
    set_mode(dir, 0o700).await?;
    inner.pg.give(dir)
}

async fn remove_dir(dir: &Path) -> Result<(), PgError> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

async fn set_mode(path: &Path, mode: u32) -> Result<(), PgError> {
    use std::os::unix::fs::PermissionsExt;
    Ok(tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await?)
}

/// Writes a file the PostgreSQL account owns.
async fn write_owned(inner: &Arc<Inner>, path: &Path, contents: &[u8]) -> Result<(), PgError> {
    tokio::fs::write(path, contents).await?;
    set_mode(path, 0o600).await?;
    inner.pg.give(path)
}

async fn connect(port: u16, password: &str) -> Result<Client, PgError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(HOST)
        .port(port)
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .application_name("pgplane")
        .connect_timeout(Duration::from_secs(5));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| sql_error(port, e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn sql_error(port: u16, e: tokio_postgres::Error) -> PgError {
    let cause = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    };
    PgError::Sql { port, cause }
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

const DEFAULTS_CONF: &str = "pgplane.defaults.conf";
const USER_CONF: &str = "pgplane.user.conf";
const MANAGED_CONF: &str = "pgplane.managed.conf";

const HBA: &str = "# Managed by pgplane: password logins over loopback only.\n\
host    all          all                127.0.0.1/32    scram-sha-256\n\
host    replication  streaming_replica  127.0.0.1/32    scram-sha-256\n";

/// Small memory defaults, so a laptop runs many instances; parameters of the
/// database override them.
const DEFAULTS: &str = "# Managed by pgplane: defaults a database's parameters may override.\n\
shared_buffers = '16MB'\n\
max_connections = 50\n\
effective_cache_size = '64MB'\n\
maintenance_work_mem = '16MB'\n\
max_wal_size = '256MB'\n\
min_wal_size = '32MB'\n\
max_worker_processes = 4\n\
max_parallel_workers = 2\n\
max_parallel_workers_per_gather = 1\n";

fn user_conf(params: &BTreeMap<String, String>) -> String {
    let mut text = String::from("# Managed by pgplane: the database's parameters.\n");
    for (k, v) in params {
        text.push_str(&format!("{k} = {}\n", conf_quote(v)));
    }
    text
}

/// What pgplane itself manages per instance; standbys also name their primary.
fn managed_conf(
    entry: &Entry,
    instance: &InstanceRecord,
    primary: Option<&InstanceRecord>,
) -> String {
    let name = entry.paths.instance_name(instance.ordinal);
    let mut text = format!(
        "# Managed by pgplane: do not edit.\n\
         port = {}\n\
         listen_addresses = '{HOST}'\n\
         unix_socket_directories = ''\n\
         wal_level = replica\n\
         max_wal_senders = 12\n\
         max_replication_slots = 12\n\
         hot_standby = on\n\
         wal_log_hints = on\n\
         cluster_name = {}\n",
        instance.port,
        conf_quote(&name)
    );
    if let Some(p) = primary {
        let conninfo = format!(
            "host={HOST} port={} user={REPLICATION_USER} password={} application_name={name}",
            p.port, entry.secrets.replication
        );
        text.push_str(&format!(
            "primary_conninfo = {}\nprimary_slot_name = {}\n",
            conf_quote(&conninfo),
            conf_quote(&slot_name(instance.ordinal))
        ));
    }
    text
}
