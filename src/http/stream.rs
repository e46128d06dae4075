//! Streaming endpoints: `GET /export.csv` and `POST /import`. Neither holds a whole log or a
//! whole body in memory: the export is produced by a blocking task into a bounded channel,
//! the import is parsed record by record from the request body as it arrives.

use std::io::{self, Write};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{ApiError, AppState};
use crate::csv::ImportReport;
use crate::node::NodeError;

/// Bytes per chunk of the export stream, and chunks buffered ahead of a slow client: memory
/// stays at about their product whatever the log's size.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;
const EXPORT_CHUNKS_AHEAD: usize = 8;

/// A `Write` that hands full chunks to the response stream; blocks when the client is slow,
/// fails with `BrokenPipe` when it has gone.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(EXPORT_CHUNK_BYTES),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= EXPORT_CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

pub async fn export_csv(State(state): State<AppState>) -> Response {
    let (tx, mut rx) = mpsc::channel(EXPORT_CHUNKS_AHEAD);
    let node = state.node.clone();
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(EXPORT_CHUNK_BYTES),
        };
        let result = node
            .export(&mut writer)
            .and_then(|()| writer.flush().map_err(NodeError::ExportWrite));
        if let Err(error) = result {
            // A client that hung up is routine; anything else ends the stream with an error
            // so the client sees a truncated transfer rather than a silently short file.
            tracing::warn!(%error, "export stream ended early");
            let _ = tx.blocking_send(Err(io::Error::other(error.to_string())));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"export.csv\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Whether an I/O error reading the body came from the body-size limit.
fn is_length_limit(error: &io::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

pub async fn import(
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    let stream = body.into_data_stream().map_err(io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let node = state.node.clone();
    let result = tokio::task::spawn_blocking(move || node.import(reader))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match result {
        Ok(report) => Ok(Json(report)),
        Err(NodeError::ImportRead(e)) if is_length_limit(&e) => {
            Err(ApiError::PayloadTooLarge(format!(
                "body exceeds the limit of {} bytes; nothing was imported",
                super::MAX_IMPORT_BODY_BYTES
            )))
        }
        Err(NodeError::ImportRead(e)) => Err(ApiError::BadRequest(format!(
            "reading the body failed: {e}; nothing was imported"
        ))),
        Err(other) => Err(other.into()),
    }
}
