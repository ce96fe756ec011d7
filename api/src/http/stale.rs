//! Marks reads of databases served from a cache that may be behind: when
//! the backend says its source is unreachable, answers to `GET` under
//! `/api/v1/databases` carry `Warning: 110` ("Response is Stale", RFC 7234)
//! and `X-Pgplane-Cache: stale`. Writes are not marked: they fail instead.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

pub async fn mark(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let read = req.method() == Method::GET && req.uri().path().starts_with("/api/v1/databases");
    let mut response = next.run(req).await;
    if read && app.backend.stale().is_some() {
        let headers = response.headers_mut();
        headers.insert(
            "warning",
            HeaderValue::from_static("110 pgplane \"Response is Stale\""),
        );
        headers.insert("x-pgplane-cache", HeaderValue::from_static("stale"));
    }
    response
}
