//! Client connections, over raw sockets against the real binary: what the
//! HTTP stack refuses before any handler runs (400, 408, 413, 414, 431) is
//! problem+json too, also on a kept-alive connection; slow heads and idle
//! connections are closed on time; past the connection bound a new
//! connection is answered 503 while `/healthz` still answers; SIGTERM
//! finishes the request under way; handlers still see the client address.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::served::{tmp, wait_for, Served, Servers, ADMIN_PASSWORD, BIN};

/// A pgplane with these settings beside an admin password, over `dir`.
fn serve(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> (Servers, Served) {
    let mut all = vec![("PGPLANE_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    all.extend_from_slice(env);
    let servers = Servers(dir.path().join("data"));
    (servers, Served::start_with(dir.path(), "serve", &all))
}

fn connect(served: &Served) -> TcpStream {
    let stream = TcpStream::connect(served.base.trim_start_matches("http://")).unwrap();
    // A safety net only: each test waits for what it expects with its own deadline.
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// One response as read off the socket.
#[derive(Debug)]
struct Answer {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).unwrap().parse().unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// A problem+json answer with this status, on a connection closing.
    fn assert_problem(&self, status: u16) -> Value {
        let reason = match status {
            400 => "Bad Request",
            408 => "Request Timeout",
            413 => "Payload Too Large",
            414 => "URI Too Long",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            other => panic!("no reason phrase for {other}"),
        };
        assert_eq!(
            self.status_line,
            format!("HTTP/1.1 {status} {reason}"),
            "{self:?}"
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.header("connection"), Some("close"), "{self:?}");
        let problem = self.json();
        assert_eq!(problem["status"], status, "{problem}");
        assert_eq!(problem["title"], reason, "{problem}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:pgplane:problem:"),
            "{problem}"
        );
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{problem}");
        problem
    }
}

/// Reads one response (its head, then `content-length` bytes of body).
fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert_eq!(
            n, 1,
            "the connection ended before a whole response head: {received:?}"
        );
        received.push(byte[0]);
    }
    let head = String::from_utf8(received).unwrap();
    let mut lines = head.trim_end().split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    Answer {
        status_line,
        headers,
        body,
    }
}

/// Waits until the server ends the connection; fails past `deadline`.
/// Returns when it did, and whether bytes came before the end.
fn wait_for_close(stream: &mut TcpStream, deadline: Duration) -> (Instant, Vec<u8>) {
    let until = Instant::now() + deadline;
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the connection is still open after {deadline:?}"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (Instant::now(), rest),
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (Instant::now(), rest),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// A whole `POST /auth/login` of the admin.
fn login_request() -> String {
    let body = serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    format!(
        "POST /api/v1/auth/login HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `request` and reads the answer, on a new connection.
fn exchange(served: &Served, request: &[u8]) -> Answer {
    let mut stream = connect(served);
    stream.write_all(request).unwrap();
    read_answer(&mut stream)
}

#[test]
fn garbage_is_answered_400_problem_json() {
    let dir = tmp();
    let (_servers, served) = serve(&dir, &[]);
    for garbage in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        // What a TLS client sends first.
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /api/v1/auth/login HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let mut stream = connect(&served);
        stream.write_all(garbage).unwrap();
        let answer = read_answer(&mut stream);
        answer.assert_problem(400);
        wait_for_close(&mut stream, Duration::from_secs(5));
    }
}

#[test]
fn a_head_not_done_within_the_header_timeout_is_answered_408_and_closed() {
    let dir = tmp();
    let (_servers, served) = serve(&dir, &[("PGPLANE_HEADER_TIMEOUT", "1s")]);
    // The reported defect: a head started and never finished.
    let mut stream = connect(&served);
    let sent = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let answer = read_answer(&mut stream);
    let answered = sent.elapsed();
    let problem = answer.assert_problem(408);
    assert!(
        problem["detail"].as_str().unwrap().contains("1 s"),
        "{problem}"
    );
    wait_for_close(&mut stream, Duration::from_secs(2));
    assert!(
        answered >= Duration::from_millis(900) && answered < Duration::from_secs(3),
        "answered after {answered:?}, the timeout being 1 s"
    );
    // A later head on a kept-alive connection has the same time from its
    // first byte, however long the connection was idle before.
    let mut stream = connect(&served);
    stream.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut stream).status(), 200);
    stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    read_answer(&mut stream).assert_problem(408);
    let answered = started.elapsed();
    assert!(
        answered >= Duration::from_millis(900) && answered < Duration::from_secs(3),
        "the second head answered after {answered:?}"
    );
}

