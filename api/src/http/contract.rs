//! The HTTP contract, tested in process: the router over an in-memory
//! backend ([`crate::backend::memory`]), called with `oneshot`, with no
//! socket, no PostgreSQL and no API server. Every route's role, every
//! error kind's problem, paging and preconditions; the backends' own tests
//! drive the same routes against the real things.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::routes::{self, Access, Audit};
use crate::app::App;
use crate::auth::token::Tokens;
use crate::auth::{password, Auth, Users};
use crate::backend::memory::MemoryBackend;
use crate::backend::BackendError;
use crate::metrics::Metrics;
use crate::model::{Limits, Role};
use crate::records::{Audit as AuditTrail, Events};

mod streams;

const SECRET: &[u8] = b"contract-tests-secret-0123456789abcdef";

/// How many streams the app under test allows.
const MAX_STREAMS: u32 = 4;

/// The app under test, the backend it runs on, and a token per role.
struct Harness {
    router: Router,
    app: Arc<App>,
    backend: Arc<MemoryBackend>,
    tokens: Tokens,
    _dir: tempfile::TempDir,
}

/// One answer: status, headers and the body as JSON (`Null` when empty).
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Answer {
    /// Asserts a problem+json answer with `status`, and gives its body.
    fn problem(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json",
            "{status}"
        );
        assert_eq!(self.body["status"], status.as_u16(), "{}", self.body);
        assert!(self.body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:pgplane:problem:"));
        assert!(!self.body["detail"].as_str().unwrap().is_empty());
        &self.body
    }
}

impl Harness {
    fn new() -> Harness {
        Harness::with_backend(MemoryBackend::default())
    }

    fn with_backend(backend: MemoryBackend) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let hash = password::hash("correct horse");
        let users = Users::from_yaml(
            &format!(
                "users:\n- {{username: viewer, password_hash: '{hash}', role: viewer}}\n- {{username: editor, password_hash: '{hash}', role: editor}}\n- {{username: admin, password_hash: '{hash}', role: admin}}\n"
            ),
            "users.yaml",
        )
        .unwrap();
        let metrics = Arc::new(Metrics::new());
        let backend = Arc::new(backend);
        let app = Arc::new(App {
            backend: backend.clone(),
            auth: Auth::new(
                users,
                Tokens::new(SECRET, std::time::Duration::from_secs(600)),
            ),
            metrics: metrics.clone(),
            events: Arc::new(Events::open(dir.path(), metrics.clone()).unwrap()),
            audit: Arc::new(AuditTrail::local(dir.path(), metrics.clone()).unwrap()),
            streams: crate::app::Streams::new(MAX_STREAMS, metrics),
            limits: Limits {
                postgres_versions: vec![15, 16],
                max_storage_bytes: crate::model::DEFAULT_MAX_STORAGE_BYTES,
            },
            namespace: "databases".into(),
        });
        Harness {
            router: super::router(app.clone()),
            app,
            backend,
            tokens: Tokens::new(SECRET, std::time::Duration::from_secs(600)),
            _dir: dir,
        }
    }

    fn token(&self, role: Role) -> String {
        self.tokens.issue(role.as_str())
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A request as `role` (or anonymous), with a JSON body when given.
    fn request(
        method: Method,
        uri: &str,
        role: Option<(&Harness, Role)>,
        body: Option<&Value>,
    ) -> Request<Body> {
        let mut r = Request::builder().method(method.clone()).uri(uri);
        if let Some((h, role)) = role {
            r = r.header(header::AUTHORIZATION, format!("Bearer {}", h.token(role)));
        }
        match body {
            Some(b) => {
                let media = if method == Method::PATCH {
                    "application/merge-patch+json"
                } else {
                    "application/json"
                };
                r.header(header::CONTENT_TYPE, media)
                    .body(Body::from(b.to_string()))
                    .unwrap()
            }
            None => r.body(Body::empty()).unwrap(),
        }
    }

    async fn call(&self, method: Method, uri: &str, role: Role, body: Option<Value>) -> Answer {
        self.send(Harness::request(
            method,
            uri,
            Some((self, role)),
            body.as_ref(),
        ))
        .await
    }

    async fn create(&self, name: &str) -> Answer {
        self.call(
            Method::POST,
            "/api/v1/databases",
            Role::Editor,
            Some(json!({"name": name, "labels": {"team": "a"}})),
        )
        .await
    }
}

