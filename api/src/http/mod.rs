//! The HTTP API: the router built from the route table ([`routes`]), the
//! layer that admits and audits each route ([`admission`]), extractors,
//! the one error → problem+json mapping ([`problem`]), and the middleware
//! that gives every request an id, a log line and its metrics. The web
//! console's files are routes of the same table ([`console`]), and the
//! router's fallback answers its client-side routes.

mod admission;
mod auth;
pub mod console;
#[cfg(test)]
mod contract;
mod databases;
pub mod extract;
mod health;
pub mod openapi;
pub mod problem;
mod records;
mod render;
pub mod routes;
pub mod sse;
mod stale;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tracing::Instrument;

use crate::app::App;
use extract::RequestId;
use problem::HttpError;

pub type AppState = Arc<App>;

pub fn router(app: AppState) -> Router {
    let mut api = Router::new();
    for route in routes::table() {
        let info = Arc::new(route.info);
        let path = info.path.clone();
        let admitted = route.handler.route_layer(middleware::from_fn_with_state(
            (app.clone(), info),
            admission::admit,
        ));
        api = api.route(&path, admitted);
    }
    let api = api
        .method_not_allowed_fallback(|| async { HttpError::MethodNotAllowed })
        .fallback(console::fallback);
    // `observe` runs first (outermost), so the admission layer sees the request id.
    api.layer(middleware::from_fn_with_state(app.clone(), stale::mark))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(HttpError::Panicked)
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
