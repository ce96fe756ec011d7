//! Revisions and rollback through the HTTP API, on both backends: real
//! PostgreSQL servers for the local one, a real kube-apiserver (the test
//! playing CloudNativePG) for the kubernetes one. The same life on each:
//! three updates make four revisions with their diffs, a rollback to a
//! revision with less storage keeps the storage and says so, the history
//! is pruned at its depth, outlives a restart (and, on Kubernetes, is the
//! same for two replicas and for `kubectl`), and goes with the database.

mod support;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::ListParams;
use kube::Api;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use support::kube::{KubeServer, NAMESPACE};
use support::{body_of, Caller, TestApp};

const DEADLINE: Duration = Duration::from_secs(60);
/// The history depth of these tests: five changes prune the first.
const DEPTH: &str = "4";

async fn rollback(
    caller: &Caller<'_>,
    name: &str,
    revision: Value,
    if_match: Option<&str>,
) -> (StatusCode, Value) {
    let mut r = caller
        .request(Method::POST, &format!("/api/v1/databases/{name}/rollback"))
        .json(&json!({ "revision": revision }));
    if let Some(tag) = if_match {
        r = r.header("if-match", tag);
    }
    body_of(r.send().await.unwrap()).await
}

async fn revisions(caller: &Caller<'_>, name: &str) -> Vec<Value> {
    let (status, body) = caller
        .get(&format!("/api/v1/databases/{name}/revisions"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn numbers(revisions: &[Value]) -> Vec<u64> {
    revisions
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect()
}

/// The life both backends go through, up to the rollback and the pruning;
/// `editor` and `viewer` call the same pgplane.
async fn changes_and_a_rollback(editor: &Caller<'_>, viewer: &Caller<'_>) {
    let (status, body) = editor
        .post(
            "/api/v1/databases",
            // A parameter that stays through the rollback, beside one
            // that goes.
            json!({"name": "orders", "storage": "1Gi", "labels": {"team": "a"},
                   "parameters": {"max_connections": "50"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    for patch in [
        json!({"labels": {"team": "b"}}),
        json!({"storage": "2Gi"}),
        json!({"parameters": {"work_mem": "8MB"}}),
    ] {
        let (status, body) = editor.patch("/api/v1/databases/orders", patch).await;
        assert_eq!(status, 202, "{body}");
    }

    // Three updates: four revisions, newest first, each with its diff.
    let history = revisions(viewer, "orders").await;
    assert_eq!(numbers(&history), [4, 3, 2, 1]);
    let kinds: Vec<_> = history.iter().map(|r| r["kind"].clone()).collect();
    assert_eq!(kinds, ["update", "update", "update", "create"]);
    assert_eq!(history[3]["changes"], json!({}));
    assert_eq!(
        history[2]["changes"],
        json!({"labels": [{"team": "a"}, {"team": "b"}]})
    );
    assert_eq!(history[1]["changes"], json!({"storage": ["1Gi", "2Gi"]}));
    assert_eq!(
        history[0]["changes"],
        json!({"parameters": [{"max_connections": "50"}, {"max_connections": "50", "work_mem": "8MB"}]})
    );
    for r in &history {
        assert_eq!(r["by"], "editor", "{r}");
        assert!(
            !r["request_id"].as_str().unwrap().is_empty(),
            "the request is named: {r}"
        );
        assert!(r["at"].as_str().is_some(), "{r}");
    }
    assert_eq!(
        history[0]["spec"],
        json!({"name": "orders", "postgres_version": history[0]["spec"]["postgres_version"],
               "instances": 1, "storage": "2Gi",
               "parameters": {"max_connections": "50", "work_mem": "8MB"},
               "labels": {"team": "b"}})
    );
    let (status, two) = viewer.get("/api/v1/databases/orders/revisions/2").await;
    assert_eq!(status, 200, "{two}");
    assert_eq!(two, history[2]);
    let (status, problem) = viewer.get("/api/v1/databases/orders/revisions/7").await;
    assert_eq!(status, 404, "{problem}");

    // Refused, and nothing changes: a viewer, a stale If-Match, a revision
    // that never was.
    let (status, problem) = rollback(viewer, "orders", json!(2), None).await;
    assert_eq!(status, 403, "{problem}");
    let (status, problem) = rollback(editor, "orders", json!(2), Some("\"3\"")).await;
    assert_eq!(status, 412, "{problem}");
    let (status, problem) = rollback(editor, "orders", json!(9), None).await;
    assert_eq!(status, 404, "{problem}");
    let (status, problem) = rollback(editor, "orders", json!("2"), None).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(numbers(&revisions(viewer, "orders").await), [4, 3, 2, 1]);

    // Back to revision 2, which had 1Gi: the storage stays 2Gi, and the
    // answer says so.
    let (status, back) = rollback(editor, "orders", json!(2), Some("\"4\"")).await;
    assert_eq!(status, 202, "{back}");
    assert_eq!(back["revision"], 5);
    assert_eq!(back["storage"], "2Gi");
    assert_eq!(back["labels"], json!({"team": "b"}));
    assert_eq!(back["parameters"], json!({"max_connections": "50"}));
    assert_eq!(back["kept"], json!({"storage": "2Gi"}));
    let (_, db) = viewer.get("/api/v1/databases/orders").await;
    assert_eq!(
        (db["revision"].clone(), db["storage"].clone()),
        (json!(5), json!("2Gi"))
    );

    // Depth 4: revision 1 is pruned (410), the current one is there.
    let history = revisions(viewer, "orders").await;
    assert_eq!(numbers(&history), [5, 4, 3, 2]);
    assert_eq!(history[0]["kind"], "rollback");
    assert_eq!(history[0]["from"], 2);
    let rolled_back = json!({"parameters": [
        {"max_connections": "50", "work_mem": "8MB"}, {"max_connections": "50"}
    ]});
    assert_eq!(history[0]["changes"], rolled_back);
    let (status, problem) = viewer.get("/api/v1/databases/orders/revisions/1").await;
    assert_eq!(status, 410, "{problem}");
    let (status, problem) = rollback(editor, "orders", json!(1), None).await;
    assert_eq!(status, 410, "{problem}");

    // Audited as database.rollback, refusals too, with what changed.
    let (status, trail) = editor
        .get("/api/v1/databases/orders/audit?action=database.rollback")
        .await;
    assert_eq!(status, 200, "{trail}");
    let items = trail["items"].as_array().unwrap();
    let statuses: Vec<_> = items
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [410, 202, 422, 404, 412, 403]);
    assert_eq!(items[1]["changes"], rolled_back);
    assert_eq!(items[1]["request_id"], history[0]["request_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_revisions_roll_back_prune_survive_a_restart_and_go_with_the_database() {
    let app = TestApp::start_with(&["--revision-history", DEPTH]).await;
    let (editor, viewer) = (app.as_user("editor").await, app.as_user("viewer").await);
    changes_and_a_rollback(&editor, &viewer).await;
    let before = revisions(&viewer, "orders").await;

    // On disk, with the spec, before the 202 (and pruned there too).
    let record = app.data_dir.join("databases/orders/database.json");
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(on_disk["history"], json!(before));

    // A new pgplane over the same data directory shows the same history.
    let again = app.start_over_with(&["--revision-history", DEPTH]).await;
    let viewer = again.as_user("viewer").await;
    assert_eq!(revisions(&viewer, "orders").await, before);
    let editor = again.as_user("editor").await;
    again
        .wait_state(&editor, "orders", "healthy", DEADLINE)
        .await;

    // The history goes with the database; the audit trail stays.
    let (status, body) = editor.delete("/api/v1/databases/orders").await;
    assert_eq!(status, 202, "{body}");
    again.wait_gone(&editor, "orders", DEADLINE).await;
    let (status, problem) = viewer.get("/api/v1/databases/orders/revisions").await;
    assert_eq!(status, 404, "{problem}");
    assert!(!record.exists());
    let (_, trail) = editor
        .get("/api/v1/databases/orders/audit?action=database.rollback")
        .await;
    assert_eq!(trail["items"].as_array().unwrap().len(), 6);
}

fn serve_args(kubeconfig: &Path) -> Vec<String> {
    [
        "--backend",
        "kubernetes",
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "--namespace",
        NAMESPACE,
        "--postgres-versions",
        "15,16,17",
        "--revision-history",
        DEPTH,
    ]
    .map(String::from)
    .to_vec()
}

async fn serve_ready(kube: &KubeServer) -> TestApp {
    let args = serve_args(&kube.kubeconfig("admin"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = TestApp::start_with(&args).await;
    app.wait_ready(200, Duration::from_secs(30)).await;
    app
}

/// The ControllerRevisions labelled for `name`, as `kubectl` lists them.
async fn controller_revisions(kube: &KubeServer, name: &str) -> Vec<ControllerRevision> {
    let api: Api<ControllerRevision> = Api::namespaced(kube.admin.clone(), NAMESPACE);
    let params = ListParams::default().labels(&format!(
        "app.kubernetes.io/managed-by=pgplane,pgplane.io/database={name}"
    ));
    let mut items = api.list(&params).await.unwrap().items;
    items.sort_by_key(|r| r.revision);
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_revisions_are_controller_revisions_every_replica_sees() {
    let kube = KubeServer::start().await;
    let one = serve_ready(&kube).await;
    let two = serve_ready(&kube).await;
    let (editor, viewer) = (one.as_user("editor").await, one.as_user("viewer").await);
    let (editor, viewer, kube, two) = (&editor, &viewer, &kube, &two);
    changes_and_a_rollback(editor, viewer).await;
    let before = revisions(viewer, "orders").await;

    // Kept where Kubernetes keeps history: one ControllerRevision per kept
    // revision, owned by the Cluster, holding what the API shows.
    let objects = controller_revisions(kube, "orders").await;
    let names: Vec<_> = objects
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["orders-2", "orders-3", "orders-4", "orders-5"]);
    let uid = kube
        .clusters()
        .get("orders")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    for (o, shown) in objects.iter().zip(before.iter().rev()) {
        let owner = &o.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Cluster", uid.as_str())
        );
        assert_eq!(o.data.as_ref().unwrap().0, *shown);
        assert_eq!(o.revision, shown["revision"].as_i64().unwrap());
    }

    // Another replica, and a pgplane started afresh, see the same history.
    let other = two.as_user("viewer").await;
    assert_eq!(revisions(&other, "orders").await, before);
    let (status, three) = other.get("/api/v1/databases/orders/revisions/3").await;
    assert_eq!((status, &three), (StatusCode::OK, &before[2]));
    let fresh = serve_ready(kube).await;
    let fresh_viewer = fresh.as_user("viewer").await;
    assert_eq!(revisions(&fresh_viewer, "orders").await, before);

    // A rollback through the other replica is seen by the first.
    let other_editor = two.as_user("editor").await;
    let (status, back) = rollback(&other_editor, "orders", json!(3), Some("\"5\"")).await;
    assert_eq!(status, 202, "{back}");
    assert!(back.get("kept").is_none(), "revision 3 had 2Gi: {back}");
    let history = revisions(viewer, "orders").await;
    assert_eq!(numbers(&history), [6, 5, 4, 3]);
    assert_eq!(history[0]["by"], "editor");
    assert_eq!(
        numbers(&revisions(&fresh_viewer, "orders").await),
        [6, 5, 4, 3]
    );
    assert_eq!(controller_revisions(kube, "orders").await.len(), 4);

    // Back to no parameters at all.
    let (status, body) = editor
        .patch(
            "/api/v1/databases/orders",
            json!({"parameters": {"max_connections": null}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["parameters"], json!({}));

    // Deleted with the database (no garbage collector runs here).
    let (status, body) = editor.delete("/api/v1/databases/orders").await;
    assert!(status == 202 || status == 204, "{status} {body}");
    two.wait_gone(&other, "orders", Duration::from_secs(10))
        .await;
    assert!(controller_revisions(kube, "orders").await.is_empty());
    let (status, problem) = viewer.get("/api/v1/databases/orders/revisions").await;
    assert_eq!(status, 404, "{problem}");

    // A new database of the name starts a history of its own.
    let (status, body) = editor
        .post("/api/v1/databases", json!({"name": "orders"}))
        .await;
    assert_eq!(status, 202, "{body}");
    let history = revisions(viewer, "orders").await;
    assert_eq!(numbers(&history), [1]);
    assert_eq!(history[0]["kind"], "create");

    // Deleted behind pgplane's back (kubectl, and no garbage collector):
    // its revision stays, owned by a Cluster that is gone, until a new
    // database of the name replaces it with its own.
    kube.clusters()
        .delete("orders", &Default::default())
        .await
        .unwrap();
    one.wait_gone(editor, "orders", Duration::from_secs(10))
        .await;
    let left = controller_revisions(kube, "orders").await;
    assert_eq!(left.len(), 1);
    let (status, body) = editor
        .post(
            "/api/v1/databases",
            json!({"name": "orders", "instances": 2}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let history = revisions(viewer, "orders").await;
    assert_eq!(numbers(&history), [1]);
    assert_eq!(history[0]["spec"]["instances"], 2);
    let uid = kube
        .clusters()
        .get("orders")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let objects = controller_revisions(kube, "orders").await;
    assert_eq!(objects.len(), 1);
    let owner = &objects[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, uid);
    assert_ne!(objects[0].metadata.uid, left[0].metadata.uid);
}
