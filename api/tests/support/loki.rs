//! A real Loki (v2.7.5 from the test servers, `PGPLANE_TESTBIN`, by default
//! `../shared/testbin/`) on loopback ports with its data in a temporary
//! directory; or, when `PGPLANE_E2E_LOKI_URL` is set, that existing Loki.
//! Dropping a started Loki stops it (by the pid it was started with).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, testbin};

pub struct Loki {
    pub url: String,
    started: Option<Started>,
}

struct Started {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    grpc_port: u16,
}

impl Loki {
    /// The live Loki of `PGPLANE_E2E_LOKI_URL`, or a new one. Panics, loudly,
    /// when the test servers are missing: this suite never skips itself.
    pub fn start() -> Loki {
        if let Ok(url) = std::env::var("PGPLANE_E2E_LOKI_URL") {
            eprintln!("Loki suite: against the live Loki at {url} (PGPLANE_E2E_LOKI_URL)");
            return Loki { url, started: None };
        }
        let bin = testbin();
        assert!(
            bin.join("loki").is_file() && bin.join("loki.yaml").is_file(),
            "\n\n  THE LOKI SUITE CANNOT RUN: no loki and loki.yaml in {}.\n  Set PGPLANE_TESTBIN to the test servers' directory (see ../shared/testbin/README.md).\n",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("pgplane-loki-")
            .tempdir()
            .unwrap();
        let mut loki = Loki {
            url: String::new(),
            started: Some(Started {
                child: None,
                dir,
                port: free_port(),
                grpc_port: free_port(),
            }),
        };
        // A free port can be taken by another test's server before Loki
        // binds it: then Loki exits at once, and is started on new ports.
        for attempt in 1.. {
            let s = loki.started.as_ref().unwrap();
            loki.url = format!("http://127.0.0.1:{}", s.port);
            match loki.run() {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("address already in use") => {
                    let s = loki.started.as_mut().unwrap();
                    s.child = None;
                    s.port = free_port();
                    s.grpc_port = free_port();
                }
                Err(log) => panic!("{log}"),
            }
        }
        loki
    }

    pub fn is_live(&self) -> bool {
        self.started.is_none()
    }

    /// Starts Loki and waits until it is ready; `Err` with its log when it
    /// exited first.
    fn run(&mut self) -> Result<(), String> {
        let bin = testbin();
        let s = self.started.as_mut().expect("a started Loki");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.dir.path().join("loki.log"))
            .unwrap();
        let child = Command::new(bin.join("loki"))
            .arg(format!("-config.file={}", bin.join("loki.yaml").display()))
            .arg("-config.expand-env=true")
            // As gitops/ configures it: the default 30m split makes a month's
            // range 1,440 subqueries (14 s on 2 cores); 24h makes it 30.
            .arg("-querier.split-queries-by-interval=24h")
            .env("LOKI_DIR", s.dir.path().join("data"))
            .env("LOKI_PORT", s.port.to_string())
            .env("LOKI_GRPC_PORT", s.grpc_port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("loki starts");
        s.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("{}/ready", self.url);
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            let ok = std::process::Command::new("curl")
                .args(["-fs", "-o", "/dev/null", "--max-time", "2", &url])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if let Some(Some(c)) = self.started.as_mut().map(|s| s.child.as_mut()) {
                if let Some(status) = c.try_wait().unwrap() {
                    return Err(format!("loki exited with {status}: {}", self.log()));
                }
            }
            assert!(
                Instant::now() < until,
                "loki ready within 90 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        self.started.as_ref().map_or_else(String::new, |s| {
            std::fs::read_to_string(s.dir.path().join("loki.log")).unwrap_or_default()
        })
    }

    /// Stops Loki (SIGTERM, then waits); its data stays for [`Loki::resume`].
    pub fn stop(&mut self) {
        let s = self
            .started
            .as_mut()
            .expect("only a started Loki can be stopped");
        if let Some(mut child) = s.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let until = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > until {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts the stopped Loki again, on the same ports and data.
    pub fn resume(&mut self) {
        if let Err(log) = self.run() {
            panic!("{log}");
        }
    }

    /// Sends lines to `/loki/api/v1/push` under `labels`, as a log shipper does.
    pub fn push(&self, labels: &serde_json::Value, lines: &[(i64, String)]) {
        let body = serde_json::json!({
            "streams": [{
                "stream": labels,
                "values": lines.iter().map(|(ts, l)| [ts.to_string(), l.clone()]).collect::<Vec<_>>(),
            }]
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), body.to_string()).unwrap();
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "content-type: application/json",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", file.path().display()))
            .arg(format!("{}/loki/api/v1/push", self.url))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            code,
            "204",
            "push refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Loki {
    fn drop(&mut self) {
        if let Some(s) = self.started.as_mut() {
            if let Some(mut c) = s.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
