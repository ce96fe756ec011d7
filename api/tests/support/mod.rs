//! Test harness: a pgplane served on a loopback port over a temporary data
//! directory, with users of every role, driven over HTTP like a client would.
//! Dropping a [`TestApp`] (also when a test panics) stops its reconcilers,
//! stops every PostgreSQL server under its data directory (by pid file) and
//! removes the directory.

#![allow(dead_code)]

pub mod kube;
pub mod loki;
pub mod served;
pub mod sse;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use pgplane::config::{ServeArgs, Settings};

pub const PASSWORD: &str = "correct-horse-battery";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    backend: std::sync::Arc<dyn pgplane::backend::Backend>,
    events: std::sync::Arc<pgplane::records::Events>,
    app: std::sync::Arc<pgplane::app::App>,
    server: tokio::task::JoinHandle<()>,
    _tmp: Option<tempfile::TempDir>,
}

/// A users file with admin, editor and viewer, all with [`PASSWORD`].
fn users_yaml() -> &'static str {
    static YAML: OnceLock<String> = OnceLock::new();
    YAML.get_or_init(|| {
        let hash = pgplane::auth::password::hash(PASSWORD);
        let mut y = String::from("users:\n");
        for (user, role) in [
            ("admin", "admin"),
            ("editor", "editor"),
            ("viewer", "viewer"),
            ("eve", "editor"),
        ] {
            y.push_str(&format!(
                "- {{username: {user}, password_hash: '{hash}', role: {role}}}\n"
            ));
        }
        y
    })
}

impl TestApp {
    pub async fn start() -> TestApp {
        TestApp::start_with(&[]).await
    }

