//! The audit trail on the local store, through the real binary: every
//! audited request gives exactly one record, on standard output and in the
//! store, before the answer; records survive a restart; concurrent writers
//! leave whole lines; a store that cannot write fails the request with 503
//! and changes nothing.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use support::served::{blocking, tmp, wait_for, Served, Servers};

const SECRET: &str = "audit-test-secret-audit-test-secret!";
const PASSWORD: &str = "audit-test-password";

/// Users of every role, for the real binary.
fn settings(dir: &Path) -> Vec<(String, String)> {
    let hash = pgplane::auth::password::hash(PASSWORD);
    let mut yaml = String::from("users:\n");
    for (user, role) in [
        ("admin", "admin"),
        ("editor", "editor"),
        ("viewer", "viewer"),
    ] {
        yaml.push_str(&format!(
            "- {{username: {user}, password_hash: '{hash}', role: {role}}}\n"
        ));
    }
    let users = dir.join("users.yaml");
    std::fs::write(&users, yaml).unwrap();
    vec![
        ("PGPLANE_USERS_FILE".into(), users.display().to_string()),
        ("PGPLANE_JWT_SECRET".into(), SECRET.into()),
    ]
}

/// pgplane with those users; with `keep_output` false its stdout and stderr
/// go to /dev/null instead of files.
fn start(dir: &Path, run: &str, keep_output: bool) -> Served {
    let env = settings(dir);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if keep_output {
        Served::start_with(dir, run, &env)
    } else {
        Served::start_discarding_output(dir, run, &env)
    }
}

struct Client<'a> {
    served: &'a Served,
}

impl Client<'_> {
    fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, body) =
            blocking::call(method, &format!("{}{path}", self.served.base), token, body);
        (status.as_u16(), body)
    }

    fn login(&self, user: &str, password: &str) -> (u16, Value) {
        self.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": user, "password": password})),
        )
    }

    fn token(&self, user: &str) -> String {
        let (status, body) = self.login(user, PASSWORD);
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Every audit record, oldest first, read page by page.
    fn all_records(&self, admin: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/audit?limit=7{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.call(Method::GET, &path, Some(admin), None);
            assert_eq!(status, 200, "{page}");
            out.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        out.reverse();
        out
    }
}

fn audit_lines(served: &Served) -> Vec<Value> {
    let (out, _) = served.output();
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["log_type"] == "audit")
        .collect()
}

/// (action, outcome, status, actor, database) of a record.
type Summary = (String, String, u64, String, String);

fn summary(r: &Value) -> Summary {
    (
        r["action"].as_str().unwrap().to_owned(),
        r["outcome"].as_str().unwrap().to_owned(),
        r["status"].as_u64().unwrap(),
        r["actor"].as_str().unwrap().to_owned(),
        r["database"].as_str().unwrap_or("").to_owned(),
    )
}

fn row(a: &str, o: &str, s: u64, actor: &str, db: &str) -> Summary {
    (a.into(), o.into(), s, actor.into(), db.into())
}

