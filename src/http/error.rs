//! The one error type of the HTTP API and its status mapping.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::node::NodeError;
use crate::store::AppendError;
use crate::tree::TreeReadError;

/// Everything a handler can answer besides success. The status mapping is the one `match`
/// in [`IntoResponse`]; the message is what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request does not parse or breaks a rule; the message says which.
    #[error("{0}")]
    BadRequest(String),
    /// 401 with `WWW-Authenticate: Bearer`: a write route without the node's token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// 403: the request's own signatures do not authenticate it (a submitted checkpoint
    /// its feed's author did not sign); no token would help.
    #[error("{0}")]
    Forbidden(String),
    /// 404: what the request names is not here (an entry, a peer).
    #[error("{0}")]
    NotFound(String),
    /// What the request names existed once, or elsewhere, and is not here (a tail cursor
    /// into a replaced log).
    #[error("{0}")]
    Gone(String),
    /// 405: the route exists, not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413: a body over its route's limit; the message names the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 408: the request body did not arrive within its deadline.
    #[error("{0}")]
    RequestTimeout(String),
    /// A request head over the size or field-count limit (`server::head`).
    #[error("{0}")]
    HeadTooLarge(String),
    /// 414: a request target over `server::head::MAX_URI_BYTES`.
    #[error("{0}")]
    UriTooLong(String),
    /// The request contradicts the node's configuration (unpinning a key the operator gave).
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but refused: an idempotency key reused for a different request.
    #[error("{0}")]
    Unprocessable(String),
    /// 503: the node cannot serve this now (sync not running, the store cannot write, an
    /// import's spill failed); the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// 503 with `Retry-After: 1`: the node holds what was asked but has not finished
    /// deriving what the answer needs (the tree cache behind a fresh append); asking again
    /// in a second will do.
    #[error("{0}")]
    NotYet(String),
    /// 504: the work ran past its deadline and was stopped (a query past
    /// `--query-timeout`); the message names the deadline.
    #[error("{0}")]
    Timeout(String),
    /// The cause is logged; the client sees only that something failed inside.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The response status: the one place the mapping lives.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::NotYet(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let status = self.status();
        let mut response = (status, error_body(&self.to_string())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let ApiError::NotYet(_) = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

pub(crate) fn error_body(message: &str) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "error": message }))
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> ApiError {
        match error {
            NodeError::Append(AppendError::DataTooLong { len }) => ApiError::BadRequest(format!(
                "data is {len} bytes, the limit is {}",
                crate::entry::MAX_DATA_BYTES
            )),
            NodeError::Append(e @ AppendError::Closed) => ApiError::Unavailable(e.to_string()),
            NodeError::Append(AppendError::Io(e)) => {
                tracing::error!(error = %e, "append failed");
                ApiError::Unavailable("unable to write to the log".into())
            }
            // A bug, not the disk: the client is told only that something failed inside.
            NodeError::Append(e @ AppendError::Internal(_)) => ApiError::Internal(e.to_string()),
            NodeError::Append(AppendError::ForkLog(e)) => {
                tracing::error!(error = %e, "recording a fork proof failed");
                ApiError::Unavailable("unable to write to the fork proofs".into())
            }
            NodeError::Fence(e) => ApiError::Unavailable(e.to_string()),
            e @ NodeError::KeyReused { .. } => ApiError::Unprocessable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<TreeReadError> for ApiError {
    fn from(error: TreeReadError) -> ApiError {
        match error {
            e @ TreeReadError::UnknownFeed { .. } => ApiError::NotFound(e.to_string()),
            // The routes check sizes against the tree before they read, so this is the
            // follower moving between the check and the read, or a rebuild: retry.
            e @ TreeReadError::BeyondCovered { .. } => ApiError::NotYet(e.to_string()),
            TreeReadError::OutOfRange(reason) => ApiError::BadRequest(reason),
            e @ TreeReadError::Storage(_) => ApiError::Internal(e.to_string()),
            // Logged where it was found; the client learns only that it may retry.
            TreeReadError::Rebuilding(_) => {
                ApiError::NotYet("the tree cache is being rebuilt from the log; retry".into())
            }
        }
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broken invariant is the node's bug: 500 with nothing of the cause, never the 503
    /// that tells a client the disk will take the write once it recovers.
    #[test]
    fn store_errors_map_to_what_went_wrong() {
        let bug = ApiError::from(NodeError::Append(AppendError::Internal("a bug")));
        assert_eq!(bug.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(bug.to_string(), "internal error");
        let disk = ApiError::from(NodeError::Append(AppendError::Io(std::sync::Arc::new(
            std::io::Error::other("disk full"),
        ))));
        assert_eq!(disk.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(disk.to_string(), "unable to write to the log");
    }

    /// A tree read's error is the asker's (4xx) or, for storage, the node's, never echoed;
    /// "not covered yet" is a retry, with its header.
    #[test]
    fn tree_errors_map_to_who_is_to_blame() {
        let author = crate::identity::Identity::from_seed([1; 32]).author();
        let unknown = ApiError::from(TreeReadError::UnknownFeed { author });
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let range = ApiError::from(TreeReadError::OutOfRange("index 5 of 3".into()));
        assert_eq!(range.status(), StatusCode::BAD_REQUEST);
        assert_eq!(range.to_string(), "index 5 of 3");
        let storage = ApiError::from(TreeReadError::Storage("row 7 is missing".into()));
        assert_eq!(storage.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(storage.to_string(), "internal error");
        let behind = ApiError::from(TreeReadError::BeyondCovered {
            size: 9,
            covered: 3,
        })
        .into_response();
        assert_eq!(behind.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            behind
                .headers()
                .get(axum::http::header::RETRY_AFTER)
                .unwrap(),
            "1"
        );
        // A damaged cache: retry later, and the checksum's detail stays in the log.
        let damaged = ApiError::from(TreeReadError::Rebuilding(
            "row 7: checksum 0000abcd stored, 1234abcd computed".into(),
        ));
        assert!(!damaged.to_string().contains("checksum"), "{damaged}");
        let damaged = damaged.into_response();
        assert_eq!(damaged.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(damaged
            .headers()
            .contains_key(axum::http::header::RETRY_AFTER));
    }
}