#[test]
fn a_connection_that_says_nothing_or_stays_idle_is_closed_without_an_answer() {
    let dir = tmp();
    let (_servers, served) = serve(
        &dir,
        &[
            ("PGPLANE_HEADER_TIMEOUT", "1s"),
            ("PGPLANE_IDLE_TIMEOUT", "2s"),
        ],
    );
    let mut silent = connect(&served);
    let opened = Instant::now();
    let (closed, said) = wait_for_close(&mut silent, Duration::from_secs(4));
    assert!(said.is_empty(), "{said:?}");
    let open = closed - opened;
    assert!(open >= Duration::from_millis(900), "closed after {open:?}");

    let mut idle = connect(&served);
    idle.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut idle).status(), 200);
    let answered = Instant::now();
    let (closed, said) = wait_for_close(&mut idle, Duration::from_secs(5));
    assert!(said.is_empty(), "{said:?}");
    let idle_for = closed - answered;
    assert!(
        idle_for >= Duration::from_millis(1900),
        "closed after {idle_for:?} idle, the idle timeout being 2 s"
    );
}

#[test]
fn a_body_over_64_kib_is_answered_413_declared_or_chunked() {
    let dir = tmp();
    let (_servers, served) = serve(&dir, &[]);
    // Declared: refused at the head, before any byte of the body is read.
    let mut stream = connect(&served);
    stream
        .write_all(b"POST /api/v1/auth/login HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: 65537\r\n\r\n")
        .unwrap();
    read_answer(&mut stream).assert_problem(413);
    wait_for_close(&mut stream, Duration::from_secs(5));
    // Also when the client sends it anyway, and on a route that reads no body.
    let mut request = b"GET /healthz HTTP/1.1\r\ncontent-length: 1000000\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 1_000_000));
    let mut stream = connect(&served);
    let mut writer = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || writer.write_all(&request).is_ok());
    read_answer(&mut stream).assert_problem(413);
    wait_for_close(&mut stream, Duration::from_secs(5));
    let _ = sending.join();
    // Chunked: no length up front; the handler stops reading at the limit.
    let mut request = b"POST /api/v1/auth/login HTTP/1.1\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..70 {
        request.extend(format!("{:x}\r\n{}\r\n", 1000, " ".repeat(1000)).bytes());
    }
    request.extend(b"0\r\n\r\n");
    let answer = exchange(&served, &request);
    answer.assert_problem(413);
}

#[test]
fn a_target_over_8_kib_is_answered_414() {
    let dir = tmp();
    let (_servers, served) = serve(&dir, &[]);
    let long = format!(
        "GET /api/v1/databases?label={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(9000)
    );
    exchange(&served, long.as_bytes()).assert_problem(414);
    // Longer than the whole head may be, and not even finished.
    let endless = format!("GET /{}", "a".repeat(20_000));
    exchange(&served, endless.as_bytes()).assert_problem(414);
}

#[test]
fn a_head_over_16_kib_is_answered_431() {
    let dir = tmp();
    let (_servers, served) = serve(&dir, &[]);
    // The reported defect: a 1 MB Authorization header got an empty 431.
    let mut request =
        b"GET /api/v1/databases HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 1_000_000));
    request.extend(b"\r\n\r\n");
    let mut stream = connect(&served);
    let mut writer = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || writer.write_all(&request).is_ok());
    read_answer(&mut stream).assert_problem(431);
    wait_for_close(&mut stream, Duration::from_secs(5));
    assert!(
        sending.join().unwrap(),
        "the client could send its whole request"
    );
    // Too many fields.
    let many = format!(
        "GET /healthz HTTP/1.1\r\n{}\r\n",
        (0..101)
            .map(|i| format!("x-{i}: y\r\n"))
            .collect::<String>()
    );
    let problem = exchange(&served, many.as_bytes()).assert_problem(431);
    assert!(
        problem["detail"].as_str().unwrap().contains("100"),
        "{problem}"
    );
}

