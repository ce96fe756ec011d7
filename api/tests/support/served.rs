//! The real `pgplane` binary as a child process, for tests that need its
//! standard output or its exit: [`Served`] runs `pgplane serve` with its
//! output in files and kills it on drop; [`Servers`] stops, on drop, every
//! PostgreSQL server under a data directory; [`blocking`] makes HTTP calls.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

pub const BIN: &str = env!("CARGO_BIN_EXE_pgplane");
pub const ADMIN_PASSWORD: &str = "crash-test-admin-password";

/// `pgplane` with the given arguments and none of the caller's PGPLANE_* settings.
pub fn pgplane(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("PGPLANE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pgplane-bin-")
        .tempdir_in("/tmp")
        .unwrap()
}

fn output(path: &Path, keep: bool) -> Stdio {
    let file = std::fs::File::create(path).unwrap();
    if keep {
        file.into()
    } else {
        Stdio::null()
    }
}

/// A `pgplane serve` child with its output in files, killed on drop. The
/// servers outlive it, as in production: [`Servers`] stops them.
pub struct Served {
    pub child: Child,
    pub base: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub data: PathBuf,
}

impl Served {
    pub fn start(dir: &Path, run: &str) -> Served {
        Served::start_with(dir, run, &[])
    }

    pub fn start_with(dir: &Path, run: &str, env: &[(&str, &str)]) -> Served {
        Served::spawn(dir, run, env, true)
    }

    /// Output to /dev/null: for tests that limit what pgplane may write to
    /// files, which would otherwise also hit its stdout and stderr files.
    pub fn start_discarding_output(dir: &Path, run: &str, env: &[(&str, &str)]) -> Served {
        Served::spawn(dir, run, env, false)
    }

    /// pgplane again on the address of `before` (killed first, if it still
    /// runs): clients that reconnect find it where it was.
    pub fn restart(before: &mut Served, dir: &Path, run: &str, env: &[(&str, &str)]) -> Served {
        before.kill_nine();
        let port = before.base.rsplit(':').next().unwrap().parse().unwrap();
        Served::spawn_on(dir, run, env, true, port)
    }

    fn spawn(dir: &Path, run: &str, env: &[(&str, &str)], keep_output: bool) -> Served {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Served::spawn_on(dir, run, env, keep_output, port)
    }

    fn spawn_on(
        dir: &Path,
        run: &str,
        env: &[(&str, &str)],
        keep_output: bool,
        port: u16,
    ) -> Served {
        let data = dir.join("data");
        let stdout = dir.join(format!("{run}.stdout"));
        let stderr = dir.join(format!("{run}.stderr"));
        let child = pgplane(&["serve"])
            .envs(env.iter().copied())
            .env("PGPLANE_DATA_DIR", &data)
            .env("PGPLANE_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(output(&stdout, keep_output))
            .stderr(output(&stderr, keep_output))
            .spawn()
            .unwrap();
        let served = Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stdout,
            stderr,
            data,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while blocking::get(&format!("{}/healthz", served.base)).is_err() {
            assert!(Instant::now() < until, "pgplane did not answer /healthz");
            std::thread::sleep(Duration::from_millis(20));
        }
        served
    }

    pub fn output(&self) -> (String, String) {
        (
            std::fs::read_to_string(&self.stdout).unwrap(),
            std::fs::read_to_string(&self.stderr).unwrap(),
        )
    }

    /// SIGKILL: pgplane gets no chance to finish anything.
    pub fn kill_nine(&mut self) {
        if self.child.try_wait().unwrap().is_none() {
            self.child.kill().unwrap();
        }
        self.child.wait().unwrap();
    }

    pub fn token(&self) -> String {
        let (status, body) = blocking::call(
            reqwest::Method::POST,
            &format!("{}/api/v1/auth/login", self.base),
            None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
        );
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "pgplane exited with {status}");
                return;
            }
            assert!(Instant::now() < until, "pgplane did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (out, err) = self.output();
            let tail: Vec<&str> = out
                .lines()
                .filter(|l| !l.contains(r#""message":"request""#))
                .rev()
                .take(40)
                .collect();
            eprintln!(
                "pgplane's last lines but requests, newest first:\n{}\n{err}",
                tail.join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops, on drop (also when a test panics), every PostgreSQL server under
/// a data directory; declared before the [`Served`]s so it drops after them.
pub struct Servers(pub PathBuf);

impl Drop for Servers {
    fn drop(&mut self) {
        for pid in super::servers_under(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
    }
}

/// Blocking HTTP calls over reqwest's async client, one runtime per call.
pub mod blocking {
    use reqwest::{Client, Error, Method, StatusCode};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    pub fn get(url: &str) -> Result<StatusCode, Error> {
        rt().block_on(async { Ok(Client::new().get(url).send().await?.status()) })
    }

    /// The body of a GET, as text.
    pub fn text(url: &str) -> String {
        rt().block_on(async {
            Client::new()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    }

    pub fn call(
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        rt().block_on(async {
            let mut req = Client::new()
                .request(method, url)
                .header("x-request-id", "binary-test");
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            let status = r.status();
            let text = r.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or_default())
        })
    }
}

pub fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "{what} within {deadline:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
