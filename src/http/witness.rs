//! `POST /witness/add-checkpoint`: the C2SP tlog-witness call, for the logs the operator
//! names with `--witness-for` ([`crate::witness_state::DurableWitness`]).
//!
//! The request is authenticated by the checkpoint's signature, as the spec says, not by the
//! node's token: the route is not a write in the [`super::Gate`]'s sense. Its answers are
//! the spec's, in text: 200 with the cosignature line (`text/plain`), 409 with the latest
//! cosigned size (`text/x.tlog.size`), and 400/403/404/422 with a one-line reason. What
//! happens below the protocol (a body over [`MAX_REQUEST_BYTES`]: 413; one that does not
//! arrive in time: 408; the state file unwritable: 503) is answered in the API's JSON error
//! form.
//!
//! Without `--witness-for` the route is still served and answers 404 to every well-formed
//! request: the spec's answer for an origin the witness does not know, which lets a client
//! tell "not my witness" from "not a witness endpoint at all" no better than it needs to.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::middleware::ProtocolBody;
use super::{ApiError, AppState};
use crate::tlog::witness::{AddCheckpointRequest, Refusal, MAX_REQUEST_BYTES, TEXT_CONTENT_TYPE};
use crate::witness_state::WitnessError;

/// The route's path.
pub(crate) const ADD_CHECKPOINT_PATH: &str = "/witness/add-checkpoint";

pub(crate) async fn add_checkpoint(State(state): State<AppState>, request: Request) -> Response {
    let body = match tokio::time::timeout(
        state.request_timeout,
        super::add::read_limited(request.into_body(), MAX_REQUEST_BYTES),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return e.into_response(),
        Err(_) => {
            return ApiError::RequestTimeout("the request body did not arrive in time".into())
                .into_response()
        }
    };
    let parsed = match AddCheckpointRequest::parse(&body) {
        Ok(parsed) => parsed,
        Err(e) => return refused(&Refusal::Malformed(e)),
    };
    let Some(witness) = state.witness.clone() else {
        return refused(&Refusal::UnknownOrigin {
            origin: parsed.checkpoint().checkpoint().origin().to_owned(),
        });
    };
    let now_secs = crate::clock::now_ms() / 1000;
    let decided =
        tokio::task::spawn_blocking(move || witness.add_checkpoint(&parsed, now_secs)).await;
    match decided {
        Ok(Ok(accepted)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
            accepted.body(),
        )
            .into_response(),
        Ok(Err(WitnessError::Refused(refusal))) => refused(&refusal),
        Ok(Err(e @ WitnessError::Record(_))) => ApiError::Internal(e.to_string()).into_response(),
        Ok(Err(e @ (WitnessError::Write(_) | WitnessError::Broken))) => {
            ApiError::Unavailable(e.to_string()).into_response()
        }
        Err(e) => ApiError::Internal(format!("witness task failed: {e}")).into_response(),
    }
}

/// A refusal as tlog-witness answers it.
fn refused(refusal: &Refusal) -> Response {
    let status =
        StatusCode::from_u16(refusal.status().code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, refusal.content_type())],
        Extension(ProtocolBody),
        refusal.body(),
    )
        .into_response()
}
