//! Request extractors whose failures are problem+json: the authenticated
//! caller, JSON bodies, query pairs, the client address and request id.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde_json::Value;

use super::problem::HttpError;
use crate::auth::{AuthError, Caller};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The caller the admission layer let in. A handler that takes it on a
/// public route gets a 401: the route table is what decides.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(HttpError::from(AuthError::MissingToken))
    }
}

/// A JSON body, kept as a `Value` so the model can report each bad field.
/// `media_types` are the accepted content types.
pub struct JsonBody(pub Value);

impl JsonBody {
    async fn read(req: Request, media_types: &[&str]) -> Result<Value, HttpError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if !content_type
            .as_deref()
            .is_some_and(|ct| media_types.contains(&ct))
        {
            return Err(HttpError::UnsupportedMediaType(media_types.join(" or ")));
        }
        let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| HttpError::PayloadTooLarge(BODY_LIMIT))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| HttpError::BadRequest(format!("the body is not valid JSON: {e}")))
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = HttpError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonBody(JsonBody::read(req, &["application/json"]).await?))
    }
}

/// A JSON merge patch body (`application/merge-patch+json`, or plain JSON).
pub struct MergePatch(pub Value);

impl<S: Send + Sync> FromRequest<S> for MergePatch {
    type Rejection = HttpError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MergePatch(
            JsonBody::read(req, &["application/merge-patch+json", "application/json"]).await?,
        ))
    }
}

/// The query string as ordered pairs (a key may repeat, like `label`).
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(QueryPairs)
            .map_err(|_| HttpError::BadRequest("the query string is malformed".into()))
    }
}

/// The address of the client, for rate limits and audit.
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Without a socket (tests calling the router directly) the caller is local.
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
        Ok(ClientAddr(ip))
    }
}

/// The id of this request, from `X-Request-Id` or made up.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);
