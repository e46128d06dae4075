//! The light client's one exchange with a node: `GET` the proof route and read the answer,
//! bounded in bytes and in time, over the node client of [`crate::query::client`].
//!
//! Only `http://`: kappalog nodes serve plain HTTP, and the answer needs no transport
//! security to be believed (it verifies on its own; a node or a man in the middle can make
//! it fail, never pass). Redirects are not followed: a 3xx is an answer like any non-2xx.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;
use hyper::{header, Request, Uri};

use super::EntryRequest;
use crate::entry::MAX_ENCODED_BYTES;
use crate::identity::Author;
use crate::query::client::{send_bounded, ClientError};
use crate::tlog::note::MAX_SIGNATURES;
use crate::tlog::proof::MAX_PROOF_HASHES;

/// The room per checkpoint signature line in [`MAX_ANSWER_BYTES`]: a kappalog author's or
/// node's line (`— kappalog/feed/<64 hex> <base64>`) is under 200 bytes; 1 KiB leaves room
/// for witnesses with longer names.
const SIGNATURE_LINE_ROOM_BYTES: usize = 1024;

/// The most of an answer read: the largest valid answer is one bundle, that is its header
/// line, the extra line (an entry's largest encoding, [`MAX_ENCODED_BYTES`], in base64), the
/// index line, [`MAX_PROOF_HASHES`] hash lines of 45 bytes, a blank line, the checkpoint's
/// body (origin, size and root lines, under 256 bytes for a feed) and at most
/// [`MAX_SIGNATURES`] signature lines. About 41 KiB; anything larger is refused unread.
pub const MAX_ANSWER_BYTES: usize = 64
    + MAX_ENCODED_BYTES.div_ceil(3) * 4
    + 32
    + MAX_PROOF_HASHES * 45
    + 1
    + 256
    + MAX_SIGNATURES * SIGNATURE_LINE_ROOM_BYTES;

// Checked when compiling: a bundle of the largest entry with 63 hashes and 32 signature
// lines of kappalog's shape (`— kappalog/node/<64 hex> <104 base64>`) fits under the cap, and
// the cap stays well below the bundle format's own (`MAX_PROOF_BYTES`, about 157 KiB).
const _: () = {
    let kappalog_line = "\u{2014} kappalog/node/".len() + 64 + 1 + 104 + 1;
    let largest =
        23 + 6 + MAX_ENCODED_BYTES.div_ceil(3) * 4 + 1 + 27 + MAX_PROOF_HASHES * 45 + 1 + 150;
    assert!(largest + MAX_SIGNATURES * kappalog_line < MAX_ANSWER_BYTES);
    assert!(MAX_ANSWER_BYTES < 64 * 1024);
};

/// Why there is no answer to check; each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not `http://HOST[:PORT]`.
    #[error("--url must be http://HOST[:PORT] (only plain http is spoken), not {0}")]
    BadUrl(String),
    /// Connecting failed or the exchange broke (connection refused, reset, not HTTP).
    #[error("{0}")]
    Exchange(String),
    /// Connecting and the exchange took longer than the timeout.
    #[error("no answer from {url} within {secs} s")]
    Timeout {
        /// The node's URL.
        url: String,
        /// The timeout, in seconds.
        secs: f64,
    },
    /// The node answered with a non-2xx status; `message` is its JSON `error` (or its body),
    /// shortened and quoted so it cannot break the line.
    #[error("the node answered {status}: {message:?}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The node's error message.
        message: String,
    },
    /// The answer is larger than the cap ([`MAX_ANSWER_BYTES`] for a bundle).
    #[error("the node's answer is larger than {limit} bytes, more than any valid one")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
}

/// The longest node error message quoted, in characters.
const MAX_MESSAGE_CHARS: usize = 200;

/// Asks the node at `url` for `request`'s bundle; its exact bytes, unchecked.
pub async fn fetch_bundle(
    url: &Uri,
    request: &EntryRequest,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    fetch_bounded(url, &request.path(), MAX_ANSWER_BYTES, timeout).await
}

/// The most of a consistency answer read: [`MAX_PROOF_HASHES`] lines of 45 bytes, and one
/// line over so that a longer answer is refused as too long, not cut.
pub const MAX_CONSISTENCY_BYTES: usize = (MAX_PROOF_HASHES + 1) * 45;

/// Asks the node at `url` for the consistency proof of `author`'s feed from the tree of
/// `from` entries to the tree of `to`; its exact bytes, unchecked
/// ([`super::remembered::parse_proof_lines`]).
pub async fn fetch_consistency(
    url: &Uri,
    author: &Author,
    from: u64,
    to: u64,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    let path = format!("/feeds/{}/consistency?from={from}&to={to}", author.to_hex());
    fetch_bounded(url, &path, MAX_CONSISTENCY_BYTES, timeout).await
}

/// `GET path` of the node at `url`: the body of a 2xx answer of at most `cap` bytes.
async fn fetch_bounded(
    url: &Uri,
    path: &str,
    cap: usize,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    let http = Request::get(path)
        .header(header::ACCEPT, "text/plain")
        .body(Full::new(Bytes::new()))
        .map_err(|e| FetchError::Exchange(format!("building the request: {e}")))?;
    let answer = tokio::time::timeout(timeout, send_bounded(url, http, cap))
        .await
        .map_err(|_| FetchError::Timeout {
            url: url.to_string(),
            secs: timeout.as_secs_f64(),
        })?;
    answer.map_err(|e| match e {
        ClientError::BadUrl(url) => FetchError::BadUrl(url),
        ClientError::Exchange(what) => FetchError::Exchange(what),
        ClientError::TooLarge { limit } => FetchError::TooLarge { limit },
        ClientError::Refused { status, message } => FetchError::Refused {
            status,
            message: shorten(&message),
        },
    })
}

/// `message` cut to [`MAX_MESSAGE_CHARS`], marked when cut.
fn shorten(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => message.to_owned(),
        Some((at, _)) => format!("{}...", &message[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_shortened_on_a_char_boundary() {
        assert_eq!(shorten("no such feed"), "no such feed");
        let long = "é".repeat(MAX_MESSAGE_CHARS + 5);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MAX_MESSAGE_CHARS + 3);
        assert!(short.ends_with("..."));
    }
}
