//! The OpenAPI document, generated from the handlers and types, and the
//! interactive docs page served from vendored Swagger UI assets (no CDN).

use axum::http::header;
use axum::response::{Html, IntoResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes::{table, Route};
use std::sync::OnceLock;

/// What the document says beyond its paths, which come from the route
/// table ([`super::routes`]).
#[derive(OpenApi)]
#[openapi(
    info(title = "pgplane", description = "Managed PostgreSQL: create, resize, inspect and delete PostgreSQL clusters."),
    components(schemas(crate::model::State, crate::model::FieldError, super::problem::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Logging in"),
        (name = "databases", description = "PostgreSQL databases"),
        (name = "audit", description = "Who did what, and whether it was allowed"),
        (name = "health", description = "Probes and metrics"),
    )
)]
struct ApiDoc;

/// The OpenAPI document of `routes`: every documented route's operation
/// and the schemas it names.
pub fn document_of(routes: &[Route]) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for documented in routes
        .iter()
        .filter_map(|r| Some((&r.info.path, r.documented.as_ref()?)))
    {
        let (path, d) = documented;
        doc.paths
            .add_path_operation(path, vec![d.method.clone()], d.operation.clone());
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, schema) in &d.schemas {
            components.schemas.insert(name.clone(), schema.clone());
        }
    }
    doc
}

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
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = DOCUMENT.get_or_init(|| {
        document_of(&table())
            .to_json()
            .expect("the document serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], text.as_str())
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
