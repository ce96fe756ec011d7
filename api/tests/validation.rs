//! Bad input over HTTP: every validation rule answers 422 with a per-field
//! entry and changes nothing; preconditions, conflicts, paging, and the
//! problems of the HTTP layer itself (404, 405, 413, 415, 400).

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{body_of, error_fields, TestApp};

const DEADLINE: Duration = Duration::from_secs(120);

/// One create body per rule, with the field each must be reported under.
fn bad_creates() -> Vec<(Value, &'static str)> {
    vec![
        (json!({}), "name"),
        (json!({"name": 5}), "name"),
        (json!({"name": "Orders"}), "name"),
        (json!({"name": "-orders"}), "name"),
        (json!({"name": "orders-"}), "name"),
        (json!({"name": "or_ders"}), "name"),
        (json!({"name": "a".repeat(51)}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "ok", "instances": 0}), "instances"),
        (json!({"name": "ok", "instances": 10}), "instances"),
        (json!({"name": "ok", "instances": "2"}), "instances"),
        (json!({"name": "ok", "instances": 1.5}), "instances"),
        (json!({"name": "ok", "storage": "512Mi"}), "storage"),
        (json!({"name": "ok", "storage": "10GB"}), "storage"),
        (json!({"name": "ok", "storage": 10}), "storage"),
        (json!({"name": "ok", "storage": "-1Gi"}), "storage"),
        (
            json!({"name": "ok", "postgres_version": 9}),
            "postgres_version",
        ),
        (
            json!({"name": "ok", "postgres_version": "15"}),
            "postgres_version",
        ),
        (
            json!({"name": "ok", "parameters": {"port": "6000"}}),
            "parameters.port",
        ),
        (
            json!({"name": "ok", "parameters": {"data_directory": "/"}}),
            "parameters.data_directory",
        ),
        (
            json!({"name": "ok", "parameters": {"listen_addresses": "*"}}),
            "parameters.listen_addresses",
        ),
        (
            json!({"name": "ok", "parameters": {"hba_file": "/tmp/x"}}),
            "parameters.hba_file",
        ),
        (
            json!({"name": "ok", "parameters": {"primary_conninfo": "host=x"}}),
            "parameters.primary_conninfo",
        ),
        (
            json!({"name": "ok", "parameters": {"wal_level": "minimal"}}),
            "parameters.wal_level",
        ),
        // What loads code, runs commands, names paths or takes the database
        // out of pgplane's hands (model::parameters; the README lists them).
        (
            json!({"name": "ok", "parameters": {"session_preload_libraries": "x"}}),
            "parameters.session_preload_libraries",
        ),
        (
            json!({"name": "ok", "parameters": {"local_preload_libraries": "x"}}),
            "parameters.local_preload_libraries",
        ),
        (
            json!({"name": "ok", "parameters": {"default_transaction_read_only": "on"}}),
            "parameters.default_transaction_read_only",
        ),
        (
            json!({"name": "ok", "parameters": {"ssl_passphrase_command": "sh -c id"}}),
            "parameters.ssl_passphrase_command",
        ),
        (
            json!({"name": "ok", "parameters": {"dynamic_library_path": "/tmp"}}),
            "parameters.dynamic_library_path",
        ),
        (
            json!({"name": "ok", "parameters": {"include": "/etc/passwd"}}),
            "parameters.include",
        ),
        (
            json!({"name": "ok", "parameters": {"Session_Preload_Libraries": "x"}}),
            "parameters.Session_Preload_Libraries",
        ),
        (json!({"name": "ok", "storage": "999Ei"}), "storage"),
        (
            json!({"name": "ok", "parameters": {"Bad Name": "1"}}),
            "parameters.Bad Name",
        ),
        (
            json!({"name": "ok", "parameters": {"work_mem": {"a": 1}}}),
            "parameters.work_mem",
        ),
        (
            json!({"name": "ok", "parameters": {"work_mem": "4MB\n"}}),
            "parameters.work_mem",
        ),
        (
            json!({"name": "ok", "parameters": ["work_mem"]}),
            "parameters",
        ),
        (json!({"name": "ok", "labels": {"team": 5}}), "labels.team"),
        (
            json!({"name": "ok", "labels": {"team": "a b"}}),
            "labels.team",
        ),
        (
            json!({"name": "ok", "labels": {"-team": "x"}}),
            "labels.-team",
        ),
        (
            json!({"name": "ok", "labels": {"app.kubernetes.io/managed-by": "me"}}),
            "labels.app.kubernetes.io/managed-by",
        ),
        (json!({"name": "ok", "labels": "team=x"}), "labels"),
        (json!({"name": "ok", "owner": "mallory"}), "owner"),
        (json!({"name": "ok", "state": "healthy"}), "state"),
    ]
}

