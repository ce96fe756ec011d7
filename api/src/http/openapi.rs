//! The OpenAPI document, generated from the handlers and types, and the
//! interactive docs page served from vendored Swagger UI assets (no CDN).

use axum::http::header;
use axum::response::{Html, IntoResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "pgplane", description = "Managed PostgreSQL: create, resize, inspect and delete PostgreSQL clusters."),
    paths(
        super::auth::login,
        super::auth::me,
        super::databases::list,
        super::databases::create,
        super::databases::get,
        super::databases::update,
        super::databases::delete,
        super::databases::credentials,
        super::databases::events,
        super::audit::of_database,
        super::audit::all,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
    ),
    components(schemas(crate::model::State, crate::model::FieldError, crate::error::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Logging in"),
        (name = "databases", description = "PostgreSQL databases"),
        (name = "audit", description = "Who did what, and whether it was allowed"),
        (name = "health", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi()
            .to_json()
            .expect("the document serializes"),
    )
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>pgplane API</title>
  <link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
  <div id="ui"></div>
  <script src="/api/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/api/v1/openapi.json", dom_id: "#ui", deepLinking: true });
  </script>
</body>
</html>
"##;

pub async fn docs_page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn docs_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/javascript"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    )
}

pub async fn docs_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../assets/swagger-ui/swagger-ui.css"),
    )
}
