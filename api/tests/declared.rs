//! Databases pgplane did not make through its API, on the kubernetes
//! backend against a real kube-apiserver: one declared in git (rendered by
//! `pgplane render`, applied with `kubectl apply --server-side` as Argo CD
//! would) is shown with its source and refused every change, and an
//! existing Cluster is adopted without a byte of its spec changing, managed
//! (scaled through the API), and released as it was.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::ListParams;
use kube::Api;
use serde_json::{json, Value};

use support::kube::{raw_cluster, serve_ready, KubeServer, NAMESPACE};
use support::served::BIN;
use support::Caller;

const HEALTHY: &str = "Cluster in healthy state";
const DEADLINE: Duration = Duration::from_secs(10);

/// `kubectl apply --server-side` of `yaml` as field manager `manager`.
fn kubectl_apply(kube: &KubeServer, manager: &str, yaml: &str) {
    let mut child = Command::new("kubectl")
        .args([
            "apply",
            "--server-side",
            "--field-manager",
            manager,
            "-f",
            "-",
        ])
        .arg("--kubeconfig")
        .arg(kube.kubeconfig("admin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until GET of the database answers `status`; its body.
async fn wait_status(caller: &Caller<'_>, name: &str, status: u16) -> Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let (s, body) = caller.get(&format!("/api/v1/databases/{name}")).await;
        if s == status {
            return body;
        }
        assert!(Instant::now() < until, "{name}: {s} {body}, not {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn revision_objects(kube: &KubeServer, name: &str) -> usize {
    let api: Api<ControllerRevision> = Api::namespaced(kube.admin.clone(), NAMESPACE);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|o| {
            o.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("{name}-")))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_declared_in_git_is_shown_and_every_change_refused() {
    let kube = KubeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("ledger.yaml");
    std::fs::write(
        &spec,
        "name: ledger\npostgres_version: 16\ninstances: 2\nstorage: 5Gi\nlabels: {team: finance}\n",
    )
    .unwrap();
    let rendered = Command::new(BIN)
        .args(["render", spec.to_str().unwrap()])
        .args(["--declared-in", "gitops/databases/ledger.yaml"])
        .args(["--namespace", NAMESPACE, "--postgres-versions", "15,16,17"])
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    kubectl_apply(
        &kube,
        "argocd-controller",
        &String::from_utf8(rendered.stdout).unwrap(),
    );
    kube.play_status("ledger", HEALTHY, 2, 2).await;
    kube.play_secret_and_services("ledger", "from-git").await;
    let before = raw_cluster(&kube, "ledger").await.unwrap();

    let app = serve_ready(&kube, "admin").await;
    let admin = app.as_user("admin").await;
    let db = wait_status(&admin, "ledger", 200).await;
    assert_eq!(db["source"], "git");
    assert_eq!(db["declared_in"], "gitops/databases/ledger.yaml");
    assert_eq!(db["owner"], "git");
    assert_eq!(db["state"], "healthy");
    assert_eq!(db["labels"], json!({"team": "finance"}));
    let (_, list) = admin.get("/api/v1/databases").await;
    assert_eq!(list["items"][0]["source"], "git");

    // Every change is refused where it was asked, naming where it belongs.
    let refusals = [
        admin
            .patch("/api/v1/databases/ledger", json!({"instances": 3}))
            .await,
        admin.delete("/api/v1/databases/ledger").await,
        admin
            .post("/api/v1/databases/ledger/rollback", json!({"revision": 1}))
            .await,
    ];
    for (status, problem) in &refusals {
        assert_eq!(*status, 409, "{problem}");
        assert_eq!(problem["type"], "urn:pgplane:problem:declared-in-git");
        assert_eq!(
            problem["detail"],
            "database ledger is declared in git, in gitops/databases/ledger.yaml: change it there (Argo CD applies it); the API does not"
        );
    }
    // The audit trail has each refusal.
    let (status, audit) = admin.get("/api/v1/audit?database=ledger").await;
    assert_eq!(status, 200, "{audit}");
    let mut refused: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == 409)
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        ["database.delete", "database.rollback", "database.update"]
    );

    // Reads work as for any database.
    let (status, creds) = admin.get("/api/v1/databases/ledger/credentials").await;
    assert_eq!(
        (status.as_u16(), creds["password"].clone()),
        (200, json!("from-git"))
    );
    let (status, revisions) = admin.get("/api/v1/databases/ledger/revisions").await;
    assert_eq!(status, 200, "{revisions}");
    assert_eq!(revisions["items"][0]["revision"], 1);
    let (status, _) = admin.get("/api/v1/databases/ledger/instances").await;
    assert_eq!(status, 200);
    let (status, _) = admin.get("/api/v1/databases/ledger/events").await;
    assert_eq!(status, 200);

    let after = raw_cluster(&kube, "ledger").await.unwrap();
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);

    // Its spec gone from git (Argo CD does not prune databases), an admin
    // releases it: pgplane lets go, the Cluster stays.
    let (status, body) = admin
        .post("/api/v1/databases/ledger/release", json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
    wait_status(&admin, "ledger", 404).await;
    let released = raw_cluster(&kube, "ledger").await.unwrap();
    assert_eq!(released["spec"], before["spec"]);
    assert_eq!(released["metadata"]["labels"], json!({"team": "finance"}));
}

/// A Cluster made by another tool, with fields pgplane does not manage.
const LEGACY: &str = r#"
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: NAME
  namespace: databases
  labels: {team: other}
spec:
  instances: 1
  imageName: ghcr.io/cloudnative-pg/postgresql:16.4
  storage: {size: 1Gi, storageClass: fast}
  postgresql:
    parameters: {max_connections: "300"}
  monitoring: {enablePodMonitor: true}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_cluster_keeps_its_spec_is_managed_and_is_released_as_it_was() {
    let kube = KubeServer::start().await;
    for name in ["legacy", "borrowed", "bystander"] {
        kubectl_apply(&kube, "team-tool", &LEGACY.replace("NAME", name));
        kube.play_status(name, HEALTHY, 1, 1).await;
        kube.play_secret_and_services(name, "theirs").await;
    }
    let app = serve_ready(&kube, "admin").await;
    let admin = app.as_user("admin").await;
    let editor = app.as_user("editor").await;
    let (_, list) = admin.get("/api/v1/databases").await;
    assert_eq!(
        list["items"],
        json!([]),
        "unmanaged Clusters stay invisible"
    );

    // Who may adopt, and what cannot be.
    let (status, _) = editor
        .post("/api/v1/databases/legacy/adopt", json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, problem) = admin
        .post("/api/v1/databases/Not_A_Name/adopt", json!({}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "name");
    let (status, _) = admin
        .post("/api/v1/databases/nowhere/adopt", json!({}))
        .await;
    assert_eq!(status, 404);

    // Adoption: pgplane's marks, not a byte of the spec.
    let before = raw_cluster(&kube, "legacy").await.unwrap();
    let (status, adopted) = admin
        .post("/api/v1/databases/legacy/adopt", json!({}))
        .await;
    assert_eq!(status, 200, "{adopted}");
    assert_eq!(adopted["source"], "adopted");
    assert_eq!(adopted["owner"], "admin");
    assert_eq!(adopted["instances"], 1);
    assert_eq!(adopted["postgres_version"], 16);
    assert_eq!(
        adopted["left_alone"],
        json!([
            "metadata.labels.team",
            "spec.monitoring",
            "spec.postgresql.parameters.max_connections",
            "spec.storage.storageClass",
        ])
    );
    let after = raw_cluster(&kube, "legacy").await.unwrap();
    assert_eq!(
        serde_json::to_string(&after["spec"]).unwrap(),
        serde_json::to_string(&before["spec"]).unwrap(),
        "the spec, byte for byte"
    );
    assert_eq!(after["metadata"]["labels"]["team"], "other");
    let (status, _) = admin
        .post("/api/v1/databases/legacy/adopt", json!({}))
        .await;
    assert_eq!(status, 409, "adopted already");
    let db = wait_status(&admin, "legacy", 200).await;
    assert_eq!(db["state"], "healthy");
    let (status, audit) = admin.get("/api/v1/audit?action=database.adopt").await;
    assert_eq!(status, 200);
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["status"] == 200 && r["database"] == "legacy"));

    // Fully managed: scaled through the API, the rest of the spec stays.
    let (status, body) = admin
        .patch("/api/v1/databases/legacy", json!({"instances": 3}))
        .await;
    assert_eq!(status, 202, "{body}");
    let scaled = raw_cluster(&kube, "legacy").await.unwrap();
    assert_eq!(scaled["spec"]["instances"], 3);
    let mut expected = before["spec"].clone();
    expected["instances"] = json!(3);
    assert_eq!(scaled["spec"], expected);
    let (status, revisions) = admin.get("/api/v1/databases/legacy/revisions").await;
    assert_eq!(status, 200);
    assert_eq!(revisions["items"][0]["changes"]["instances"], json!([1, 3]));
    // The spec as adopted is revision 1: a rollback comes back to it.
    let (status, body) = admin
        .post("/api/v1/databases/legacy/rollback", json!({"revision": 1}))
        .await;
    assert_eq!(status, 202, "{body}");
    let rolled = raw_cluster(&kube, "legacy").await.unwrap();
    assert_eq!(rolled["spec"], before["spec"]);

    // Released and adopted again, after pgplane had changed its spec: the
    // second adoption changes no byte of it either (pgplane's apply of the
    // marks alone must not take back the fields it once owned).
    let scaled = admin
        .patch("/api/v1/databases/legacy", json!({"instances": 2}))
        .await;
    assert_eq!(scaled.0, 202, "{}", scaled.1);
    let (status, _) = admin
        .post("/api/v1/databases/legacy/release", json!({}))
        .await;
    assert_eq!(status, 204);
    wait_status(&admin, "legacy", 404).await;
    let released = raw_cluster(&kube, "legacy").await.unwrap();
    assert_eq!(
        released["spec"]["instances"], 2,
        "a release changes no spec"
    );
    let (status, body) = admin
        .post("/api/v1/databases/legacy/adopt", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let again = raw_cluster(&kube, "legacy").await.unwrap();
    assert_eq!(
        serde_json::to_string(&again["spec"]).unwrap(),
        serde_json::to_string(&released["spec"]).unwrap()
    );

    // Release of one adopted and left alone: as it was, but managedFields.
    let before = raw_cluster(&kube, "borrowed").await.unwrap();
    let (status, _) = admin
        .post("/api/v1/databases/borrowed/adopt", json!({}))
        .await;
    assert_eq!(status, 200);
    wait_status(&admin, "borrowed", 200).await;
    let (status, body) = editor
        .post("/api/v1/databases/borrowed/release", json!({}))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = admin
        .post("/api/v1/databases/borrowed/release", json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
    let after = raw_cluster(&kube, "borrowed").await.unwrap();
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
    assert_eq!(
        after["metadata"]["annotations"],
        before["metadata"]["annotations"]
    );
    wait_status(&admin, "borrowed", 404).await;
    assert_eq!(revision_objects(&kube, "borrowed").await, 0);
    let (status, _) = admin
        .post("/api/v1/databases/borrowed/release", json!({}))
        .await;
    assert_eq!(status, 404);
    // Released, it can be adopted again.
    let (status, _) = admin
        .post("/api/v1/databases/borrowed/adopt", json!({}))
        .await;
    assert_eq!(status, 200);
}
