//! The HTTP API: the router, the state handlers share, and the middleware
//! that gives every request an id, a log line and its metrics.

mod audit;
mod auth;
mod databases;
pub mod extract;
mod health;
pub mod openapi;
mod stale;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tracing::Instrument;

use crate::audit::{Audit, Loki};
use crate::auth::Auth;
use crate::backend::Backend;
use crate::error::ApiError;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::model::Limits;
use extract::RequestId;

/// What every handler may use.
pub struct App {
    pub backend: Arc<dyn Backend>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<Events>,
    pub audit: Arc<Audit>,
    /// Set when records are queried from Loki.
    pub loki: Option<Arc<Loki>>,
    pub limits: Limits,
}

pub type AppState = Arc<App>;

pub fn router(app: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/auth/login", axum::routing::post(auth::login))
        .route("/api/v1/auth/me", get(auth::me))
        .route(
            "/api/v1/databases",
            get(databases::list).post(databases::create),
        )
        .route(
            "/api/v1/databases/{name}",
            get(databases::get)
                .patch(databases::update)
                .delete(databases::delete),
        )
        .route(
            "/api/v1/databases/{name}/credentials",
            get(databases::credentials),
        )
        .route("/api/v1/databases/{name}/events", get(databases::events))
        .route("/api/v1/databases/{name}/audit", get(audit::of_database))
        .route("/api/v1/audit", get(audit::all))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/docs", get(openapi::docs_page))
        .route("/api/docs/swagger-ui-bundle.js", get(openapi::docs_js))
        .route("/api/docs/swagger-ui.css", get(openapi::docs_css))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NotFound("no such route".into()) });
    // `observe` runs first (outermost), so the audit sees the request id.
    api.layer(middleware::from_fn_with_state(app.clone(), stale::mark))
        .layer(middleware::from_fn_with_state(app.clone(), audit::audited))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal(
                "a handler panicked".into(),
            ))
        }))
        .with_state(app)
}

/// Gives the request an id (kept from `X-Request-Id` when sane), runs it in
/// a span carrying that id, and records its metrics and one log line.
async fn observe(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = req.method().clone();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let m = &app.metrics;
    m.http_in_flight.inc();
    let mut response = next.run(req).instrument(span.clone()).await;
    m.http_in_flight.dec();
    let status = response.status();
    let elapsed = started.elapsed();
    let method_label = if is_known(&method) {
        method.as_str()
    } else {
        "other"
    };
    m.http_requests
        .with_label_values(&[method_label, &route, status.as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[method_label, &route])
        .observe(elapsed.as_secs_f64());
    if route != "/metrics" && route != "/healthz" && route != "/readyz" {
        span.in_scope(|| {
            tracing::info!(
                status = status.as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        });
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

fn is_known(m: &Method) -> bool {
    [
        Method::GET,
        Method::POST,
        Method::PATCH,
        Method::DELETE,
        Method::PUT,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .contains(m)
}