#[test]
fn every_audited_request_gives_one_record_in_order_on_stdout_and_in_the_store() {
    let dir = tmp();
    let _servers = Servers(dir.path().join("data"));
    let mut served = start(dir.path(), "first", true);
    let c = Client { served: &served };
    let mut expected = Vec::new();

    let admin = c.token("admin");
    expected.push(row("auth.login", "success", 200, "admin", ""));
    assert_eq!(c.login("admin", "wrong-password").0, 401);
    expected.push(row("auth.login_failed", "denied", 401, "admin", ""));
    // A name that is no user's may be a mistyped password: never recorded.
    assert_eq!(c.login("hunter2-typed-as-name", PASSWORD).0, 401);
    expected.push(row(
        "auth.login_failed",
        "denied",
        401,
        "(unknown user)",
        "",
    ));
    let editor = c.token("editor");
    expected.push(row("auth.login", "success", 200, "editor", ""));
    let viewer = c.token("viewer");
    expected.push(row("auth.login", "success", 200, "viewer", ""));

    let create = |token: Option<&str>, body: Value| {
        c.call(Method::POST, "/api/v1/databases", token, Some(body))
    };
    assert_eq!(create(Some(&editor), json!({"name": "orders"})).0, 202);
    expected.push(row("database.create", "success", 202, "editor", "orders"));
    assert_eq!(create(Some(&editor), json!({"name": "orders"})).0, 409);
    expected.push(row("database.create", "invalid", 409, "editor", "orders"));
    assert_eq!(
        create(Some(&editor), json!({"name": "x", "instances": 99})).0,
        422
    );
    expected.push(row("database.create", "invalid", 422, "editor", "x"));
    assert_eq!(create(Some(&viewer), json!({"name": "peek"})).0, 403);
    expected.push(row("database.create", "denied", 403, "viewer", ""));
    assert_eq!(create(None, json!({"name": "anon"})).0, 401);
    expected.push(row("database.create", "denied", 401, "anonymous", ""));
    // Reads that change nothing are not audited.
    assert_eq!(
        c.call(Method::GET, "/api/v1/databases", Some(&viewer), None)
            .0,
        200
    );
    assert_eq!(
        c.call(Method::GET, "/api/v1/databases/orders", Some(&viewer), None)
            .0,
        200
    );

    wait_for("orders healthy", Duration::from_secs(60), || {
        c.call(Method::GET, "/api/v1/databases/orders", Some(&viewer), None)
            .1["state"]
            == "healthy"
    });
    let (status, _) = c.call(
        Method::PATCH,
        "/api/v1/databases/orders",
        Some(&editor),
        Some(json!({"labels": {"team": "payments"}})),
    );
    assert_eq!(status, 202);
    expected.push(row("database.update", "success", 202, "editor", "orders"));
    let (status, creds) = c.call(
        Method::GET,
        "/api/v1/databases/orders/credentials",
        Some(&editor),
        None,
    );
    assert_eq!(status, 200);
    expected.push(row(
        "database.credentials_read",
        "success",
        200,
        "editor",
        "orders",
    ));
    assert_eq!(
        c.call(Method::GET, "/api/v1/audit", Some(&viewer), None).0,
        403
    );
    expected.push(row("audit.read", "denied", 403, "viewer", ""));
    assert_eq!(
        c.call(Method::GET, "/api/v1/audit", Some(&editor), None).0,
        403
    );
    expected.push(row("audit.read", "denied", 403, "editor", ""));
    assert_eq!(
        c.call(
            Method::GET,
            "/api/v1/databases/orders/audit",
            Some(&viewer),
            None
        )
        .0,
        403
    );
    expected.push(row("audit.read", "denied", 403, "viewer", "orders"));
    assert_eq!(
        c.call(
            Method::GET,
            "/api/v1/databases/orders/audit",
            Some(&editor),
            None
        )
        .0,
        200
    );
    assert_eq!(
        c.call(
            Method::DELETE,
            "/api/v1/databases/orders",
            Some(&editor),
            None
        )
        .0,
        202
    );
    expected.push(row("database.delete", "success", 202, "editor", "orders"));
    wait_for("orders gone", Duration::from_secs(60), || {
        c.call(Method::GET, "/api/v1/databases/orders", Some(&viewer), None)
            .0
            == 404
    });
    assert_eq!(
        c.call(
            Method::DELETE,
            "/api/v1/databases/orders",
            Some(&editor),
            None
        )
        .0,
        204
    );
    expected.push(row("database.delete", "success", 204, "editor", "orders"));

    let records = c.all_records(&admin, "");
    let got: Vec<_> = records.iter().map(summary).collect();
    assert_eq!(
        got, expected,
        "exactly one record per audited request, in order"
    );
    let update = &records[10];
    assert_eq!(
        update["changes"],
        json!({"labels": [{}, {"team": "payments"}]})
    );
    assert_eq!(update["role"], "editor");
    assert_eq!(update["source_ip"], "127.0.0.1");
    assert!(
        records[1].get("role").is_none(),
        "a failed login has no role"
    );

    // The same records, one line each, on standard output.
    let ids = |v: &[Value]| -> BTreeSet<String> {
        v.iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let printed = audit_lines(&served);
    assert_eq!(printed.len(), expected.len());
    assert_eq!(ids(&printed), ids(&records));
    // Nothing secret in any of them.
    let out = served.output().0;
    for secret in [
        PASSWORD,
        &admin,
        &editor,
        creds["password"].as_str().unwrap(),
        SECRET,
    ] {
        assert!(!out.contains(secret), "a secret was printed");
    }

    // Filters, each against the full list.
    let only =
        |query: &str| -> Vec<_> { c.all_records(&admin, query).iter().map(summary).collect() };
    let keep = |f: &dyn Fn(&Summary) -> bool| -> Vec<_> {
        expected.iter().filter(|r| f(r)).cloned().collect()
    };
    assert_eq!(
        only("&action=database.create"),
        keep(&|r| r.0 == "database.create")
    );
    assert_eq!(only("&actor=viewer"), keep(&|r| r.3 == "viewer"));
    assert_eq!(only("&database=orders"), keep(&|r| r.4 == "orders"));
    assert_eq!(
        only("&database=orders&action=database.delete&actor=editor"),
        keep(&|r| r.4 == "orders" && r.0 == "database.delete")
    );
    let t = |i: usize| records[i]["ts"].as_str().unwrap().replace('+', "%2B");
    let window: Vec<_> = c
        .all_records(&admin, &format!("&since={}&until={}", t(3), t(8)))
        .iter()
        .map(summary)
        .collect();
    assert_eq!(window, expected[3..8]);
    let (status, page) = c.call(
        Method::GET,
        "/api/v1/databases/orders/audit?limit=1000",
        Some(&editor),
        None,
    );
    assert_eq!(status, 200);
    let per_db: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(summary)
        .collect();
    assert_eq!(per_db, keep(&|r| r.4 == "orders"));
    // A cursor of the Loki store is well-formed, but not one this store returned.
    let loki_cursor = format!(
        "cursor={}",
        pgplane::model::paging::encode_cursor(&pgplane::records::Cursor::Loki {
            ts_ns: 1,
            seen: vec![]
        })
    );
    for bad in [
        "limit=0",
        "action=database.drop",
        "since=soon",
        "database=Bad!",
        "cursor=abc",
        &loki_cursor,
        "colour=red",
    ] {
        let (status, problem) = c.call(
            Method::GET,
            &format!("/api/v1/audit?{bad}"),
            Some(&admin),
            None,
        );
        assert_eq!(status, 422, "{bad}: {problem}");
    }

    // A restart keeps every record.
    served.stop();
    let again = start(dir.path(), "second", true);
    let c2 = Client { served: &again };
    let admin2 = c2.token("admin");
    let after: Vec<Value> = c2.all_records(&admin2, "");
    assert_eq!(after.len(), records.len() + 1, "plus the new login");
    assert_eq!(after[..records.len()], records[..]);
}

#[test]
fn fifty_concurrent_writers_leave_fifty_whole_records() {
    let dir = tmp();
    let served = start(dir.path(), "concurrent", true);
    let c = Client { served: &served };
    let editor = c.token("editor");
    let base = served.base.clone();
    std::thread::scope(|s| {
        for i in 0..50 {
            let (base, editor) = (base.clone(), editor.clone());
            s.spawn(move || {
                let (status, _) = blocking::call(
                    Method::POST,
                    &format!("{base}/api/v1/databases"),
                    Some(&editor),
                    Some(json!({"name": format!("db-{i}"), "instances": 0})),
                );
                assert_eq!(status, 422);
            });
        }
    });
    let text = std::fs::read_to_string(served.data.join("audit.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a whole line"))
        .collect();
    let creates: BTreeSet<String> = lines
        .iter()
        .filter(|r| r["action"] == "database.create")
        .map(|r| r["database"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(creates.len(), 50, "one record per writer");
    assert_eq!(lines.len(), 51, "and the login");
    assert_eq!(audit_lines(&served).len(), 51);
}

/// Limits the size of files `pid` may write: appends past it fail (EFBIG).
fn limit_file_size(pid: u32, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_store_that_cannot_write_fails_the_request_with_503_and_changes_nothing() {
    let dir = tmp();
    let _servers = Servers(dir.path().join("data"));
    // Its stdout and stderr must not be files: the limit would hit them too.
    let served = start(dir.path(), "full", false);
    let c = Client { served: &served };
    let editor = c.token("editor");
    let admin = c.token("admin");
    let get = |name: &str| {
        c.call(
            Method::GET,
            &format!("/api/v1/databases/{name}"),
            Some(&editor),
            None,
        )
    };
    assert_eq!(
        c.call(
            Method::POST,
            "/api/v1/databases",
            Some(&editor),
            Some(json!({"name": "kept"}))
        )
        .0,
        202
    );
    wait_for("kept healthy", Duration::from_secs(60), || {
        get("kept").1["state"] == "healthy"
    });
    let before = get("kept").1;
    let journal = served.data.join("audit.jsonl");
    let size = std::fs::metadata(&journal).unwrap().len();

    // The disk is "full" for the audit trail (and nothing else is this big).
    limit_file_size(served.child.id(), size);
    let (status, problem) = c.call(
        Method::POST,
        "/api/v1/databases",
        Some(&editor),
        Some(json!({"name": "fresh"})),
    );
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "urn:pgplane:problem:unavailable");
    assert!(
        problem["detail"].as_str().unwrap().contains("audit"),
        "{problem}"
    );
    let (status, _) = c.call(
        Method::PATCH,
        "/api/v1/databases/kept",
        Some(&editor),
        Some(json!({"labels": {"a": "b"}})),
    );
    assert_eq!(status, 503);
    assert_eq!(
        c.call(
            Method::DELETE,
            "/api/v1/databases/kept",
            Some(&editor),
            None
        )
        .0,
        503
    );
    let (status, body) = c.call(
        Method::GET,
        "/api/v1/databases/kept/credentials",
        Some(&editor),
        None,
    );
    assert_eq!(status, 503);
    assert!(
        body.get("password").is_none(),
        "no unrecorded credentials read"
    );
    let (status, body) = c.login("viewer", PASSWORD);
    assert_eq!(status, 503);
    assert!(body.get("access_token").is_none(), "no unrecorded login");
    let (status, ready) =
        blocking::call(Method::GET, &format!("{}/readyz", served.base), None, None);
    assert_eq!(status, 503);
    assert!(
        ready["failing"].to_string().contains("audit store"),
        "{ready}"
    );

    // Nothing changed.
    assert_eq!(get("fresh").0, 404);
    assert_eq!(get("kept").1, before);
    assert_eq!(
        std::fs::metadata(&journal).unwrap().len(),
        size,
        "no torn line left"
    );

    // Room again: requests go through and are recorded.
    limit_file_size(served.child.id(), libc::RLIM_INFINITY);
    assert_eq!(
        c.call(
            Method::POST,
            "/api/v1/databases",
            Some(&editor),
            Some(json!({"name": "fresh"}))
        )
        .0,
        202
    );
    let (status, _) = blocking::call(Method::GET, &format!("{}/readyz", served.base), None, None);
    assert_eq!(status, 200);
    let records = c.all_records(&admin, "&database=fresh");
    assert_eq!(records.len(), 1, "only the accepted create: {records:?}");
    assert_eq!(records[0]["status"], 202);
    assert_eq!(
        c.call(
            Method::DELETE,
            "/api/v1/databases/fresh",
            Some(&editor),
            None
        )
        .0,
        202
    );
    assert_eq!(
        c.call(
            Method::DELETE,
            "/api/v1/databases/kept",
            Some(&editor),
            None
        )
        .0,
        202
    );
    wait_for("both gone", Duration::from_secs(60), || {
        get("fresh").0 == 404 && get("kept").0 == 404
    });
}