/// A request body that a route accepts, so that an admitted request gets
/// past its parsing.
fn body_for(method: &Method, path: &str) -> Option<Value> {
    match (method.as_str(), path) {
        ("POST", "/api/v1/auth/login") => {
            Some(json!({"username": "viewer", "password": "correct horse"}))
        }
        ("POST", "/api/v1/databases" | "/api/v1/render") => Some(json!({"name": "fresh"})),
        ("PATCH", _) => Some(json!({"labels": {"tier": "gold"}})),
        ("POST", "/api/v1/databases/{name}/rollback") => Some(json!({"revision": 1})),
        _ => None,
    }
}

#[tokio::test]
async fn every_route_admits_exactly_the_roles_it_declares() {
    let h = Harness::new();
    assert_eq!(h.create("orders").await.status, StatusCode::ACCEPTED);
    let mut checked = 0;
    for route in routes::infos() {
        let uri = route
            .path
            .replace("{name}", "orders")
            .replace("{revision}", "1");
        let body = body_for(&route.method, &route.path);
        let Access::Role(needs) = route.access else {
            let anonymous = Harness::request(route.method.clone(), &uri, None, body.as_ref());
            let answer = h.send(anonymous).await;
            assert!(
                answer.status.is_success(),
                "{} {} is public: {}",
                route.method,
                route.path,
                answer.status
            );
            continue;
        };
        let anonymous = h
            .send(Harness::request(
                route.method.clone(),
                &uri,
                None,
                body.as_ref(),
            ))
            .await;
        anonymous.problem(StatusCode::UNAUTHORIZED);
        assert_eq!(anonymous.headers[header::WWW_AUTHENTICATE], "Bearer");
        for role in [Role::Viewer, Role::Editor, Role::Admin] {
            let answer = h.call(route.method.clone(), &uri, role, body.clone()).await;
            if role < needs {
                let problem = answer.problem(StatusCode::FORBIDDEN);
                assert!(
                    problem["detail"].as_str().unwrap().contains(needs.as_str()),
                    "the refusal names the role needed: {problem}"
                );
            } else {
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&answer.status),
                    "{} {} as {}: {} {}",
                    route.method,
                    route.path,
                    role.as_str(),
                    answer.status,
                    answer.body
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} routes need a role");
}

#[tokio::test]
async fn the_router_and_the_openapi_document_list_the_same_routes() {
    let h = Harness::new();
    let document = h
        .send(Harness::request(
            Method::GET,
            "/api/v1/openapi.json",
            None,
            None,
        ))
        .await
        .body;
    let mut in_document = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            in_document.insert((method.to_uppercase(), path.clone()));
        }
    }
    let documented: std::collections::BTreeSet<_> = routes::table()
        .into_iter()
        .filter(|r| r.documented.is_some())
        .map(|r| (r.info.method.to_string(), r.info.path))
        .collect();
    assert_eq!(
        in_document, documented,
        "the document lists what the table documents"
    );
    // Every documented route is served: the router knows its path and method.
    for (method, path) in &in_document {
        let uri = path.replace("{name}", "nosuch").replace("{revision}", "1");
        let method: Method = method.parse().unwrap();
        let answer = h
            .send(Harness::request(method.clone(), &uri, None, None))
            .await;
        assert!(
            ![StatusCode::METHOD_NOT_ALLOWED].contains(&answer.status)
                && answer.body["detail"] != "no such route",
            "{method} {path} is in the document but not served: {}",
            answer.status
        );
    }
    for route in routes::infos() {
        let mutating =
            [Method::POST, Method::PATCH, Method::DELETE, Method::PUT].contains(&route.method);
        // The create form's preview takes a create body, so it is a POST,
        // but it changes nothing.
        if mutating && route.path != "/api/v1/render" {
            assert!(
                matches!(route.audit, Audit::Every(_)),
                "{} {} changes something: it must be audited",
                route.method,
                route.path
            );
        }
        if route.path.starts_with("/api/v1/")
            && route.path != "/api/v1/auth/login"
            && route.path != "/api/v1/openapi.json"
        {
            assert!(
                matches!(route.access, Access::Role(_)),
                "{} {} must need a role",
                route.method,
                route.path
            );
        }
    }
}

