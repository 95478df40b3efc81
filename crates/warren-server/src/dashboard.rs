//! The web dashboard: static files built into the binary (no CDN, no external font, so it works
//! on a machine with no internet) and served at `/` and `/assets/...` without a token. The page
//! signs in with a token the user types and then uses only the public API, like any client; the
//! files themselves hold nothing secret. A strict Content-Security-Policy keeps the page to its
//! own origin: no inline script, no third-party request.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file: the path it is served at (under `/assets/`), its media type and bytes.
struct Asset {
    path: &'static str,
    mime: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:expr) => {
        Asset {
            path: $path,
            mime: $mime,
            bytes: include_bytes!(concat!("../dashboard/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("list.js", JS),
    asset!("sandbox.js", JS),
    asset!("events.js", JS),
    asset!("stream.js", JS),
    asset!("diff.js", JS),
    asset!("launch.js", JS),
    asset!("vendor/highlight.min.js", JS),
];

/// Own origin only; `connect-src 'self'` is what the API calls need, `img-src data:` the icon.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, added to the app's router outside the token check (the page is what
/// asks for the token) and outside `/openapi.json`, which documents the API only.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some((asset, etag)) = find(path) else {
        let error = warren_api::ErrorEnvelope {
            error: warren_domain::ErrorInfo::new(
                warren_domain::ReasonCode::InvalidArgument,
                format!("no dashboard file {path:?}"),
            )
            .with_hint("open / for the dashboard"),
        };
        return (StatusCode::NOT_FOUND, axum::Json(error)).into_response();
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime))],
            asset.bytes,
        )
            .into_response()
    };
    let h = response.headers_mut();
    // Revalidated on every load (cheap with the ETag), so a new binary's page is never mixed
    // with an old one's cached scripts.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The asset served at `path` and its ETag (a hash of its bytes, computed once).
fn find(path: &str) -> Option<(&'static Asset, &'static str)> {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    });
    ASSETS
        .iter()
        .position(|a| a.path == path)
        .map(|i| (&ASSETS[i], etags[i].as_str()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_script_the_page_loads_is_embedded() {
        let index = std::str::from_utf8(find("index.html").unwrap().0.bytes).unwrap();
        for src in index.split("src=\"/assets/").skip(1) {
            let path = &src[..src.find('"').unwrap()];
            assert!(find(path).is_some(), "{path} is not embedded");
        }
        // Every module an embedded script imports is embedded too.
        for asset in ASSETS
            .iter()
            .filter(|a| a.mime == JS && !a.path.starts_with("vendor/"))
        {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for import in text.split("from \"./").skip(1) {
                let path = &import[..import.find('"').unwrap()];
                assert!(
                    find(path).is_some(),
                    "{} imports {path}, not embedded",
                    asset.path
                );
            }
        }
    }

    #[test]
    fn nothing_is_fetched_from_another_origin() {
        // A URL with a host (not a scheme named in help text), other than the SVG namespace.
        for asset in ASSETS.iter().filter(|a| !a.path.starts_with("vendor/")) {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for scheme in ["http://", "https://", "url(//", "src=\"//"] {
                for (i, _) in text.match_indices(scheme) {
                    let rest = &text[i + scheme.len()..];
                    let host = rest.starts_with(|c: char| c.is_ascii_alphanumeric());
                    let svg_namespace = rest.starts_with("www.w3.org/2000/svg");
                    assert!(
                        !host || svg_namespace,
                        "{} names another origin: {}",
                        asset.path,
                        &text[i..(i + 60).min(text.len())]
                    );
                }
            }
        }
    }
}
