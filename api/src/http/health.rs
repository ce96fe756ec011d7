//! Probes and metrics, outside `/api/v1` and without authentication.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    /// What is not ready, by component.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        failing: Vec::new(),
    })
}

/// The backend and the stores can serve requests; names what cannot.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let mut failing = Vec::new();
    if let Err(why) = app.backend.ready().await {
        failing.push(format!("backend: {why}"));
    }
    if let Err(why) = app.audit.ready().await {
        failing.push(format!("audit store: {why}"));
    }
    if let Err(why) = app.events.ready() {
        failing.push(format!("event store: {why}"));
    }
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if failing.is_empty() {
        "ready"
    } else {
        "not ready"
    };
    (
        status,
        Json(Health {
            status: word,
            failing,
        }),
    )
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
}
