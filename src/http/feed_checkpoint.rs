//! `POST /feeds/{author}/checkpoint`: a signed note of the feed's author checkpoint with
//! cosignature lines, e.g. what a C2SP witness (`--witness-key`) returned to the operator's
//! witness client, added to the node's served note. It is handed to the checkpoint book
//! ([`crate::checkpoint_book::CheckpointBook::submit`]), which takes it as it takes a
//! peer's note: kept, journalled, served and gossiped on.
//!
//! Authenticated by its signatures, not by the node's token (like
//! `POST /witness/add-checkpoint`): the author's must verify, and every line under a key
//! the node knows. The answers (docs/HTTP.md "Submitting a checkpoint"):
//!
//! - 200 with a JSON summary of what was kept; 202 when the checkpoint is beyond the
//!   entries held and waits for them (its cosignatures are not kept yet);
//! - 400 not a signed checkpoint note, or a malformed author in the path;
//! - 403 the author's signature is missing or does not verify, or a line under a known
//!   key does not: the note's signatures do not authenticate it;
//! - 422 a well-formed note of another origin than the path's feed;
//! - 404 a feed the node does not hold (or a node without trees); 410 a forked feed;
//! - 409 the checkpoint disagrees with the node's tree of the feed (if it conflicts with
//!   an author checkpoint the node keeps, the split view is recorded as a fork proof);
//! - 413 a body over the signed-note cap ([`MAX_NOTE_BYTES`]); 408 one that does not
//!   arrive in time.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, AppState};
use crate::checkpoint_book::{
    AuthorOutcome, CheckpointOfferError, CosignatureTally, NoteOutcome, NoteReport,
};
use crate::identity::Author;
use crate::tlog::author_checkpoint::AuthorCheckpointError;
use crate::tlog::note::MAX_NOTE_BYTES;

/// The summary a kept (or waiting) note is answered with.
#[derive(Debug, serde::Serialize)]
struct Summary {
    author: String,
    /// The submitted checkpoint's size.
    size: u64,
    /// What became of the author checkpoint.
    checkpoint: AuthorOutcome,
    /// Whether the served note changed.
    changed: bool,
    /// The served checkpoint's size and k after the submission.
    served_size: u64,
    k: usize,
    cosignatures: CosignatureTally,
    cosignatures_dropped: usize,
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    Path(author): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let author: Author = author
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("author: {e}")))?;
    let body = tokio::time::timeout(
        state.request_timeout,
        super::add::read_limited(request.into_body(), MAX_NOTE_BYTES),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout("the request body did not arrive in time".into()))??;
    let book = state.book.clone().ok_or_else(|| {
        ApiError::NotFound("this node keeps no checkpoints (it runs with --no-tree)".into())
    })?;
    let submitted = {
        let book = book.clone();
        tokio::task::spawn_blocking(move || book.submit(&author, &body))
            .await
            .map_err(|e| ApiError::Internal(format!("checkpoint task failed: {e}")))?
    };
    match submitted.map_err(refusal)? {
        NoteOutcome::UnknownFeed(author) => {
            Err(ApiError::NotFound(format!("no feed for author {author}")))
        }
        NoteOutcome::Forked(author) => Err(ApiError::Gone(format!(
            "feed {author} is forked (GET /forks has the proof): no checkpoint of it is kept"
        ))),
        NoteOutcome::Checked(report) => answer(&book, report),
    }
}

fn answer(
    book: &crate::checkpoint_book::CheckpointBook,
    report: NoteReport,
) -> Result<Response, ApiError> {
    let status = match report.checkpoint {
        AuthorOutcome::Inconsistent => {
            return Err(ApiError::Conflict(format!(
                "the checkpoint of size {} disagrees with the node's tree of feed {}",
                report.size, report.author
            )))
        }
        AuthorOutcome::Fork => {
            return Err(ApiError::Conflict(format!(
                "the checkpoint of size {} conflicts with the author checkpoint the node keeps \
                 of feed {}: a split view, recorded as a fork proof",
                report.size, report.author
            )))
        }
        AuthorOutcome::Pending => StatusCode::ACCEPTED,
        AuthorOutcome::Kept | AuthorOutcome::NotNewer | AuthorOutcome::Superseded => StatusCode::OK,
    };
    let (served_size, k) = book.size_and_k(&report.author);
    let summary = Summary {
        author: report.author.to_hex(),
        size: report.size,
        checkpoint: report.checkpoint,
        changed: report.changed,
        served_size,
        k,
        cosignatures_dropped: report.cosignatures.dropped(),
        cosignatures: report.cosignatures,
    };
    Ok((status, Json(summary)).into_response())
}

/// The book's refusal as an answer (module docs).
fn refusal(e: CheckpointOfferError) -> ApiError {
    match e {
        CheckpointOfferError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
        CheckpointOfferError::Malformed(_) => ApiError::BadRequest(e.to_string()),
        CheckpointOfferError::NotAuthorSigned(AuthorCheckpointError::Signature(_))
        | CheckpointOfferError::BadCosignature { .. } => ApiError::Forbidden(e.to_string()),
        CheckpointOfferError::NotAuthorSigned(_) | CheckpointOfferError::OtherFeed { .. } => {
            ApiError::Unprocessable(e.to_string())
        }
        CheckpointOfferError::Storage(_) => ApiError::Internal(e.to_string()),
    }
}