#[tokio::test]
async fn every_kind_of_error_is_a_problem_with_its_status() {
    let h = Harness::new();
    assert_eq!(h.create("orders").await.status, StatusCode::ACCEPTED);
    let raw = |method: Method, uri: &str, content_type: &str, body: Vec<u8>| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", h.token(Role::Editor)),
            )
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    };
    // 400: a body that is not JSON.
    h.send(raw(
        Method::POST,
        "/api/v1/databases",
        "application/json",
        b"{nope".to_vec(),
    ))
    .await
    .problem(StatusCode::BAD_REQUEST);
    // 401 and 403: no token, and too small a role.
    h.send(Harness::request(
        Method::GET,
        "/api/v1/databases",
        None,
        None,
    ))
    .await
    .problem(StatusCode::UNAUTHORIZED);
    let bad_token = Request::builder()
        .uri("/api/v1/databases")
        .header(header::AUTHORIZATION, "Bearer not.a.token")
        .body(Body::empty())
        .unwrap();
    h.send(bad_token).await.problem(StatusCode::UNAUTHORIZED);
    h.call(Method::GET, "/api/v1/audit", Role::Editor, None)
        .await
        .problem(StatusCode::FORBIDDEN);
    // 404: no such database, no such route.
    h.call(Method::GET, "/api/v1/databases/nosuch", Role::Viewer, None)
        .await
        .problem(StatusCode::NOT_FOUND);
    h.call(Method::GET, "/api/v1/nowhere", Role::Viewer, None)
        .await
        .problem(StatusCode::NOT_FOUND);
    // 405: a method the route does not have.
    h.call(Method::PUT, "/api/v1/databases", Role::Editor, None)
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED);
    // 409: the name is taken; and a backend that is busy.
    h.create("orders").await.problem(StatusCode::CONFLICT);
    h.backend.fail_next(BackendError::Busy(
        "database orders is being deleted".into(),
    ));
    h.call(Method::GET, "/api/v1/databases/orders", Role::Viewer, None)
        .await
        .problem(StatusCode::CONFLICT);
    // 412: If-Match names another revision.
    let stale = Request::builder()
        .method(Method::PATCH)
        .uri("/api/v1/databases/orders")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", h.token(Role::Editor)),
        )
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .header(header::IF_MATCH, "\"7\"")
        .body(Body::from(r#"{"instances":2}"#))
        .unwrap();
    h.send(stale).await.problem(StatusCode::PRECONDITION_FAILED);
    // 413: a body over the limit.
    let big = format!(
        r#"{{"name":"x","labels":{{"a":"{}"}}}}"#,
        "x".repeat(100_000)
    );
    h.send(raw(
        Method::POST,
        "/api/v1/databases",
        "application/json",
        big.into_bytes(),
    ))
    .await
    .problem(StatusCode::PAYLOAD_TOO_LARGE);
    // 415: not JSON by its content type.
    h.send(raw(
        Method::POST,
        "/api/v1/databases",
        "text/plain",
        b"{}".to_vec(),
    ))
    .await
    .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // 422: invalid fields, each named; and a backend that refuses.
    let invalid = h
        .call(
            Method::POST,
            "/api/v1/databases",
            Role::Editor,
            Some(json!({"name": "Bad_Name", "instances": 0})),
        )
        .await;
    let fields: Vec<_> = invalid.problem(StatusCode::UNPROCESSABLE_ENTITY)["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["name", "instances"]);
    h.backend
        .fail_next(BackendError::Rejected("exceeded quota: databases".into()));
    h.create("quota")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    // 503: the backend cannot serve; the answer says when to retry.
    h.backend
        .fail_next(BackendError::unavailable("the API server is unreachable"));
    let unavailable = h
        .call(Method::GET, "/api/v1/databases", Role::Viewer, None)
        .await;
    unavailable.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(unavailable.headers.contains_key(header::RETRY_AFTER));
    // 500: an internal failure, whose cause is not shown.
    h.backend.fail_next(BackendError::internal(
        "reading a record",
        std::io::Error::other("/secret/path is corrupt"),
    ));
    let internal = h
        .call(Method::GET, "/api/v1/databases", Role::Viewer, None)
        .await;
    let problem = internal.problem(StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!problem["detail"].as_str().unwrap().contains("secret"));
    // 429: too many logins for one name; the answer says when to retry.
    let login = |password: &str| {
        Harness::request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"username": "viewer", "password": password})),
        )
    };
    let mut limited = None;
    for _ in 0..30 {
        let answer = h.send(login("wrong")).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
        answer.problem(StatusCode::UNAUTHORIZED);
    }
    let limited = limited.expect("guessing is limited");
    limited.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn pages_follow_cursors_and_filter_by_label() {
    let h = Harness::new();
    for i in 0..7 {
        assert_eq!(
            h.create(&format!("db{i}")).await.status,
            StatusCode::ACCEPTED
        );
    }
    let mut names = Vec::new();
    let mut uri = "/api/v1/databases?limit=3".to_owned();
    loop {
        let page = h.call(Method::GET, &uri, Role::Viewer, None).await;
        assert_eq!(page.status, StatusCode::OK);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        names.extend(items.iter().map(|d| d["name"].as_str().unwrap().to_owned()));
        match page.body["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/databases?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("db{i}")).collect::<Vec<_>>());
    let none = h
        .call(
            Method::GET,
            "/api/v1/databases?label=team%3Db",
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(none.body["items"], json!([]));
    h.call(
        Method::GET,
        "/api/v1/databases?cursor=bm9wZQ",
        Role::Viewer,
        None,
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    // The audit trail pages the same way: seven creates, newest first.
    let first = h
        .call(Method::GET, "/api/v1/audit?limit=4", Role::Admin, None)
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = h
        .call(
            Method::GET,
            &format!("/api/v1/audit?limit=4&cursor={cursor}"),
            Role::Admin,
            None,
        )
        .await;
    let databases: Vec<_> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest.body["items"].as_array().unwrap())
        .map(|r| r["database"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        databases,
        (0..7).rev().map(|i| format!("db{i}")).collect::<Vec<_>>()
    );
    assert_eq!(rest.body["next_cursor"], Value::Null);
}

#[tokio::test]
async fn changes_are_preconditioned_by_strong_etags() {
    let h = Harness::new();
    assert_eq!(h.create("orders").await.status, StatusCode::ACCEPTED);
    let got = h
        .call(Method::GET, "/api/v1/databases/orders", Role::Viewer, None)
        .await;
    assert_eq!(got.headers[header::ETAG], "\"1\"");
    let patch = |if_match: &str| {
        Request::builder()
            .method(Method::PATCH)
            .uri("/api/v1/databases/orders")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", h.token(Role::Editor)),
            )
            .header(header::CONTENT_TYPE, "application/merge-patch+json")
            .header(header::IF_MATCH, if_match)
            .body(Body::from(r#"{"instances":2}"#))
            .unwrap()
    };
    let changed = h.send(patch("\"1\"")).await;
    assert_eq!(changed.status, StatusCode::ACCEPTED, "{}", changed.body);
    assert_eq!(changed.headers[header::ETAG], "\"2\"");
    assert_eq!(changed.body["instances"], 2);
    h.send(patch("\"1\""))
        .await
        .problem(StatusCode::PRECONDITION_FAILED);
    h.send(patch("W/\"2\""))
        .await
        .problem(StatusCode::PRECONDITION_FAILED);
    assert_eq!(h.send(patch("\"2\"")).await.status, StatusCode::ACCEPTED);
    // Each accepted change is one audit record with what changed.
    let trail = h
        .call(
            Method::GET,
            "/api/v1/databases/orders/audit?action=database.update",
            Role::Editor,
            None,
        )
        .await;
    let items = trail.body["items"].as_array().unwrap();
    let outcomes: Vec<_> = items
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(outcomes, [202, 412, 412, 202]);
    assert_eq!(items[3]["changes"]["instances"], json!([1, 2]));
}

#[tokio::test]
async fn a_delete_is_accepted_then_idempotent() {
    let h = Harness::new();
    assert_eq!(h.create("orders").await.status, StatusCode::ACCEPTED);
    let going = h
        .call(
            Method::DELETE,
            "/api/v1/databases/orders",
            Role::Editor,
            None,
        )
        .await;
    assert_eq!(going.status, StatusCode::ACCEPTED);
    assert_eq!(going.body["state"], "deleting");
    let gone = h
        .call(
            Method::DELETE,
            "/api/v1/databases/nosuch",
            Role::Editor,
            None,
        )
        .await;
    assert_eq!(
        (gone.status, gone.body),
        (StatusCode::NO_CONTENT, Value::Null)
    );
}

impl Harness {
    async fn patch(&self, name: &str, patch: Value) -> Answer {
        self.call(
            Method::PATCH,
            &format!("/api/v1/databases/{name}"),
            Role::Editor,
            Some(patch),
        )
        .await
    }

    async fn rollback(
        &self,
        name: &str,
        role: Role,
        body: Value,
        if_match: Option<&str>,
    ) -> Answer {
        let mut r = Request::builder()
            .method(Method::POST)
            .uri(format!("/api/v1/databases/{name}/rollback"))
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.token(role)),
            )
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(tag) = if_match {
            r = r.header(header::IF_MATCH, tag);
        }
        self.send(r.body(Body::from(body.to_string())).unwrap())
            .await
    }
}

#[tokio::test]
async fn every_change_is_a_revision_and_a_rollback_keeps_storage() {
    let h = Harness::new();
    assert_eq!(h.create("orders").await.status, StatusCode::ACCEPTED);
    for patch in [
        json!({"instances": 2, "storage": "2Gi"}),
        json!({"instances": 3}),
        json!({"parameters": {"work_mem": "8MB"}}),
    ] {
        assert_eq!(h.patch("orders", patch).await.status, StatusCode::ACCEPTED);
    }
    let listed = h
        .call(
            Method::GET,
            "/api/v1/databases/orders/revisions",
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let items = listed.body["items"].as_array().unwrap();
    let numbers: Vec<_> = items
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [4, 3, 2, 1], "newest first");
    assert_eq!(items[3]["kind"], "create");
    assert_eq!(items[3]["changes"], json!({}));
    assert_eq!(items[3]["by"], "editor");
    assert_eq!(
        items[2]["changes"],
        json!({"instances": [1, 2], "storage": ["1Gi", "2Gi"]})
    );
    assert_eq!(items[1]["changes"], json!({"instances": [2, 3]}));
    assert_eq!(
        items[0]["changes"],
        json!({"parameters": [{}, {"work_mem": "8MB"}]})
    );
    assert_eq!(items[0]["spec"]["instances"], 3);
    assert_eq!(items[0]["kind"], "update");
    // Paged like every list.
    let first = h
        .call(
            Method::GET,
            "/api/v1/databases/orders/revisions?limit=3",
            Role::Viewer,
            None,
        )
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = h
        .call(
            Method::GET,
            &format!("/api/v1/databases/orders/revisions?limit=3&cursor={cursor}"),
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(rest.body["items"][0]["revision"], 1);
    assert_eq!(rest.body["next_cursor"], Value::Null);

    let one = h
        .call(
            Method::GET,
            "/api/v1/databases/orders/revisions/2",
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["spec"]["storage"], "2Gi");
    for never in ["0", "5"] {
        h.call(
            Method::GET,
            &format!("/api/v1/databases/orders/revisions/{never}"),
            Role::Viewer,
            None,
        )
        .await
        .problem(StatusCode::NOT_FOUND);
    }
    h.call(
        Method::GET,
        "/api/v1/databases/orders/revisions/two",
        Role::Viewer,
        None,
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    h.call(
        Method::GET,
        "/api/v1/databases/nosuch/revisions",
        Role::Viewer,
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);

    // Refusals change nothing: a viewer, a stale tag, a bad body, no such revision.
    h.rollback("orders", Role::Viewer, json!({"revision": 1}), None)
        .await
        .problem(StatusCode::FORBIDDEN);
    h.rollback(
        "orders",
        Role::Editor,
        json!({"revision": 1}),
        Some("\"3\""),
    )
    .await
    .problem(StatusCode::PRECONDITION_FAILED);
    let bad = h
        .rollback("orders", Role::Editor, json!({"revision": "1"}), None)
        .await;
    assert_eq!(
        bad.problem(StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["field"],
        "revision"
    );
    h.rollback("orders", Role::Editor, json!({"revision": 9}), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    h.rollback("nosuch", Role::Editor, json!({"revision": 1}), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    assert_eq!(h.backend.get_revision("orders"), 4);

    // Back to revision 1 (1Gi): storage stays at 2Gi, and the answer says so.
    let back = h
        .rollback(
            "orders",
            Role::Editor,
            json!({"revision": 1}),
            Some("\"4\""),
        )
        .await;
    assert_eq!(back.status, StatusCode::ACCEPTED, "{}", back.body);
    assert_eq!(back.headers[header::ETAG], "\"5\"");
    assert_eq!(back.body["revision"], 5);
    assert_eq!(back.body["instances"], 1);
    assert_eq!(back.body["storage"], "2Gi");
    assert_eq!(back.body["parameters"], json!({}));
    assert_eq!(back.body["kept"], json!({"storage": "2Gi"}));
    let made = h
        .call(
            Method::GET,
            "/api/v1/databases/orders/revisions/5",
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(made.body["kind"], "rollback");
    assert_eq!(made.body["from"], 1);
    assert_eq!(
        made.body["changes"],
        json!({"instances": [3, 1], "parameters": [{"work_mem": "8MB"}, {}]})
    );
    // To a revision with as much storage: nothing kept, nothing said.
    let again = h
        .rollback("orders", Role::Editor, json!({"revision": 3}), None)
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert!(again.body.get("kept").is_none(), "{}", again.body);

    let trail = h
        .call(
            Method::GET,
            "/api/v1/databases/orders/audit?action=database.rollback",
            Role::Editor,
            None,
        )
        .await;
    let statuses: Vec<_> = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 202, 404, 422, 412, 403]);
    assert_eq!(
        trail.body["items"][1]["changes"],
        json!({"instances": [3, 1], "parameters": [{"work_mem": "8MB"}, {}]})
    );
}

#[tokio::test]
async fn pruned_revisions_are_gone_and_the_current_one_stays() {
    let h = Harness::with_backend(MemoryBackend::with_history(3));
    assert_eq!(h.create("orders").await.status, StatusCode::ACCEPTED);
    for n in 2..=5 {
        let answer = h.patch("orders", json!({"instances": n})).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    let listed = h
        .call(
            Method::GET,
            "/api/v1/databases/orders/revisions",
            Role::Viewer,
            None,
        )
        .await;
    let numbers: Vec<_> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [5, 4, 3]);
    h.call(
        Method::GET,
        "/api/v1/databases/orders/revisions/2",
        Role::Viewer,
        None,
    )
    .await
    .problem(StatusCode::GONE);
    h.rollback("orders", Role::Editor, json!({"revision": 1}), None)
        .await
        .problem(StatusCode::GONE);
    let back = h
        .rollback("orders", Role::Editor, json!({"revision": 3}), None)
        .await;
    assert_eq!(back.status, StatusCode::ACCEPTED, "{}", back.body);
    assert_eq!(back.body["instances"], 3);
    // To the current spec: still a revision, asked for by number, with no changes.
    let same = h
        .rollback("orders", Role::Editor, json!({"revision": 6}), None)
        .await;
    assert_eq!(same.status, StatusCode::ACCEPTED, "{}", same.body);
    assert_eq!(same.body["revision"], 7);
    let made = h
        .call(
            Method::GET,
            "/api/v1/databases/orders/revisions/7",
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(
        (made.body["kind"].clone(), made.body["from"].clone()),
        (json!("rollback"), json!(6))
    );
    assert_eq!(made.body["changes"], json!({}));
    // An update that changes nothing makes none.
    let none = h.patch("orders", json!({"instances": 3})).await;
    assert_eq!(none.body["revision"], 7);
}

#[tokio::test]
async fn the_instances_of_a_database_are_those_in_the_database() {
    let h = Harness::new();
    assert_eq!(h.create("orders").await.status, StatusCode::ACCEPTED);
    let db = h
        .call(Method::GET, "/api/v1/databases/orders", Role::Viewer, None)
        .await;
    let listed = h
        .call(
            Method::GET,
            "/api/v1/databases/orders/instances",
            Role::Viewer,
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body, json!({"items": db.body["instances_status"]}));
    assert_eq!(listed.body["items"][0]["name"], "orders-1");
    assert_eq!(listed.body["items"][0]["role"], "primary");
    h.call(
        Method::GET,
        "/api/v1/databases/nosuch/instances",
        Role::Viewer,
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_console_is_served_at_the_root_with_its_security_headers() {
    let h = Harness::new();
    let get = |uri: &str| Harness::request(Method::GET, uri, None, None);
    let assets = format!("/assets/{}", super::console::version());
    for (uri, content_type, cache) in [
        ("/", "text/html; charset=utf-8", "no-cache"),
        // A client-side route, loaded or reloaded, answers the page too.
        ("/databases/orders", "text/html; charset=utf-8", "no-cache"),
        (
            "/databases/orders/history",
            "text/html; charset=utf-8",
            "no-cache",
        ),
        (
            &format!("{assets}/app.js"),
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        (
            &format!("{assets}/vendor/preact.module.js"),
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        (
            &format!("{assets}/style.css"),
            "text/css; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
    ] {
        let answer = h.send(get(uri)).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        let header = |name: &str| answer.headers[name].to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), content_type, "{uri}");
        assert_eq!(header("cache-control"), cache, "{uri}");
        let csp = header("content-security-policy");
        assert!(csp.starts_with("default-src 'self';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
    }
    let page = h.send(get("/")).await.body;
    let page = page.as_str().unwrap();
    assert!(page.contains(&format!("{assets}/app.js")), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing remote: {page}"
    );
    // The API's own 404 stays the API's, and so does a missing asset.
    for uri in [
        "/api/v1/nosuch".to_owned(),
        "/api/nosuch".to_owned(),
        format!("{assets}/nosuch.js"),
        "/assets/0000/app.js".to_owned(),
    ] {
        let answer = h.send(get(&uri)).await;
        answer.problem(StatusCode::NOT_FOUND);
    }
    let post = Harness::request(Method::POST, "/databases/orders", None, Some(&json!({})));
    h.send(post).await.problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_create_forms_preview_is_the_rendered_cluster_and_names_bad_fields() {
    let h = Harness::new();
    let body = json!({"name": "orders", "instances": 2, "storage": "5Gi",
        "parameters": {"work_mem": "8MB"}, "labels": {"team": "payments"}});
    let answer = h
        .call(
            Method::POST,
            "/api/v1/render",
            Role::Viewer,
            Some(body.clone()),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let manifest = &answer.body["manifest"];
    let expected = h.app.preview(&body, "viewer").unwrap().object;
    assert_eq!(manifest, &expected);
    assert_eq!(
        manifest["metadata"]["annotations"]["pgplane.io/owner"],
        "viewer"
    );
    let yaml: Value = serde_yaml::from_str(answer.body["yaml"].as_str().unwrap()).unwrap();
    assert_eq!(&yaml, manifest);
    // Nothing was created.
    let list = h
        .call(Method::GET, "/api/v1/databases", Role::Viewer, None)
        .await;
    assert_eq!(list.body["items"], json!([]));

    let bad = json!({"name": "Bad_Name", "instances": 12, "parameters": {"port": "1"}});
    let answer = h
        .call(Method::POST, "/api/v1/render", Role::Viewer, Some(bad))
        .await;
    let problem = answer.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["instances", "name", "parameters.port"],
        "{problem}"
    );
}

#[tokio::test]
async fn the_versions_offered_are_the_configured_majors() {
    let h = Harness::new();
    let answer = h
        .call(Method::GET, "/api/v1/versions", Role::Viewer, None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body,
        json!({"postgres_versions": [15, 16], "default": 16})
    );
}

#[tokio::test]
async fn the_consoles_files_are_gzipped_for_a_browser_that_accepts_it() {
    let h = Harness::new();
    let uri = format!("/assets/{}/app.js", super::console::version());
    let get = |encoding: Option<&str>| {
        let mut r = Request::builder().method(Method::GET).uri(&uri);
        if let Some(e) = encoding {
            r = r.header(header::ACCEPT_ENCODING, e);
        }
        r.body(Body::empty()).unwrap()
    };
    let raw = h.router.clone().oneshot(get(None)).await.unwrap();
    assert!(raw.headers().get(header::CONTENT_ENCODING).is_none());
    let raw = axum::body::to_bytes(raw.into_body(), usize::MAX)
        .await
        .unwrap();
    let gzipped = h
        .router
        .clone()
        .oneshot(get(Some("gzip, deflate, br")))
        .await
        .unwrap();
    assert_eq!(gzipped.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(
        gzipped.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(gzipped.headers()[header::VARY]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    let body = axum::body::to_bytes(gzipped.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(
        body.len() < raw.len() / 2,
        "{} of {} bytes",
        body.len(),
        raw.len()
    );
    // The API is not compressed (its streams must not be buffered).
    let api = Harness::request(
        Method::GET,
        "/api/v1/databases",
        Some((&h, Role::Viewer)),
        None,
    );
    let mut api = api;
    api.headers_mut()
        .insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
    let answer = h.router.clone().oneshot(api).await.unwrap();
    assert!(answer.headers().get(header::CONTENT_ENCODING).is_none());
}
