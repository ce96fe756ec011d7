//! The `pgplane` CLI, the real binary against a real `pgplane serve` on
//! the local backend: login and contexts, every database command with
//! `--wait` and `-o json`, `db psql`, a wait that outlives a restart of the
//! server, each failure's line and exit code, a spec file shared with
//! `pgplane render`, and the progress line on a terminal only.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::served::{pgplane, tmp, wait_for, Served, Servers};

const PASSWORD: &str = "cli-test-password";
const SECRET: &str = "cli-test-jwt-secret-of-at-least-32-bytes";

/// A users file with one user of each role, and the settings that use it.
fn settings(dir: &Path) -> Vec<(String, String)> {
    let hash = pgplane::auth::password::hash(PASSWORD);
    let mut yaml = String::from("users:\n");
    for role in ["admin", "editor", "viewer"] {
        yaml.push_str(&format!(
            "- {{username: {role}, password_hash: '{hash}', role: {role}}}\n"
        ));
    }
    let users = dir.join("users.yaml");
    std::fs::write(&users, yaml).unwrap();
    vec![
        ("PGPLANE_USERS_FILE".into(), users.display().to_string()),
        ("PGPLANE_JWT_SECRET".into(), SECRET.into()),
    ]
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// One user's CLI: its own config directory, so its contexts are its own.
struct Cli {
    config: PathBuf,
}

/// What a command did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl Cli {
    fn new(dir: &Path, user: &str) -> Cli {
        let config = dir.join(format!("config-{user}"));
        std::fs::create_dir_all(&config).unwrap();
        Cli { config }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = pgplane(args);
        cmd.env("XDG_CONFIG_HOME", &self.config)
            .env_remove("HOME")
            .stdin(Stdio::null());
        cmd
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], None)
    }

    fn login(&self, served: &Served, user: &str) {
        let r = self.run_with(
            &["login", "--server", &served.base, "--username", user],
            &[],
            Some(&format!("{PASSWORD}\n")),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("as {user} ({user})")),
            "{}",
            r.stderr
        );
    }

    fn contexts_file(&self) -> PathBuf {
        self.config.join("pgplane").join("config.yaml")
    }
}

/// A long-running command (`--watch`, `--follow`) whose output lines are
/// read as they come; killed on drop.
struct Following {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Following {
    fn start(cli: &Cli, args: &[&str]) -> Following {
        let mut child = cli
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Following { child, lines }
    }

