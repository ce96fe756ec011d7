//! The kubernetes backend through the HTTP API, against a real
//! kube-apiserver and etcd started per test (see `support/kube.rs`). No
//! operator runs, so the tests play CloudNativePG: they write `status`
//! through the status subresource, in the order CNPG goes through its
//! phases, and create the `<name>-app` Secret and the Services.
//!
//! `live_lifecycle` runs the same life against a real cluster with CNPG
//! when `PGPLANE_E2E_KUBECONFIG` is set (the operator drives status then).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{ResourceQuota, Secret};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use pgplane::backend::kubernetes::cluster::{self, Cluster};
use pgplane::backend::kubernetes::rbac;
use support::kube::{
    raw_cluster, serve, serve_args, serve_ready, Cuttable, KubeServer, NAMESPACE, SA_USER,
};
use support::{Caller, TestApp};

const STATE_DEADLINE: Duration = Duration::from_secs(10);
const HEALTHY: &str = "Cluster in healthy state";

/// Waits until `/readyz` answers 503 naming `needle`; returns its body.
async fn wait_failing(app: &TestApp, needle: &str) -> Value {
    let until = Instant::now() + STATE_DEADLINE;
    loop {
        let health = app.wait_ready(503, STATE_DEADLINE).await;
        if health["failing"].to_string().contains(needle) {
            return health;
        }
        assert!(
            Instant::now() < until,
            "/readyz never named {needle:?}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events of a database once there are `n`, newest first; fails if
/// more arrive within a short look after.
async fn events_exactly(caller: &Caller<'_>, name: &str, n: usize) -> Vec<Value> {
    let until = Instant::now() + STATE_DEADLINE;
    loop {
        let (status, body) = caller
            .get(&format!("/api/v1/databases/{name}/events"))
            .await;
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array().unwrap().clone();
        assert!(items.len() <= n, "more than {n} events: {items:#?}");
        if items.len() == n {
            return items;
        }
        assert!(
            Instant::now() < until,
            "{name}: {} of {n} events: {items:#?}",
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn transitions(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_owned(),
                e["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Waits until the API server holds a Kubernetes Event from pgplane on
/// the Cluster `name` with `reason`.
async fn wait_kube_event(kube: &KubeServer, name: &str, reason: &str) -> KubeEvent {
    let api: Api<KubeEvent> = Api::namespaced(kube.admin.clone(), NAMESPACE);
    let until = Instant::now() + STATE_DEADLINE;
    loop {
        let found = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.reason.as_deref() == Some(reason)
            });
        if let Some(e) = found {
            return e;
        }
        assert!(
            Instant::now() < until,
            "no Event {reason} on Cluster {name}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_lives_as_a_cnpg_cluster() {
    let kube = KubeServer::start().await;
    let app = serve_ready(&kube, "admin").await;
    let alice = app.as_user("editor").await;

    // Create: 202, state creating, readable at once (read your write).
    let (status, created) = alice
        .post(
            "/api/v1/databases",
            json!({"name": "orders", "postgres_version": 16, "instances": 2, "storage": "10Gi",
                   "parameters": {"max_connections": 200}, "labels": {"team": "payments"}}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["state"], "creating");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["owner"], "editor");
    assert_eq!(created["endpoints"], Value::Null);
    let (status, got) = alice.get("/api/v1/databases/orders").await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["state"], "creating");

    // The Cluster, as rendered and applied by field manager pgplane.
    let raw = raw_cluster(&kube, "orders")
        .await
        .expect("the Cluster exists");
    assert_eq!(
        raw["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "pgplane"
    );
    assert_eq!(raw["metadata"]["labels"]["team"], "payments");
    assert_eq!(raw["metadata"]["annotations"]["pgplane.io/owner"], "editor");
    assert_eq!(raw["metadata"]["annotations"]["pgplane.io/revision"], "1");
    assert_eq!(raw["spec"]["instances"], 2);
    assert_eq!(
        raw["spec"]["imageName"],
        "ghcr.io/cloudnative-pg/postgresql:16"
    );
    assert_eq!(raw["spec"]["storage"]["size"], "10Gi");
    assert_eq!(
        raw["spec"]["postgresql"]["parameters"],
        json!({"max_connections": "200"})
    );
    assert_eq!(
        raw["spec"]["bootstrap"]["initdb"],
        json!({"database": "app", "owner": "app"})
    );
    let managers: Vec<(String, String)> = raw["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap().to_owned(),
                m["operation"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(managers, pairs(&[("pgplane", "Apply")]));

    // Another tool owns fields of its own on the same Cluster.
    kube.clusters()
        .patch(
            "orders",
            &PatchParams::apply("platform-team"),
            &Patch::Apply(json!({
                "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                "metadata": {"name": "orders", "labels": {"example.com/cost-center": "42"}},
                "spec": {"instances": 2, "description": "orders of the shop"},
            })),
        )
        .await
        .unwrap();

    // CNPG brings it up: primary, then the replica, then healthy.
    kube.play_status("orders", "Setting up primary", 0, 2).await;
    let db = app
        .wait_state(&alice, "orders", "creating", STATE_DEADLINE)
        .await;
    assert!(
        db["phase"] == "Setting up primary" || db["phase"] == "",
        "{db}"
    );
    kube.play_status("orders", "Creating a new replica", 1, 2)
        .await;
    kube.play_status("orders", HEALTHY, 2, 2).await;
    let db = app
        .wait_state(&alice, "orders", "healthy", STATE_DEADLINE)
        .await;
    assert_eq!(db["phase"], HEALTHY);
    assert_eq!(db["ready_instances"], 2);
    assert_eq!(db["primary"], "orders-1");
    let events = events_exactly(&alice, "orders", 1).await;
    assert_eq!(transitions(&events), pairs(&[("creating", "healthy")]));
    assert_eq!(events[0]["phase"], HEALTHY);
    assert_eq!(events[0]["ready_instances"], 2);
    assert_eq!(events[0]["instances"], 2);
    let event = wait_kube_event(&kube, "orders", "Healthy").await;
    assert_eq!(event.reporting_controller.as_deref(), Some("pgplane"));
    assert_eq!(event.type_.as_deref(), Some("Normal"));

    // Credentials: none until CNPG made the Secret; then read from it.
    let (status, problem) = alice.get("/api/v1/databases/orders/credentials").await;
    assert_eq!(status, 409, "{problem}");
    kube.play_secret_and_services("orders", "s3cret:p@ss").await;
    let (status, creds) = alice.get("/api/v1/databases/orders/credentials").await;
    assert_eq!(status, 200, "{creds}");
    assert_eq!(creds["username"], "app");
    assert_eq!(creds["password"], "s3cret:p@ss");
    assert_eq!(creds["host"], "orders-rw.databases.svc");
    assert_eq!(creds["port"], 5432);
    assert_eq!(creds["dbname"], "app");
    assert_eq!(
        creds["uri"],
        "postgresql://app:s3cret%3Ap%40ss@orders-rw.databases.svc:5432/app"
    );
    // Not kept: a changed Secret is what the next read returns.
    let secrets: Api<Secret> = Api::namespaced(kube.admin.clone(), NAMESPACE);
    secrets
        .patch(
            "orders-app",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "rotated"}})),
        )
        .await
        .unwrap();
    let (_, creds) = alice.get("/api/v1/databases/orders/credentials").await;
    assert_eq!(creds["password"], "rotated");
    let until = Instant::now() + STATE_DEADLINE;
    let db = loop {
        let (_, db) = alice.get("/api/v1/databases/orders").await;
        if db["endpoints"] != Value::Null || Instant::now() > until {
            break db;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        db["endpoints"],
        json!({"read_write": "orders-rw.databases.svc:5432", "read_only": "orders-ro.databases.svc:5432"})
    );

    // Patch: scale to 3 under If-Match; the other tool's fields stay.
    let r = alice
        .request(Method::PATCH, "/api/v1/databases/orders")
        .header("content-type", "application/merge-patch+json")
        .header("if-match", "\"1\"")
        .body(json!({"instances": 3, "labels": {"team": null, "tier": "gold"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "\"2\"");
    let (status, patched) = support::body_of(r).await;
    assert_eq!(status, 202, "{patched}");
    assert_eq!(patched["revision"], 2);
    assert_eq!(patched["instances"], 3);
    assert_eq!(patched["labels"], json!({"tier": "gold"}));
    let raw = raw_cluster(&kube, "orders").await.unwrap();
    assert_eq!(raw["spec"]["instances"], 3);
    assert_eq!(raw["spec"]["description"], "orders of the shop");
    let labels = &raw["metadata"]["labels"];
    assert_eq!(labels["example.com/cost-center"], "42");
    assert_eq!(labels["tier"], "gold");
    assert_eq!(labels.get("team"), None, "pgplane removed its own label");
    assert_eq!(raw["metadata"]["annotations"]["pgplane.io/revision"], "2");
    let (_, db) = alice.get("/api/v1/databases/orders").await;
    assert_eq!(
        db["labels"],
        json!({"tier": "gold"}),
        "the other tool's label is its own"
    );

    // A stale If-Match: 412; a storage shrink: 422, before the Cluster.
    let version_before = raw["metadata"]["resourceVersion"].clone();
    let r = alice
        .request(Method::PATCH, "/api/v1/databases/orders")
        .header("content-type", "application/merge-patch+json")
        .header("if-match", "\"1\"")
        .body(json!({"instances": 1}).to_string())
        .send()
        .await
        .unwrap();
    let (status, problem) = support::body_of(r).await;
    assert_eq!(status, 412, "{problem}");
    let (status, problem) = alice
        .patch("/api/v1/databases/orders", json!({"storage": "5Gi"}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(support::error_fields(&problem), ["storage"]);
    let raw = raw_cluster(&kube, "orders").await.unwrap();
    assert_eq!(raw["metadata"]["resourceVersion"], version_before);

    // CNPG scales: the replica, then healthy again.
    kube.play_status("orders", "Creating a new replica", 2, 3)
        .await;
    app.wait_state(&alice, "orders", "scaling", STATE_DEADLINE)
        .await;
    kube.play_status("orders", HEALTHY, 3, 3).await;
    app.wait_state(&alice, "orders", "healthy", STATE_DEADLINE)
        .await;
    let events = events_exactly(&alice, "orders", 3).await;
    assert_eq!(
        transitions(&events),
        pairs(&[
            ("scaling", "healthy"),
            ("healthy", "scaling"),
            ("creating", "healthy")
        ])
    );

    // Delete: gone at once on this API server (no finalizers); idempotent.
    let (status, body) = alice.delete("/api/v1/databases/orders").await;
    assert!(status == 202 || status == 204, "{status} {body}");
    app.wait_gone(&alice, "orders", STATE_DEADLINE).await;
    assert!(raw_cluster(&kube, "orders").await.is_none());
    let (status, _) = alice.delete("/api/v1/databases/orders").await;
    assert_eq!(status, 204);
    let events = events_exactly(&alice, "orders", 4).await;
    assert_eq!(
        transitions(&events)[0],
        ("healthy".into(), "deleting".into())
    );
    let (status, _) = alice.get("/api/v1/databases/orders/credentials").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_not_managed_by_pgplane_stays_invisible_and_untouched() {
    let kube = KubeServer::start().await;
    let foreign: Cluster = serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "legacy", "labels": {"team": "other"}},
        "spec": {"instances": 1, "storage": {"size": "1Gi"}},
    }))
    .unwrap();
    kube.clusters()
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    kube.play_secret_and_services("legacy", "theirs").await;
    let before = raw_cluster(&kube, "legacy").await.unwrap();

    let app = serve_ready(&kube, "admin").await;
    let admin = app.as_user("admin").await;
    let (status, list) = admin.get("/api/v1/databases").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]));
    for path in [
        "/api/v1/databases/legacy",
        "/api/v1/databases/legacy/credentials",
        "/api/v1/databases/legacy/events",
    ] {
        let (status, body) = admin.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _) = admin
        .patch("/api/v1/databases/legacy", json!({"instances": 3}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = admin.delete("/api/v1/databases/legacy").await;
    assert_eq!(
        status, 204,
        "not pgplane's: already gone as far as pgplane goes"
    );
    let (status, problem) = admin
        .post(
            "/api/v1/databases",
            json!({"name": "legacy", "instances": 3}),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    let after = raw_cluster(&kube, "legacy").await.expect("still there");
    assert_eq!(after["metadata"], before["metadata"], "untouched");
    assert_eq!(after["spec"], before["spec"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_page_and_filter_from_the_cache_without_asking_the_api_server() {
    let kube = KubeServer::start().await;
    let app = serve_ready(&kube, "admin").await;
    let alice = app.as_user("editor").await;
    for i in 0..7 {
        let team = if i % 2 == 0 { "a" } else { "b" };
        let (status, body) = alice
            .post(
                "/api/v1/databases",
                json!({"name": format!("db{i}"), "labels": {"team": team}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let (gets, lists) = (
        kube.requests("clusters", "GET").await,
        kube.requests("clusters", "LIST").await,
    );
    let mut seen = Vec::new();
    let mut path = "/api/v1/databases?limit=3".to_owned();
    loop {
        let (status, page) = alice.get(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/databases?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("db{i}")).collect::<Vec<_>>());
    let (_, page) = alice.get("/api/v1/databases?label=team%3Db").await;
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db1", "db3", "db5"]);
    for _ in 0..50 {
        let (status, _) = alice.get("/api/v1/databases/db3").await;
        assert_eq!(status, 200);
        let (status, _) = alice.get("/api/v1/databases?limit=2").await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        (
            kube.requests("clusters", "GET").await,
            kube.requests("clusters", "LIST").await
        ),
        (gets, lists),
        "reads reached the API server"
    );
}

/// The restart drops the watch connection (connect errors while the server
/// is down) and then, on this server, the resumed watch is refused with 410
/// "too old resource version" and lists again: both restart paths of the
/// watch are taken (seen with a debug print in the watch loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_mid_watch_loses_and_repeats_no_transition() {
    let mut kube = KubeServer::start().await;
    let app = serve_ready(&kube, "admin").await;
    let alice = app.as_user("editor").await;
    let (status, _) = alice
        .post(
            "/api/v1/databases",
            json!({"name": "orders", "instances": 2}),
        )
        .await;
    assert_eq!(status, 202);
    kube.play_status("orders", HEALTHY, 2, 2).await;
    app.wait_state(&alice, "orders", "healthy", STATE_DEADLINE)
        .await;
    events_exactly(&alice, "orders", 1).await;

    kube.stop_apiserver();
    // Reads keep serving the cache, marked stale; writes answer 503.
    let (headers, db) = wait_stale(&alice, "orders").await;
    assert!(headers["warning"].to_str().unwrap().starts_with("110 "));
    assert_eq!(db["state"], "healthy");
    let (status, problem) = alice
        .post("/api/v1/databases", json!({"name": "other"}))
        .await;
    assert_eq!(status, 503, "{problem}");
    let (status, problem) = alice
        .patch("/api/v1/databases/orders", json!({"instances": 3}))
        .await;
    assert_eq!(status, 503, "{problem}");
    let health = app.wait_ready(503, STATE_DEADLINE).await;
    assert!(
        health["failing"][0]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{health}"
    );

    kube.start_apiserver().await;
    app.wait_ready(200, Duration::from_secs(30)).await;
    kube.play_status("orders", "Waiting for the instances to become active", 1, 2)
        .await;
    app.wait_state(&alice, "orders", "degraded", STATE_DEADLINE)
        .await;
    kube.play_status("orders", HEALTHY, 2, 2).await;
    app.wait_state(&alice, "orders", "healthy", STATE_DEADLINE)
        .await;
    let events = events_exactly(&alice, "orders", 3).await;
    assert_eq!(
        transitions(&events),
        pairs(&[
            ("degraded", "healthy"),
            ("healthy", "degraded"),
            ("creating", "healthy")
        ])
    );
    let r = alice
        .request(Method::GET, "/api/v1/databases/orders")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-pgplane-cache").is_none());
}

/// Waits until pgplane answers reads from its cache marked stale (it has
/// noticed that it lost the API server); returns that answer.
async fn wait_stale(caller: &Caller<'_>, name: &str) -> (reqwest::header::HeaderMap, Value) {
    let until = Instant::now() + STATE_DEADLINE;
    loop {
        let r = caller
            .request(Method::GET, &format!("/api/v1/databases/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        if r.headers().get("x-pgplane-cache").is_some() {
            return (r.headers().clone(), r.json().await.unwrap());
        }
        assert!(Instant::now() < until, "reads never marked stale");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_watch_resumes_a_watch_that_cannot_lists_again_and_none_loses_or_repeats() {
    let mut kube = KubeServer::start().await;
    kube.restart_apiserver_without_watch_cache().await;
    let proxy = Cuttable::start(kube.api_port).await;
    let args = serve_args(&kube.kubeconfig_through("admin", &proxy));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = TestApp::start_with(&args).await;
    app.wait_ready(200, Duration::from_secs(30)).await;
    let alice = app.as_user("editor").await;
    let (status, _) = alice
        .post(
            "/api/v1/databases",
            json!({"name": "orders", "instances": 2}),
        )
        .await;
    assert_eq!(status, 202);
    kube.play_status("orders", HEALTHY, 2, 2).await;
    app.wait_state(&alice, "orders", "healthy", STATE_DEADLINE)
        .await;
    events_exactly(&alice, "orders", 1).await;

    // The connection drops, and a transition happens meanwhile: the watch
    // resumes from where it was (no new list) and records it once.
    let lists = kube.requests("clusters", "LIST").await;
    proxy.cut();
    wait_stale(&alice, "orders").await;
    kube.play_status("orders", "Waiting for the instances to become active", 1, 2)
        .await;
    proxy.resume();
    app.wait_state(&alice, "orders", "degraded", STATE_DEADLINE)
        .await;
    events_exactly(&alice, "orders", 2).await;
    assert_eq!(
        kube.requests("clusters", "LIST").await,
        lists,
        "resumed, not listed"
    );

    // Again, and etcd compacts its history at exactly the version of the
    // change: this API server then fails the resumed watch with a 500 for
    // as long as it is asked for the version before; after a few failures
    // in a row the watch lists again, and records the transition once.
    proxy.cut();
    wait_stale(&alice, "orders").await;
    kube.play_status("orders", HEALTHY, 2, 2).await;
    let raw = raw_cluster(&kube, "orders").await.unwrap();
    kube.compact(raw["metadata"]["resourceVersion"].as_str().unwrap())
        .await;
    proxy.resume();
    app.wait_state(&alice, "orders", "healthy", STATE_DEADLINE)
        .await;
    events_exactly(&alice, "orders", 3).await;
    let relisted = kube.requests("clusters", "LIST").await;
    assert!(relisted > lists, "the watch did not list again");

    // Once more, compacted past the version the watch would resume from:
    // the API server answers 410 Gone, and the watch lists again.
    proxy.cut();
    wait_stale(&alice, "orders").await;
    kube.play_status("orders", "Failing over", 1, 2).await;
    kube.compact(&kube.bump_revision().await).await;
    proxy.resume();
    app.wait_state(&alice, "orders", "failing_over", STATE_DEADLINE)
        .await;
    let events = events_exactly(&alice, "orders", 4).await;
    assert_eq!(
        transitions(&events),
        pairs(&[
            ("healthy", "failing_over"),
            ("degraded", "healthy"),
            ("healthy", "degraded"),
            ("creating", "healthy")
        ])
    );
    assert!(
        kube.requests("clusters", "LIST").await > relisted,
        "the 410 did not make the watch list again"
    );
    let r = alice
        .request(Method::GET, "/api/v1/databases/orders")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-pgplane-cache").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgplane_restart_does_not_record_a_transition_again() {
    let kube = KubeServer::start().await;
    let app = serve_ready(&kube, "admin").await;
    let alice = app.as_user("editor").await;
    let (status, _) = alice
        .post("/api/v1/databases", json!({"name": "orders"}))
        .await;
    assert_eq!(status, 202);
    kube.play_status("orders", HEALTHY, 1, 1).await;
    app.wait_state(&alice, "orders", "healthy", STATE_DEADLINE)
        .await;
    events_exactly(&alice, "orders", 1).await;

    let args = serve_args(&kube.kubeconfig("admin"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let again = app.start_over_with(&args).await;
    // Ready means the first list went through the watcher.
    again.wait_ready(200, Duration::from_secs(30)).await;
    let alice = again.as_user("editor").await;
    let (_, db) = alice.get("/api/v1/databases/orders").await;
    assert_eq!(db["state"], "healthy");
    events_exactly(&alice, "orders", 1).await;
    kube.play_status("orders", "Failing over", 0, 1).await;
    again
        .wait_state(&alice, "orders", "failing_over", STATE_DEADLINE)
        .await;
    let events = events_exactly(&alice, "orders", 2).await;
    assert_eq!(
        transitions(&events)[0],
        ("healthy".into(), "failing_over".into())
    );
    let event = wait_kube_event(&kube, "orders", "FailingOver").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
}

/// The events of `name` over several pgplanes once there are `n` in all,
/// oldest first; fails if there are ever more.
async fn events_over(callers: &[&Caller<'_>], name: &str, n: usize) -> Vec<Value> {
    let until = Instant::now() + STATE_DEADLINE;
    loop {
        let mut all = Vec::new();
        let mut per = Vec::new();
        for c in callers {
            let (status, body) = c.get(&format!("/api/v1/databases/{name}/events")).await;
            // 404: this pgplane recorded nothing of a database now gone.
            let items = match status {
                StatusCode::OK => body["items"].as_array().unwrap().clone(),
                StatusCode::NOT_FOUND => Vec::new(),
                _ => panic!("{status} {body}"),
            };
            per.push(
                items
                    .iter()
                    .map(|e| format!("{} {}->{}", e["ts"], e["from"], e["to"]))
                    .collect::<Vec<_>>(),
            );
            all.extend(items);
        }
        assert!(
            all.len() <= n,
            "more than {n} events, per pgplane: {per:#?}"
        );
        if all.len() == n {
            all.sort_by(|a, b| a["ts"].as_str().cmp(&b["ts"].as_str()));
            return all;
        }
        assert!(
            Instant::now() < until,
            "{} of {n} events: {all:#?}",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_record_each_transition_once_and_a_new_pgplane_none_again() {
    let kube = KubeServer::start().await;
    let one = serve_ready(&kube, "admin").await;
    let two = serve_ready(&kube, "admin").await;
    let (a, b) = (one.as_user("editor").await, two.as_user("editor").await);
    let (status, _) = a
        .post(
            "/api/v1/databases",
            json!({"name": "orders", "instances": 2}),
        )
        .await;
    assert_eq!(status, 202);
    let steps = [
        (HEALTHY, 2, "healthy"),
        ("Waiting for the instances to become active", 1, "degraded"),
        (HEALTHY, 2, "healthy"),
        ("Failing over", 1, "failing_over"),
        (HEALTHY, 2, "healthy"),
    ];
    for (phase, ready, state) in steps {
        kube.play_status("orders", phase, ready, 2).await;
        one.wait_state(&a, "orders", state, STATE_DEADLINE).await;
        two.wait_state(&b, "orders", state, STATE_DEADLINE).await;
    }
    let all = events_over(&[&a, &b], "orders", steps.len()).await;
    assert_eq!(
        transitions(&all),
        pairs(&[
            ("creating", "healthy"),
            ("healthy", "degraded"),
            ("degraded", "healthy"),
            ("healthy", "failing_over"),
            ("failing_over", "healthy"),
        ])
    );
    let raw = raw_cluster(&kube, "orders").await.unwrap();
    assert_eq!(
        raw["metadata"]["annotations"]["pgplane.io/recorded-state"],
        "healthy/5"
    );

    // A third pgplane, with an empty data directory: nothing recorded again,
    // and the next transition once over the three.
    let three = serve_ready(&kube, "admin").await;
    let c = three.as_user("editor").await;
    let (_, listed) = c.get("/api/v1/databases/orders/events").await;
    assert_eq!(listed["items"], json!([]));
    kube.play_status("orders", "Waiting for the instances to become active", 1, 2)
        .await;
    for (app, caller) in [(&one, &a), (&two, &b), (&three, &c)] {
        app.wait_state(caller, "orders", "degraded", STATE_DEADLINE)
            .await;
    }
    let all = events_over(&[&a, &b, &c], "orders", steps.len() + 1).await;
    assert_eq!(
        transitions(&all[steps.len()..]),
        pairs(&[("healthy", "degraded")])
    );

    // Deleted at once (no finalizer): no Cluster is left to annotate, and
    // still one `deleting` over the three, claimed by the Kubernetes Event
    // `<name>.<uid>.<transition number>` that only one of them can create.
    let raw = raw_cluster(&kube, "orders").await.unwrap();
    assert_eq!(
        raw["metadata"]["annotations"]["pgplane.io/recorded-state"],
        "degraded/6"
    );
    let uid = raw["metadata"]["uid"].as_str().unwrap().to_owned();
    kube.clusters()
        .delete("orders", &Default::default())
        .await
        .unwrap();
    for (app, caller) in [(&one, &a), (&two, &b), (&three, &c)] {
        app.wait_gone(caller, "orders", STATE_DEADLINE).await;
    }
    let all = events_over(&[&a, &b, &c], "orders", steps.len() + 2).await;
    assert_eq!(
        transitions(&all[steps.len() + 1..]),
        pairs(&[("degraded", "deleting")])
    );
    let events: Api<KubeEvent> = Api::namespaced(kube.admin.clone(), NAMESPACE);
    let claim = events.get(&format!("orders.{uid}.7")).await.unwrap();
    assert_eq!(claim.reason.as_deref(), Some("Deleting"));
    assert_eq!(claim.reporting_controller.as_deref(), Some("pgplane"));
    assert_eq!(
        claim.regarding.and_then(|r| r.uid).as_deref(),
        Some(uid.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_the_api_server_rejects_is_422_and_nothing_is_done() {
    let kube = KubeServer::start().await;
    // An object-count quota of no Clusters; its status written as the
    // quota controller (not running here) would.
    let quotas: Api<ResourceQuota> = Api::namespaced(kube.admin.clone(), NAMESPACE);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "no-clusters"},
        "spec": {"hard": {"count/clusters.postgresql.cnpg.io": "0"}},
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    quotas
        .patch_status(
            "no-clusters",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "hard": {"count/clusters.postgresql.cnpg.io": "0"},
                "used": {"count/clusters.postgresql.cnpg.io": "0"},
            }})),
        )
        .await
        .unwrap();
    let app = serve_ready(&kube, "admin").await;
    let alice = app.as_user("editor").await;
    let (status, problem) = alice
        .post("/api/v1/databases", json!({"name": "orders"}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("exceeded quota"),
        "the server's message: {problem}"
    );
    let (status, _) = alice.get("/api/v1/databases/orders").await;
    assert_eq!(status, 404);
    assert!(raw_cluster(&kube, "orders").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_why_it_is_not_ready() {
    // No CRD.
    let bare = KubeServer::start_with(false).await;
    let app = serve(&bare, "admin").await;
    wait_failing(&app, "CRD clusters.postgresql.cnpg.io is not installed").await;
    let viewer = app.as_user("viewer").await;
    let (status, problem) = viewer.get("/api/v1/databases").await;
    assert_eq!(status, 503, "{problem}");
    drop(app);

    // Unreachable from the start.
    let mut kube = KubeServer::start().await;
    kube.stop_apiserver();
    let app = serve(&kube, "admin").await;
    wait_failing(
        &app,
        &format!(
            "the Kubernetes API server at https://127.0.0.1:{}/ is unreachable",
            kube.api_port
        ),
    )
    .await;
    // And ready once the server is there.
    kube.start_apiserver().await;
    app.wait_ready(200, Duration::from_secs(30)).await;
}

/// The rules of `pgplane rbac`, minus `skip` (a `group/resource/verb`).
fn role_without(skip: Option<(&str, &str, &str)>) -> Role {
    let mut role: Role = serde_yaml::from_str(&rbac::role_yaml(NAMESPACE)).unwrap();
    if let Some((group, resource, verb)) = skip {
        for rule in role.rules.iter_mut().flatten() {
            if rule.api_groups.as_deref() == Some(&[group.to_owned()])
                && rule.resources.as_deref() == Some(&[resource.to_owned()])
            {
                rule.verbs.retain(|v| v != verb);
            }
        }
        if let Some(rules) = role.rules.as_mut() {
            rules.retain(|r| !r.verbs.is_empty());
        }
    }
    role
}

async fn grant(kube: &KubeServer, role: &Role) {
    let roles: Api<Role> = Api::namespaced(kube.admin.clone(), NAMESPACE);
    let mut role = role.clone();
    role.metadata.namespace = Some(NAMESPACE.into());
    roles
        .patch(
            rbac::ROLE_NAME,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&role),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_role_is_sufficient_and_minimal() {
    let kube = KubeServer::start().await;
    // Without any grant the service account is refused, and readiness says so.
    let app = serve(&kube, "sa").await;
    wait_failing(
        &app,
        "RBAC forbids it: missing permission list postgresql.cnpg.io/clusters",
    )
    .await;
    wait_failing(
        &app,
        "RBAC: missing permission get postgresql.cnpg.io/clusters",
    )
    .await;
    drop(app);

    grant(&kube, &role_without(None)).await;
    let bindings: Api<RoleBinding> = Api::namespaced(kube.admin.clone(), NAMESPACE);
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "pgplane"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rbac::ROLE_NAME},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": SA_USER}],
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // Sufficient: the whole life of a database as the service account.
    let app = serve_ready(&kube, "sa").await;
    let alice = app.as_user("editor").await;
    let (status, body) = alice
        .post("/api/v1/databases", json!({"name": "orders"}))
        .await;
    assert_eq!(status, 202, "{body}");
    kube.play_status("orders", HEALTHY, 1, 1).await;
    app.wait_state(&alice, "orders", "healthy", STATE_DEADLINE)
        .await;
    wait_kube_event(&kube, "orders", "Healthy").await;
    kube.play_status("orders", "Waiting for the instances to become active", 0, 1)
        .await;
    kube.play_status("orders", HEALTHY, 1, 1).await;
    events_exactly(&alice, "orders", 3).await;
    // The same transition again: the Event's series is patched.
    let until = Instant::now() + STATE_DEADLINE;
    loop {
        let e = wait_kube_event(&kube, "orders", "Healthy").await;
        if e.series.is_some() {
            break;
        }
        assert!(Instant::now() < until, "the repeated Event was not patched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kube.play_secret_and_services("orders", "pw").await;
    let (status, body) = alice.get("/api/v1/databases/orders/credentials").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice
        .patch("/api/v1/databases/orders", json!({"instances": 2}))
        .await;
    assert_eq!(status, 202, "{body}");
    // The revision history: read, rolled back, pruned, deleted.
    let (status, body) = alice.get("/api/v1/databases/orders/revisions").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 2, "{body}");
    let (status, body) = alice
        .post("/api/v1/databases/orders/rollback", json!({"revision": 1}))
        .await;
    assert_eq!(status, 202, "{body}");
    let revisions: Api<ControllerRevision> = Api::namespaced(kube.admin.clone(), NAMESPACE);
    let of_orders = ListParams::default().labels("pgplane.io/database=orders");
    assert_eq!(revisions.list(&of_orders).await.unwrap().items.len(), 3);
    let (status, body) = alice.delete("/api/v1/databases/orders").await;
    assert!(status == 202 || status == 204, "{status} {body}");
    app.wait_gone(&alice, "orders", STATE_DEADLINE).await;
    assert!(revisions.list(&of_orders).await.unwrap().items.is_empty());
    drop(app);

    // Minimal: without any one verb, readiness names exactly that one.
    // Where a request needs the verb, that request fails too.
    let probe = cluster::render(
        &pgplane::model::parse_create(
            &json!({"name": "probe"}),
            &pgplane::model::Limits {
                postgres_versions: vec![16],
                max_storage_bytes: pgplane::model::DEFAULT_MAX_STORAGE_BYTES,
            },
        )
        .unwrap(),
        NAMESPACE,
        &cluster::Stamp::api("test".into(), 1, None),
    );
    kube.clusters()
        .create(&PostParams::default(), &probe)
        .await
        .unwrap();
    kube.play_secret_and_services("probe", "pw").await;
    for p in rbac::PERMISSIONS {
        for verb in p.verbs {
            grant(&kube, &role_without(Some((p.group, p.resource, verb)))).await;
            let app = serve(&kube, "sa").await;
            let want = rbac::describe(p.group, p.resource, verb, NAMESPACE);
            let health = wait_failing(&app, &format!("RBAC: missing permission {want}")).await;
            let failing = health["failing"].to_string();
            let others = rbac::PERMISSIONS
                .iter()
                .flat_map(|q| {
                    q.verbs
                        .iter()
                        .map(|v| rbac::describe(q.group, q.resource, v, NAMESPACE))
                })
                .filter(|d| *d != want && failing.contains(&format!("{d},")))
                .count();
            assert_eq!(others, 0, "only {want} is missing: {health}");
            let alice = app.as_user("editor").await;
            let failing_request = match (p.resource, *verb) {
                ("clusters", "get" | "create" | "patch") => Some(
                    alice
                        .post("/api/v1/databases", json!({"name": "fresh"}))
                        .await,
                ),
                ("clusters", "delete") => Some(alice.delete("/api/v1/databases/probe").await),
                // The create's first revision cannot be made: the Cluster goes again.
                ("controllerrevisions", "create") => Some(
                    alice
                        .post("/api/v1/databases", json!({"name": "fresh"}))
                        .await,
                ),
                ("controllerrevisions", "list") => {
                    Some(alice.get("/api/v1/databases/probe/revisions").await)
                }
                ("secrets", "get") => Some(alice.get("/api/v1/databases/probe/credentials").await),
                _ => None,
            };
            if let Some((status, body)) = failing_request {
                assert_eq!(status, 503, "without {want}: {body}");
            }
            assert!(
                raw_cluster(&kube, "fresh").await.is_none(),
                "a failed create leaves no Cluster (without {want})"
            );
        }
    }
}

/// The same life against a real cluster with CloudNativePG, when
/// `PGPLANE_E2E_KUBECONFIG` is set; the operator drives status there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_lifecycle() {
    let Some(kubeconfig) = std::env::var_os("PGPLANE_E2E_KUBECONFIG") else {
        eprintln!("live_lifecycle: PGPLANE_E2E_KUBECONFIG is not set; the live suite does not run");
        return;
    };
    let namespace = std::env::var("PGPLANE_E2E_NAMESPACE").unwrap_or_else(|_| NAMESPACE.into());
    let kubeconfig = std::path::PathBuf::from(kubeconfig);
    let args = [
        "--backend",
        "kubernetes",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--namespace",
        &namespace,
    ];
    let app = TestApp::start_with(&args).await;
    app.wait_ready(200, Duration::from_secs(60)).await;
    let alice = app.as_user("editor").await;
    let name = format!("e2e-{}", &uuid_like()[..8]);
    let (status, body) = alice
        .post(
            "/api/v1/databases",
            json!({"name": name, "instances": 2, "storage": "1Gi"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let deadline = Duration::from_secs(600);
    app.wait_state(&alice, &name, "healthy", deadline).await;
    let events = events_exactly(&alice, &name, 1).await;
    assert_eq!(events[0]["to"], "healthy");
    let (status, creds) = alice
        .get(&format!("/api/v1/databases/{name}/credentials"))
        .await;
    assert_eq!(status, 200, "{creds}");
    let (status, _) = alice
        .patch(
            &format!("/api/v1/databases/{name}"),
            json!({"instances": 3}),
        )
        .await;
    assert_eq!(status, 202);
    app.wait_state(&alice, &name, "scaling", deadline).await;
    app.wait_state(&alice, &name, "healthy", deadline).await;
    let (status, _) = alice.delete(&format!("/api/v1/databases/{name}")).await;
    assert!(status == 202 || status == 204);
    app.wait_gone(&alice, &name, deadline).await;
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{t:x}").chars().rev().collect()
}

fn pgplane_binary(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pgplane"))
        .args(args)
        .env_remove("PGPLANE_NAMESPACE")
        .env_remove("PGPLANE_POSTGRES_VERSIONS")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn render_prints_the_cluster_and_rbac_the_role() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("orders.yaml");
    std::fs::write(
        &spec,
        "name: orders\ninstances: 3\nstorage: 10Gi\npostgres_version: 16\nparameters: {max_connections: 200}\nlabels: {team: payments}\n",
    )
    .unwrap();
    let out = pgplane_binary(&["render", spec.to_str().unwrap(), "--owner", "alice"]);
    assert!(out.status.success(), "{out:?}");
    let rendered: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rendered,
        json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "orders", "namespace": "databases",
                         "labels": {"app.kubernetes.io/managed-by": "pgplane", "team": "payments"},
                         "annotations": {"pgplane.io/owner": "alice", "pgplane.io/revision": "1",
                                         "pgplane.io/source": "git",
                                         "pgplane.io/declared-in": spec.display().to_string()}},
            "spec": {"instances": 3, "imageName": "ghcr.io/cloudnative-pg/postgresql:16",
                     "storage": {"size": "10Gi"},
                     "postgresql": {"parameters": {"max_connections": "200"}},
                     "bootstrap": {"initdb": {"database": "app", "owner": "app"}}},
        })
    );
    // JSON too; an invalid spec names every bad field and prints nothing.
    std::fs::write(&spec, r#"{"name": "Bad", "instances": 10}"#).unwrap();
    let out = pgplane_binary(&["render", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("name:") && stderr.contains("instances:"),
        "{stderr}"
    );

    // A directory: one document per spec file, in name order; a name
    // declared twice is refused, naming both files.
    let specs = dir.path().join("specs");
    std::fs::create_dir(&specs).unwrap();
    std::fs::write(
        specs.join("b.yaml"),
        "name: beta
",
    )
    .unwrap();
    std::fs::write(specs.join("a.json"), r#"{"name": "alpha"}"#).unwrap();
    std::fs::write(specs.join("notes.md"), "not a spec").unwrap();
    let out = pgplane_binary(&["render", specs.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let names: Vec<String> = serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|d| {
            let v = Value::deserialize(d).unwrap();
            v["metadata"]["name"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    std::fs::write(
        specs.join("c.yaml"),
        "name: alpha
",
    )
    .unwrap();
    let out = pgplane_binary(&["render", specs.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "pgplane: database alpha is declared twice: in {} and in {}",
            specs.join("a.json").display(),
            specs.join("c.yaml").display()
        )
    );

    let out = pgplane_binary(&["rbac", "--namespace", "dbs"]);
    assert!(out.status.success());
    let role: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(role["kind"], "Role");
    assert_eq!(role["metadata"]["namespace"], "dbs");
    assert_eq!(
        role["rules"].as_array().unwrap().len(),
        rbac::PERMISSIONS.len()
    );
}

#[test]
fn the_kubernetes_backend_names_its_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgplane"));
        cmd.arg("serve")
            .env("PGPLANE_BACKEND", "kubernetes")
            .env("PGPLANE_DATA_DIR", dir.path().join("data"))
            .env("PGPLANE_LISTEN", "127.0.0.1:0")
            .env_remove("PGPLANE_JWT_SECRET")
            .env_remove("PGPLANE_JWT_SECRET_FILE")
            .env_remove("PGPLANE_KUBECONFIG")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).trim().to_owned()
    };
    let no_secret = serve(&[]);
    assert!(
        no_secret.starts_with(
            "pgplane: bad setting PGPLANE_JWT_SECRET: is required with the kubernetes backend"
        ),
        "{no_secret}"
    );
    let missing = serve(&[
        ("PGPLANE_JWT_SECRET", support::JWT_SECRET),
        ("PGPLANE_KUBECONFIG", "/nonexistent/kubeconfig"),
    ]);
    assert!(
        missing.starts_with("pgplane: bad setting PGPLANE_KUBECONFIG: /nonexistent/kubeconfig"),
        "{missing}"
    );
    assert_eq!(missing.lines().count(), 1, "{missing}");
}

/// A watch on one replica sees what happens through another and what
/// CloudNativePG writes, in order, and ends up holding the list.
#[tokio::test]
async fn a_watch_on_any_replica_sees_every_change() {
    use support::sse::Sse;
    let kube = KubeServer::start().await;
    let one = serve_ready(&kube, "admin").await;
    let two = serve_ready(&kube, "admin").await;
    let (a, b) = (one.as_user("editor").await, two.as_user("viewer").await);
    let url = format!("{}/api/v1/databases?watch=true", two.base);
    let mut watch = Sse::open(&two.client, &url, &b.token, None).await;
    assert_eq!(
        watch.expect("snapshot", STATE_DEADLINE).await.data["items"],
        json!([])
    );
    let (status, _) = a
        .post(
            "/api/v1/databases",
            json!({"name": "watched", "instances": 2}),
        )
        .await;
    assert_eq!(status, 202);
    let mut held: Option<Value> = None;
    let mut states: Vec<String> = Vec::new();
    let mut read_until = async |held: &mut Option<Value>, done: &dyn Fn(&Value) -> bool| loop {
        let frame = watch.next(STATE_DEADLINE).await.expect("the watch goes on");
        assert_eq!(frame.data["name"], "watched", "{frame:?}");
        if frame.event == "deleted" {
            *held = None;
            states.push("(gone)".into());
            return;
        }
        assert_eq!(frame.event, "changed");
        let state = frame.data["state"].as_str().unwrap().to_owned();
        if states.last() != Some(&state) {
            states.push(state);
        }
        *held = Some(frame.data.clone());
        if done(&frame.data) {
            return;
        }
    };
    read_until(&mut held, &|db| db["state"] == "creating").await;
    kube.play_status("watched", HEALTHY, 2, 2).await;
    read_until(&mut held, &|db| db["state"] == "healthy").await;
    kube.play_secret_and_services("watched", "pw").await;
    read_until(&mut held, &|db| !db["endpoints"].is_null()).await;
    let (_, listed) = b.get("/api/v1/databases").await;
    assert_eq!(listed["items"], json!([held.clone().unwrap()]));

    let (status, _) = a
        .patch("/api/v1/databases/watched", json!({"instances": 3}))
        .await;
    assert_eq!(status, 202);
    read_until(&mut held, &|db| db["instances"] == 3).await;
    kube.play_status("watched", "Creating a new replica", 2, 3)
        .await;
    read_until(&mut held, &|db| db["state"] == "scaling").await;
    kube.play_status("watched", HEALTHY, 3, 3).await;
    read_until(&mut held, &|db| db["ready_instances"] == 3).await;
    // No finalizer on the test API server: the Cluster goes at once (204).
    let (status, _) = a.delete("/api/v1/databases/watched").await;
    assert!(status == 202 || status == 204, "{status}");
    read_until(&mut held, &|_| false).await;
    assert_eq!(
        states,
        ["creating", "healthy", "scaling", "healthy", "(gone)"],
        "every state, in order"
    );
    let (_, listed) = b.get("/api/v1/databases").await;
    assert_eq!(
        listed["items"],
        json!([]),
        "the list is what the watch holds"
    );
}

/// A follower of the events reconnects with `Last-Event-ID` after its
/// connection was cut and after pgplane restarted: each transition once.
#[tokio::test]
async fn a_follower_resumes_after_its_last_event_on_the_kubernetes_backend() {
    use support::sse::Sse;
    let kube = KubeServer::start().await;
    let app = serve_ready(&kube, "admin").await;
    let editor = app.as_user("editor").await;
    let (status, _) = editor
        .post(
            "/api/v1/databases",
            json!({"name": "followed", "instances": 2}),
        )
        .await;
    assert_eq!(status, 202);
    let url = format!("{}/api/v1/events?follow=true", app.base);
    let mut follow = Sse::open(&app.client, &url, &editor.token, None).await;
    kube.play_status("followed", HEALTHY, 2, 2).await;
    let first = follow.expect("service_event", STATE_DEADLINE).await;
    assert_eq!(first.data["to"], "healthy");
    let last = first.id.clone().expect("an id");
    drop(follow);

    // Cut: two transitions while nobody follows.
    kube.play_status(
        "followed",
        "Waiting for the instances to become active",
        1,
        2,
    )
    .await;
    app.wait_state(&editor, "followed", "degraded", STATE_DEADLINE)
        .await;
    kube.play_status("followed", HEALTHY, 2, 2).await;
    app.wait_state(&editor, "followed", "healthy", STATE_DEADLINE)
        .await;
    let mut again = Sse::open(&app.client, &url, &editor.token, Some(&last)).await;
    let missed = [
        again.expect("service_event", STATE_DEADLINE).await,
        again.expect("service_event", STATE_DEADLINE).await,
    ];
    assert_eq!(
        missed
            .iter()
            .map(|f| f.data["to"].clone())
            .collect::<Vec<_>>(),
        [json!("degraded"), json!("healthy")]
    );
    let last = missed[1].id.clone().unwrap();
    drop(again);

    // Restart: the new pgplane answers from the same journal.
    let app = app
        .start_over_with(
            &serve_args(&kube.kubeconfig("admin"))
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .await;
    app.wait_ready(200, Duration::from_secs(30)).await;
    let editor = app.as_user("editor").await;
    kube.play_status("followed", "Failing over", 1, 2).await;
    app.wait_state(&editor, "followed", "failing_over", STATE_DEADLINE)
        .await;
    let url = format!("{}/api/v1/events?follow=true", app.base);
    let mut third = Sse::open(&app.client, &url, &editor.token, Some(&last)).await;
    let next = third.expect("service_event", STATE_DEADLINE).await;
    assert_eq!(
        (next.data["from"].as_str(), next.data["to"].as_str()),
        (Some("healthy"), Some("failing_over")),
        "after the restart: the new transition, and none of the old ones again"
    );
}

/// The instances of a database as the API shows them.
async fn instances(caller: &Caller<'_>, name: &str) -> Vec<Value> {
    let (status, body) = caller
        .get(&format!("/api/v1/databases/{name}/instances"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

/// Polls the instances until `done` holds of them; returns them and how
/// long it took.
async fn wait_instances(
    caller: &Caller<'_>,
    name: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, Duration) {
    let started = Instant::now();
    loop {
        let items = instances(caller, name).await;
        if done(&items) {
            return (items, started.elapsed());
        }
        assert!(
            started.elapsed() < STATE_DEADLINE,
            "instances not {what}: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_what_cnpg_publishes_and_nothing_more() {
    let kube = KubeServer::start().await;
    let app = serve_ready(&kube, "admin").await;
    let alice = app.as_user("editor").await;
    let viewer = app.as_user("viewer").await;
    let (status, body) = alice
        .post(
            "/api/v1/databases",
            json!({"name": "orders", "instances": 2}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // Before CNPG wrote a status there is nothing to show.
    assert_eq!(instances(&viewer, "orders").await, Vec::<Value>::new());

    kube.play_status("orders", HEALTHY, 2, 2).await;
    kube.play_instances("orders", &["orders-1", "orders-2"], &[], 1)
        .await;
    let (items, _) = wait_instances(&viewer, "orders", "both ready", |items| {
        items.len() == 2 && items.iter().all(|i| i["ready"] == true)
    })
    .await;
    // What CNPG does not publish (lag, start time, restarts) is absent.
    assert_eq!(
        items,
        vec![
            json!({"name": "orders-1", "role": "primary", "state": "running", "ready": true, "timeline": 1}),
            json!({"name": "orders-2", "role": "standby", "state": "running", "ready": true, "timeline": 1}),
        ]
    );
    let (_, db) = viewer.get("/api/v1/databases/orders").await;
    assert_eq!(db["instances_status"], json!(items));
    let (status, _) = viewer.get("/api/v1/databases/nothing/instances").await;
    assert_eq!(status, 404);

    // A standby whose pod failed is not ready within a second of CNPG saying so.
    let said = Instant::now();
    kube.play_instances("orders", &["orders-1"], &["orders-2"], 1)
        .await;
    let (items, _) = wait_instances(&viewer, "orders", "with orders-2 failed", |items| {
        items
            .iter()
            .any(|i| i["name"] == "orders-2" && i["ready"] == false)
    })
    .await;
    let took = said.elapsed();
    assert!(took < Duration::from_secs(1), "seen after {took:?}");
    assert_eq!(items[1]["state"], "failed", "{items:?}");

    // Healed, and after a failover the standby leads on timeline 2.
    kube.play_instances("orders", &["orders-1", "orders-2"], &[], 1)
        .await;
    wait_instances(&viewer, "orders", "ready again", |items| {
        items.iter().all(|i| i["ready"] == true)
    })
    .await;
    let promoted = json!({"status": {"currentPrimary": "orders-2", "timelineID": 2,
    "instancesReportedState": {
        "orders-1": {"isPrimary": false, "timeLineID": 2},
        "orders-2": {"isPrimary": true, "timeLineID": 2},
    }}});
    kube.clusters()
        .patch_status("orders", &PatchParams::default(), &Patch::Merge(&promoted))
        .await
        .unwrap();
    let (items, _) = wait_instances(&viewer, "orders", "failed over", |items| {
        items
            .iter()
            .any(|i| i["name"] == "orders-2" && i["role"] == "primary")
    })
    .await;
    assert_eq!(items[0]["role"], "standby");
    assert!(items.iter().all(|i| i["timeline"] == 2), "{items:?}");
}

/// Waits until the database is in `state`; its body.
async fn wait_state(caller: &Caller<'_>, name: &str, state: &str) -> Value {
    let until = Instant::now() + STATE_DEADLINE;
    loop {
        let (status, body) = caller.get(&format!("/api/v1/databases/{name}")).await;
        assert_eq!(status, 200, "{body}");
        if body["state"] == state {
            return body;
        }
        assert!(Instant::now() < until, "{name} not {state}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_updating_until_cloudnativepg_has_acted_on_it() {
    let kube = KubeServer::start().await;
    let app = serve_ready(&kube, "admin").await;
    let editor = app.as_user("editor").await;
    let (status, body) = editor
        .post(
            "/api/v1/databases",
            json!({"name": "tuned", "instances": 3}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    kube.play_observed("tuned", HEALTHY, 3, 3).await;
    wait_state(&editor, "tuned", "healthy").await;

    // Scaled down: CNPG's status still says healthy with 3 ready, of the
    // generation before; that is not the change done.
    let (status, body) = editor
        .patch("/api/v1/databases/tuned", json!({"instances": 2}))
        .await;
    assert_eq!(status, 202, "{body}");
    let db = wait_state(&editor, "tuned", "updating").await;
    assert_eq!(db["revision"], 2);
    assert_eq!(db["phase"], HEALTHY, "CNPG's own text, verbatim");
    // Once CNPG has acted on the new generation, healthy again.
    kube.play_observed("tuned", HEALTHY, 2, 2).await;
    let db = wait_state(&editor, "tuned", "healthy").await;
    assert_eq!(db["ready_instances"], 2);
    let events = events_exactly(&editor, "tuned", 3).await;
    assert_eq!(
        transitions(&events),
        pairs(&[
            ("updating", "healthy"),
            ("healthy", "updating"),
            ("creating", "healthy")
        ])
    );
}
