//! Parameters on real PostgreSQL: a change the servers cannot run with is
//! undone (the last configuration that worked goes back, the database is
//! `healthy` on it with a phase that says why, the change is not tried
//! again, also not after a restart of pgplane), a later revision is tried
//! afresh, and what the servers run is judged from their files.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use support::{connect, Caller, TestApp};

const DEADLINE: Duration = Duration::from_secs(120);

fn instance_dir(app: &TestApp, db: &str, ordinal: u32) -> PathBuf {
    app.data_dir
        .join("databases")
        .join(db)
        .join(format!("{db}-{ordinal}"))
}

/// The database's parameters as an instance's file holds them.
fn user_conf(app: &TestApp, db: &str, ordinal: u32) -> String {
    std::fs::read_to_string(instance_dir(app, db, ordinal).join("pgdata/pgplane.user.conf"))
        .unwrap()
}

/// The database's record on disk.
fn record(app: &TestApp, db: &str) -> Value {
    let path = app
        .data_dir
        .join("databases")
        .join(db)
        .join("database.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every transition of `db`, oldest first.
async fn transitions(caller: &Caller<'_>, db: &str) -> Vec<(String, String)> {
    caller
        .events(db)
        .await
        .iter()
        .rev()
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Sets a database's parameters through the backend, past the API's
/// validation (which refuses some of these); returns the new revision.
async fn set_parameters(app: &TestApp, db: &str, parameters: &[(&str, &str)]) -> u64 {
    let current = app.backend().get(db).await.unwrap();
    let spec = pgplane::model::DatabaseSpec {
        name: current.name,
        postgres_version: current.postgres_version,
        instances: current.instances,
        storage: current.storage,
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        labels: current.labels,
    };
    let change = pgplane::model::Change::new(pgplane::model::RevisionKind::Update, "test", None);
    let updated = app
        .backend()
        .update(spec, current.revision, &change)
        .await
        .unwrap();
    updated.revision
}

/// Waits until the database is healthy at `revision`; returns it.
async fn wait_healthy_at(caller: &Caller<'_>, db: &str, revision: u64) -> Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let (status, body) = caller.get(&format!("/api/v1/databases/{db}")).await;
        assert_eq!(status, 200, "{body}");
        if body["state"] == "healthy" && body["revision"] == revision {
            return body;
        }
        assert_ne!(body["state"], "failed", "{body}");
        assert!(
            Instant::now() < until,
            "{db} not healthy at {revision}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn app_uri(caller: &Caller<'_>, db: &str) -> String {
    let (status, creds) = caller
        .get(&format!("/api/v1/databases/{db}/credentials"))
        .await;
    assert_eq!(status, 200, "{creds}");
    creds["uri"].as_str().unwrap().to_owned()
}

async fn setting(uri: &str, name: &str) -> String {
    connect(uri)
        .await
        .query_one("SELECT current_setting($1)", &[&name])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_the_servers_cannot_start_with_is_undone_and_not_tried_again() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    let (status, body) = editor
        .post("/api/v1/databases", json!({"name": "cfg", "instances": 2}))
        .await;
    assert_eq!(status, 202, "{body}");
    app.wait_state(&editor, "cfg", "healthy", DEADLINE).await;
    let uri = app_uri(&editor, "cfg").await;
    connect(&uri)
        .await
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (42)")
        .await
        .unwrap();

    // PostgreSQL accepts 1TB in the file, but cannot start with it here.
    let patched = Utc::now();
    let (status, body) = editor
        .patch(
            "/api/v1/databases/cfg",
            json!({"parameters": {"shared_buffers": "1TB"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["state"].as_str(), body["revision"].as_u64()),
        (Some("updating"), Some(2))
    );
    let healthy = editor.wait_event("cfg", "healthy", patched, DEADLINE).await;
    assert_eq!(healthy["from"], "updating", "{healthy}");
    let phase = healthy["phase"].as_str().unwrap().to_owned();
    assert!(
        phase.starts_with("revision 2 was not applied: FATAL: ")
            && phase.contains("shared memory")
            && phase.ends_with("; running revision 1's configuration"),
        "{phase}"
    );
    assert_eq!(healthy["ready_instances"], 2);
    let (_, db) = editor.get("/api/v1/databases/cfg").await;
    assert_eq!(
        (
            db["state"].as_str(),
            db["phase"].as_str(),
            db["ready_instances"].as_u64()
        ),
        (Some("healthy"), Some(phase.as_str()), Some(2))
    );
    assert_eq!(
        db["parameters"],
        json!({"shared_buffers": "1TB"}),
        "the spec stays as asked"
    );
    // The API says which change was undone, and why.
    assert_eq!(db["undone"]["revision"], 2, "{db}");
    assert!(
        phase.contains(db["undone"]["reason"].as_str().unwrap()),
        "{db}"
    );
    let p = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    let history = [
        p("creating", "healthy"),
        p("healthy", "updating"),
        p("updating", "healthy"),
    ];
    assert_eq!(transitions(&editor, "cfg").await, history);
    // On the last configuration that worked, everywhere, with the data.
    assert_eq!(setting(&uri, "shared_buffers").await, "16MB");
    let id: i32 = connect(&uri)
        .await
        .query_one("SELECT id FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 42);
    for ordinal in [1, 2] {
        let conf = user_conf(&app, "cfg", ordinal);
        assert!(!conf.contains("shared_buffers"), "cfg-{ordinal}: {conf}");
    }
    // The failure is in the record, for a restart and the revision history.
    let kept = record(&app, "cfg");
    assert_eq!(kept["failed"]["revision"], 2, "{kept}");
    assert_eq!(
        format!(
            "revision 2 was not applied: {}; running revision 1's configuration",
            kept["failed"]["reason"].as_str().unwrap()
        ),
        phase
    );
    assert_eq!(kept["applied"]["revision"], 1, "{kept}");

    // A restart of pgplane does not try revision 2 again.
    let servers = app.running_servers();
    let again = app.start_over().await;
    let editor = again.as_user("editor").await;
    again.wait_passes(3, DEADLINE).await;
    let (_, db) = editor.get("/api/v1/databases/cfg").await;
    assert_eq!(
        (db["state"].as_str(), db["phase"].as_str()),
        (Some("healthy"), Some(phase.as_str()))
    );
    assert_eq!(again.running_servers(), servers, "no server was restarted");
    assert_eq!(transitions(&editor, "cfg").await, history);
    assert!(!user_conf(&again, "cfg", 1).contains("shared_buffers"));

    // A later revision is tried afresh.
    let (status, body) = editor
        .patch(
            "/api/v1/databases/cfg",
            json!({"parameters": {"shared_buffers": "32MB"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let db = wait_healthy_at(&editor, "cfg", 3).await;
    assert_eq!(db["phase"], "Cluster in healthy state");
    assert!(db.get("undone").is_none(), "applied since: {db}");
    assert_eq!(db["ready_instances"], 2);
    assert_eq!(setting(&uri, "shared_buffers").await, "32MB");
    let ro = db["endpoints"]["read_only"].as_str().unwrap();
    let standby_uri = uri.replace(db["endpoints"]["read_write"].as_str().unwrap(), ro);
    assert_ne!(standby_uri, uri);
    assert_eq!(setting(&standby_uri, "shared_buffers").await, "32MB");
    let kept = record(&again, "cfg");
    assert_eq!(
        (kept["applied"]["revision"].as_u64(), &kept["failed"]),
        (Some(3), &Value::Null)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_that_lock_the_app_out_or_make_it_read_only_are_undone() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    let (status, body) = editor
        .post("/api/v1/databases", json!({"name": "libs"}))
        .await;
    assert_eq!(status, 202, "{body}");
    app.wait_state(&editor, "libs", "healthy", DEADLINE).await;
    let uri = app_uri(&editor, "libs").await;

    let cases = [
        (
            "session_preload_libraries",
            "x",
            r#"FATAL: could not access file "x": No such file or directory"#,
        ),
        (
            "local_preload_libraries",
            "x",
            r#"FATAL: could not access file "$libdir/plugins/x": No such file or directory"#,
        ),
        (
            "default_transaction_read_only",
            "on",
            "the primary does not take writes: transactions of app are read-only (transaction_read_only is on)",
        ),
    ];
    for (name, value, reason) in cases {
        let revision = set_parameters(&app, "libs", &[(name, value)]).await;
        let db = wait_healthy_at(&editor, "libs", revision).await;
        assert_eq!(
            db["phase"].as_str().unwrap(),
            format!(
                "revision {revision} was not applied: {reason}; running revision 1's configuration"
            ),
            "{name}"
        );
        // The app can log in and write again.
        connect(&uri)
            .await
            .batch_execute(&format!(
                "CREATE TABLE {name} (id int); INSERT INTO {name} VALUES (1)"
            ))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!user_conf(&app, "libs", 1).contains(name), "{name}");
        assert_eq!(record(&app, "libs")["failed"]["reason"], reason);
    }
    // Putting the spec back is a new revision, applied at once.
    let revision = set_parameters(&app, "libs", &[]).await;
    let db = wait_healthy_at(&editor, "libs", revision).await;
    assert_eq!(db["phase"], "Cluster in healthy state");
    assert_eq!(
        (
            record(&app, "libs")["applied"]["revision"].as_u64(),
            record(&app, "libs")["failed"].clone()
        ),
        (Some(revision), Value::Null)
    );
    // One round of updating and back per change, nothing else.
    let p = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    let mut history = vec![p("creating", "healthy")];
    for _ in 0..4 {
        history.push(p("healthy", "updating"));
        history.push(p("updating", "healthy"));
    }
    assert_eq!(transitions(&editor, "libs").await, history);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_file_that_differs_from_the_spec_is_rewritten() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    let (status, body) = editor
        .post("/api/v1/databases", json!({"name": "cfg"}))
        .await;
    assert_eq!(status, 202, "{body}");
    app.wait_state(&editor, "cfg", "healthy", DEADLINE).await;
    let uri = app_uri(&editor, "cfg").await;
    let wanted = user_conf(&app, "cfg", 1);

    // What a failed change left in the files before this version: a line
    // the spec no longer has, which locks the app out.
    app.stop_pgplane().await;
    let conf = instance_dir(&app, "cfg", 1).join("pgdata/pgplane.user.conf");
    std::fs::write(&conf, format!("{wanted}session_preload_libraries = 'x'\n")).unwrap();
    let [pid] = app.running_servers()[..] else {
        panic!("one server runs");
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let until = Instant::now() + DEADLINE;
    while tokio_postgres::connect(&uri, tokio_postgres::NoTls)
        .await
        .is_ok()
    {
        assert!(Instant::now() < until, "the bad line takes effect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let again = app.start_over().await;
    let editor = again.as_user("editor").await;
    let until = Instant::now() + DEADLINE;
    while tokio_postgres::connect(&uri, tokio_postgres::NoTls)
        .await
        .is_err()
    {
        assert!(Instant::now() < until, "the file is put right");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let db = again.wait_state(&editor, "cfg", "healthy", DEADLINE).await;
    assert_eq!(db["phase"], "Cluster in healthy state");
    assert_eq!(user_conf(&again, "cfg", 1), wanted);
    assert_eq!(again.running_servers(), [pid], "a reload was enough");
}
