//! `GET /`: the dashboard, one HTML page, two scripts (`app.js`; `query.js`, the query box,
//! the views list and the index panel) and one stylesheet compiled into the binary
//! (`src/http/dashboard/`). The page reads only the public JSON endpoints (`POST /query`
//! is a read), the `/metrics` text and the `/tail` event stream, so it shows nothing a
//! `curl` could not, and writes only through `POST /add` with the token the user types in.
//!
//! Headers, and the threat each one answers:
//!
//! - `Content-Security-Policy`: entry `data` is text any author signs and any peer forwards.
//!   The scripts build the DOM with `textContent` only; should a mistake ever let such text
//!   be parsed as markup, the policy still runs no script and loads no style that is not one
//!   of these files, and connects nowhere but this node (`'self'`). Hence no inline script
//!   or style in the HTML, and no CDN.
//! - `X-Content-Type-Options: nosniff`: the browser runs the scripts and applies the style
//!   only under their declared types.
//! - `frame-ancestors 'none'` (and `X-Frame-Options: DENY` for older browsers): another
//!   site cannot frame the append form to click it for the user.
//! - `Cache-Control: no-cache` with a strong `ETag` on every file: one URL per file and
//!   no templating, yet a browser revalidates (a 304 of a few hundred bytes) and so never
//!   mixes a new page with an old script after the binary is upgraded. Fingerprinted names
//!   with a year's `max-age` would save that round trip, which on a node's own dashboard
//!   is not worth rewriting the HTML at startup.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;

/// The policy every dashboard response carries; see the module docs.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One compiled-in file, with the validator computed from its bytes.
struct Asset {
    content_type: &'static str,
    body: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(content_type: &'static str, body: &'static str) -> Asset {
        let digest = Sha256::digest(body.as_bytes());
        // The first 16 bytes of sha256 are plenty to tell two builds' files apart.
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        Asset {
            content_type,
            body,
            // Hex digits inside quotes: always a valid header value.
            etag: HeaderValue::from_str(&etag).expect("a quoted hex string is a header value"),
        }
    }

    /// 200 with the file, or 304 when the client already holds this exact version.
    fn respond(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .any(|t| t.trim() == "*" || t.trim().as_bytes() == self.etag.as_bytes())
            });
        let headers = [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, self.etag.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        (
            headers,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            )],
            self.body,
        )
            .into_response()
    }
}

static PAGE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    )
});
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "text/javascript; charset=utf-8",
        include_str!("dashboard/app.js"),
    )
});
static QUERY_SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "text/javascript; charset=utf-8",
        include_str!("dashboard/query.js"),
    )
});
static STYLE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("text/css; charset=utf-8", include_str!("dashboard/app.css")));

/// `GET /`.
pub async fn page(headers: HeaderMap) -> Response {
    PAGE.respond(&headers)
}

/// `GET /dashboard/{file}`: the scripts and the stylesheet; anything else is a JSON 404.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match file.as_str() {
        "app.js" => SCRIPT.respond(&headers),
        "query.js" => QUERY_SCRIPT.respond(&headers),
        "app.css" => STYLE.respond(&headers),
        _ => ApiError::NotFound("no such dashboard file".into()).into_response(),
    }
}
