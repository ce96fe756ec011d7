//! A real Kubernetes API server for tests: `etcd` (Debian's `etcd-server`,
//! found on `PATH`) and `kube-apiserver` v1.20.2 from the test binaries
//! (`PGPLANE_TESTBIN`, default `<repo>/../shared/testbin`), started on free
//! loopback ports in a temporary directory, with namespace `databases`, the
//! CNPG CRDs, and two kubeconfigs: `admin` (system:masters) and `sa` (the
//! user `system:serviceaccount:databases:pgplane`, subject to RBAC).
//!
//! No operator runs: tests play CloudNativePG through [`KubeServer::play`].
//! Dropping a [`KubeServer`] (also when a test panics) kills the two
//! processes it started, by their pids, and removes the directory.
//!
//! With `PGPLANE_E2E_KUBECONFIG` set, [`Kube::start`] connects to that
//! cluster instead (a real one, with CNPG installed) and nothing is played.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, Config};

use super::{free_port, TestApp};
use serde_json::{json, Value};

use pgplane::backend::kubernetes::cluster::Cluster;

pub const NAMESPACE: &str = "databases";
/// The user the `sa` kubeconfig authenticates as.
pub const SA_USER: &str = "system:serviceaccount:databases:pgplane";

/// The test servers' directory, with what this harness needs in it.
fn kube_testbin() -> PathBuf {
    let dir = super::testbin();
    assert!(
        dir.join("kube-apiserver").is_file(),
        "kube-apiserver not found in {} (set PGPLANE_TESTBIN to the directory of the test binaries)",
        dir.display()
    );
    assert!(
        dir.join("cnpg-crds-k8s-1.20").is_dir(),
        "the CNPG CRDs for Kubernetes 1.20 are missing from {}",
        dir.display()
    );
    dir
}

fn etcd() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("etcd"))
            .find(|p| p.is_file())
    });
    found.expect("etcd is not on PATH: install Debian's etcd-server (apt-get install etcd-server)")
}

