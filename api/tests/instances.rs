//! Every instance's status on the local backend, through the HTTP API and
//! on real PostgreSQL: role, state, readiness, timeline, start time and
//! restarts from the servers themselves; a killed standby is not ready
//! within a second and ready again once healed; a standby's lag grows
//! while its replay is paused under writes on the primary, and returns to
//! 0 once it replays again.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{connect, Caller, TestApp};

const DEADLINE: Duration = Duration::from_secs(120);

async fn instances(caller: &Caller<'_>, db: &str) -> Vec<Value> {
    let (status, body) = caller
        .get(&format!("/api/v1/databases/{db}/instances"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn named<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no instance {name} in {items:?}"))
}

/// Polls the instances until `instance` satisfies `done`; returns it and
/// how long it took.
async fn wait_instance(
    caller: &Caller<'_>,
    db: &str,
    instance: &str,
    deadline: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let items = instances(caller, db).await;
        let i = named(&items, instance);
        if done(i) {
            return (i.clone(), started.elapsed());
        }
        assert!(
            started.elapsed() < deadline,
            "{instance} not {what} after {deadline:?}: {i}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A superuser session to one instance, with the password pgplane keeps.
async fn superuser(app: &TestApp, db: &str, port: u16) -> tokio_postgres::Client {
    let secrets: Value = serde_json::from_slice(
        &std::fs::read(app.data_dir.join("databases").join(db).join("secrets.json")).unwrap(),
    )
    .unwrap();
    let password = secrets["superuser"].as_str().unwrap();
    connect(&format!(
        "postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_show_roles_readiness_timeline_lag_and_restarts() {
    let app = TestApp::start().await;
    let viewer = app.as_user("viewer").await;
    let editor = app.as_user("editor").await;
    let (status, body) = editor
        .post(
            "/api/v1/databases",
            json!({"name": "orders", "instances": 2}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    app.wait_state(&editor, "orders", "healthy", DEADLINE).await;

    // Both ready, the standby caught up.
    let (standby, _) = wait_instance(&viewer, "orders", "orders-2", DEADLINE, "caught up", |i| {
        i["ready"] == true && i["lag_bytes"] == 0
    })
    .await;
    let items = instances(&viewer, "orders").await;
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["orders-1", "orders-2"]);
    let primary = named(&items, "orders-1");
    assert_eq!(primary["role"], "primary");
    assert_eq!(primary["state"], "running");
    assert_eq!(primary["ready"], true);
    assert_eq!(primary["timeline"], 1);
    assert_eq!(primary["restarts"], 0);
    assert!(primary["started_at"].is_string(), "{primary}");
    assert!(
        primary.get("lag_bytes").is_none(),
        "a primary has no lag: {primary}"
    );
    assert_eq!(standby["role"], "standby");
    assert_eq!(standby["state"], "running");
    assert_eq!(standby["timeline"], 1);
    assert_eq!(standby["restarts"], 0);
    assert!(standby["lag_seconds"].is_number(), "{standby}");
    // The same in the database itself.
    let (_, db) = viewer.get("/api/v1/databases/orders").await;
    let in_db: Vec<&str> = db["instances_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(in_db, names);
    let (status, _) = viewer.get("/api/v1/databases/nothing/instances").await;
    assert_eq!(status, 404);

    // A killed standby is not ready within a second, then ready again.
    let started_before = standby["started_at"].clone();
    app.kill_instance("orders", 2);
    let (dead, took) = wait_instance(&viewer, "orders", "orders-2", DEADLINE, "not ready", |i| {
        i["ready"] == false
    })
    .await;
    assert!(took < Duration::from_secs(1), "seen after {took:?}: {dead}");
    eprintln!("the killed standby was not ready in the list after {took:?}");
    let (healed, _) = wait_instance(
        &viewer,
        "orders",
        "orders-2",
        DEADLINE,
        "ready again",
        |i| i["ready"] == true,
    )
    .await;
    assert_eq!(healed["state"], "running");
    assert_eq!(healed["restarts"], 1, "{healed}");
    assert!(
        healed["started_at"].as_str() >= started_before.as_str(),
        "{healed}"
    );

    // Lag: the standby's replay paused under writes on the primary.
    let (_, db) = viewer.get("/api/v1/databases/orders").await;
    let standby_port: u16 = db["endpoints"]["read_only"]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let replica = superuser(&app, "orders", standby_port).await;
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let (_, creds) = editor.get("/api/v1/databases/orders/credentials").await;
    let writer = connect(creds["uri"].as_str().unwrap()).await;
    writer
        .batch_execute("CREATE TABLE load (id int, pad text)")
        .await
        .unwrap();
    let mut last = 0u64;
    let mut grew = 0;
    let started = Instant::now();
    while grew < 3 {
        writer
            .batch_execute(
                "INSERT INTO load SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g",
            )
            .await
            .unwrap();
        let items = instances(&viewer, "orders").await;
        let lag = named(&items, "orders-2")["lag_bytes"].as_u64().unwrap_or(0);
        if lag > last {
            grew += 1;
            last = lag;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the lag did not grow: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(last > 100_000, "{last} bytes behind after the writes");
    eprintln!("paused, the standby's lag grew to {last} bytes");
    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    let (caught_up, _) = wait_instance(&viewer, "orders", "orders-2", DEADLINE, "caught up", |i| {
        i["lag_bytes"] == 0
    })
    .await;
    assert_eq!(caught_up["ready"], true, "{caught_up}");
}
