//! What the console's create form asks before it creates anything:
//! `POST /render` (the CloudNativePG `Cluster` a create body becomes, as
//! `pgplane render` prints it) and `GET /versions` (the PostgreSQL majors
//! this server offers). Thin handlers over [`crate::app::render`] and the
//! app's [`crate::model::Limits`].

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::JsonBody;
use super::problem::{HttpError, Problem};
use super::AppState;
use crate::auth::Caller;
use crate::model::CreateDatabaseDoc;

/// A create body rendered as the kubernetes backend would apply it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RenderedCluster {
    /// The `postgresql.cnpg.io/v1` `Cluster`, as JSON.
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// The same object as YAML, as `pgplane render` prints it.
    pub yaml: String,
}

/// The PostgreSQL majors a create body may name.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Versions {
    /// Ascending.
    pub postgres_versions: Vec<u32>,
    /// What a body that names no version gets.
    pub default: u32,
}

/// The CloudNativePG `Cluster` a create body becomes, checked by the same
/// rules as `POST /databases`; nothing is created. The caller is the
/// owner the manifest names.
#[utoipa::path(post, path = "/api/v1/render", tag = "databases", security(("bearer" = [])),
    request_body = CreateDatabaseDoc,
    responses(
        (status = 200, body = RenderedCluster),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn render(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<RenderedCluster>, HttpError> {
    let rendered = app.preview(&body, &caller.username)?;
    Ok(Json(RenderedCluster {
        manifest: rendered.object,
        yaml: rendered.yaml,
    }))
}

/// The PostgreSQL majors this server offers, and the default.
#[utoipa::path(get, path = "/api/v1/versions", tag = "databases", security(("bearer" = [])),
    responses(
        (status = 200, body = Versions),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn versions(State(app): State<AppState>) -> Json<Versions> {
    Json(Versions {
        postgres_versions: app.limits.postgres_versions.clone(),
        default: app.limits.default_version(),
    })
}