/// A client from a kubeconfig file.
pub async fn client_of(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// etcd and kube-apiserver on loopback, owned by one test.
pub struct KubeServer {
    pub dir: tempfile::TempDir,
    pub api_port: u16,
    etcd_port: u16,
    etcd: Child,
    apiserver: Option<Child>,
    apiserver_args: Vec<String>,
    pub admin: Client,
}

impl KubeServer {
    /// Starts both servers, creates namespace `databases` and installs the CRDs.
    pub async fn start() -> KubeServer {
        KubeServer::start_with(true).await
    }

    /// Like [`KubeServer::start`], without the CNPG CRDs when `crds` is false.
    pub async fn start_with(crds: bool) -> KubeServer {
        // Ports are picked free and bound by the servers a moment later:
        // another test may take one in between. Then the start is tried
        // again on other ports.
        let mut last = String::new();
        for _ in 0..3 {
            match KubeServer::try_start(crds).await {
                Ok(server) => return server,
                Err(e) if e.contains("address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the test API server found no free ports in 3 tries: {last}");
    }

    async fn try_start(crds: bool) -> Result<KubeServer, String> {
        let bin = kube_testbin();
        let etcd_bin = etcd();
        let dir = tempfile::Builder::new()
            .prefix("pgplane-kube-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let log = |name: &str| std::fs::File::create(d.join(name)).unwrap();
        let etcd = Command::new(etcd_bin)
            .args([
                "--data-dir",
                &d.join("etcd").display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer_port}"),
            ])
            .stdin(Stdio::null())
            .stdout(log("etcd.log"))
            .stderr(log("etcd.log"))
            .spawn()
            .expect("etcd starts");
        // The API server signs nothing with it, but requires a key.
        let key = rsa_key();
        std::fs::write(d.join("sa.key"), key).unwrap();
        std::fs::write(
            d.join("tokens.csv"),
            format!(
                "admin-token,admin,admin,system:masters\nsa-token,{SA_USER},sa,system:serviceaccounts\n"
            ),
        )
        .unwrap();
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            "--advertise-address=127.0.0.1".into(),
            "--insecure-port=0".into(),
            format!("--cert-dir={}", d.join("certs").display()),
            format!("--token-auth-file={}", d.join("tokens.csv").display()),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-key-file={}", d.join("sa.key").display()),
            format!(
                "--service-account-signing-key-file={}",
                d.join("sa.key").display()
            ),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
        ];
        for user in ["admin", "sa"] {
            std::fs::write(
                d.join(format!("{user}.kubeconfig")),
                kubeconfig(api_port, user),
            )
            .unwrap();
        }
        let admin = client_of(&d.join("admin.kubeconfig")).await;
        let mut server = KubeServer {
            dir,
            api_port,
            etcd_port,
            etcd,
            apiserver: None,
            apiserver_args,
            admin,
        };
        server.try_start_apiserver().await?;
        let namespaces: Api<Namespace> = Api::all(server.admin.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap(),
            )
            .await
            .unwrap();
        if crds {
            install_crds(&server.admin, &bin.join("cnpg-crds-k8s-1.20")).await;
        }
        Ok(server)
    }

    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        self.dir.path().join(format!("{user}.kubeconfig"))
    }

    /// A kubeconfig of `user` that reaches the API server through `proxy`.
    pub fn kubeconfig_through(&self, user: &str, proxy: &Cuttable) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("{user}-{}.kubeconfig", proxy.port));
        std::fs::write(&path, kubeconfig(proxy.port, user)).unwrap();
        path
    }

    /// Starts kube-apiserver (again, on the same port, over the same etcd)
    /// and waits until it is ready.
    pub async fn start_apiserver(&mut self) {
        if let Err(e) = self.try_start_apiserver().await {
            panic!("{e}");
        }
    }

    async fn try_start_apiserver(&mut self) -> Result<(), String> {
        assert!(self.apiserver.is_none(), "already running");
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("apiserver.log"))
            .unwrap();
        let child = Command::new(kube_testbin().join("kube-apiserver"))
            .args(&self.apiserver_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("kube-apiserver starts");
        self.apiserver = Some(child);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
            if self.admin.request_text(req).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.apiserver.as_mut().unwrap().try_wait().unwrap() {
                self.apiserver = None;
                return Err(format!(
                    "kube-apiserver exited ({status}):\n{}",
                    tail(&d.join("apiserver.log"))
                ));
            }
            if let Some(status) = self.etcd.try_wait().unwrap() {
                return Err(format!(
                    "etcd exited ({status}):\n{}",
                    tail(&d.join("etcd.log"))
                ));
            }
            assert!(
                Instant::now() < until,
                "kube-apiserver not ready in 60 s; see {}",
                d.join("apiserver.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Restarts kube-apiserver without its watch cache, so that watches are
    /// served by etcd itself and a compaction makes an old resourceVersion
    /// answer 410 Gone (the cache would keep serving it).
    pub async fn restart_apiserver_without_watch_cache(&mut self) {
        self.stop_apiserver();
        self.apiserver_args.push("--watch-cache=false".into());
        self.start_apiserver().await;
    }

    /// Compacts etcd's history up to `revision` (a resourceVersion): a watch
    /// from an older one is then answered 410 Gone.
    pub async fn compact(&self, revision: &str) {
        let url = format!("http://127.0.0.1:{}/v3/kv/compaction", self.etcd_port);
        let r = reqwest::Client::new()
            .post(url)
            .json(&json!({"revision": revision, "physical": true}))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "compaction: {}",
            r.text().await.unwrap()
        );
    }

    /// Makes one write that concerns no Cluster; answers its
    /// resourceVersion, the newest revision of etcd.
    pub async fn bump_revision(&self) -> String {
        let maps: Api<ConfigMap> = Api::namespaced(self.admin.clone(), NAMESPACE);
        let map: ConfigMap = serde_json::from_value(json!({
            "metadata": {"generateName": "bump-"},
        }))
        .unwrap();
        let made = maps.create(&PostParams::default(), &map).await.unwrap();
        made.metadata.resource_version.unwrap()
    }

    /// Kills kube-apiserver (by its pid); etcd keeps the data.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn clusters(&self) -> Api<Cluster> {
        Api::namespaced(self.admin.clone(), NAMESPACE)
    }

    /// Plays CloudNativePG: writes `status` through the status subresource.
    pub async fn play_status(&self, name: &str, phase: &str, ready: u32, instances: u32) {
        self.write_status(name, phase, ready, instances, None).await
    }

    /// As [`KubeServer::play_status`], as CNPG 1.30 writes it: the Ready
    /// condition says which `metadata.generation` (the Cluster's current
    /// one) it was set from.
    pub async fn play_observed(&self, name: &str, phase: &str, ready: u32, instances: u32) {
        let generation = self
            .clusters()
            .get(name)
            .await
            .unwrap()
            .metadata
            .generation
            .expect("the API server sets generation");
        self.write_status(name, phase, ready, instances, Some(generation))
            .await
    }

    async fn write_status(
        &self,
        name: &str,
        phase: &str,
        ready: u32,
        instances: u32,
        observed: Option<i64>,
    ) {
        let status = json!({"status": {
            "phase": phase,
            "phaseReason": "written by the test, playing CloudNativePG",
            "instances": instances,
            "readyInstances": ready,
            "currentPrimary": format!("{name}-1"),
            "conditions": [{
                "type": "Ready",
                "status": if phase == "Cluster in healthy state" { "True" } else { "False" },
                "reason": "ClusterIsReady",
                "message": phase,
                "lastTransitionTime": "2026-11-23T10:00:00Z",
                "observedGeneration": observed,
            }],
        }});
        self.clusters()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap_or_else(|e| panic!("status of {name}: {e}"));
    }

    /// Plays CloudNativePG: writes what its status says of each instance
    /// (`<name>-1` the primary on `timeline`): the pods that are healthy and
    /// those that failed, and what each reported.
    pub async fn play_instances(
        &self,
        name: &str,
        healthy: &[&str],
        failed: &[&str],
        timeline: u32,
    ) {
        let all: Vec<&str> = healthy.iter().chain(failed).copied().collect();
        let primary = format!("{name}-1");
        let reported: serde_json::Map<String, Value> = all
            .iter()
            .map(|i| {
                (
                    i.to_string(),
                    json!({"isPrimary": *i == primary, "timeLineID": timeline, "ip": "10.0.0.1"}),
                )
            })
            .collect();
        let or_null = |list: &[&str]| {
            if list.is_empty() {
                Value::Null
            } else {
                json!(list)
            }
        };
        let status = json!({"status": {
            "instanceNames": all,
            "instancesStatus": {"healthy": or_null(healthy), "failed": or_null(failed), "replicating": null},
            "instancesReportedState": reported,
            "timelineID": timeline,
            "readyInstances": healthy.len(),
        }});
        self.clusters()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap_or_else(|e| panic!("status of {name}: {e}"));
    }

    /// Plays CloudNativePG: the `<name>-app` Secret and the `-rw`/`-ro` Services.
    pub async fn play_secret_and_services(&self, name: &str, password: &str) {
        let secrets: Api<Secret> = Api::namespaced(self.admin.clone(), NAMESPACE);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-app"), "labels": {"cnpg.io/cluster": name}},
            "type": "kubernetes.io/basic-auth",
            "stringData": {
                "username": "app", "password": password, "dbname": "app",
                "host": format!("{name}-rw"), "port": "5432",
            },
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let services: Api<Service> = Api::namespaced(self.admin.clone(), NAMESPACE);
        for suffix in ["rw", "ro", "r"] {
            let svc: Service = serde_json::from_value(json!({
                "metadata": {"name": format!("{name}-{suffix}"), "labels": {"cnpg.io/cluster": name}},
                "spec": {"ports": [{"name": "postgres", "port": 5432, "targetPort": 5432}],
                         "selector": {"cnpg.io/cluster": name}},
            }))
            .unwrap();
            services.create(&PostParams::default(), &svc).await.unwrap();
        }
    }

    /// The API server's count of requests to `resource` with `verb`, from its
    /// `/metrics` (to show that reads do not reach it).
    pub async fn requests(&self, resource: &str, verb: &str) -> u64 {
        let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = self.admin.request_text(req).await.unwrap();
        text.lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
            .filter(|l| {
                l.contains(&format!("resource=\"{resource}\""))
                    && l.contains(&format!("verb=\"{verb}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        self.stop_apiserver();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

/// The last lines of a log file, for a failure message (the directory
/// goes with the test).
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn kubeconfig(port: u16, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters: [{{name: test, cluster: {{server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true}}}}]\n\
         users: [{{name: {user}, user: {{token: {user}-token}}}}]\n\
         contexts: [{{name: test, context: {{cluster: test, user: {user}, namespace: {NAMESPACE}}}}}]\n\
         current-context: test\n"
    )
}

/// An RSA key for the API server's service-account flags, from openssl.
fn rsa_key() -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["genrsa", "2048"])
        .stderr(Stdio::null())
        .output()
        .expect("openssl is on PATH (it makes the API server's service-account key)");
    assert!(out.status.success(), "openssl genrsa failed");
    out.stdout
}

async fn install_crds(admin: &Client, dir: &Path) {
    let crds: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &ApiResource::erase::<CustomResourceDefinition>(&()),
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if value.is_null() {
                continue;
            }
            let object: DynamicObject = serde_yaml::from_value(value).unwrap();
            crds.create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|e| panic!("CRD {}: {e}", file.display()));
        }
    }
    // Established: Clusters can be listed.
    let clusters: Api<Cluster> = Api::namespaced(admin.clone(), NAMESPACE);
    let until = Instant::now() + Duration::from_secs(30);
    while clusters.list(&Default::default()).await.is_err() {
        assert!(Instant::now() < until, "the CNPG CRD is not served in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

use serde::Deserialize;

/// A TCP proxy in front of the API server that a test can cut: while cut,
/// it drops every connection it carries and refuses new ones. A network
/// partition between pgplane and the API server, with the server itself up
/// (the test still reaches it directly).
pub struct Cuttable {
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::AbortHandle,
}

impl Cuttable {
    pub async fn start(target_port: u16) -> Cuttable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = tokio::sync::watch::channel(false);
        let cut_rx = cut.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if *cut_rx.borrow() {
                    continue; // dropped: the connection is refused
                }
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        })
        .abort_handle();
        Cuttable { port, cut, task }
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn resume(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.task.abort();
    }
}

// ---------------------------------------------------------------- pgplane on it

pub fn serve_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        "--backend".into(),
        "kubernetes".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--namespace".into(),
        NAMESPACE.into(),
        "--postgres-versions".into(),
        "15,16,17".into(),
    ]
}

/// pgplane on the kubernetes backend as `user` of the test API server.
pub async fn serve(kube: &KubeServer, user: &str) -> TestApp {
    let args = serve_args(&kube.kubeconfig(user));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestApp::start_with(&args).await
}

pub async fn serve_ready(kube: &KubeServer, user: &str) -> TestApp {
    let app = serve(kube, user).await;
    app.wait_ready(200, Duration::from_secs(30)).await;
    app
}

/// The Cluster as the API server has it, every field.
pub async fn raw_cluster(kube: &KubeServer, name: &str) -> Option<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        kube.admin.clone(),
        NAMESPACE,
        &ApiResource::erase::<Cluster>(&()),
    );
    api.get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}
