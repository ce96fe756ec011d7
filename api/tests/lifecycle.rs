//! A database's whole life through the HTTP API, on real PostgreSQL:
//! create with a standby, write through the credentials, read on the
//! read-only endpoint, change parameters, scale down, delete.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{connect, TestApp};

const CREATE_DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_write_replicate_scale_delete() {
    let app = TestApp::start().await;
    let alice = app.as_user("editor").await;

    let (status, created) = alice
        .post(
            "/api/v1/databases",
            json!({"name": "orders", "instances": 2, "labels": {"team": "payments"}}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["state"], "creating");
    assert_eq!(created["owner"], "editor");
    assert_eq!(created["revision"], 1);

    let healthy = app
        .wait_state(&alice, "orders", "healthy", CREATE_DEADLINE)
        .await;
    assert_eq!(healthy["ready_instances"], 2);
    assert_eq!(healthy["primary"], "orders-1");
    let rw = healthy["endpoints"]["read_write"]
        .as_str()
        .unwrap()
        .to_owned();
    let ro = healthy["endpoints"]["read_only"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        rw, ro,
        "two instances: the read-only endpoint is the standby"
    );

    let (status, creds) = alice.get("/api/v1/databases/orders/credentials").await;
    assert_eq!(status, 200, "{creds}");
    assert_eq!(creds["username"], "app");
    assert_eq!(creds["dbname"], "app");
    assert_eq!(
        format!("{}:{}", creds["host"].as_str().unwrap(), creds["port"]),
        rw
    );
    let primary = connect(creds["uri"].as_str().unwrap()).await;
    primary
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'tea')")
        .await
        .unwrap();

    // The row reaches the standby by streaming replication.
    let standby_uri = format!(
        "postgresql://app:{}@{ro}/app",
        creds["password"].as_str().unwrap()
    );
    let standby = connect(&standby_uri).await;
    let in_recovery: bool = standby
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery, "the read-only endpoint is a standby");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = standby
            .query("SELECT item FROM orders WHERE id = 1", &[])
            .await;
        if let Ok(rows) = rows {
            if rows.len() == 1 {
                assert_eq!(rows[0].get::<_, String>(0), "tea");
                break;
            }
        }
        assert!(Instant::now() < until, "the row never reached the standby");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A parameter that needs a restart, and one that needs only a reload.
    let (status, updated) = alice
        .patch(
            "/api/v1/databases/orders",
            json!({"parameters": {"max_connections": "60", "work_mem": "8MB"}}),
        )
        .await;
    assert_eq!(status, 202, "{updated}");
    assert_eq!(updated["state"], "updating");
    assert_eq!(updated["revision"], 2);
    app.wait_state(&alice, "orders", "healthy", CREATE_DEADLINE)
        .await;
    let primary = connect(creds["uri"].as_str().unwrap()).await;
    let row = primary
        .query_one(
            "SELECT current_setting('max_connections'), current_setting('work_mem')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0).as_str(),
            row.get::<_, String>(1).as_str()
        ),
        ("60", "8MB")
    );
    let standby = connect(&standby_uri).await;
    let on_standby: String = standby
        .query_one("SELECT current_setting('max_connections')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_standby, "60", "standbys get the parameters too");

    // Scale down to the primary alone; the data stays.
    let (status, scaled) = alice
        .patch("/api/v1/databases/orders", json!({"instances": 1}))
        .await;
    assert_eq!(status, 202, "{scaled}");
    assert_eq!(scaled["state"], "scaling");
    let one = app
        .wait_state(&alice, "orders", "healthy", CREATE_DEADLINE)
        .await;
    assert_eq!(one["ready_instances"], 1);
    assert_eq!(
        one["endpoints"]["read_only"],
        one["endpoints"]["read_write"]
    );
    assert_eq!(app.running_servers().len(), 1);
    let primary = connect(creds["uri"].as_str().unwrap()).await;
    let item: String = primary
        .query_one("SELECT item FROM orders WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(item, "tea");
    drop(primary);

    // Delete: 202 while it goes, then 404 and 204, nothing left behind.
    let (status, deleting) = alice.delete("/api/v1/databases/orders").await;
    assert_eq!(status, 202, "{deleting}");
    assert_eq!(deleting["state"], "deleting");
    app.wait_gone(&alice, "orders", Duration::from_secs(60))
        .await;
    let (status, _) = alice.delete("/api/v1/databases/orders").await;
    assert_eq!(status, 204);
    assert!(app.running_servers().is_empty(), "no server process left");
    let left: Vec<_> = std::fs::read_dir(app.data_dir.join("databases"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "no file left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_different_names() {
    let app = TestApp::start().await;
    let alice = app.as_user("editor").await;
    let names = ["alpha", "beta", "gamma"];
    let answers = futures::future::join_all(
        names
            .iter()
            .map(|n| alice.post("/api/v1/databases", json!({"name": n}))),
    )
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, 202, "{body}");
    }
    for name in names {
        app.wait_state(&alice, name, "healthy", CREATE_DEADLINE)
            .await;
    }
    let (_, list) = alice.get("/api/v1/databases").await;
    let listed: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, names);
    let ports: std::collections::HashSet<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["endpoints"]["read_write"].clone())
        .collect();
    assert_eq!(ports.len(), 3, "each database has its own port");
    for name in names {
        assert_eq!(
            alice.delete(&format!("/api/v1/databases/{name}")).await.0,
            202
        );
    }
    for name in names {
        app.wait_gone(&alice, name, Duration::from_secs(60)).await;
    }
    assert!(app.running_servers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_survive_a_restart_of_pgplane() {
    let app = TestApp::start().await;
    let alice = app.as_user("editor").await;
    assert_eq!(
        alice
            .post("/api/v1/databases", json!({"name": "kept"}))
            .await
            .0,
        202
    );
    let before = app
        .wait_state(&alice, "kept", "healthy", CREATE_DEADLINE)
        .await;
    let servers = app.running_servers();

    // A second pgplane over the same data directory finds and adopts it.
    let again = app.start_over().await;
    let bob = again.as_user("editor").await;
    let after = again
        .wait_state(&bob, "kept", "healthy", CREATE_DEADLINE)
        .await;
    assert_eq!(after["endpoints"], before["endpoints"]);
    assert_eq!(after["created_at"], before["created_at"]);
    assert_eq!(
        again.running_servers(),
        servers,
        "the running server was adopted, not restarted"
    );
}
