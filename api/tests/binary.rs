//! The real `pgplane` binary: a bad setting stops start-up with one line;
//! `serve` runs a database's whole life with JSON logs that never carry a
//! password, token or secret; the bootstrap admin's password is printed once.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::served::{blocking, pgplane, tmp, wait_for, Served, Servers, ADMIN_PASSWORD};

#[test]
fn bad_settings_stop_start_up_with_one_line_naming_the_setting() {
    let dir = tmp();
    let data = dir.path().join("data");
    let cases: &[(&str, &str, &str)] = &[
        ("PGPLANE_LISTEN", "nope", "PGPLANE_LISTEN"),
        ("PGPLANE_BACKEND", "cloud", "PGPLANE_BACKEND"),
        ("PGPLANE_TOKEN_TTL", "forever", "PGPLANE_TOKEN_TTL"),
        ("PGPLANE_JWT_SECRET", "short", "PGPLANE_JWT_SECRET"),
        (
            "PGPLANE_JWT_SECRET_FILE",
            "/nonexistent",
            "PGPLANE_JWT_SECRET_FILE",
        ),
        ("PGPLANE_MAX_INSTANCES", "0", "PGPLANE_MAX_INSTANCES"),
        ("PGPLANE_LOG_FORMAT", "xml", "PGPLANE_LOG_FORMAT"),
        (
            "PGPLANE_POSTGRES_VERSIONS",
            "abc",
            "PGPLANE_POSTGRES_VERSIONS",
        ),
        (
            "PGPLANE_POSTGRES_VERSIONS",
            "99",
            "PGPLANE_POSTGRES_VERSIONS",
        ),
        ("PGPLANE_USERS_FILE", "/nonexistent", "PGPLANE_USERS_FILE"),
        ("PGPLANE_PG_BINDIR", "/nonexistent", "PGPLANE_PG_BINDIR"),
        ("PGPLANE_DATA_DIR", "/proc/pgplane", "PGPLANE_DATA_DIR"),
        ("PGPLANE_ADMIN_PASSWORD", "", "PGPLANE_ADMIN_PASSWORD"),
    ];
    let mut cases = cases.to_vec();
    if nix::unistd::geteuid().is_root() {
        cases.push(("PGPLANE_PG_USER", "no-such-account", "PGPLANE_PG_USER"));
    }
    for (var, value, named) in cases {
        let out = pgplane(&["serve"])
            .env("PGPLANE_DATA_DIR", &data)
            .env(var, value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{var}={value}: one line, got {stderr:?}");
        assert!(
            lines[0].starts_with(&format!("pgplane: bad setting {named}: ")),
            "{var}={value}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{var}={value}");
    }
    // A taken port, too, before anything else starts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = pgplane(&["serve"])
        .env("PGPLANE_DATA_DIR", &data)
        .env("PGPLANE_LISTEN", taken.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("pgplane: bad setting PGPLANE_LISTEN: cannot listen"));
}

#[test]
fn hash_password_makes_an_argon2_hash_that_verifies() {
    let mut child = pgplane(&["hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret-passphrase\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(pgplane::auth::password::verify("s3cret-passphrase", hash));
    assert!(!pgplane::auth::password::verify(
        "s3cret-passphrase\n",
        hash
    ));
    let out = pgplane(&["hash-password"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "an empty password is refused");
}

#[test]
fn serve_keeps_every_secret_out_of_its_logs_and_shows_the_admin_password_once() {
    use blocking::call;
    use reqwest::Method;
    let dir = tmp();
    let _servers = Servers(dir.path().join("data"));
    let mut first = Served::start(dir.path(), "first");
    let (_, stderr) = first.output();
    let password = stderr
        .lines()
        .find_map(|l| l.split("generated the password of user admin: ").nth(1))
        .expect("the first start prints the generated admin password")
        .trim()
        .to_owned();
    let api = |served: &Served, path: &str| format!("{}/api/v1{path}", served.base);

    let (status, login) = call(
        Method::POST,
        &api(&first, "/auth/login"),
        None,
        Some(json!({"username": "admin", "password": password})),
    );
    assert_eq!(status, 200, "{login}");
    let token = login["access_token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        Method::POST,
        &api(&first, "/auth/login"),
        None,
        Some(json!({"username": "admin", "password": "wrong-guess-123"})),
    );
    assert_eq!(status, 401);

    let (status, body) = call(
        Method::POST,
        &api(&first, "/databases"),
        Some(&token),
        Some(json!({"name": "logs", "parameters": {"work_mem": "8MB"}})),
    );
    assert_eq!(status, 202, "{body}");
    wait_for("logs healthy", Duration::from_secs(120), || {
        call(
            Method::GET,
            &api(&first, "/databases/logs"),
            Some(&token),
            None,
        )
        .1["state"]
            == "healthy"
    });
    let (status, creds) = call(
        Method::GET,
        &api(&first, "/databases/logs/credentials"),
        Some(&token),
        None,
    );
    assert_eq!(status, 200);
    let app_password = creds["password"].as_str().unwrap().to_owned();
    let secrets: Value = serde_json::from_slice(
        &std::fs::read(first.data.join("databases/logs/secrets.json")).unwrap(),
    )
    .unwrap();
    let jwt_secret = std::fs::read_to_string(first.data.join("jwt-secret")).unwrap();

    let (status, _) = call(
        Method::DELETE,
        &api(&first, "/databases/logs"),
        Some(&token),
        None,
    );
    assert_eq!(status, 202);
    wait_for("logs gone", Duration::from_secs(60), || {
        call(
            Method::GET,
            &api(&first, "/databases/logs"),
            Some(&token),
            None,
        )
        .0 == 404
    });
    first.stop();

    // The second start shows no password, and the kept one still works.
    let mut second = Served::start(dir.path(), "second");
    let (status, _) = call(
        Method::POST,
        &api(&second, "/auth/login"),
        None,
        Some(json!({"username": "admin", "password": password})),
    );
    assert_eq!(status, 200);
    second.stop();

    let mut secret_values = vec![
        password.clone(),
        token.clone(),
        app_password,
        jwt_secret.trim().to_owned(),
    ];
    let mut stack = vec![secrets];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.len() >= 12 => secret_values.push(s),
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    let (out1, err1) = first.output();
    let (out2, err2) = second.output();
    assert!(!err2.contains("generated the password"), "{err2}");
    let banner = |l: &&str| !l.contains("generated the password of user admin");
    let logs: Vec<&str> = [&out1, &err1, &out2, &err2]
        .iter()
        .flat_map(|t| t.lines())
        .filter(banner)
        .collect();
    for secret in &secret_values {
        for line in &logs {
            assert!(
                !line.contains(secret.as_str()),
                "a secret in the log: {line}"
            );
        }
    }
    // Logs are JSON lines, and requests carry their id.
    let mut request_lines = 0;
    for line in out1.lines().chain(out2.lines()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["request_id"] == "binary-test" || v["span"]["request_id"] == "binary-test" {
            request_lines += 1;
        }
    }
    assert!(request_lines >= 5, "request lines carry their id:\n{out1}");
}

#[test]
fn a_second_serve_on_the_same_data_directory_is_refused() {
    let dir = tmp();
    let _servers = Servers(dir.path().join("data"));
    let first = Served::start(dir.path(), "first");
    let out = pgplane(&["serve"])
        .env("PGPLANE_DATA_DIR", &first.data)
        .env("PGPLANE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("pgplane: bad setting PGPLANE_DATA_DIR: another pgplane (pid "),
        "{stderr}"
    );
}

/// Processes whose command line names `dir`: servers, and any helper
/// (initdb, pg_basebackup) a killed pgplane left running.
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// `kill -9` of pgplane right after it acknowledged a create, a scale up, a
/// scale down and a delete; each restart converges to what was acknowledged,
/// with exactly the wanted servers running and nothing left at the end.
#[test]
fn kill_nine_of_pgplane_mid_operation_converges_after_a_restart() {
    use blocking::call;
    use reqwest::Method;
    let dir = tmp();
    let _servers = Servers(dir.path().join("data"));
    let env = [("PGPLANE_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    let db = |s: &Served| format!("{}/api/v1/databases/crash", s.base);
    let state_of = |s: &Served, token: &str| call(Method::GET, &db(s), Some(token), None);
    let running = |data: &Path| support::servers_under(&data.join("databases/crash")).len();

    let mut served = Served::start_with(dir.path(), "0", &env);
    let token = served.token();
    let (status, body) = call(
        Method::POST,
        &format!("{}/api/v1/databases", served.base),
        Some(&token),
        Some(json!({"name": "crash", "instances": 2})),
    );
    assert_eq!(status, 202, "{body}");
    served.kill_nine();

    // What the restarted pgplane must converge to, then the next
    // operation, acknowledged just before pgplane dies again.
    let steps = [
        ("create", 2, Some(Next::Patch(json!({"instances": 3})))),
        ("scale up", 3, Some(Next::Patch(json!({"instances": 1})))),
        ("scale down", 1, Some(Next::Delete)),
        ("delete", 0, None),
    ];
    for (run, (what, wanted, next)) in steps.into_iter().enumerate() {
        let mut served = Served::start_with(dir.path(), &format!("{}", run + 1), &env);
        let token = served.token();
        if wanted == 0 {
            wait_for(&format!("{what}: gone"), Duration::from_secs(120), || {
                state_of(&served, &token).0 == 404
            });
        } else {
            let mut last = Value::Null;
            let until = Instant::now() + Duration::from_secs(120);
            while !(last["state"] == "healthy" && last["ready_instances"] == wanted) {
                assert!(Instant::now() < until, "{what}: not healthy: {last}");
                std::thread::sleep(Duration::from_millis(50));
                last = state_of(&served, &token).1;
            }
            assert_eq!(running(&served.data), wanted, "{what}: servers running");
        }
        match next {
            Some(Next::Patch(patch)) => {
                assert_eq!(call_patch(&db(&served), &token, patch), 202, "{what}");
                served.kill_nine();
            }
            Some(Next::Delete) => {
                let (status, _) = call(Method::DELETE, &db(&served), Some(&token), None);
                assert_eq!(status, 202);
                served.kill_nine();
            }
            None => served.stop(),
        }
    }
    let data = dir.path().join("data");
    assert!(support::servers_under(&data).is_empty(), "no server left");
    assert!(
        std::fs::read_dir(data.join("databases"))
            .unwrap()
            .next()
            .is_none(),
        "no directory left"
    );
    assert_eq!(
        processes_using(&data),
        Vec::<String>::new(),
        "no process left"
    );
}

enum Next {
    Patch(Value),
    Delete,
}

fn call_patch(url: &str, token: &str, patch: Value) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .patch(url)
            .bearer_auth(token)
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}
