//! Request extractors whose failures are problem+json: the authenticated
//! caller, JSON bodies, query pairs, the client address and request id.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use serde_json::Value;

use super::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("an Authorization: Bearer token is required".into())
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be Bearer <token>".into())
            })?;
        let caller = state.auth.authenticate(token)?;
        if let Some(draft) = parts.extensions.get::<crate::audit::Draft>() {
            draft.set_caller(&caller.username, Some(caller.role));
        }
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// A JSON body, kept as a `Value` so the model can report each bad field.
/// `media_types` are the accepted content types.
pub struct JsonBody(pub Value);

impl JsonBody {
    async fn read(req: Request, media_types: &[&str]) -> Result<Value, ApiError> {
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
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body must be sent as {}",
                media_types.join(" or ")
            )));
        }
        let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(BODY_LIMIT))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonBody(JsonBody::read(req, &["application/json"]).await?))
    }
}

/// A JSON merge patch body (`application/merge-patch+json`, or plain JSON).
pub struct MergePatch(pub Value);

impl<S: Send + Sync> FromRequest<S> for MergePatch {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MergePatch(
            JsonBody::read(req, &["application/merge-patch+json", "application/json"]).await?,
        ))
    }
}

/// The query string as ordered pairs (a key may repeat, like `label`).
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(QueryPairs)
            .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))
    }
}

/// The address of the client, for rate limits and audit.
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

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
