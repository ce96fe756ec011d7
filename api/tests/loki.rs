//! The Loki store against a real Loki: records pushed by pgplane
//! (`PGPLANE_LOKI_PUSH`) and by the test playing a log shipper come back
//! through pgplane's API with every filter; filter values that try to inject
//! LogQL match literally; a page larger than Loki's per-query batch is
//! gathered across queries; Loki stopped mid-run gives a 503 problem and a
//! `/readyz` that names Loki, and everything recovers when it is back.
//! Lines a shipper sends in the contract's shape (DESIGN.md "Records", with
//! no `id`) are read; lines that are not records are counted and skipped,
//! and pages stay full.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::loki::Loki;
use support::{Caller, TestApp};

const DEADLINE: Duration = Duration::from_secs(60);

/// A selector of this run only, so runs sharing a Loki never see each other.
fn selector() -> (String, Value) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    (
        format!(r#"{{app="pgplane", run="{run}"}}"#),
        json!({"app": "pgplane", "run": run}),
    )
}

async fn start(loki: &Loki, selector: &str) -> TestApp {
    TestApp::start_with(&[
        "--audit-store",
        "loki",
        "--event-store",
        "loki",
        "--loki-url",
        &loki.url,
        "--loki-selector",
        selector,
        "--loki-push",
        "true",
        "--loki-timeout",
        "3s",
    ])
    .await
}

