//! `GET /tail`: the live tail as Server-Sent Events, or NDJSON with
//! `Accept: application/x-ndjson` (formats, cursors and bounds in [`crate::tail`]).
//!
//! The body is written by hand rather than with `axum::response::sse`: every stream sends
//! the same bytes for a committed batch, rendered once per batch ([`crate::tail::frame`]),
//! where axum's `Event` would format each entry again for each of a thousand subscribers.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::identity::Author;
use crate::tail::{Format, Start, TailError};

/// The header browsers' `EventSource` sends on reconnect; it takes precedence over `from`.
const LAST_EVENT_ID: &str = "last-event-id";

/// Query parameters arrive as text so each bad one gets its own message.
#[derive(Debug, Deserialize)]
pub(crate) struct TailParams {
    from: Option<String>,
    author: Option<String>,
}

pub(crate) async fn tail(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<TailParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let author = params
        .author
        .as_deref()
        .map(|text| {
            text.parse::<Author>()
                .map_err(|e| ApiError::BadRequest(format!("author: {e}")))
        })
        .transpose()?;
    let resume = match headers.get(LAST_EVENT_ID) {
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::BadRequest("Last-Event-ID: not a cursor (not visible ASCII)".into())
        })?),
        None => None,
    }
    .filter(|id| !id.is_empty());
    let start: Start = resume.or(params.from.as_deref()).unwrap_or("now").parse()?;
    let format = if super::accepts(&headers, "application/x-ndjson") {
        Format::Ndjson
    } else {
        Format::Sse
    };
    let stream = state.tails.open(&state.node, start, author, format).await?;
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

impl From<TailError> for ApiError {
    fn from(error: TailError) -> ApiError {
        match error {
            e @ (TailError::Malformed(_) | TailError::OtherNode) => {
                ApiError::BadRequest(e.to_string())
            }
            e @ TailError::Beyond { .. } => ApiError::NotFound(e.to_string()),
            e @ TailError::NotHeld { .. } => ApiError::Gone(e.to_string()),
            e @ (TailError::Busy { .. } | TailError::Ending) => {
                ApiError::Unavailable(e.to_string())
            }
            e @ (TailError::Store(_) | TailError::Task(_)) => ApiError::Internal(e.to_string()),
        }
    }
}
