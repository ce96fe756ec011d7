//! Every route, declared once: its path and method come from the handler's
//! OpenAPI annotation (so the document and the router cannot disagree), and
//! its declaration says who may call it and how it is audited. The router
//! ([`super::router`]), the OpenAPI document ([`super::openapi`]), the
//! admission layer ([`super::admission`]) and the tests all read this table.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;

use super::{auth, console, databases, health, openapi, records, render, AppState};
use crate::model::Role;
use crate::records::Action;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token: login, probes, metrics, the documents.
    Public,
    /// A bearer token of a user with at least this role.
    Role(Role),
}

/// How a route is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// Not at all (reads).
    No,
    /// One record per request, written ahead of any change.
    Every(Action),
    /// Only when refused (reading the trail must not grow it).
    Refusals(Action),
}

impl Audit {
    pub fn action(self) -> Option<Action> {
        match self {
            Audit::No => None,
            Audit::Every(a) | Audit::Refusals(a) => Some(a),
        }
    }
}

/// What the declaration says of a route.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    /// The template, as the router and the OpenAPI document spell it.
    pub path: String,
    pub access: Access,
    pub audit: Audit,
}

impl RouteInfo {
    /// Whether the path names a database (`{name}`), whose name the audit
    /// record then carries, even when the request is refused early.
    pub fn names_database(&self) -> bool {
        self.path.contains("{name}")
    }

    /// Whether the route is outside the API and its documents (probes and
    /// metrics): not logged per request.
    pub fn is_probe(&self) -> bool {
        matches!(self.path.as_str(), "/healthz" | "/readyz" | "/metrics")
    }
}

/// A declared route: what it is, its handler, and its part of the OpenAPI
/// document (`None` for the documents themselves).
pub struct Route {
    pub info: RouteInfo,
    pub handler: MethodRouter<AppState>,
    pub documented: Option<Documented>,
}

/// A route's operation in the OpenAPI document, and the schemas it names.
pub struct Documented {
    pub method: HttpMethod,
    pub operation: Operation,
    pub schemas: Vec<(String, RefOr<Schema>)>,
}

/// A route whose path, method and OpenAPI operation come from the
/// handler's `#[utoipa::path]` annotation `P`.
fn route<P, H, T>(handler: H, access: Access, audit: Audit) -> Route
where
    P: utoipa::Path + utoipa::__dev::SchemaReferences,
    H: Handler<T, AppState>,
    T: 'static,
{
    let methods = P::methods();
    let [method] = methods.as_slice() else {
        panic!("{} declares one method per handler", P::path());
    };
    let documented_method = method.clone();
    let (method, filter) = match method {
        HttpMethod::Get => (Method::GET, MethodFilter::GET),
        HttpMethod::Post => (Method::POST, MethodFilter::POST),
        HttpMethod::Patch => (Method::PATCH, MethodFilter::PATCH),
        HttpMethod::Delete => (Method::DELETE, MethodFilter::DELETE),
        HttpMethod::Put => (Method::PUT, MethodFilter::PUT),
        _ => panic!("{} uses a method no route needs", P::path()),
    };
    Route {
        info: RouteInfo {
            method,
            path: P::path(),
            access,
            audit,
        },
        handler: on(filter, handler),
        documented: Some(Documented {
            method: documented_method,
            operation: P::operation(),
            schemas: {
                let mut schemas = Vec::new();
                P::schemas(&mut schemas);
                schemas
            },
        }),
    }
}

/// A route that is not in the OpenAPI document (the documents themselves).
fn undocumented<H, T>(method: Method, path: &str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    Route {
        info: RouteInfo {
            method,
            path: path.to_owned(),
            access: Access::Public,
            audit: Audit::No,
        },
        handler: on(filter, handler),
        documented: None,
    }
}

