//! `POST /auth/login` and `GET /auth/me`.

use axum::extract::State;
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::{ClientAddr, JsonBody};
use super::problem::{HttpError, Problem};
use super::AppState;
use crate::auth::Caller;
use crate::model::{FieldError, Invalid, Role};
use crate::records::Draft;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 1024)]
    username: String,
    #[schema(format = Password, min_length = 1, max_length = 1024)]
    password: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub username: String,
    pub role: Role,
}

/// Exchanges a username and password for a bearer token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn login(
    State(app): State<AppState>,
    Extension(draft): Extension<Draft>,
    ClientAddr(from): ClientAddr,
    JsonBody(body): JsonBody,
) -> Result<Json<TokenResponse>, HttpError> {
    let (username, password) = credentials_of(&body)?;
    let login = app.login(&draft, username, password, from).await?;
    tracing::info!(username, role = login.role.as_str(), "login");
    Ok(Json(TokenResponse {
        access_token: login.token,
        token_type: "Bearer".into(),
        expires_in: app.auth.tokens.ttl.as_secs(),
    }))
}

fn credentials_of(body: &Value) -> Result<(&str, &str), Invalid> {
    let mut errors = Vec::new();
    let field = |name: &str, errors: &mut Vec<FieldError>| match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Some(s.as_str()),
        _ => {
            errors.push(FieldError::new(
                name,
                "is required: a string of 1 to 1024 characters",
            ));
            None
        }
    };
    let username = field("username", &mut errors);
    let password = field("password", &mut errors);
    if let Some(obj) = body.as_object() {
        errors.extend(
            obj.keys()
                .filter(|k| *k != "username" && *k != "password")
                .map(|k| FieldError::new(k.clone(), "unknown field")),
        );
    }
    match (username, password) {
        (Some(u), Some(p)) if errors.is_empty() => Ok((u, p)),
        _ => Err(Invalid(errors)),
    }
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        username: caller.username,
        role: caller.role,
    })
}
