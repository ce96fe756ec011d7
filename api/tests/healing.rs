//! The watcher on real PostgreSQL: every transition recorded once, dead
//! instances seen at once and healed, a lost primary replaced by its
//! standby with no committed row lost, an instance the app cannot log in
//! to not counted as ready, and restarts of pgplane that neither lose nor
//! repeat what was recorded.

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use support::{connect, Caller, TestApp};

const DEADLINE: Duration = Duration::from_secs(120);

fn ts(e: &Value) -> DateTime<Utc> {
    e["ts"].as_str().unwrap().parse().unwrap()
}

/// A database with two instances and one row in it; returns the app's URI.
async fn orders_with_a_row(app: &TestApp, caller: &Caller<'_>) -> String {
    let (status, body) = caller
        .post(
            "/api/v1/databases",
            json!({"name": "orders", "instances": 2}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    app.wait_state(caller, "orders", "healthy", DEADLINE).await;
    let (_, creds) = caller.get("/api/v1/databases/orders/credentials").await;
    let uri = creds["uri"].as_str().unwrap().to_owned();
    connect(&uri)
        .await
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (42)")
        .await
        .unwrap();
    uri
}

async fn row_is_there(caller: &Caller<'_>) {
    // The credentials follow the primary, wherever it is now.
    let (_, creds) = caller.get("/api/v1/databases/orders/credentials").await;
    let client = connect(creds["uri"].as_str().unwrap()).await;
    let id: i32 = client
        .query_one("SELECT id FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_standby_and_primary_are_seen_within_a_second_and_restarted() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    orders_with_a_row(&app, &editor).await;
    let history = editor.events("orders").await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(
        (history[0]["from"].as_str(), history[0]["to"].as_str()),
        (Some("creating"), Some("healthy"))
    );
    assert_eq!(history[0]["log_type"], "service_event");
    assert_eq!(history[0]["instances"], 2);
    assert_eq!(history[0]["ready_instances"], 2);

    for ordinal in [2, 1] {
        let killed = app.kill_instance("orders", ordinal);
        let degraded = editor
            .wait_event("orders", "degraded", killed, DEADLINE)
            .await;
        let latency = ts(&degraded) - killed;
        assert!(
            latency < chrono::Duration::seconds(1),
            "instance {ordinal}: seen after {latency}"
        );
        let healthy = editor
            .wait_event("orders", "healthy", ts(&degraded), DEADLINE)
            .await;
        assert_eq!(healthy["from"], "degraded");
        app.wait_state(&editor, "orders", "healthy", DEADLINE).await;
        row_is_there(&editor).await;
    }
    let (_, db) = editor.get("/api/v1/databases/orders").await;
    assert_eq!(
        db["primary"], "orders-1",
        "a restartable primary is restarted, not replaced"
    );
    // Exactly one event per transition: creating→healthy, then two rounds of degraded→healthy.
    let pairs: Vec<(String, String)> = editor
        .events("orders")
        .await
        .iter()
        .rev()
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    let p = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        pairs,
        [
            p("creating", "healthy"),
            p("healthy", "degraded"),
            p("degraded", "healthy"),
            p("healthy", "degraded"),
            p("degraded", "healthy"),
        ]
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"pgplane_state_transitions_total{from="healthy",to="degraded"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"pgplane_databases{state="healthy"} 1"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_primary_fails_over_to_the_standby_without_losing_rows() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    let old_uri = orders_with_a_row(&app, &editor).await;
    // Committed on the primary and received by the standby (synchronously
    // checked: the row is visible there) before the primary is lost.
    let (_, db) = editor.get("/api/v1/databases/orders").await;
    let ro = db["endpoints"]["read_only"].as_str().unwrap().to_owned();
    let (_, creds) = editor.get("/api/v1/databases/orders/credentials").await;
    let standby = connect(&format!(
        "postgresql://app:{}@{ro}/app",
        creds["password"].as_str().unwrap()
    ))
    .await;
    let until = Instant::now() + DEADLINE;
    while standby
        .query("SELECT 1 FROM t", &[])
        .await
        .map_or(true, |r| r.is_empty())
    {
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let killed = app.kill_instance("orders", 1);
    std::fs::remove_dir_all(app.pgdata("orders", 1)).unwrap();
    let failing = editor
        .wait_event("orders", "failing_over", killed, DEADLINE)
        .await;
    assert_eq!(failing["phase"], "Failing over");
    let healthy = editor
        .wait_event("orders", "healthy", ts(&failing), DEADLINE)
        .await;
    assert_eq!(
        healthy["ready_instances"], 2,
        "the old primary is back as a standby"
    );
    let db = app.wait_state(&editor, "orders", "healthy", DEADLINE).await;
    assert_eq!(db["primary"], "orders-2");
    assert_eq!(db["ready_instances"], 2);
    let (_, creds) = editor.get("/api/v1/databases/orders/credentials").await;
    assert_ne!(creds["uri"].as_str().unwrap(), old_uri, "rw re-pointed");
    row_is_there(&editor).await;
    // The new primary takes writes, and they reach the rebuilt standby.
    let primary = connect(creds["uri"].as_str().unwrap()).await;
    primary
        .batch_execute("INSERT INTO t VALUES (43)")
        .await
        .unwrap();
    let ro = db["endpoints"]["read_only"].as_str().unwrap();
    let standby = connect(&format!(
        "postgresql://app:{}@{ro}/app",
        creds["password"].as_str().unwrap()
    ))
    .await;
    let until = Instant::now() + DEADLINE;
    loop {
        let n: i64 = standby
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        if n == 2 {
            break;
        }
        assert!(Instant::now() < until, "the rebuilt standby streams");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_with_unusable_data_is_rebuilt() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    orders_with_a_row(&app, &editor).await;
    let killed = app.kill_instance("orders", 2);
    std::fs::remove_file(app.pgdata("orders", 2).join("global/pg_control")).unwrap();
    let degraded = editor
        .wait_event("orders", "degraded", killed, DEADLINE)
        .await;
    editor
        .wait_event("orders", "healthy", ts(&degraded), DEADLINE)
        .await;
    let db = app.wait_state(&editor, "orders", "healthy", DEADLINE).await;
    assert_eq!(db["primary"], "orders-1");
    assert_eq!(db["ready_instances"], 2);
    row_is_there(&editor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_pgplane_neither_repeat_nor_lose_events_and_deleted_databases_keep_theirs() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    let (status, _) = editor
        .post("/api/v1/databases", json!({"name": "kept"}))
        .await;
    assert_eq!(status, 202);
    app.wait_state(&editor, "kept", "healthy", DEADLINE).await;
    let before = editor.events("kept").await;
    assert_eq!(before.len(), 1);

    let again = app.start_over().await;
    let editor2 = again.as_user("editor").await;
    again
        .wait_state(&editor2, "kept", "healthy", DEADLINE)
        .await;
    // Let the new reconciler look a few times.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(editor2.events("kept").await, before, "nothing re-emitted");

    let (status, _) = editor2.delete("/api/v1/databases/kept").await;
    assert_eq!(status, 202);
    again.wait_gone(&editor2, "kept", DEADLINE).await;
    let after = editor2.events("kept").await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0]["to"], "deleting", "newest first");
    // Query rules.
    let (status, _) = editor2.get("/api/v1/databases/never/events").await;
    assert_eq!(status, 404);
    let viewer = again.as_user("viewer").await;
    let (status, body) = viewer
        .get("/api/v1/databases/kept/events?since=2000-01-01T00:00:00Z&limit=1")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let (status, body) = viewer
        .get("/api/v1/databases/kept/events?until=2000-01-01T00:00:00Z")
        .await;
    assert_eq!((status.as_u16(), body["items"].clone()), (200, json!([])));
    for bad in ["since=yesterday", "limit=0", "limit=1001", "colour=red"] {
        let (status, problem) = viewer
            .get(&format!("/api/v1/databases/kept/events?{bad}"))
            .await;
        assert_eq!(status, 422, "{bad}: {problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_died_while_pgplane_was_down_are_started_again() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    orders_with_a_row(&app, &editor).await;
    app.stop_pgplane().await;
    for pid in app.running_servers() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGQUIT,
        )
        .unwrap();
    }
    let until = Instant::now() + DEADLINE;
    while !app.running_servers().is_empty() {
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = app.start_over().await;
    let editor = again.as_user("editor").await;
    let db = again
        .wait_state(&editor, "orders", "healthy", DEADLINE)
        .await;
    assert_eq!(db["ready_instances"], 2);
    row_is_there(&editor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_the_app_cannot_log_in_to_is_not_ready() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    let (status, _) = editor
        .post("/api/v1/databases", json!({"name": "probed"}))
        .await;
    assert_eq!(status, 202);
    app.wait_state(&editor, "probed", "healthy", DEADLINE).await;
    let (_, creds) = editor.get("/api/v1/databases/probed/credentials").await;
    let app_session = connect(creds["uri"].as_str().unwrap()).await;

    // pgplane keeps one probe session, rather than a new one per look.
    let probe_pids = || async {
        let rows = app_session
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgplane-probe'",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()
    };
    let before = probe_pids().await;
    assert_eq!(before.len(), 1, "{before:?}");
    app.wait_passes(3, DEADLINE).await;
    assert_eq!(
        probe_pids().await,
        before,
        "the same session, three looks later"
    );

    // New sessions of app are refused; the kept one is cut, as a restart would.
    let cut = Utc::now();
    app_session
        .batch_execute("ALTER DATABASE app WITH CONNECTION LIMIT 0")
        .await
        .unwrap();
    app_session
        .batch_execute(&format!("SELECT pg_terminate_backend({})", before[0]))
        .await
        .unwrap();
    let degraded = editor.wait_event("probed", "degraded", cut, DEADLINE).await;
    assert_eq!(degraded["ready_instances"], 0, "{degraded}");
    let (_, db) = editor.get("/api/v1/databases/probed").await;
    assert_eq!(
        (db["state"].as_str(), db["ready_instances"].as_u64()),
        (Some("degraded"), Some(0))
    );

    app_session
        .batch_execute("ALTER DATABASE app WITH CONNECTION LIMIT -1")
        .await
        .unwrap();
    let healthy = editor
        .wait_event("probed", "healthy", ts(&degraded), DEADLINE)
        .await;
    assert_eq!(healthy["ready_instances"], 1);
}