/// The table of every route pgplane serves.
pub fn table() -> Vec<Route> {
    use Access::{Public, Role as Needs};
    use Role::{Admin, Editor, Viewer};
    let mut table = vec![
        route::<auth::__path_login, _, _>(auth::login, Public, Audit::Every(Action::Login)),
        route::<auth::__path_me, _, _>(auth::me, Needs(Viewer), Audit::No),
        route::<databases::__path_list, _, _>(databases::list, Needs(Viewer), Audit::No),
        route::<databases::__path_create, _, _>(
            databases::create,
            Needs(Editor),
            Audit::Every(Action::Create),
        ),
        route::<databases::__path_get, _, _>(databases::get, Needs(Viewer), Audit::No),
        route::<databases::__path_update, _, _>(
            databases::update,
            Needs(Editor),
            Audit::Every(Action::Update),
        ),
        route::<databases::__path_delete, _, _>(
            databases::delete,
            Needs(Editor),
            Audit::Every(Action::Delete),
        ),
        route::<databases::__path_instances, _, _>(databases::instances, Needs(Viewer), Audit::No),
        route::<databases::__path_credentials, _, _>(
            databases::credentials,
            Needs(Editor),
            Audit::Every(Action::CredentialsRead),
        ),
        route::<databases::__path_revisions, _, _>(databases::revisions, Needs(Viewer), Audit::No),
        route::<databases::__path_revision, _, _>(databases::revision, Needs(Viewer), Audit::No),
        route::<databases::__path_rollback, _, _>(
            databases::rollback,
            Needs(Editor),
            Audit::Every(Action::Rollback),
        ),
        route::<databases::__path_adopt, _, _>(
            databases::adopt,
            Needs(Admin),
            Audit::Every(Action::Adopt),
        ),
        route::<databases::__path_release, _, _>(
            databases::release,
            Needs(Admin),
            Audit::Every(Action::Release),
        ),
        route::<records::__path_database_events, _, _>(
            records::database_events,
            Needs(Viewer),
            Audit::No,
        ),
        route::<records::__path_events, _, _>(records::events, Needs(Viewer), Audit::No),
        route::<records::__path_database_audit, _, _>(
            records::database_audit,
            Needs(Editor),
            Audit::Refusals(Action::AuditRead),
        ),
        route::<records::__path_audit, _, _>(
            records::audit,
            Needs(Admin),
            Audit::Refusals(Action::AuditRead),
        ),
        route::<health::__path_healthz, _, _>(health::healthz, Public, Audit::No),
        route::<health::__path_readyz, _, _>(health::readyz, Public, Audit::No),
        route::<health::__path_metrics, _, _>(health::metrics, Public, Audit::No),
        undocumented(Method::GET, "/api/v1/openapi.json", openapi::document),
        undocumented(Method::GET, "/api/docs", openapi::docs_page),
        undocumented(
            Method::GET,
            "/api/docs/swagger-ui-bundle.js",
            openapi::docs_js,
        ),
        undocumented(Method::GET, "/api/docs/swagger-ui.css", openapi::docs_css),
        // The create form's preview: a POST only because it takes a create
        // body; it changes nothing, so it is not audited.
        route::<render::__path_render, _, _>(render::render, Needs(Viewer), Audit::No),
        route::<render::__path_versions, _, _>(render::versions, Needs(Viewer), Audit::No),
        // The console; a client-side route answers its page too, through
        // the router's fallback (`console::fallback`).
        console_file("/", console::index),
    ];
    for (name, bytes) in console::ASSETS {
        let path = format!("/assets/{}/{name}", console::version());
        table.push(console_file(&path, move || async move {
            console::asset(bytes, name)
        }));
    }
    table
}

/// A file of the web console: public, undocumented, and gzipped for a
/// browser that accepts it. Only the console is compressed: its files are
/// text a first visit downloads whole, while the API answers small JSON
/// and its streams must reach the client event by event.
fn console_file<H, T>(path: &str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let mut route = undocumented(Method::GET, path, handler);
    route.handler = route
        .handler
        .layer(tower_http::compression::CompressionLayer::new());
    route
}

/// What the table says of every route, without the handlers.
pub fn infos() -> Vec<RouteInfo> {
    table().into_iter().map(|r| r.info).collect()
}