#[test]
fn later_requests_on_a_kept_alive_connection_get_the_same_answers() {
    let dir = tmp();
    let (_servers, served) = serve(&dir, &[]);
    let big = format!(
        "GET /healthz HTTP/1.1\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    let cases: [(&[u8], u16); 4] = [
        (b"NOT HTTP\r\n\r\n", 400),
        (
            b"POST /api/v1/auth/login HTTP/1.1\r\ncontent-length: 70000\r\n\r\n",
            413,
        ),
        (long.as_bytes(), 414),
        (big.as_bytes(), 431),
    ];
    for (bad, status) in cases {
        let mut stream = connect(&served);
        // Two good requests, the second with a body, then the bad one.
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_answer(&mut stream).status(), 200);
        stream
            .write_all(b"POST /api/v1/auth/login HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
            .unwrap();
        assert_eq!(read_answer(&mut stream).status(), 422);
        stream.write_all(bad).unwrap();
        read_answer(&mut stream).assert_problem(status);
        wait_for_close(&mut stream, Duration::from_secs(5));
    }
    // Pipelined: the answers come in order, the refusal last.
    let mut stream = connect(&served);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\ncontent-length: 99999999\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut stream).status(), 200);
    assert_eq!(read_answer(&mut stream).status(), 200);
    read_answer(&mut stream).assert_problem(413);
    wait_for_close(&mut stream, Duration::from_secs(5));
}

#[test]
fn past_the_connection_bound_a_new_connection_is_answered_503_and_healthz_still_answers() {
    let dir = tmp();
    let (_servers, served) = serve(&dir, &[("PGPLANE_MAX_CONNECTIONS", "4")]);
    // Four kept-alive connections, each surely accepted: each was answered.
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = connect(&served);
            stream.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
            assert_eq!(read_answer(&mut stream).status(), 200);
            stream
        })
        .collect();
    let token_request = login_request();
    let mut stream = connect(&served);
    stream.write_all(token_request.as_bytes()).unwrap();
    let answer = read_answer(&mut stream);
    let problem = answer.assert_problem(503);
    assert_eq!(answer.header("retry-after"), Some("1"), "{answer:?}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("4 connections"),
        "{problem}"
    );
    wait_for_close(&mut stream, Duration::from_secs(5));
    // The liveness probe still gets its answer, on a connection of its own.
    let healthz = exchange(&served, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(healthz.status_line, "HTTP/1.1 200 OK");
    assert_eq!(healthz.json()["status"], "ok");
    assert_eq!(healthz.header("connection"), Some("close"));
    // The kept connections are served as before.
    held[0].write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut held[0]).status(), 200);
    // One closes: a new connection is served again, once pgplane has seen it go.
    drop(held.pop());
    wait_for(
        "a connection within the bound again",
        Duration::from_secs(10),
        || exchange(&served, token_request.as_bytes()).status() == 200,
    );
}

#[test]
fn a_connection_bound_the_file_limit_cannot_hold_stops_start_up() {
    let dir = tmp();
    // 1,024 files: 256 + 24 x 8 for pgplane, 64 past the bound, so 512 at most.
    let start = |max: &str| {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "ulimit -n 1024 && exec \"$0\" serve", BIN]);
        for (key, _) in std::env::vars() {
            if key.starts_with("PGPLANE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PGPLANE_DATA_DIR", dir.path().join("data"))
            .env("PGPLANE_LISTEN", "127.0.0.1:0")
            .env("PGPLANE_MAX_CONNECTIONS", max)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = start("513");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("pgplane: bad setting PGPLANE_MAX_CONNECTIONS: ")
            && lines[0].contains("file limit (RLIMIT_NOFILE) of 1024")
            && lines[0].contains("at most 512"),
        "{stderr}"
    );
}