/// Every record a query pages through, newest first.
async fn all(caller: &Caller<'_>, path: &str, page: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}limit={page}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = caller.get(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        out.extend(body["items"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Waits until a query answers `n` records (pushing and ingesting take a moment).
async fn until_count(caller: &Caller<'_>, path: &str, n: usize) -> Vec<Value> {
    let until = Instant::now() + DEADLINE;
    loop {
        let got = all(caller, path, 1000).await;
        if got.len() == n {
            return got;
        }
        assert!(
            Instant::now() < until,
            "{path}: {} records, not {n}: {got:#?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn enc(v: &str) -> String {
    serde_urlencoded::to_string([("v", v)]).unwrap()[2..].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_pushed_to_loki_come_back_with_every_filter_and_no_injection() {
    let loki = Loki::start();
    let (sel, labels) = selector();
    let app = start(&loki, &sel).await;
    let admin = app.as_user("admin").await;
    let editor = app.as_user("editor").await;
    let viewer = app.as_user("viewer").await;
    let (status, _) = editor
        .post("/api/v1/databases", json!({"name": "lk"}))
        .await;
    assert_eq!(status, 202);
    let (status, _) = editor
        .post("/api/v1/databases", json!({"name": "lk"}))
        .await;
    assert_eq!(status, 409);
    app.wait_state(&editor, "lk", "healthy", DEADLINE).await;
    let (status, _) = editor
        .patch("/api/v1/databases/lk", json!({"labels": {"t": "1"}}))
        .await;
    assert_eq!(status, 202);
    let (status, _) = editor.get("/api/v1/databases/lk/credentials").await;
    assert_eq!(status, 200);
    let (status, _) = viewer.get("/api/v1/audit").await;
    assert_eq!(status, 403);

    // Three logins, create, refused create, update, credentials, refused read.
    let records = until_count(&admin, "/api/v1/audit", 8).await;
    let actions: Vec<&str> = records
        .iter()
        .rev()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "auth.login",
            "auth.login",
            "auth.login",
            "database.create",
            "database.create",
            "database.update",
            "database.credentials_read",
            "audit.read"
        ]
    );
    assert_eq!(records[2]["changes"], json!({"labels": [{}, {"t": "1"}]}));
    let count = |q: &str| {
        let q = q.to_owned();
        let admin = &admin;
        async move { all(admin, &format!("/api/v1/audit?{q}"), 1000).await.len() }
    };
    assert_eq!(count("action=database.create").await, 2);
    assert_eq!(count("actor=viewer").await, 2);
    assert_eq!(count("database=lk").await, 4);
    assert_eq!(
        count("database=lk&action=database.create&actor=editor").await,
        2
    );
    assert_eq!(count("database=other").await, 0);
    let ts = |i: usize| enc(records[i]["ts"].as_str().unwrap());
    // since is inclusive, until exclusive: records 6, 5, 4 (newest first).
    assert_eq!(count(&format!("since={}&until={}", ts(6), ts(3))).await, 3);
    let paged = all(&admin, "/api/v1/audit", 3).await;
    assert_eq!(paged, records, "pages of 3 give the same records");
    let per_db = all(&editor, "/api/v1/databases/lk/audit", 1000).await;
    assert_eq!(per_db.len(), 4);

    // Service events come from Loki too, also after the database is gone.
    let (status, _) = editor.delete("/api/v1/databases/lk").await;
    assert_eq!(status, 202);
    app.wait_gone(&editor, "lk", DEADLINE).await;
    let until = Instant::now() + DEADLINE;
    let events = loop {
        let events = all(&viewer, "/api/v1/databases/lk/events", 1000).await;
        if events.first().is_some_and(|e| e["to"] == "deleting") {
            break events;
        }
        assert!(
            Instant::now() < until,
            "the deleting event in Loki: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(events
        .iter()
        .any(|e| e["from"] == "creating" && e["to"] == "healthy"));

    // Lines shipped by "a log shipper" with actors that try to break out
    // of the query: each matches exactly its own record.
    let evil = [
        r#"x" | actor!="nobody"#,
        r#"back\slash"#,
        r#"a\"b"#,
        "pipe|line",
        "brace}{",
        r#"q"} or {app=~".+"#,
        "new\nline",
    ];
    let now = chrono::Utc::now();
    let lines: Vec<(i64, String)> = evil
        .iter()
        .enumerate()
        .map(|(i, actor)| {
            let ts = now + chrono::Duration::milliseconds(i as i64);
            let record = json!({
                "ts": ts, "log_type": "audit", "id": format!("evil-{i}"), "request_id": "r",
                "actor": actor, "action": "database.delete", "database": "lk",
                "outcome": "denied", "status": 403, "source_ip": "10.0.0.9",
            });
            (ts.timestamp_nanos_opt().unwrap(), record.to_string())
        })
        .collect();
    loki.push(&labels, &lines);
    // The eight records above, the delete, and the shipped lines.
    until_count(&admin, "/api/v1/audit", 9 + evil.len()).await;
    for (i, actor) in evil.iter().enumerate() {
        let got = all(&admin, &format!("/api/v1/audit?actor={}", enc(actor)), 1000).await;
        assert_eq!(got.len(), 1, "{actor:?}: {got:#?}");
        assert_eq!(got[0]["id"], format!("evil-{i}"));
    }
    for near_miss in [r#"x""#, "pipe", r#"back\\slash"#, ".*"] {
        let got = all(
            &admin,
            &format!("/api/v1/audit?actor={}", enc(near_miss)),
            1000,
        )
        .await;
        assert!(got.is_empty(), "{near_miss:?} matched {got:#?}");
    }

    // More records than one Loki query returns (pgplane asks 500 at a time),
    // many sharing an instant: pages of 1000 still give each exactly once.
    let base = now - chrono::Duration::minutes(5);
    let bulk: Vec<(i64, String)> = (0..1234)
        .map(|i| {
            let ts = base + chrono::Duration::milliseconds(i / 3);
            let record = json!({
                "ts": ts, "log_type": "audit", "id": format!("bulk-{i}"), "request_id": "r",
                "actor": "bulk", "action": "auth.login", "outcome": "success",
                "status": 200, "source_ip": "10.0.0.9",
            });
            (ts.timestamp_nanos_opt().unwrap(), record.to_string())
        })
        .collect();
    loki.push(&labels, &bulk);
    let got = until_count(&admin, "/api/v1/audit?actor=bulk", 1234).await;
    let mut ids: Vec<&str> = got.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let times: Vec<&str> = got.iter().map(|r| r["ts"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1234, "no record twice, none lost");
    let (status, first) = admin.get("/api/v1/audit?actor=bulk&limit=1000").await;
    assert_eq!(status, 200);
    assert_eq!(first["items"].as_array().unwrap().len(), 1000);
    assert!(first["next_cursor"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_lines_are_read_tolerantly_and_pages_stay_full() {
    let loki = Loki::start();
    let (selector, labels) = selector();
    let app = start(&loki, &selector).await;
    let admin = app.as_user("admin").await;
    let now = chrono::Utc::now() - chrono::Duration::seconds(10);
    let at = |ms: i64| now + chrono::Duration::milliseconds(ms);
    let ns = |t: chrono::DateTime<chrono::Utc>| t.timestamp_nanos_opt().unwrap();
    // Four audit records exactly as DESIGN.md shows one (no `id`), three
    // lines that say they are audit records but are not, interleaved.
    let mut lines = Vec::new();
    for i in 0..4 {
        let record = json!({
            "ts": at(i * 10), "log_type": "audit", "request_id": format!("shipped-{i}"),
            "actor": "shipper", "role": "editor", "action": "database.update",
            "database": "orders", "outcome": "success", "status": 202,
            "source_ip": "10.0.0.7", "changes": {"instances": [3, 5]},
        });
        lines.push((ns(at(i * 10)), record.to_string()));
        if i < 3 {
            let junk = json!({"ts": at(i * 10 + 5), "log_type": "audit", "actor": "shipper", "note": "not a record"});
            lines.push((ns(at(i * 10 + 5)), junk.to_string()));
        }
    }
    // A service event as DESIGN.md shows one.
    let event = json!({
        "ts": at(50), "log_type": "service_event", "database": "shipped",
        "from": "creating", "to": "healthy", "phase": "Cluster in healthy state",
        "ready_instances": 3, "instances": 3,
    });
    lines.push((ns(at(50)), event.to_string()));
    loki.push(&labels, &lines);

    let unreadable_before = app
        .metric(r#"pgplane_records_unreadable_total{store="loki"}"#)
        .await;
    let got = until_count(&admin, "/api/v1/audit?actor=shipper", 4).await;
    let ids: Vec<&str> = got.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| id.starts_with("loki-")), "{ids:?}");
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 4, "each line has an id of its own");
    assert_eq!(got[0]["request_id"], "shipped-3", "newest first");
    assert_eq!(got[3]["changes"]["instances"], json!([3, 5]));
    // Ids are stable: asked again, the same lines have the same ids.
    let again = all(&admin, "/api/v1/audit?actor=shipper", 1000).await;
    assert_eq!(again, got);
    // Pages of two are full while more exist, and the junk costs no record.
    let (status, first) = admin.get("/api/v1/audit?actor=shipper&limit=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let (_, second) = admin
        .get(&format!(
            "/api/v1/audit?actor=shipper&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 2);
    let paged: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .collect();
    assert_eq!(paged, got.iter().collect::<Vec<_>>());
    assert!(
        app.metric(r#"pgplane_records_unreadable_total{store="loki"}"#)
            .await
            >= unreadable_before + 3.0,
        "the lines that are not records are counted"
    );
    // The shipped event is read through the event store in Loki.
    let events = until_count(&admin, "/api/v1/databases/shipped/events", 1).await;
    assert_eq!(events[0]["to"], "healthy");
    assert_eq!(events[0]["ready_instances"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_down_gives_503_and_readyz_names_it_then_everything_recovers() {
    let mut loki = Loki::start();
    if loki.is_live() {
        eprintln!("skipping the stop/start of Loki: a live Loki is not ours to stop");
        return;
    }
    let (sel, _) = selector();
    let app = start(&loki, &sel).await;
    let admin = app.as_user("admin").await;
    until_count(&admin, "/api/v1/audit", 1).await;
    assert_eq!(app.readyz().await.0, 200);

    loki.stop();
    let (status, problem) = admin.get("/api/v1/audit").await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "urn:pgplane:problem:unavailable");
    // It names the store; its cause (Loki's address, the connection error)
    // goes to the log only.
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("Loki"), "{problem}");
    assert!(!detail.contains(&loki.url), "{problem}");
    let (status, _) = admin.get("/api/v1/databases/none/events").await;
    assert_eq!(status, 503);
    let (status, body) = app.readyz().await;
    assert_eq!(status, 503);
    assert!(body["failing"].to_string().contains("Loki"), "{body}");
    // Changes do not need Loki: the record is printed, and pushed later.
    let (status, _) = admin
        .post("/api/v1/databases", json!({"name": "x", "instances": 0}))
        .await;
    assert_eq!(status, 422);

    loki.resume();
    assert_eq!(app.readyz().await.0, 200);
    let records = until_count(&admin, "/api/v1/audit", 2).await;
    assert_eq!(
        records[0]["status"], 422,
        "the record made while Loki was away"
    );
}
