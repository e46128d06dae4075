//! The dashboard's files over HTTP (no browser): statuses, content types, the security and
//! cache headers, and an HTML page that loads nothing from another origin and holds no
//! inline script or style (the policy would block them). `tests/it/dashboard_browser.rs`
//! runs the page itself.

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Request, StatusCode};
use tower::ServiceExt;

use crate::common;
use kappalog::http::{router, HttpConfig};
use kappalog::node::Node;

/// The policy the issue asks for, spelled out here rather than imported, so a change to
/// the served one fails this test.
const EXPECTED_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

async fn get(node: &Node, token: Option<&str>, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let app = router(
        node.clone(),
        HttpConfig {
            token: token.map(str::to_owned),
            ..HttpConfig::default()
        },
    );
    let mut request = Request::builder().uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), common::identity(1)).unwrap();
    (dir, node)
}

/// Every `src="..."` and `href="..."` value in `html`.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            found.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    found
}

/// Whether `html` has an attribute like ` onclick=`.
fn has_event_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(at, _)| {
        let name: String = html[at + 3..]
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        !name.is_empty() && html[at + 3 + name.len()..].starts_with('=')
    })
}

#[tokio::test]
async fn the_page_and_its_assets_carry_their_types_and_the_security_headers() {
    let (_dir, node) = node();
    for (uri, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/query.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
    ] {
        // Behind a token too: the page is a read, like the endpoints it reads.
        for token in [None, Some("s3cret")] {
            let answer = get(&node, token, uri, &[]).await;
            assert_eq!(answer.status, StatusCode::OK, "{uri}");
            assert_eq!(answer.header(header::CONTENT_TYPE), content_type, "{uri}");
            assert_eq!(answer.header(header::CACHE_CONTROL), "no-cache", "{uri}");
            assert_eq!(answer.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(answer.header(header::CONTENT_SECURITY_POLICY), EXPECTED_CSP);
            assert_eq!(answer.header(header::X_FRAME_OPTIONS), "DENY");
            assert!(!answer.body.is_empty(), "{uri}");
        }
    }
}

#[tokio::test]
async fn a_client_holding_the_current_version_gets_304() {
    let (_dir, node) = node();
    for uri in [
        "/",
        "/dashboard/app.js",
        "/dashboard/query.js",
        "/dashboard/app.css",
    ] {
        let first = get(&node, None, uri, &[]).await;
        let etag = first.header(header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let again = get(&node, None, uri, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{uri}");
        assert!(again.body.is_empty());
        assert_eq!(again.header(header::ETAG), etag);
        assert_eq!(again.header(header::CACHE_CONTROL), "no-cache");
        // Another version's tag: the whole file again.
        let stale = get(&node, None, uri, &[("if-none-match", "\"0123\"")]).await;
        assert_eq!(stale.status, StatusCode::OK, "{uri}");
        assert_eq!(stale.body, first.body);
    }
}

#[tokio::test]
async fn the_page_loads_only_its_own_files_and_nothing_inline() {
    let (_dir, node) = node();
    let html = get(&node, None, "/", &[]).await.body;
    let references = references(&html);
    assert!(references.contains(&"dashboard/app.js".to_owned()));
    assert!(references.contains(&"dashboard/query.js".to_owned()));
    assert!(references.contains(&"dashboard/app.css".to_owned()));
    for reference in &references {
        // Relative to the node, or the empty data: icon that stops the favicon request.
        let own = !reference.contains(':') && !reference.starts_with("//");
        assert!(
            own || reference == "data:,",
            "external reference {reference:?}"
        );
    }
    let lower = html.to_lowercase();
    assert!(!lower.contains("http://") && !lower.contains("https://"));
    // app.js first: query.js uses what it sets up, and deferred scripts run in order.
    let scripts = "<script src=\"dashboard/app.js\" defer></script>\n\
                   <script src=\"dashboard/query.js\" defer></script>";
    assert_eq!(
        lower.matches(scripts).count(),
        1,
        "the two scripts, in order"
    );
    assert_eq!(
        lower.matches("<script").count(),
        2,
        "only the two external scripts, no inline ones"
    );
    assert!(!lower.contains("<style"), "no inline stylesheet");
    assert!(!lower.contains(" style="), "no inline style attribute");
    assert!(
        !has_event_handler(&lower),
        "no inline event handler attribute"
    );
    // The scripts build the DOM from text only.
    for file in ["/dashboard/app.js", "/dashboard/query.js"] {
        let script = get(&node, None, file, &[]).await.body;
        for sink in [
            ".innerHTML",
            ".outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "DOMParser",
            "createContextualFragment",
        ] {
            assert!(!script.contains(sink), "{file} uses {sink}");
        }
    }
}

#[tokio::test]
async fn an_unknown_dashboard_file_is_a_json_404() {
    let (_dir, node) = node();
    let answer = get(&node, None, "/dashboard/app.map", &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.header(header::CONTENT_TYPE), "application/json");
    assert!(answer.body.contains("\"error\""), "{}", answer.body);
}
