//! Cross-cutting request handling, in one tower service ([`Gate`]) that wraps the router:
//! the bearer-token check on writes, the request timeout, metrics, and JSON error bodies on
//! every response.
//!
//! It is written by hand rather than as `axum::middleware::from_fn` layers: each of those
//! boxes the inner service and its future and clones the state on every request, and on
//! `POST /add` that cost (~8 µs of a ~35 µs HTTP path, measured with perf) was a quarter
//! of the server's per-request work outside signing. Here a request costs one label match,
//! one timer and two metric updates, with no allocation.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::Service;

use super::error::error_body;
use super::ApiError;
use crate::metrics::{RequestLabels, RouteLabels};
use crate::node::Node;

/// What the gate needs, shared by every clone of it (one per request).
struct Shared {
    node: Node,
    /// When set, write routes require `Authorization: Bearer TOKEN`.
    token: Option<String>,
    timeout: Duration,
}

/// The outermost service of the API (inside the concurrency limit): see the module docs.
pub struct Gate<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Gate<S> {
    fn clone(&self) -> Self {
        Gate {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> Gate<S> {
    /// The node the API serves.
    pub fn node(&self) -> &Node {
        &self.shared.node
    }

    /// Wraps `inner` (the router). With `token`, write routes need `Authorization: Bearer
    /// TOKEN`; a request that is not streamed gets at most `timeout` before a 503.
    pub fn new(inner: S, node: Node, token: Option<String>, timeout: Duration) -> Self {
        Gate {
            inner,
            shared: Arc::new(Shared {
                node,
                token,
                timeout,
            }),
        }
    }
}

impl<S> Service<Request> for Gate<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = method_label(request.method());
        let route = route_label(request.uri().path());
        let started = Instant::now();
        let refused = match &self.shared.token {
            Some(token)
                if is_write(request.method(), route)
                    && !bearer_matches(request.headers(), token) =>
            {
                Some(ApiError::Unauthorized.into_response())
            }
            _ => None,
        };
        let (inner, deadline) = if refused.is_some() {
            (None, None)
        } else {
            // Streams are bounded by their body size instead: a large export or import may
            // rightly take longer than any fixed timeout.
            let deadline = (!is_streamed(route) && !answers_the_truth(route))
                .then(|| tokio::time::sleep(self.shared.timeout));
            (Some(self.inner.call(request)), deadline)
        };
        GateFuture {
            inner,
            deadline,
            refused,
            shared: self.shared.clone(),
            method,
            route,
            started,
        }
    }
}

pin_project! {
    /// The response of one request through the [`Gate`].
    pub struct GateFuture<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        deadline: Option<Sleep>,
        refused: Option<Response>,
        shared: Arc<Shared>,
        method: &'static str,
        route: &'static str,
        started: Instant,
    }
}

impl<F> Future for GateFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let response = if let Some(response) = this.refused.take() {
            response
        } else {
            let Some(inner) = this.inner.as_mut().as_pin_mut() else {
                // Polled again after it answered: a caller bug, answered rather than panicking.
                return Poll::Ready(Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response()));
            };
            match inner.poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => {
                    let expired = this
                        .deadline
                        .as_pin_mut()
                        .is_some_and(|deadline| deadline.poll(cx).is_ready());
                    if !expired {
                        return Poll::Pending;
                    }
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
            }
        };
        // Drop the handler's future now (it may hold a timed-out request's resources), and
        // make a further poll answer rather than poll a finished future.
        this.inner.set(None);
        let response = with_json_error_body(response);
        let metrics = this.shared.node.metrics();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                method: this.method,
                route: this.route,
                status: response.status().as_u16(),
            })
            .inc();
        metrics
            .request_seconds
            .get_or_create(&RouteLabels {
                method: this.method,
                route: this.route,
            })
            .observe(this.started.elapsed().as_secs_f64());
        Poll::Ready(Ok(response))
    }
}

/// Gives error responses produced below the handlers (timeouts, body limits) the same
/// `{"error": ...}` body as handler errors, keeping their other headers.
fn with_json_error_body(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(&response)
        || response.extensions().get::<ProtocolBody>().is_some()
    {
        return response;
    }
    let message = match status {
        StatusCode::SERVICE_UNAVAILABLE => "request timed out or the node is unavailable",
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
        other => other.canonical_reason().unwrap_or("request failed"),
    };
    let (parts, _) = response.into_parts();
    let mut json = (status, error_body(message)).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

/// Marks an error answer whose body is a protocol's own form, left as the handler wrote it:
/// tlog-witness's refusals are text, and its 409's body is a size. What the layers around
/// such a handler answer (a timeout) still gets the JSON body.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProtocolBody;

/// The routes that change the node, and so need the token when one is set. A write path
/// with the wrong method needs none: the router answers 405 without running anything.
fn is_write(method: &Method, route: &str) -> bool {
    (*method == Method::POST && matches!(route, "/add" | "/import" | "/peers" | "/sync"))
        || (*method == Method::DELETE && matches!(route, "/peers/{addr}" | "/views/{name}"))
        || (*method == Method::PUT && route == "/views/{name}")
}

fn is_streamed(route: &str) -> bool {
    matches!(route, "/export.csv" | "/import" | "/tail")
}

/// Routes whose handler bounds its own wait for the client and then must not be cut off:
/// once `/add` has handed an entry to the writer, the entry may become durable whatever
/// happens to the request, so timing the request out would answer an error for an entry
/// that was appended. The handler times out reading the body (408), never the append.
fn answers_the_truth(route: &str) -> bool {
    route == "/add"
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
        "/tail" => "/tail",
        "/import" => "/import",
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/forks" => "/forks",
        "/peers" => "/peers",
        "/sync" => "/sync",
        "/query" => "/query",
        "/views" => "/views",
        "/witness/add-checkpoint" => "/witness/add-checkpoint",
        "/" => "/",
        p if p.starts_with("/dashboard/") => "/dashboard/{file}",
        p if p.starts_with("/entries/") => "/entries/{hash}",
        p if p.starts_with("/peers/") => "/peers/{addr}",
        p if p.starts_with("/views/") => "/views/{name}",
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
        assert_eq!(route_label("/query"), "/query");
        assert_eq!(route_label("/whatever/../x"), "other");
    }
}
