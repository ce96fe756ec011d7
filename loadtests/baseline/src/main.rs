//! A bare axum "hello" server, the ceiling the read scenario is measured
//! against. It answers the routes the k6 read scenario calls with a small
//! fixed JSON body, so the very same script runs against it: the login gives
//! a dummy token (nothing checks it) and every GET says hello.
//!
//! Usage: hello-baseline [ADDR]   (default 127.0.0.1:8090)

use axum::http::header::CONTENT_TYPE;
use axum::routing::{get, post};
use axum::Router;

const HELLO: &str = r#"{"hello":"world"}"#;
const TOKEN: &str = r#"{"access_token":"baseline","token_type":"Bearer","expires_in":3600}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let json = |body: &'static str| ([(CONTENT_TYPE, "application/json")], body);
    let app = Router::new()
        .route(
            "/api/v1/auth/login",
            post(move || async move { json(TOKEN) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .fallback(get(move || async move { json(HELLO) }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
