//! Cross-cutting request handling: bearer-token check on writes, metrics and JSON error
//! bodies on every response, and the request timeout.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::timeout::TimeoutLayer;

use super::error::error_body;
use super::{ApiError, AppState};
use crate::metrics::{RequestLabels, RouteLabels};

/// Requests that outlive the timeout get a 503 (a JSON body is added by [`observe`]).
pub fn timeout_layer(timeout: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout)
}

/// Write routes pass only with `Authorization: Bearer TOKEN` when the node has a token.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.config.token {
        if !bearer_matches(request.headers(), token) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(presented) = value.strip_prefix("Bearer ") else {
        return false;
    };
    constant_time_eq(presented.trim().as_bytes(), token.as_bytes())
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed
/// token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The route label of a path: one of the API's patterns, or `other`, so metric cardinality
/// is bounded whatever paths clients send.
fn route_label(path: &str) -> &'static str {
    match path {
        "/add" => "/add",
        "/summary" => "/summary",
        "/entries" => "/entries",
        "/feeds" => "/feeds",
        "/export.csv" => "/export.csv",
        "/import" => "/import",
        "/health" => "/health",
        "/metrics" => "/metrics",
        p if p.starts_with("/entries/") => "/entries/{hash}",
        _ => "other",
    }
}

/// The method label: the standard methods by name, anything else as `other` (bounded).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Counts and times every request, and gives error responses produced below the handlers
/// (timeouts, body limits, concurrency) the same `{"error": ...}` body as handler errors.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let route = route_label(request.uri().path());
    let started = Instant::now();
    let mut response = next.run(request).await;
    let status = response.status();
    if (status.is_client_error() || status.is_server_error()) && !is_json(&response) {
        let message = match status {
            StatusCode::SERVICE_UNAVAILABLE => "request timed out or the node is unavailable",
            StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
            other => other.canonical_reason().unwrap_or("request failed"),
        };
        let headers = std::mem::take(response.headers_mut());
        response = (status, error_body(message)).into_response();
        for (name, value) in headers.iter() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
    }
    let metrics = state.node.metrics();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: status.as_u16(),
        })
        .inc();
    metrics
        .request_seconds
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}

fn is_json(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(bearer_matches(&headers, "s3cret"));
        assert!(!bearer_matches(&headers, "s3cre"));
        headers.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!bearer_matches(&headers, "s3cret"));
    }

    #[test]
    fn route_labels_are_bounded() {
        assert_eq!(route_label("/entries/abc"), "/entries/{hash}");
        assert_eq!(route_label("/whatever/../x"), "other");
    }
}