#[tokio::test]
async fn every_create_rule_answers_422_for_its_field_and_makes_nothing() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    for (body, field) in bad_creates() {
        let (status, problem) = editor.post("/api/v1/databases", body.clone()).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["type"], "urn:pgplane:problem:validation");
        assert_eq!(error_fields(&problem), [field], "{body}: {problem}");
        let message = &problem["errors"][0]["message"];
        assert!(message.as_str().is_some_and(|m| !m.is_empty()), "{problem}");
    }
    // Several bad fields at once: each reported.
    let (status, problem) = editor
        .post(
            "/api/v1/databases",
            json!({"name": "X", "instances": 0, "storage": "1Mi", "parameters": {"port": "1"}}),
        )
        .await;
    assert_eq!(status, 422);
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(fields, ["instances", "name", "parameters.port", "storage"]);
    let (_, list) = editor.get("/api/v1/databases").await;
    assert_eq!(list["items"], json!([]), "nothing was made");
    assert!(
        std::fs::read_dir(app.data_dir.join("databases"))
            .unwrap()
            .next()
            .is_none(),
        "no file was made"
    );
}

#[tokio::test]
async fn parameter_values_postgresql_refuses_are_422_before_anything_runs() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    for (name, value) in [
        ("max_connections", "lots"),
        ("shared_buffers", "huge"),
        ("work_mem", "-5"),
        ("no_such_setting", "1"),
        ("synchronous_commit", "sometimes"),
    ] {
        let (status, problem) = editor
            .post(
                "/api/v1/databases",
                json!({"name": "ok", "parameters": {name: value, "temp_buffers": "16MB"}}),
            )
            .await;
        assert_eq!(status, 422, "{name}={value}: {problem}");
        let field = format!("parameters.{name}");
        assert_eq!(error_fields(&problem), [field.as_str()], "{problem}");
    }
    let (_, list) = editor.get("/api/v1/databases").await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn instance_quota_refuses_with_403() {
    let app = TestApp::start_with(&["--max-instances", "2"]).await;
    let editor = app.as_user("editor").await;
    let (status, problem) = editor
        .post("/api/v1/databases", json!({"name": "big", "instances": 3}))
        .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["type"], "urn:pgplane:problem:quota-exceeded");
    let (status, _) = editor.get("/api/v1/databases/big").await;
    assert_eq!(status, 404);
}

