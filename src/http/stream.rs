//! Streaming endpoints: `GET /export.csv` and `POST /import`. Neither holds a whole log or a
//! whole body in memory: the export is produced a chunk at a time as the client takes it (a
//! client that stops reading is cut off by the connection's stall guard, `server/stall.rs`),
//! and the import body is spooled to an unnamed temporary file in the
//! data directory as it arrives, then imported from there.
//!
//! Why spool the upload: a client that uploads slowly, or stops half-way, then holds only
//! its connection and some disk, never a blocking thread (parsing runs at disk speed once the
//! whole body is in) and never the store; an upload that sends nothing for the stream idle
//! timeout is refused (408); and an upload that breaks off imports nothing.

use std::io;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;

use super::{ApiError, AppState};
use crate::csv::{CsvWriter, ImportReport};
use crate::entry::Seq;
use crate::identity::Author;
use crate::import::ImportError;
use crate::node::NodeError;
use crate::store::StoreReader;

/// Entries per chunk of the export stream (about 3 KB of CSV each at most): one short
/// blocking read per chunk.
const EXPORT_CHUNK_ENTRIES: usize = 256;

/// Where a chunked export stands: the feed lengths at its start (its snapshot), the feed it
/// is in and the next seq to write.
struct ExportCursor {
    reader: StoreReader,
    feeds: Arc<[(Author, Seq)]>,
    feed: usize,
    next_seq: Seq,
    header_written: bool,
}

impl ExportCursor {
    /// The next chunk of CSV, or `None` at the end. Blocking (store reads).
    fn next_chunk(&mut self) -> Result<Option<Bytes>, NodeError> {
        if self.feed >= self.feeds.len() && self.header_written {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(EXPORT_CHUNK_ENTRIES * 400);
        let mut writer = if self.header_written {
            CsvWriter::continuing(&mut out)
        } else {
            self.header_written = true;
            CsvWriter::new(&mut out).map_err(NodeError::ExportWrite)?
        };
        let mut budget = EXPORT_CHUNK_ENTRIES;
        while budget > 0 {
            let Some(&(author, length)) = self.feeds.get(self.feed) else {
                break;
            };
            if self.next_seq > length {
                self.feed += 1;
                self.next_seq = 1;
                continue;
            }
            let want = usize::try_from(length - self.next_seq + 1)
                .unwrap_or(usize::MAX)
                .min(budget);
            let rows = self.reader.range(&author, self.next_seq, want)?;
            if rows.is_empty() {
                // The feed is shorter than its snapshot said: impossible for an append-only
                // log, and never a reason to loop.
                self.next_seq = length + 1;
                continue;
            }
            for (entry, hash) in &rows {
                writer
                    .write_entry(entry, hash)
                    .map_err(NodeError::ExportWrite)?;
            }
            let n = rows.len();
            budget -= n;
            self.next_seq += u64::try_from(n).unwrap_or(u64::MAX);
        }
        writer.finish().map_err(NodeError::ExportWrite)?;
        Ok(Some(Bytes::from(out)))
    }
}

/// `GET /export.csv`: the same bytes as `kappalog export`, produced a chunk at a time, each
/// by one short blocking read, only when the client has taken the previous one. A slow
/// client therefore holds no thread while it is slow, and one that takes nothing for the
/// stream idle timeout is disconnected by the connection's stall guard.
pub(crate) async fn export_csv(State(state): State<AppState>) -> Response {
    let reader = state.node.reader().clone();
    let feeds: Arc<[(Author, Seq)]> = reader
        .fold_feed_lengths(Vec::new(), |mut all, author, length| {
            all.push((*author, length));
            all
        })
        .into();
    let cursor = ExportCursor {
        reader,
        feeds,
        feed: 0,
        next_seq: 1,
        header_written: false,
    };
    let stream = futures_util::stream::unfold(Some(cursor), |cursor| async move {
        let mut cursor = cursor?;
        let produced = tokio::task::spawn_blocking(move || {
            let chunk = cursor.next_chunk();
            (chunk, cursor)
        })
        .await;
        match produced {
            Ok((Ok(Some(chunk)), cursor)) => Some((Ok::<Bytes, io::Error>(chunk), Some(cursor))),
            Ok((Ok(None), _)) => None,
            // End the stream with an error so the client sees a truncated transfer rather
            // than a silently short file.
            Ok((Err(error), _)) => {
                tracing::warn!(%error, "export stream ended early");
                Some((Err(io::Error::other(error.to_string())), None))
            }
            Err(error) => {
                tracing::warn!(%error, "export task failed");
                Some((Err(io::Error::other(error.to_string())), None))
            }
        }
    });
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

pub(crate) async fn import(
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
        Err(ImportError::Read(e)) => Err(ApiError::Unavailable(format!(
            "reading the spooled upload failed: {e}; nothing was imported"
        ))),
        Err(ImportError::Spill { source, added: 0 }) => Err(ApiError::Unavailable(format!(
            "cannot sort the import on disk: {source}; nothing was imported"
        ))),
        Err(ImportError::Spill { source, added }) => Err(ApiError::Unavailable(format!(
            "cannot read back the import's sort files: {source}; {added} entries were \
             imported before it failed, importing the same body again is safe"
        ))),
        Err(ImportError::Stopped { source, added }) => {
            tracing::error!(error = %source, added, "import stopped");
            Err(ApiError::Unavailable(format!(
                "unable to store the import: {added} entries were imported before it failed, \
                 importing the same body again is safe"
            )))
        }
        Err(e @ ImportError::Internal(_)) => Err(ApiError::Internal(e.to_string())),
    }
}
