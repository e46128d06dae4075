//! Streaming endpoints: `GET /export.csv` and `POST /import`. Neither holds a whole log or a
//! whole body in memory: the export is produced by a blocking task into a bounded channel
//! (a client that stops reading is cut off by the connection's stall guard,
//! `server/stall.rs`), and the import body is spooled to an unnamed temporary file in the
//! data directory as it arrives, then imported from there.
//!
//! Why spool the upload: a client that uploads slowly, or stops half-way, then holds only
//! its connection and some disk, never a blocking thread (parsing runs at disk speed once the
//! whole body is in) and never the store; an upload that sends nothing for the stream idle
//! timeout is refused (408); and an upload that breaks off imports nothing.

use std::io::{self, Write};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use tokio::sync::mpsc;

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

/// Reads the whole body into an unnamed temporary file in `dir` (gone once closed, even after
/// a crash), at most `limit` bytes, each chunk within `idle` of the previous one. Blocking
/// file writes go to the blocking pool one chunk at a time, never while waiting for the
/// client.
async fn spool_body(
    body: Body,
    dir: std::path::PathBuf,
    limit: usize,
    idle: std::time::Duration,
) -> Result<std::fs::File, ApiError> {
    use tokio::io::AsyncWriteExt;
    let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "cannot spool the upload: {e}; nothing was imported"
            ))
        })?;
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    loop {
        let next = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| {
                ApiError::RequestTimeout(format!(
                    "the upload sent no bytes for {} s; nothing was imported",
                    idle.as_secs()
                ))
            })?;
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                return Err(ApiError::BadRequest(format!(
                    "reading the body failed: {e}; nothing was imported"
                )))
            }
        };
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "body exceeds the limit of {limit} bytes; nothing was imported"
            )));
        }
        file.write_all(&chunk).await.map_err(|e| {
            ApiError::Unavailable(format!(
                "cannot spool the upload: {e}; nothing was imported"
            ))
        })?;
    }
    file.flush().await.map_err(|e| {
        ApiError::Unavailable(format!(
            "cannot spool the upload: {e}; nothing was imported"
        ))
    })?;
    let mut file = file.into_std().await;
    use std::io::Seek;
    file.rewind().map_err(|e| {
        ApiError::Unavailable(format!(
            "cannot read the spooled upload: {e}; nothing was imported"
        ))
    })?;
    Ok(file)
}

pub async fn import(
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    // A declared length over the limit is refused before anything is read.
    let declared = axum::body::HttpBody::size_hint(&body).lower();
    if usize::try_from(declared).map_or(true, |n| n > super::MAX_IMPORT_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge(format!(
            "body exceeds the limit of {} bytes; nothing was imported",
            super::MAX_IMPORT_BODY_BYTES
        )));
    }
    let spooled = spool_body(
        body,
        state.node.data_dir().to_owned(),
        super::MAX_IMPORT_BODY_BYTES,
        state.stream_idle_timeout,
    )
    .await?;
    let node = state.node.clone();
    let result = tokio::task::spawn_blocking(move || node.import(io::BufReader::new(spooled)))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match result {
        Ok(report) => Ok(Json(report)),
        Err(NodeError::ImportRead(e)) => Err(ApiError::Unavailable(format!(
            "reading the spooled upload failed: {e}; nothing was imported"
        ))),
        Err(other) => Err(other.into()),
    }
}
