//! The OpenAPI document, generated from the handlers and types, and the
//! interactive docs page served from vendored Swagger UI assets (no CDN).

use axum::http::header;
use axum::response::{Html, IntoResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use axum::extract::State;
use serde_json::{json, Value};

use super::routes::{table, Route};
use super::AppState;
use crate::model::spec::{self, patterns};
use crate::model::{parameters, Limits};

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

pub async fn document(State(app): State<AppState>) -> impl IntoResponse {
    let mut doc = serde_json::to_value(document_of(&table())).expect("the document serializes");
    constrain(&mut doc, &app.limits);
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&doc).expect("the document serializes"),
    )
}

/// States in the document what the rules of [`crate::model::spec`] accept
/// and the annotations cannot say: the installation's PostgreSQL majors,
/// and the names and values of parameters and labels (refused parameters
/// included), so that what the document allows, the server accepts.
fn constrain(doc: &mut Value, limits: &Limits) {
    let names_not_refused = json!({
        "type": "string",
        "pattern": patterns::PARAMETER_NAME,
        "not": {"enum": parameters::refused().map(|(name, _)| name).collect::<Vec<_>>()},
    });
    // A value may be a string, a number or a boolean (`on`/`off`); the
    // string rules hold for strings only, as in JSON Schema.
    let parameter_value = json!({
        "type": ["string", "number", "boolean"],
        "maxLength": spec::MAX_PARAMETER_VALUE_LEN, "pattern": patterns::PARAMETER_VALUE,
    });
    let reserved = spec::RESERVED_LABEL_PREFIXES
        .iter()
        .map(|p| p.replace('.', "\\."))
        .collect::<Vec<_>>()
        .join("|");
    let label_key = json!({
        "type": "string", "maxLength": 317, "pattern": patterns::LABEL_KEY,
        "not": {"pattern": format!("^({reserved})")},
    });
    let label_value = json!({"type": "string", "maxLength": 63, "pattern": patterns::LABEL_VALUE});
    let nullable = |schema: &Value| {
        let mut s = schema.clone();
        match s["type"].as_array_mut() {
            Some(types) => types.push(json!("null")),
            None => s["type"] = json!([s["type"].take(), "null"]),
        }
        s
    };
    for (body, patch) in [("CreateDatabase", false), ("DatabasePatch", true)] {
        let props = &mut doc["components"]["schemas"][body]["properties"];
        let value = |v: &Value| if patch { nullable(v) } else { v.clone() };
        let parameters = &mut props["parameters"];
        parameters["propertyNames"] = names_not_refused.clone();
        parameters["additionalProperties"] = value(&parameter_value);
        parameters["maxProperties"] = json!(spec::MAX_PARAMETERS);
        let labels = &mut props["labels"];
        labels["propertyNames"] = label_key.clone();
        labels["additionalProperties"] = value(&label_value);
        labels["maxProperties"] = json!(spec::MAX_LABELS);
        props["storage"]["pattern"] = json!(patterns::STORAGE);
        if !patch {
            // `null`, like leaving it out, asks for the newest major.
            let mut majors = json!(limits.postgres_versions);
            majors.as_array_mut().expect("a list").push(Value::Null);
            props["postgres_version"]["enum"] = majors;
        }
    }
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