    /// The first line `wanted` accepts, within a deadline.
    fn until(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {what}"));
            let value: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if wanted(&value) {
                return value;
            }
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_whole_lifecycle_from_the_command_line() {
    let dir = tmp();
    let _servers = Servers(dir.path().join("data"));
    let env = settings(dir.path());
    let served = Served::start_with(dir.path(), "serve", &pairs(&env));
    let admin = Cli::new(dir.path(), "admin");
    admin.login(&served, "admin");

    // The token file is its owner's alone, and holds the token.
    let file = admin.contexts_file();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let dir_mode = std::fs::metadata(file.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let contexts: Value = serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(contexts["contexts"][0]["server"], served.base.as_str());
    assert!(contexts["contexts"][0]["token"].as_str().unwrap().len() > 20);
    let listed = admin.run(&["context", "list", "-o", "json"]).json();
    assert_eq!(listed["items"][0]["current"], true);
    assert_eq!(listed["items"][0]["logged_in"], true);
    assert!(!listed
        .to_string()
        .contains(contexts["contexts"][0]["token"].as_str().unwrap()));
    let me = admin.run(&["whoami"]);
    assert_eq!(
        me.stdout.trim(),
        format!("admin (admin) at {}", served.base)
    );

    // Someone watching every database, as JSON lines.
    let watch = Following::start(&admin, &["db", "list", "--watch", "-o", "json"]);
    wait_for("the watch open", Duration::from_secs(10), || {
        streams_open(&served) == 1
    });

    // Create and wait: the answer is the healthy database, field by field.
    let db = admin
        .run(&[
            "db",
            "create",
            "orders",
            "--instances",
            "2",
            "--storage",
            "1Gi",
            "--param",
            "work_mem=8MB",
            "--label",
            "team=payments",
            "--wait",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(db["name"], "orders");
    assert_eq!(db["state"], "healthy");
    assert_eq!(db["phase"], "Cluster in healthy state");
    assert_eq!(db["instances"], 2);
    assert_eq!(db["ready_instances"], 2);
    assert_eq!(db["storage"], "1Gi");
    assert_eq!(db["parameters"], json!({"work_mem": "8MB"}));
    assert_eq!(db["labels"], json!({"team": "payments"}));
    assert_eq!(db["owner"], "admin");
    assert_eq!(db["revision"], 1);
    assert!(db["endpoints"]["read_write"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(db["instances_status"].as_array().unwrap().len(), 2);

    // The same objects as the API's, for every reading command.
    let list = admin
        .run(&["db", "list", "--label", "team=payments", "-o", "json"])
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["name"], "orders");
    let none = admin
        .run(&["db", "list", "--label", "team=nobody", "-o", "json"])
        .json();
    assert_eq!(none["items"], json!([]));
    let table = admin.run(&["db", "list"]);
    assert_eq!(table.code, 0);
    let row: Vec<&str> = table
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..7],
        [
            "orders",
            "healthy",
            "2/2",
            "15",
            "1Gi",
            "team=payments",
            "admin"
        ]
    );
    let got = admin.run(&["db", "get", "orders", "-o", "yaml"]);
    let got: Value = serde_yaml::from_str(&got.stdout).unwrap();
    assert_eq!(got["revision"], 1);
    let instances = admin
        .run(&["db", "instances", "orders", "-o", "json"])
        .json();
    let roles: Vec<&str> = instances["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["primary", "standby"]);

    // Credentials: the password only when asked for; psql connects.
    let hidden = admin
        .run(&["db", "credentials", "orders", "-o", "json"])
        .json();
    assert!(hidden.get("password").is_none(), "{hidden}");
    assert!(hidden["uri"]
        .as_str()
        .unwrap()
        .starts_with("postgresql://app@127.0.0.1:"));
    let shown = admin
        .run(&[
            "db",
            "credentials",
            "orders",
            "--show-password",
            "-o",
            "json",
        ])
        .json();
    let password = shown["password"].as_str().unwrap();
    assert!(password.len() >= 16);
    assert!(!hidden.to_string().contains(password));
    let uri = admin.run(&[
        "db",
        "credentials",
        "orders",
        "--format",
        "uri",
        "--show-password",
    ]);
    assert_eq!(uri.stdout.trim(), shown["uri"].as_str().unwrap());
    let env_form = admin.run(&["db", "credentials", "orders", "--format", "env"]);
    assert!(
        env_form.stdout.contains("PGUSER='app'"),
        "{}",
        env_form.stdout
    );
    assert!(!env_form.stdout.contains("PGPASSWORD"));
    let psql = admin.run(&[
        "db",
        "psql",
        "orders",
        "--",
        "-tAc",
        "SELECT current_user || ' ' || (40 + 2)",
    ]);
    assert_eq!(psql.code, 0, "{}", psql.stderr);
    assert_eq!(psql.stdout.trim(), "app 42");

    // Update: only what is given changes; If-Match guards it.
    let stale = admin.run(&[
        "db",
        "update",
        "orders",
        "--label",
        "tier=gold",
        "--if-match",
        "7",
    ]);
    assert_eq!(stale.code, 8, "{}", stale.stderr);
    assert!(
        stale
            .stderr
            .starts_with("pgplane: 412 precondition failed: "),
        "{}",
        stale.stderr
    );
    let db = admin
        .run(&[
            "db",
            "update",
            "orders",
            "--instances",
            "1",
            "--if-match",
            "1",
            "--wait",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(
        (db["instances"].clone(), db["ready_instances"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(db["revision"], 2);
    assert_eq!(db["state"], "healthy");
    assert_eq!(db["parameters"], json!({"work_mem": "8MB"}));
    assert_eq!(db["labels"], json!({"team": "payments"}));

    // Revisions, then a rollback to the first (two instances again).
    let revisions = admin
        .run(&["db", "revisions", "orders", "-o", "json"])
        .json();
    let numbers: Vec<u64> = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 1]);
    assert_eq!(revisions["items"][0]["changes"]["instances"], json!([2, 1]));
    let db = admin
        .run(&["db", "rollback", "orders", "1", "--wait", "-o", "json"])
        .json();
    assert_eq!(db["revision"], 3);
    assert_eq!(
        (db["instances"].clone(), db["ready_instances"].clone()),
        (json!(2), json!(2))
    );

    // The transitions and the audit trail of all that.
    let events = admin.run(&["db", "events", "orders", "-o", "json"]).json();
    let transitions: Vec<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            format!(
                "{}>{}",
                e["from"].as_str().unwrap(),
                e["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(transitions[0], "creating>healthy", "{transitions:?}");
    assert!(
        transitions.contains(&"healthy>scaling".to_owned()),
        "{transitions:?}"
    );
    let audit = admin
        .run(&["audit", "--database", "orders", "-o", "json"])
        .json();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for action in [
        "database.create",
        "database.update",
        "database.rollback",
        "database.credentials_read",
    ] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    let refused = admin
        .run(&["audit", "--action", "database.update", "-o", "json"])
        .json();
    assert!(refused["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["status"] == 412));

    // The watcher saw it all live: each state on its way, then healthy at revision 3.
    let seen = watch.until("orders creating", |l| {
        l["type"] == "changed" && l["object"]["state"] == "creating"
    });
    assert_eq!(seen["object"]["name"], "orders");
    watch.until("orders healthy at 3", |l| {
        l["type"] == "changed" && l["object"]["state"] == "healthy" && l["object"]["revision"] == 3
    });
    let follow = Following::start(
        &admin,
        &["db", "events", "orders", "--follow", "-o", "json"],
    );

    // Delete and wait until it is gone.
    let gone = admin.run(&["db", "delete", "orders", "--wait"]);
    assert_eq!(gone.code, 0, "{}", gone.stderr);
    assert!(gone.stderr.contains("orders is gone"), "{}", gone.stderr);
    let missing = admin.run(&["db", "get", "orders"]);
    assert_eq!(missing.code, 7, "{}", missing.stderr);
    assert_eq!(
        missing.stderr.trim(),
        "pgplane: 404 not found: database orders does not exist"
    );
    assert!(support::servers_under(&served.data.join("databases")).is_empty());
    watch.until("orders deleted", |l| {
        l["type"] == "deleted" && l["object"]["name"] == "orders"
    });
    // The follower got the stored transitions, then the deletion as it came.
    follow.until("creating -> healthy", |e| {
        e["from"] == "creating" && e["to"] == "healthy"
    });
    follow.until("-> deleting", |e| e["to"] == "deleting");

    // Logout forgets the token; the next command says to log in.
    assert_eq!(admin.run(&["logout"]).code, 0);
    let out = admin.run(&["db", "list"]);
    assert_eq!(out.code, 5);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "pgplane: not logged in to {}: run pgplane login",
            served.base
        )
    );
}

#[test]
fn a_wait_outlives_a_restart_of_the_server() {
    let dir = tmp();
    let _servers = Servers(dir.path().join("data"));
    let env = settings(dir.path());
    let env = pairs(&env);
    let mut served = Served::start_with(dir.path(), "first", &env);
    let cli = Cli::new(dir.path(), "admin");
    cli.login(&served, "admin");
    let token = cli_token(&cli);
    // The server goes away once the create is acknowledged, before the
    // database is healthy. Should it have become healthy first (it takes
    // seconds, the kill follows in milliseconds), that try proves nothing
    // and another database is tried.
    for attempt in 0..3 {
        let name = format!("restarted-{attempt}");
        let mut waiting = cli
            .command(&[
                "db",
                "create",
                &name,
                "--instances",
                "2",
                "--wait",
                "-o",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the create acknowledged", Duration::from_secs(30), || {
            let (status, _) = support::served::blocking::call(
                reqwest::Method::GET,
                &format!("{}/api/v1/databases/{name}", served.base),
                Some(&token),
                None,
            );
            status == 200
        });
        served.kill_nine();
        let journal = std::fs::read_to_string(served.data.join("events.jsonl")).unwrap_or_default();
        let healthy_before = journal.lines().any(|l| {
            l.contains(&format!("\"database\":\"{name}\"")) && l.contains("\"to\":\"healthy\"")
        });
        let second = Served::restart(&mut served, dir.path(), &format!("run-{attempt}"), &env);
        let until = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = waiting.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < until,
                "the wait did not end after the restart"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = waiting.wait_with_output().unwrap();
        served = second;
        if healthy_before {
            continue;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(status.success(), "{stderr}");
        let db: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(db["name"], name.as_str());
        assert_eq!(db["state"], "healthy");
        assert_eq!(db["ready_instances"], 2);
        // It was the restarted server's stream that told it so.
        let (log, _) = served.output();
        assert!(
            log.lines()
                .any(|l| l.contains("\"route\":\"/api/v1/databases\"")
                    && l.contains("\"method\":\"GET\"")),
            "the restarted server never served the watch"
        );
        return;
    }
    panic!("each of 3 databases was healthy before pgplane could be killed");
}

/// The change streams the server has open, from its metrics.
fn streams_open(served: &Served) -> u64 {
    let text = support::served::blocking::text(&format!("{}/metrics", served.base));
    text.lines()
        .find_map(|l| l.strip_prefix("pgplane_streams_open "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn cli_token(cli: &Cli) -> String {
    let contexts: Value =
        serde_yaml::from_str(&std::fs::read_to_string(cli.contexts_file()).unwrap()).unwrap();
    contexts["contexts"][0]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn every_failure_is_one_line_and_its_own_exit_code() {
    let dir = tmp();
    let _servers = Servers(dir.path().join("data"));
    let env = settings(dir.path());
    let served = Served::start_with(dir.path(), "serve", &pairs(&env));
    let editor = Cli::new(dir.path(), "editor");
    editor.login(&served, "editor");

    // 422: one line, then one line per bad field.
    let bad = editor.run(&["db", "create", "Bad_Name", "--instances", "0"]);
    assert_eq!(bad.code, 2);
    let lines: Vec<&str> = bad.stderr.lines().collect();
    assert_eq!(lines[0], "pgplane: 422 unprocessable entity");
    assert!(lines[1].starts_with("  name: "), "{lines:?}");
    assert!(lines[2].starts_with("  instances: "), "{lines:?}");
    assert_eq!(lines.len(), 3);
    // A usage error is clap's, with the same code.
    assert_eq!(
        editor
            .run(&["db", "create", "x", "--instances", "two"])
            .code,
        2
    );

    // A failed database: --wait ends with its reason and exit 10.
    let db = editor
        .run(&["db", "create", "breaks", "--wait", "-o", "json"])
        .json();
    let pgdata = served.data.join("databases/breaks/breaks-1/pgdata");
    let pid: i32 = std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    std::fs::remove_file(pgdata.join("PG_VERSION")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The reconciler sees the server gone before the change is asked for:
    // else a change of labels alone could be done on a healthy database.
    wait_for("breaks no longer healthy", Duration::from_secs(30), || {
        editor.run(&["db", "get", "breaks", "-o", "json"]).json()["state"] != "healthy"
    });
    let failed = editor.run(&[
        "db",
        "update",
        "breaks",
        "--label",
        "x=y",
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert_eq!(failed.code, 10, "{}", failed.stderr);
    assert!(
        failed
            .stderr
            .starts_with("pgplane: breaks: it failed: Cluster is unrecoverable"),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .contains("is not a database cluster directory"),
        "{}",
        failed.stderr
    );
    assert_eq!(db["revision"], 1);

    // A timeout: exit 11, saying what was waited for.
    let slow = editor.run(&[
        "db",
        "create",
        "slow",
        "--instances",
        "2",
        "--wait",
        "--timeout",
        "10ms",
    ]);
    assert_eq!(slow.code, 11, "{}", slow.stderr);
    assert!(
        slow.stderr
            .starts_with("pgplane: slow did not become healthy within "),
        "{}",
        slow.stderr
    );

    // A viewer is refused what it may not do, and may read.
    let viewer = Cli::new(dir.path(), "viewer");
    viewer.login(&served, "viewer");
    let refused = viewer.run(&["db", "delete", "slow", "--yes"]);
    assert_eq!(refused.code, 6, "{}", refused.stderr);
    assert!(
        refused.stderr.starts_with("pgplane: 403 forbidden: "),
        "{}",
        refused.stderr
    );
    assert_eq!(viewer.run(&["db", "credentials", "slow"]).code, 6);
    assert_eq!(viewer.run(&["audit"]).code, 6);
    assert_eq!(
        viewer.run(&["db", "get", "slow", "-o", "json"]).json()["name"],
        "slow"
    );

    // An expired token: in the contexts file, and given by PGPLANE_TOKEN.
    let file = editor.contexts_file();
    let text = std::fs::read_to_string(&file).unwrap();
    let mut contexts: Value = serde_yaml::from_str(&text).unwrap();
    contexts["contexts"][0]["expires_at"] = json!("2026-01-01T00:00:00Z");
    std::fs::write(&file, serde_yaml::to_string(&contexts).unwrap()).unwrap();
    let expired = editor.run(&["db", "list"]);
    assert_eq!(expired.code, 5);
    assert_eq!(
        expired.stderr.trim(),
        format!(
            "pgplane: the token for {} expired at 2026-01-01 00:00:00 UTC: run pgplane login",
            served.base
        )
    );
    let now = chrono::Utc::now().timestamp() as u64;
    let old = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "editor", "iss": "pgplane", "iat": now - 7200, "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let by_env = editor.run_with(
        &["db", "list", "--server", &served.base],
        &[("PGPLANE_TOKEN", &old)],
        None,
    );
    assert_eq!(by_env.code, 5, "{}", by_env.stderr);
    assert!(
        by_env.stderr.starts_with("pgplane: 401 unauthorized: "),
        "{}",
        by_env.stderr
    );
    assert!(
        by_env.stderr.trim_end().ends_with("; run pgplane login"),
        "{}",
        by_env.stderr
    );

    // No server, or not speaking TLS where https was asked for.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = editor.run_with(
        &["db", "list", "--server", &nowhere],
        &[("PGPLANE_TOKEN", "t")],
        None,
    );
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    assert!(
        unreachable
            .stderr
            .starts_with(&format!("pgplane: cannot reach {nowhere}: ")),
        "{}",
        unreachable.stderr
    );
    assert_eq!(unreachable.stderr.lines().count(), 1);
    let tls = served.base.replace("http://", "https://");
    let tls_failed = editor.run_with(
        &["db", "list", "--server", &tls],
        &[("PGPLANE_TOKEN", "t")],
        None,
    );
    assert_eq!(tls_failed.code, 4, "{}", tls_failed.stderr);
    assert!(
        tls_failed
            .stderr
            .starts_with(&format!("pgplane: TLS with {tls} failed: ")),
        "{}",
        tls_failed.stderr
    );

    // A CI job: a token and a server from the environment, no home, no file.
    let token = cli_token(&editor);
    let ci = pgplane(&["db", "list", "-o", "json"])
        .env_remove("HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env("PGPLANE_SERVER", &served.base)
        .env("PGPLANE_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        ci.status.success(),
        "{}",
        String::from_utf8_lossy(&ci.stderr)
    );
    let listed: Value = serde_json::from_slice(&ci.stdout).unwrap();
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"] == "slow"));
    // A context's token never goes to another server; a server must be a URL.
    let elsewhere = editor.run(&[
        "db",
        "list",
        "--context",
        "127.0.0.1:1",
        "--server",
        &served.base,
    ]);
    assert_eq!(elsewhere.code, 2, "{}", elsewhere.stderr);
    let mismatch = editor.run(&[
        "db",
        "list",
        "--context",
        served.base.trim_start_matches("http://"),
        "--server",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(mismatch.code, 2, "{}", mismatch.stderr);
    assert!(
        mismatch
            .stderr
            .contains("give one of --context and --server"),
        "{}",
        mismatch.stderr
    );
    let bad = editor.run_with(
        &["db", "list", "--server", "not a url"],
        &[("PGPLANE_TOKEN", "t")],
        None,
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr
            .starts_with("pgplane: \"not a url\" is not a server URL: "),
        "{}",
        bad.stderr
    );

    // A wrong password, then the login limit with when to retry. Last:
    // the limit holds this client address for a while.
    let wrong = editor.run_with(
        &["login", "--server", &served.base, "--username", "editor"],
        &[],
        Some("not-the-password\n"),
    );
    assert_eq!(wrong.code, 5, "{}", wrong.stderr);
    assert!(
        wrong.stderr.starts_with("pgplane: 401 unauthorized: "),
        "{}",
        wrong.stderr
    );
    let limited = (0..60)
        .map(|_| {
            editor.run_with(
                &["login", "--server", &served.base, "--username", "editor"],
                &[],
                Some("not-the-password\n"),
            )
        })
        .find(|r| r.code != 5)
        .expect("the login limit answers within 60 attempts");
    assert_eq!(limited.code, 9, "{}", limited.stderr);
    assert!(
        limited
            .stderr
            .starts_with("pgplane: 429 too many requests: "),
        "{}",
        limited.stderr
    );
    assert!(limited.stderr.contains("; retry in "), "{}", limited.stderr);
}

#[test]
fn a_spec_file_is_the_one_render_reads() {
    let dir = tmp();
    let _servers = Servers(dir.path().join("data"));
    let env = settings(dir.path());
    let served = Served::start_with(dir.path(), "serve", &pairs(&env));
    let spec = dir.path().join("ledger.yaml");
    std::fs::write(
        &spec,
        "name: ledger\ninstances: 1\nstorage: 2Gi\nparameters:\n  max_connections: \"50\"\nlabels:\n  team: finance\n",
    )
    .unwrap();
    let rendered = pgplane(&["render", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let cluster: Value = serde_yaml::from_slice(&rendered.stdout).unwrap();
    assert_eq!(cluster["metadata"]["name"], "ledger");
    assert_eq!(
        cluster["spec"]["postgresql"]["parameters"]["max_connections"],
        "50"
    );

    let cli = Cli::new(dir.path(), "admin");
    cli.login(&served, "admin");
    let db = cli
        .run(&[
            "db",
            "create",
            "-f",
            spec.to_str().unwrap(),
            "--wait",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(db["name"], "ledger");
    assert_eq!(db["storage"], "2Gi");
    assert_eq!(db["parameters"], json!({"max_connections": "50"}));
    assert_eq!(
        db["labels"],
        cluster["metadata"]["labels"]["team"]
            .as_str()
            .map(|t| json!({"team": t}))
            .unwrap()
    );
    assert_eq!(db["state"], "healthy");
    let clash = cli.run(&["db", "create", "other", "-f", spec.to_str().unwrap()]);
    assert_eq!(clash.code, 2);
    assert_eq!(
        clash.stderr.trim(),
        "pgplane: the name \"other\" differs from the spec file's \"ledger\""
    );
}

#[test]
fn the_progress_line_shows_on_a_terminal_and_not_in_a_pipe() {
    let dir = tmp();
    let _servers = Servers(dir.path().join("data"));
    let env = settings(dir.path());
    let served = Served::start_with(dir.path(), "serve", &pairs(&env));
    let cli = Cli::new(dir.path(), "admin");
    cli.login(&served, "admin");

    // Under a real terminal: `script` runs the command on a pty.
    let shell = format!(
        "XDG_CONFIG_HOME='{}' '{}' db create tty --instances 2 --wait",
        cli.config.display(),
        support::served::BIN
    );
    let typescript = dir.path().join("typescript");
    let out = Command::new("script")
        .args(["-qefc", &shell, typescript.to_str().unwrap()])
        .env_remove("PGPLANE_SERVER")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(seen.contains("tty: creating, 0/2 ready"), "{seen}");
    assert!(seen.contains("tty is healthy, 2/2 ready, after "), "{seen}");

    // In a pipe: no progress line, only the outcome.
    let piped = cli.run(&["db", "create", "piped", "--instances", "2", "--wait"]);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    let lines: Vec<&str> = piped.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("piped is healthy, 2/2 ready, after "),
        "{lines:?}"
    );
    assert!(!piped.stderr.contains('\r') && !piped.stderr.contains('\x1b'));
}

#[test]
fn help_lists_every_exit_code_and_completion_scripts_know_the_commands() {
    let help = pgplane(&["--help"]).output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let codes: Vec<&str> = help
        .lines()
        .skip_while(|l| *l != "Exit codes:")
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let expected: Vec<String> = (0..=11).map(|c| c.to_string()).collect();
    assert_eq!(codes, expected, "{help}");
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef pgplane"),
        ("fish", "complete -c pgplane"),
    ] {
        let out = pgplane(&["completion", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script:.200}");
        for word in ["login", "credentials", "rollback", "--wait"] {
            assert!(script.contains(word), "{shell} completes no {word}");
        }
    }
}