/// Conflicts, preconditions, patches, paging and idempotent delete, over a
/// few real single-instance databases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_that_need_existing_databases() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;
    for (name, team) in [("alpha", "a"), ("bravo", "b"), ("charlie", "a")] {
        let (status, body) = editor
            .post(
                "/api/v1/databases",
                json!({"name": name, "labels": {"team": team}, "storage": "2Gi"}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let r = editor
        .request(Method::POST, "/api/v1/databases")
        .json(&json!({"name": "delta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/api/v1/databases/delta");
    assert_eq!(r.status(), 202);

    // Duplicate name.
    let (status, problem) = editor
        .post("/api/v1/databases", json!({"name": "alpha"}))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "urn:pgplane:problem:conflict");

    // Paging and the label filter.
    let (status, page1) = editor.get("/api/v1/databases?limit=2").await;
    assert_eq!(status, 200);
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&page1), ["alpha", "bravo"]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = editor
        .get(&format!("/api/v1/databases?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(names(&page2), ["charlie", "delta"]);
    assert_eq!(page2["next_cursor"], Value::Null);
    let (_, team_a) = editor.get("/api/v1/databases?label=team=a").await;
    assert_eq!(names(&team_a), ["alpha", "charlie"]);
    for bad in [
        "limit=0",
        "limit=501",
        "limit=x",
        "cursor=%21%21",
        "label=x",
        "sort=name",
    ] {
        let (status, problem) = editor.get(&format!("/api/v1/databases?{bad}")).await;
        assert_eq!(status, 422, "{bad}: {problem}");
        assert_eq!(error_fields(&problem).len(), 1, "{bad}: {problem}");
    }

    // ETag and If-Match.
    let r = editor
        .request(Method::GET, "/api/v1/databases/alpha")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "\"1\"");
    let patch = |if_match: Option<&str>, body: &str| {
        let mut req = editor
            .request(Method::PATCH, "/api/v1/databases/alpha")
            .header("content-type", "application/merge-patch+json")
            .body(body.to_owned());
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        req.send()
    };
    let (status, problem) = body_of(
        patch(Some("\"7\""), r#"{"labels": {"tier": "gold"}}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 412, "{problem}");
    // The comparison is strong: a weak tag of the current revision never
    // matches, and what is not an entity tag is a bad request.
    let (status, problem) = body_of(
        patch(Some("W/\"1\""), r#"{"labels": {"tier": "gold"}}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 412, "{problem}");
    // An empty list of tags names no revision.
    let (status, problem) = body_of(
        patch(Some(""), r#"{"labels": {"tier": "gold"}}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 412, "{problem}");
    for not_a_tag in ["1", "null", "{}"] {
        let (status, problem) = body_of(
            patch(Some(not_a_tag), r#"{"labels": {"tier": "gold"}}"#)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{not_a_tag:?}: {problem}");
    }
    let (_, unchanged) = editor.get("/api/v1/databases/alpha").await;
    assert_eq!(unchanged["revision"], 1);
    assert_eq!(unchanged["labels"], json!({"team": "a"}));
    let r = patch(
        Some("\"1\""),
        r#"{"labels": {"tier": "gold", "team": null}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.headers()["etag"], "\"2\"");
    let (status, patched) = body_of(r).await;
    assert_eq!(status, 202, "{patched}");
    assert_eq!(patched["labels"], json!({"tier": "gold"}));
    assert_eq!(patched["revision"], 2);

    // Patch rules.
    for (body, field, status) in [
        (r#"{"storage": "1Gi"}"#, "storage", 422),
        (r#"{"instances": 12}"#, "instances", 422),
        (r#"{"name": "other"}"#, "name", 422),
        (r#"{"postgres_version": 16}"#, "postgres_version", 422),
        (r#"{"state": "healthy"}"#, "state", 422),
        (r#"{"colour": "red"}"#, "colour", 422),
        (r#"{"parameters": {"port": "1"}}"#, "parameters.port", 422),
        (
            r#"{"parameters": {"max_connections": "many"}}"#,
            "parameters.max_connections",
            422,
        ),
        (
            r#"{"labels": {"app.kubernetes.io/name": "x"}}"#,
            "labels.app.kubernetes.io/name",
            422,
        ),
        (r#"[1]"#, "", 422),
        (r#"{"storage": "999Ei"}"#, "storage", 422),
        (r#"{"storage": "1e100"}"#, "storage", 422),
    ] {
        let (got, problem) = body_of(patch(None, body).await.unwrap()).await;
        assert_eq!(got, status, "{body}: {problem}");
        assert_eq!(error_fields(&problem), [field], "{body}: {problem}");
    }
    let (_, after) = editor.get("/api/v1/databases/alpha").await;
    assert_eq!(after["revision"], 2, "refused patches changed nothing");
    assert_eq!(after["storage"], "2Gi");
    // Growing storage is allowed, in every quantity form; an empty patch
    // changes nothing.
    for (form, bytes) in [
        ("3e9", 3_000_000_000u64),
        ("3G", 3_000_000_000),
        ("3Gi", 3 << 30),
    ] {
        let body = format!(r#"{{"storage": "{form}"}}"#);
        let (status, grown) = body_of(patch(None, &body).await.unwrap()).await;
        assert_eq!(status, 202, "{form}: {grown}");
        assert_eq!(grown["storage"], form, "{bytes} bytes");
    }
    let (_, grown) = editor.get("/api/v1/databases/alpha").await;
    assert_eq!(grown["storage"], "3Gi");
    let (status, same) = body_of(patch(None, "{}").await.unwrap()).await;
    assert_eq!(status, 202);
    assert_eq!(same["revision"], grown["revision"]);
    let r = editor
        .request(Method::PATCH, "/api/v1/databases/alpha")
        .header("content-type", "text/plain")
        .body(r#"{"instances": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        body_of(r).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "PATCH takes application/merge-patch+json (or application/json)"
    );

    // Unknown databases.
    let (status, _) = editor.get("/api/v1/databases/nope").await;
    assert_eq!(status, 404);
    let (status, _) = editor.get("/api/v1/databases/nope/credentials").await;
    assert_eq!(status, 404);
    let (status, _) = editor
        .patch("/api/v1/databases/nope", json!({"instances": 2}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = editor.get("/api/v1/databases/NOT_A_NAME").await;
    assert_eq!(status, 404);

    // Delete is idempotent: 202 while it goes, 204 once gone.
    for name in ["alpha", "bravo", "charlie", "delta"] {
        app.wait_state(&editor, name, "healthy", DEADLINE).await;
        let (status, body) = editor.delete(&format!("/api/v1/databases/{name}")).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["state"], "deleting");
    }
    for name in ["alpha", "bravo", "charlie", "delta"] {
        app.wait_gone(&editor, name, DEADLINE).await;
        let (status, body) = editor.delete(&format!("/api/v1/databases/{name}")).await;
        assert_eq!(status, 204, "{body}");
    }
    let (status, _) = editor.delete("/api/v1/databases/never-was").await;
    assert_eq!(status, 204);
    assert!(app.running_servers().is_empty());
}

#[tokio::test]
async fn http_layer_problems() {
    let app = TestApp::start().await;
    let editor = app.as_user("editor").await;

    let (status, problem) = editor.get("/api/v1/nowhere").await;
    assert_eq!(status, 404, "{problem}");
    let r = editor
        .request(Method::PUT, "/api/v1/databases")
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(r).await.0, 405);
    let r = editor
        .request(Method::POST, "/api/v1/databases")
        .header("content-type", "text/plain")
        .body(r#"{"name": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(r).await.0, 415);
    let r = editor
        .request(Method::POST, "/api/v1/databases")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(r).await.0, 400);
    let huge = json!({"name": "big", "labels": {"x": "y".repeat(70 * 1024)}});
    let (status, _) = editor.post("/api/v1/databases", huge).await;
    assert_eq!(status, 413);
    let (_, list) = editor.get("/api/v1/databases").await;
    assert_eq!(list["items"], json!([]));

    // A request id is given back, and kept when the client sends a sane one.
    let r = editor
        .request(Method::GET, "/api/v1/auth/me")
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42");
}

#[tokio::test]
async fn health_metrics_and_documents_are_served() {
    let app = TestApp::start().await;
    let get = |path: &'static str| app.request(Method::GET, path).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);

    let doc: Value = get("/api/v1/openapi.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/me",
        "/api/v1/databases",
        "/api/v1/databases/{name}",
        "/api/v1/databases/{name}/credentials",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }

    let page = get("/api/docs").await.unwrap().text().await.unwrap();
    assert!(page.contains("swagger-ui-bundle.js"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the docs page loads nothing from the internet"
    );
    for asset in ["/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-ui.css"] {
        let r = get(asset).await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(r.bytes().await.unwrap().len() > 10_000, "{asset}");
    }

    // Metrics label requests by route template, never by raw path.
    let editor = app.as_user("editor").await;
    editor.get("/api/v1/databases/some-name").await;
    editor.get("/api/v1/databases/other-name").await;
    editor.get("/api/v1/no/such/route").await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(
            r#"pgplane_http_requests_total{method="GET",route="/api/v1/databases/{name}",status="404"} 2"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("some-name"));
    assert!(!metrics.contains("/no/such/route"));
    for name in [
        "pgplane_http_request_duration_seconds_bucket",
        "pgplane_http_requests_in_flight",
        "pgplane_databases",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
}