#[test]
fn sigterm_finishes_the_request_under_way_and_handlers_still_see_the_client_address() {
    let dir = tmp();
    let (_servers, mut served) = serve(&dir, &[]);
    let body = serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let mut stream = connect(&served);
    write!(
        stream,
        "POST /api/v1/auth/login HTTP/1.1\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len(),
    )
    .unwrap();
    // hyper says 100 Continue once the handler asks for the body: the
    // request is under way.
    let mut continued = [0u8; 25];
    stream.read_exact(&mut continued).unwrap();
    assert_eq!(&continued, b"HTTP/1.1 100 Continue\r\n\r\n");
    let mut idle = connect(&served);
    idle.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut idle).status(), 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(served.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // The idle connection is closed at once; the request under way goes on.
    wait_for_close(&mut idle, Duration::from_secs(5));
    stream.write_all(body.as_bytes()).unwrap();
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status(), 200, "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(answer.json()["access_token"].is_string());
    wait_for("pgplane to exit", Duration::from_secs(20), || {
        served.child.try_wait().unwrap().is_some()
    });
    assert!(served.child.wait().unwrap().success());
    // Its audit record names the client's address.
    let audit = std::fs::read_to_string(served.data.join("audit.jsonl")).unwrap();
    let login: Value = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["action"] == "auth.login")
        .expect("the login is audited");
    assert_eq!(login["source_ip"], "127.0.0.1", "{login}");
}

/// `connections::serve` over a router of our own, on a runtime of its own
/// thread, until the returned sender is dropped.
fn serve_router(
    router: axum::Router,
    settings: pgplane::config::ConnectionSettings,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            bound.send(listener.local_addr().unwrap()).unwrap();
            let stopped = async {
                let _ = stopped.await;
            };
            pgplane::serve::connections::serve(listener, router, settings, stopped).await;
        });
    });
    (address.recv().unwrap().to_string(), stop)
}

#[test]
fn a_response_that_takes_longer_than_the_idle_timeout_is_not_cut_off() {
    use axum::routing::get;
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        "done"
    };
    // A body that trickles for 2.5 s, as a stream of events would.
    let trickle = || async {
        let chunks = futures::stream::unfold(0, |n| async move {
            if n == 5 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some((Ok::<_, std::io::Error>(format!("{n}\n")), n + 1))
        });
        axum::body::Body::from_stream(chunks)
    };
    let router = axum::Router::new()
        .route("/slow", get(slow))
        .route("/trickle", get(trickle));
    let settings = pgplane::config::ConnectionSettings {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections: 8,
    };
    let (address, _stop) = serve_router(router, settings);
    let clients: Vec<_> = [("/slow", "done"), ("/trickle", "0\n1\n2\n3\n4\n")]
        .into_iter()
        .map(|(path, expected)| {
            let address = address.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&address).unwrap();
                stream
                    .write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
                    .unwrap();
                let started = Instant::now();
                let answer = read_answer_any_framing(&mut stream);
                assert_eq!(answer.status_line, "HTTP/1.1 200 OK", "{path}");
                assert_eq!(String::from_utf8_lossy(&answer.body), expected, "{path}");
                let answered = started.elapsed();
                assert!(
                    answered >= Duration::from_millis(2400),
                    "{path}: {answered:?}"
                );
                // Then, and only then, the idle timeout runs.
                let (closed, rest) = wait_for_close(&mut stream, Duration::from_secs(5));
                assert!(rest.is_empty(), "{path}: {rest:?}");
                let idle = closed - started - answered;
                assert!(idle >= Duration::from_millis(900), "{path}: idle {idle:?}");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

/// Reads one response whose body has a length or is chunked.
fn read_answer_any_framing(stream: &mut TcpStream) -> Answer {
    let mut answer = read_answer(stream);
    if answer.header("transfer-encoding") == Some("chunked") {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            line.clear();
            while !line.ends_with(b"\r\n") {
                stream.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            let size =
                usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16).unwrap();
            let mut chunk = vec![0u8; size + 2];
            stream.read_exact(&mut chunk).unwrap();
            if size == 0 {
                return answer;
            }
            answer.body.extend_from_slice(&chunk[..size]);
        }
    }
    answer
}
