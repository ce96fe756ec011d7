//! The layer every route runs behind, doing what its declaration says
//! ([`super::routes`]): it opens the route's audit [`Draft`] (naming the
//! database of a `{name}` path, so a refusal names it too), lets in only a
//! caller of the declared role, and closes the record with the status
//! answered. When the record cannot be kept, the answer becomes a 503 (a
//! handler that changes something has written the record ahead already, so
//! it never gets that far with a broken store).

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::RequestId;
use super::problem::HttpError;
use super::routes::{Access, Audit, RouteInfo};
use super::AppState;
use crate::auth::AuthError;
use crate::records::{Draft, Outcome};

/// The state of one route's layer: the app and the route's declaration.
pub type Admission = (AppState, Arc<RouteInfo>);

pub async fn admit(
    State((app, route)): State<Admission>,
    mut req: Request,
    next: Next,
) -> Response {
    let draft = route.audit.action().map(|action| {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map_or_else(String::new, |r| r.0.clone());
        let source_ip = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::Ipv4Addr::LOCALHOST.into(), |c| c.0.ip());
        let draft = Draft::new(&request_id, source_ip, action);
        if route.names_database() {
            if let Some(name) = database_in_path(req.uri().path(), &route.path) {
                draft.set_database(name);
            }
        }
        draft
    });
    if let Access::Role(needs) = route.access {
        let bearer = bearer_token(&req);
        match app.admit(bearer, needs, draft.as_ref()) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
            }
            Err(refused) => {
                let response = HttpError::from(refused).into_response();
                return close(&app, draft, route.audit, response).await;
            }
        }
    }
    if let Some(draft) = &draft {
        req.extensions_mut().insert(draft.clone());
    }
    let response = next.run(req).await;
    close(&app, draft, route.audit, response).await
}

/// Closes the record with the status answered; reads of the trail are
/// recorded only when refused.
async fn close(app: &AppState, draft: Option<Draft>, audit: Audit, response: Response) -> Response {
    let Some(draft) = draft else {
        return response;
    };
    let status = response.status().as_u16();
    if matches!(audit, Audit::Refusals(_)) && Outcome::of_status(status) != Outcome::Denied {
        return response;
    }
    match draft.close(&app.audit, status).await {
        Ok(()) => response,
        Err(e) => HttpError::from(e).into_response(),
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(req: &Request) -> Result<&str, AuthError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .ok_or(AuthError::MissingToken)?;
    header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::MalformedHeader)
}

/// The database name of a request path, at the `{name}` of its template,
/// when it is a valid name.
fn database_in_path<'a>(path: &'a str, template: &str) -> Option<&'a str> {
    let at = template.split('/').position(|s| s == "{name}")?;
    let name = path.split('/').nth(at)?;
    crate::model::check_name(name).is_ok().then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_found_at_the_templates_name() {
        let t = "/api/v1/databases/{name}/audit";
        assert_eq!(
            database_in_path("/api/v1/databases/orders/audit", t),
            Some("orders")
        );
        assert_eq!(
            database_in_path("/api/v1/databases/Bad_Name/audit", t),
            None
        );
        assert_eq!(database_in_path("/api/v1/audit", "/api/v1/audit"), None);
    }
}
