//! The web console: static files embedded in the binary (no build step, no
//! Node.js to run pgplane), served at `/` with the headers a browser app
//! needs. Assets live under `/assets/<version>/`, where the version is a
//! hash of every asset, so they can be cached for a year; `index.html` (and
//! every client-side route, which answers it) is never cached, so a new
//! binary's console is picked up on the next load.
//!
//! The console talks to the API only; this module owns no logic of it.
//! What it does own is the Content-Security-Policy: scripts only from this
//! origin, plus the one inline import map, allowed by its hash.

use std::sync::LazyLock;

use axum::http::{header, HeaderName, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::problem::HttpError;

/// Every asset of the console: its name under `/assets/<version>/`, and its
/// bytes. The vendored libraries are the npm packages' files, unchanged
/// (`console/vendor.sh` copies them, `console/check-vendor.sh` checks them).
macro_rules! assets {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("../../assets/console/", $name)) as &[u8])),*]
    };
}

pub const ASSETS: &[(&str, &[u8])] = assets![
    "app.js",
    "api.js",
    "live.js",
    "ui.js",
    "login.js",
    "list.js",
    "create.js",
    "database.js",
    "history.js",
    "admin.js",
    "style.css",
    "favicon.svg",
    "vendor/preact.module.js",
    "vendor/hooks.module.js",
    "vendor/htm.module.js",
];

const INDEX_TEMPLATE: &str = include_str!("../../assets/console/index.html");

/// Where the template names the asset directory.
const ASSETS_PLACEHOLDER: &str = "/assets/VERSION/";

/// A year, and never revalidated: an asset's URL changes with its bytes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// What is worked out once from the embedded files.
struct Console {
    version: String,
    index: String,
    csp: String,
}

static CONSOLE: LazyLock<Console> = LazyLock::new(|| {
    let mut hasher = Sha256::new();
    for (name, bytes) in ASSETS {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(bytes);
        hasher.update([0]);
    }
    hasher.update(INDEX_TEMPLATE.as_bytes());
    let version: String = hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let index = INDEX_TEMPLATE.replace(ASSETS_PLACEHOLDER, &format!("/assets/{version}/"));
    let import_map = inline_import_map(&index).expect("index.html has its import map");
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(import_map));
    let csp = format!(
        "default-src 'self'; script-src 'self' 'sha256-{hash}'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    Console {
        version,
        index,
        csp,
    }
});

/// The text of the page's `<script type="importmap">`, which the CSP
/// allows by hash (the browser hashes exactly the text between the tags).
fn inline_import_map(page: &str) -> Option<&str> {
    let open = r#"<script type="importmap">"#;
    let start = page.find(open)? + open.len();
    let len = page[start..].find("</script>")?;
    Some(&page[start..start + len])
}

/// The version in the assets' URLs.
pub fn version() -> &'static str {
    &CONSOLE.version
}

/// The headers of every console response.
fn secured(mut response: Response, content_type: &'static str, cache: &'static str) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&CONSOLE.csp).expect("the policy is ASCII"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// `index.html`, for `/` and every client-side route.
pub async fn index() -> Response {
    secured(
        CONSOLE.index.clone().into_response(),
        "text/html; charset=utf-8",
        "no-cache",
    )
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// One embedded asset.
pub fn asset(bytes: &'static [u8], name: &str) -> Response {
    secured(bytes.into_response(), content_type(name), IMMUTABLE)
}

/// What answers a path no route declares: the console's `index.html` for a
/// GET of anything outside the API and the assets (a client-side route
/// such as `/databases/orders`, loaded or reloaded), else the API's 404.
pub async fn fallback(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let outside_api =
        !(path == "/api" || path.starts_with("/api/") || path.starts_with("/assets/"));
    if (method == Method::GET || method == Method::HEAD) && outside_api {
        return index().await;
    }
    HttpError::NoRoute.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_console_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/console");
        let mut on_disk = Vec::new();
        for sub in ["", "vendor"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let served =
                    name.ends_with(".js") || name.ends_with(".css") || name.ends_with(".svg");
                if path.is_file() && served {
                    on_disk.push(if sub.is_empty() {
                        name
                    } else {
                        format!("{sub}/{name}")
                    });
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|(n, _)| (*n).to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn the_policy_allows_exactly_the_import_map_inline() {
        let map = inline_import_map(&CONSOLE.index).unwrap();
        assert!(map.contains(&format!("/assets/{}/vendor/preact.module.js", version())));
        assert!(!CONSOLE.index.contains(ASSETS_PLACEHOLDER));
        assert_eq!(
            CONSOLE.index.matches("<script").count(),
            2,
            "the import map and app.js only"
        );
        assert!(!CONSOLE.csp.contains("unsafe"));
        assert!(CONSOLE.csp.contains("frame-ancestors 'none'"));
    }
}
