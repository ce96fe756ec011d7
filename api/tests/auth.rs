//! Authentication and authorization over HTTP: login, the token checks, the
//! role each route needs, and the login rate limit.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{body_of, TestApp, JWT_SECRET, PASSWORD};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token signed like pgplane's, with the given claims and key.
fn forge(claims: Value, key: &[u8]) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
}

async fn me_with(app: &TestApp, token: &str) -> (StatusCode, Value) {
    body_of(
        app.request(Method::GET, "/api/v1/auth/me")
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn login(app: &TestApp, body: Value) -> (StatusCode, Value) {
    body_of(
        app.request(Method::POST, "/api/v1/auth/login")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn login_issues_a_bearer_token_for_the_users_role() {
    let app = TestApp::start().await;
    let (status, body) = login(&app, json!({"username": "editor", "password": PASSWORD})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap();
    let (status, me) = me_with(&app, token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, json!({"username": "editor", "role": "editor"}));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let app = TestApp::start().await;
    let (s1, wrong) = login(&app, json!({"username": "editor", "password": "nope"})).await;
    let (s2, unknown) = login(&app, json!({"username": "mallory", "password": "nope"})).await;
    assert_eq!(s1, 401);
    assert_eq!(s2, 401);
    assert_eq!(
        wrong["detail"], unknown["detail"],
        "the answer must not tell which usernames exist"
    );
}

#[tokio::test]
async fn malformed_login_bodies_are_refused_with_problems() {
    let app = TestApp::start().await;
    let (status, body) = login(&app, json!({"username": "editor"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(support::error_fields(&body), ["password"]);
    let (status, body) = login(&app, json!({"username": 7, "password": PASSWORD})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(support::error_fields(&body), ["username"]);
    let r = app
        .request(Method::POST, "/api/v1/auth/login")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(r).await.0, 400);
    let r = app
        .request(Method::POST, "/api/v1/auth/login")
        .header("content-type", "text/plain")
        .body("username=editor")
        .send()
        .await
        .unwrap();
    assert_eq!(body_of(r).await.0, 415);
}

#[tokio::test]
async fn tokens_that_are_not_pgplanes_are_refused() {
    let app = TestApp::start().await;
    let valid = json!({"sub": "admin", "iss": "pgplane", "iat": now(), "exp": now() + 600});
    // The forging itself works: the same claims signed with the real secret pass.
    let genuine = forge(valid.clone(), JWT_SECRET.as_bytes());
    assert_eq!(me_with(&app, &genuine).await.0, 200);

    let wrong_signature = forge(valid.clone(), b"another-secret-another-secret-another");
    let expired = forge(
        json!({"sub": "admin", "iss": "pgplane", "iat": now() - 7200, "exp": now() - 3600}),
        JWT_SECRET.as_bytes(),
    );
    let unknown_user = forge(
        json!({"sub": "mallory", "iss": "pgplane", "iat": now(), "exp": now() + 600}),
        JWT_SECRET.as_bytes(),
    );
    let other_issuer = forge(
        json!({"sub": "admin", "iss": "someone-else", "iat": now(), "exp": now() + 600}),
        JWT_SECRET.as_bytes(),
    );
    let hs512 = encode(
        &Header::new(jsonwebtoken::Algorithm::HS512),
        &valid,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    // `alg: none`: a header and the claims, no signature.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&valid)
    );
    let tampered = format!(
        "{}.{}.{}",
        genuine.split('.').next().unwrap(),
        b64(&json!({"sub": "admin", "iss": "pgplane", "iat": now(), "exp": now() + 99_999})),
        genuine.rsplit('.').next().unwrap()
    );

    // Signed with the real secret, but with times no token of ours has
    // (the test app's PGPLANE_TOKEN_TTL is 1h).
    let day = 86_400;
    let not_yet = forge(
        json!({"sub": "admin", "iss": "pgplane", "iat": now(), "nbf": now() + day, "exp": now() + 600}),
        JWT_SECRET.as_bytes(),
    );
    let issued_next_year = forge(
        json!({"sub": "admin", "iss": "pgplane", "iat": now() + 365 * day, "exp": now() + 365 * day + 600}),
        JWT_SECRET.as_bytes(),
    );
    let ten_years = forge(
        json!({"sub": "admin", "iss": "pgplane", "iat": now(), "exp": now() + 3650 * day}),
        JWT_SECRET.as_bytes(),
    );
    let without_iat = forge(
        json!({"sub": "admin", "iss": "pgplane", "exp": now() + 600}),
        JWT_SECRET.as_bytes(),
    );
    for (what, token) in [
        ("nbf a day ahead", not_yet.as_str()),
        ("iat a year ahead", &issued_next_year),
        ("a lifetime of ten years", &ten_years),
        ("no iat", &without_iat),
        ("wrong signature", wrong_signature.as_str()),
        ("expired", &expired),
        ("unknown user", &unknown_user),
        ("other issuer", &other_issuer),
        ("HS512", &hs512),
        ("alg none", &alg_none),
        ("tampered claims", &tampered),
        ("garbage", "not-a-token"),
    ] {
        let (status, body) = me_with(&app, token).await;
        assert_eq!(status, 401, "{what}: {body}");
    }
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_401_with_a_challenge() {
    let app = TestApp::start().await;
    for header in [
        None,
        Some("Basic YWRtaW46YWRtaW4="),
        Some("Bearer"),
        Some(""),
    ] {
        let mut req = app.request(Method::GET, "/api/v1/databases");
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            r.headers().get("www-authenticate").unwrap(),
            "Bearer",
            "{header:?}"
        );
        assert_eq!(body_of(r).await.0, 401, "{header:?}");
    }
}

// Every route's role is checked in process, over the route table itself
// (`http::contract::every_route_admits_exactly_the_roles_it_declares`);
// here, against real PostgreSQL, that a refused caller changes nothing.

#[tokio::test]
async fn a_viewer_cannot_create_or_delete_a_real_database() {
    let app = TestApp::start().await;
    let viewer = app.as_user("viewer").await;
    let (status, _) = viewer
        .post("/api/v1/databases", json!({"name": "shop"}))
        .await;
    assert_eq!(status, 403);
    let editor = app.as_user("editor").await;
    let (status, body) = editor.get("/api/v1/databases/shop").await;
    assert_eq!(status, 404, "the refused create made nothing: {body}");
}

#[tokio::test]
async fn login_is_rate_limited_per_username_with_retry_after() {
    let app = TestApp::start().await;
    let mut limited = None;
    for attempt in 1..=12 {
        let r = app
            .request(Method::POST, "/api/v1/auth/login")
            .json(&json!({"username": "viewer", "password": "guess"}))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=10).contains(&retry), "Retry-After {retry}");
            let (_, body) = body_of(r).await;
            assert_eq!(body["type"], "urn:pgplane:problem:rate-limited");
            limited = Some(attempt);
            break;
        }
        assert_eq!(body_of(r).await.0, 401);
    }
    assert_eq!(
        limited,
        Some(11),
        "the 11th attempt on one username is refused"
    );
    // From the address that guessed, even the right password is refused
    // while limited: no guessing through.
    let (status, _) = login(&app, json!({"username": "viewer", "password": PASSWORD})).await;
    assert_eq!(status, 429);
    // Other users are not locked out by someone hammering "viewer".
    let (status, _) = login(&app, json!({"username": "editor", "password": PASSWORD})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn login_is_rate_limited_per_client_address() {
    let app = TestApp::start().await;
    // Spread over usernames so only the per-address limit (a burst of 20
    // failures, refilled at one per 3 s) can trigger.
    let started = std::time::Instant::now();
    let mut first_limited = None;
    for attempt in 1..=100 {
        let (status, _) = login(
            &app,
            json!({"username": format!("user{attempt}"), "password": "guess"}),
        )
        .await;
        if status == 429 {
            first_limited = Some(attempt);
            break;
        }
        assert_eq!(status, 401);
    }
    let refilled = (started.elapsed().as_secs_f64() / 3.0).ceil() as u32;
    let first = first_limited.expect("the address was limited");
    assert!(
        (21..=21 + refilled).contains(&first),
        "limited at attempt {first}; burst 20 plus {refilled} refilled"
    );
}

/// A client whose connections come from `address` (another loopback address).
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login_from(
    app: &TestApp,
    client: &reqwest::Client,
    username: &str,
    password: &str,
) -> StatusCode {
    client
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn someone_elses_guesses_do_not_lock_a_user_out() {
    let app = TestApp::start().await;
    let attacker = client_from("127.0.0.1");
    let started = std::time::Instant::now();
    let mut guesses = 0;
    while login_from(&app, &attacker, "viewer", "guess").await == StatusCode::UNAUTHORIZED {
        guesses += 1;
        assert!(guesses <= 100, "the username's failures are limited");
    }
    let refilled = (started.elapsed().as_secs_f64() / 6.0).ceil() as u32;
    assert!((10..=10 + refilled).contains(&guesses), "{guesses} guesses");
    // The attacker's address stays refused, even with the right password.
    assert_eq!(
        login_from(&app, &attacker, "viewer", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The user, from an address with no recent failures, logs in.
    let user = client_from("127.0.0.2");
    assert_eq!(
        login_from(&app, &user, "viewer", PASSWORD).await,
        StatusCode::OK
    );
    // Another fresh address gets one guess, then is refused like the first.
    let helper = client_from("127.0.0.3");
    assert_eq!(
        login_from(&app, &helper, "viewer", "guess").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, &helper, "viewer", "guess").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn successful_logins_do_not_use_up_the_allowance() {
    let app = TestApp::start().await;
    let client = client_from("127.0.0.4");
    // More than either burst (20 per address, 10 per username).
    for attempt in 0..25 {
        assert_eq!(
            login_from(&app, &client, "editor", PASSWORD).await,
            StatusCode::OK,
            "login {attempt}"
        );
    }
    // And the failures allowed are still all there: ten, plus one for each
    // 6 s the guessing took (the username's refill).
    let started = std::time::Instant::now();
    let mut failures = 0;
    while login_from(&app, &client, "editor", "guess").await == StatusCode::UNAUTHORIZED {
        failures += 1;
        assert!(failures <= 100, "guessing is limited");
    }
    let refilled = (started.elapsed().as_secs_f64() / 6.0).ceil() as u32;
    assert!(
        (10..=10 + refilled).contains(&failures),
        "{failures} failures allowed; 10 plus {refilled} refilled"
    );
}