    /// Starts with extra `pgplane serve` flags.
    pub async fn start_with(extra: &[&str]) -> TestApp {
        // Under /tmp: the PostgreSQL account must be able to reach it.
        let tmp = tempfile::Builder::new()
            .prefix("pgplane-test-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        std::fs::write(tmp.path().join("users.yaml"), users_yaml()).unwrap();
        let mut app = TestApp::serve(tmp.path(), extra).await;
        app._tmp = Some(tmp);
        app
    }

    /// Stops this app's pgplane as `pgplane serve` stops (the backend's
    /// tasks, then the events written behind); its servers keep running, as
    /// in production.
    pub async fn stop_pgplane(&self) {
        self.app.streams.stop_all();
        self.server.abort();
        self.backend.shutdown();
        self.events.flush().await;
    }

    /// Stops this app's pgplane and starts another over the same data directory.
    pub async fn start_over(&self) -> TestApp {
        self.start_over_with(&[]).await
    }

    /// Like [`TestApp::start_over`], with extra `pgplane serve` flags.
    pub async fn start_over_with(&self, extra: &[&str]) -> TestApp {
        self.stop_pgplane().await;
        TestApp::serve(self.data_dir.parent().unwrap(), extra).await
    }

    /// What `/readyz` answers now: its status and body.
    pub async fn readyz(&self) -> (u16, Value) {
        let r = self.request(Method::GET, "/readyz").send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Waits until `/readyz` answers `status` (200 or 503) and returns its body.
    pub async fn wait_ready(&self, status: u16, deadline: Duration) -> Value {
        let until = Instant::now() + deadline;
        loop {
            let (got, body) = self.readyz().await;
            if got == status {
                return body;
            }
            assert!(
                Instant::now() < until,
                "/readyz did not answer {status} in {deadline:?}: {got} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn serve(dir: &Path, extra: &[&str]) -> TestApp {
        let data_dir = dir.join("data");
        let users = dir.join("users.yaml");
        let mut args = vec![
            "pgplane".to_owned(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--users-file".into(),
            users.display().to_string(),
            "--jwt-secret".into(),
            JWT_SECRET.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let settings =
            Settings::from_args(Args::parse_from(args).serve).expect("test settings are valid");
        let built = pgplane::serve::build(&settings)
            .await
            .expect("pgplane builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // The same connection handling as `pgplane serve` (header and idle
        // timeouts, the connection bound, early problems).
        let connections = settings.connections;
        let router = built.router;
        let server = tokio::spawn(async move {
            pgplane::serve::connections::serve(
                listener,
                router,
                connections,
                std::future::pending(),
            )
            .await;
        });
        TestApp {
            base,
            client: reqwest::Client::new(),
            data_dir,
            backend: built.backend,
            events: built.events,
            app: built.app,
            server,
            _tmp: None,
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// What `/metrics` shows now.
    pub async fn metrics(&self) -> String {
        let r = self.request(Method::GET, "/metrics").send().await.unwrap();
        r.text().await.unwrap()
    }

    /// The value of the series `series` (name and labels, as exported) in
    /// `/metrics` now.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
            .trim()
            .parse()
            .unwrap()
    }

    /// The data directory of instance `ordinal` of the local database `db`.
    pub fn pgdata(&self, db: &str, ordinal: u32) -> PathBuf {
        self.data_dir
            .join("databases")
            .join(db)
            .join(format!("{db}-{ordinal}"))
            .join("pgdata")
    }

    /// SIGKILLs an instance's postmaster, by the pid in its pid file;
    /// returns when it was killed.
    pub fn kill_instance(&self, db: &str, ordinal: u32) -> chrono::DateTime<chrono::Utc> {
        let text =
            std::fs::read_to_string(self.pgdata(db, ordinal).join("postmaster.pid")).unwrap();
        let pid: i32 = text.lines().next().unwrap().trim().parse().unwrap();
        let at = chrono::Utc::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        at
    }

    pub async fn token(&self, user: &str) -> String {
        let r = self
            .request(Method::POST, "/api/v1/auth/login")
            .json(&json!({"username": user, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "login of {user}");
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A client acting as `user`.
    pub async fn as_user(&self, user: &str) -> Caller<'_> {
        Caller {
            app: self,
            token: self.token(user).await,
        }
    }

    /// Waits until the database reaches `state`, failing on `failed` or the deadline.
    pub async fn wait_state(
        &self,
        caller: &Caller<'_>,
        name: &str,
        state: &str,
        deadline: Duration,
    ) -> Value {
        let until = Instant::now() + deadline;
        loop {
            let (status, body) = caller.get(&format!("/api/v1/databases/{name}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["state"] == state {
                return body;
            }
            assert_ne!(body["state"], "failed", "{body}");
            assert!(
                Instant::now() < until,
                "{name} did not become {state} in {deadline:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until GET answers 404.
    pub async fn wait_gone(&self, caller: &Caller<'_>, name: &str, deadline: Duration) {
        let until = Instant::now() + deadline;
        loop {
            let (status, body) = caller.get(&format!("/api/v1/databases/{name}")).await;
            if status == StatusCode::NOT_FOUND {
                return;
            }
            assert!(
                Instant::now() < until,
                "{name} still there after {deadline:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The backend behind the API, for changes the API would refuse but the
    /// backend must survive.
    pub fn backend(&self) -> &dyn pgplane::backend::Backend {
        &*self.backend
    }

    /// Waits until the reconcilers made `n` more passes (each pass looks at
    /// every instance of its database), as `/metrics` counts them.
    pub async fn wait_passes(&self, n: u64, deadline: Duration) {
        let until = Instant::now() + deadline;
        let start = self.reconcile_passes().await;
        while self.reconcile_passes().await < start + n {
            assert!(
                Instant::now() < until,
                "no {n} reconcile passes in {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn reconcile_passes(&self) -> u64 {
        let metrics = self
            .request(Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let count = r#"pgplane_backend_operation_duration_seconds_count{operation="reconcile"} "#;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(count))
            .map_or(0, |n| n.parse().unwrap())
    }

    /// PostgreSQL servers whose data directory lies under this app's data dir.
    pub fn running_servers(&self) -> Vec<i32> {
        servers_under(&self.data_dir)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        self.backend.shutdown();
        for pid in servers_under(&self.data_dir) {
            // SIGQUIT: PostgreSQL's immediate shutdown.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
        let until = Instant::now() + Duration::from_secs(10);
        while !servers_under(&self.data_dir).is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Live postmasters (from their pid files) of data directories under `dir`.
pub fn servers_under(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "postmaster.pid") {
                let pid = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
                if let Some(pid) = pid {
                    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() {
                        pids.push(pid);
                    }
                }
            }
        }
    }
    pids
}

/// Requests with one user's token.
pub struct Caller<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl Caller<'_> {
    /// A database's service events, newest first (up to 1,000).
    pub async fn events(&self, db: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/api/v1/databases/{db}/events?limit=1000"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    /// Waits for an event to `to` recorded at or after `after`; returns it.
    pub async fn wait_event(
        &self,
        db: &str,
        to: &str,
        after: chrono::DateTime<chrono::Utc>,
        deadline: Duration,
    ) -> Value {
        let until = Instant::now() + deadline;
        loop {
            let found = self.events(db).await.into_iter().find(|e| {
                e["to"] == to
                    && e["ts"]
                        .as_str()
                        .unwrap()
                        .parse::<chrono::DateTime<chrono::Utc>>()
                        .unwrap()
                        >= after
            });
            if let Some(e) = found {
                return e;
            }
            assert!(Instant::now() < until, "no event to {to} for {db}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.app.request(method, path).bearer_auth(&self.token)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        body_of(self.request(Method::GET, path).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        body_of(
            self.request(Method::POST, path)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .request(Method::PATCH, path)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        body_of(r).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        body_of(self.request(Method::DELETE, path).send().await.unwrap()).await
    }
}

/// Status and JSON body (Null when empty); asserts problem answers are problem+json.
pub async fn body_of(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(content_type, "application/problem+json", "{status}: {body}");
        assert_eq!(body["status"], status.as_u16(), "{body}");
        assert!(
            body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
            "{body}"
        );
    }
    (status, body)
}

/// The `field`s of a validation problem, in order.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A connection to PostgreSQL, failing the test on error.
pub async fn connect(uri: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(uri, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Where the test servers are: `PGPLANE_TESTBIN`, else `../shared/testbin`.
pub fn testbin() -> PathBuf {
    std::env::var_os("PGPLANE_TESTBIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testbin"),
        PathBuf::from,
    )
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
