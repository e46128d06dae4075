//! `kappalog tail`: follows a node's `GET /tail` in its NDJSON form over plain HTTP/1.1,
//! writes each entry's JSON as one line, and resumes by itself from the last cursor it
//! received when the connection drops or the node ends the stream (a restart, a slow
//! consumer), with a bounded backoff. A refused cursor or parameter (4xx) is final.
//!
//! Every stream begins with its position (`{"cursor":...}` with no entry, see
//! [`super::frame`]), so a connection that drops before the first entry resumes exactly too:
//! a `--from now` resumes after the last entry committed before it began, not at the node's
//! end at the time of the reconnect.

use std::io::Write;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use super::Start;
use crate::backoff::exponential_ms;
use crate::entry::EntryJson;
use crate::identity::Author;

/// The longest NDJSON line accepted: an entry with the most data, every byte escaped
/// (4096 × 6), its hex fields and cursor fit well below it. A longer line is not from a
/// kappalog node; the connection is dropped and retried.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// The most of an error body read for its message.
pub const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;
/// First wait before reconnecting; doubled after each attempt that received nothing.
pub const RECONNECT_MIN_MS: u64 = 100;
/// Longest wait between reconnects.
pub const RECONNECT_MAX_MS: u64 = 5_000;
/// How long connecting and the response head may take.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// What to follow.
#[derive(Clone, Debug)]
pub struct Follow {
    /// `http://HOST:PORT`, optionally with a path prefix.
    pub url: Uri,
    /// Only this author's entries; `None` follows every feed.
    pub author: Option<Author>,
    /// Where the first connection starts; reconnects resume from the last cursor received.
    pub from: Start,
}

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The `--url` given (carried) is not a plain `http://` URL.
    #[error("--url must be http://HOST[:PORT][/PREFIX], not {0}")]
    BadUrl(String),
    /// The node refused the request for good (a 4xx): its message.
    #[error("the node refused the tail ({status}): {message}")]
    Refused {
        /// The response's status code.
        status: u16,
        /// The error body's message, read up to [`MAX_ERROR_BODY_BYTES`].
        message: String,
    },
    /// Writing to the output failed (a closed pipe, a full disk): following stops.
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
}

/// One line of the NDJSON stream.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Entry {
        cursor: String,
        entry: Box<EntryJson>,
    },
    /// Where the stream begins (its first line); after `Entry`, which has a cursor too.
    Position {
        cursor: String,
    },
    Heartbeat {
        #[serde(rename = "heartbeat")]
        _heartbeat: bool,
    },
    End {
        end: EndReason,
    },
}

#[derive(Deserialize)]
struct EndReason {
    reason: String,
}

/// How one connection ended (other than with a final refusal).
enum Session {
    /// The node ended the stream and said why.
    Ended(String),
    /// The connection failed or closed.
    Dropped(String),
}

/// Follows the stream until a final refusal (or an output error); writes each entry's JSON
/// as a line to `out`, flushed, so a pipe sees it at once.
pub async fn follow(config: Follow, out: &mut impl Write) -> Result<(), FollowError> {
    let target = Target::parse(&config.url)?;
    let mut cursor: Option<String> = None;
    // Connections in a row that delivered nothing: the next retry waits longer.
    let mut failures: u32 = 0;
    loop {
        let from = cursor.clone().unwrap_or_else(|| config.from.to_string());
        let mut received = false;
        let session = session(
            &target,
            &from,
            config.author,
            out,
            &mut cursor,
            &mut received,
        )
        .await?;
        match &session {
            Session::Ended(reason) => {
                tracing::info!(%reason, "the node ended the stream; resuming")
            }
            Session::Dropped(why) => tracing::warn!(%why, "tail connection lost; resuming"),
        }
        if received {
            failures = 0;
        }
        let delay = exponential_ms(RECONNECT_MIN_MS, RECONNECT_MAX_MS, failures);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        failures = failures.saturating_add(1);
    }
}

/// Where to connect and the request target's prefix.
struct Target {
    host: String,
    port: u16,
    authority: String,
    prefix: String,
}

impl Target {
    fn parse(url: &Uri) -> Result<Target, FollowError> {
        let bad = || FollowError::BadUrl(url.to_string());
        if url.scheme_str() != Some("http") {
            return Err(bad());
        }
        let authority = url.authority().ok_or_else(bad)?;
        Ok(Target {
            host: authority.host().trim_matches(['[', ']']).to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            prefix: url.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// One connection: request the stream from `from`, copy entries out until it ends.
async fn session(
    target: &Target,
    from: &str,
    author: Option<Author>,
    out: &mut impl Write,
    cursor: &mut Option<String>,
    received: &mut bool,
) -> Result<Session, FollowError> {
    let connect_timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
    let (mut sender, _connection) = match connect(target).await {
        Ok(connected) => connected,
        Err(why) => return Ok(Session::Dropped(why)),
    };
    let mut path = format!("{}/tail?from={from}", target.prefix);
    if let Some(author) = author {
        path.push_str(&format!("&author={author}"));
    }
    let request = Request::get(path)
        .header(header::HOST, &target.authority)
        .header(header::ACCEPT, "application/x-ndjson")
        .body(Empty::<Bytes>::new());
    let request = match request {
        Ok(request) => request,
        Err(e) => return Err(FollowError::BadUrl(format!("{}: {e}", target.authority))),
    };
    let response = match tokio::time::timeout(connect_timeout, sender.send_request(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Ok(Session::Dropped(format!("request: {e}"))),
        Err(_) => return Ok(Session::Dropped("no response head in time".into())),
    };
    let status = response.status();
    if status != StatusCode::OK {
        let body = Limited::new(response.into_body(), MAX_ERROR_BODY_BYTES);
        let message = match body.collect().await {
            Ok(body) => error_message(&body.to_bytes()),
            Err(e) => format!("(unreadable error body: {e})"),
        };
        if status.is_client_error() {
            return Err(FollowError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        return Ok(Session::Dropped(format!("{status}: {message}")));
    }
    let mut body = response.into_body();
    let mut line: Vec<u8> = Vec::new();
    loop {
        let frame = match body.frame().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Ok(Session::Dropped(format!("reading the stream: {e}"))),
            None => return Ok(Session::Dropped("the node closed the stream".into())),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let mut rest = &data[..];
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            let text = std::mem::take(&mut line);
            if let Some(ended) = take_line(&text, out, cursor, received)? {
                return Ok(ended);
            }
        }
        line.extend_from_slice(rest);
        if line.len() > MAX_LINE_BYTES {
            return Ok(Session::Dropped(format!(
                "a line longer than {MAX_LINE_BYTES} bytes"
            )));
        }
    }
}

/// Connects and makes the HTTP/1.1 handshake; the connection's I/O runs beside the caller
/// and ends with the returned guard (aborted on drop). `Err`: why not, to retry.
async fn connect(
    target: &Target,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        AbortOnDrop<Result<(), hyper::Error>>,
    ),
    String,
> {
    let connect_timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
    let connecting = TcpStream::connect((target.host.as_str(), target.port));
    let tcp = match tokio::time::timeout(connect_timeout, connecting).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(format!("connecting: {e}")),
        Err(_) => return Err("connecting timed out".into()),
    };
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    Ok((sender, AbortOnDrop(tokio::spawn(connection))))
}

/// Acts on one line of the stream: an entry is written out and its cursor kept, a position
/// is kept as the cursor to resume from. `Some` when the line ends the session.
fn take_line(
    text: &[u8],
    out: &mut impl Write,
    cursor: &mut Option<String>,
    received: &mut bool,
) -> Result<Option<Session>, FollowError> {
    let line = serde_json::from_slice::<Line>(text);
    // A cursor goes into the next request's `from`: only one that parses as a start is
    // kept (a node, or whatever answers at the URL, cannot put other text in the request).
    if let Ok(Line::Entry { cursor: c, .. } | Line::Position { cursor: c }) = &line {
        if let Err(e) = c.parse::<Start>() {
            return Ok(Some(Session::Dropped(format!(
                "a line with a cursor that is not the tail's: {e}"
            ))));
        }
    }
    match line {
        Ok(Line::Entry { cursor: c, entry }) => {
            let json = serde_json::to_string(&entry)
                .map_err(|e| FollowError::Output(std::io::Error::other(e)))?;
            writeln!(out, "{json}")
                .and_then(|()| out.flush())
                .map_err(FollowError::Output)?;
            *cursor = Some(c);
            *received = true;
        }
        Ok(Line::Position { cursor: c }) => {
            // Said once per connection: where a manual `--from` would resume too.
            tracing::info!(position = %c, "stream began");
            *cursor = Some(c);
        }
        Ok(Line::Heartbeat { .. }) => {}
        Ok(Line::End { end }) => return Ok(Some(Session::Ended(end.reason))),
        Err(e) => {
            return Ok(Some(Session::Dropped(format!(
                "a line that is not the tail's: {e}"
            ))))
        }
    }
    Ok(None)
}

/// The `error` of a JSON error body, or the body as text.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

/// Aborts the task when dropped: the connection ends with the session that owns it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_plain_http_with_a_host() {
        let target = Target::parse(&"http://127.0.0.1:8080".parse().unwrap()).unwrap();
        assert_eq!((target.host.as_str(), target.port), ("127.0.0.1", 8080));
        assert_eq!(target.prefix, "");
        let target = Target::parse(&"http://example.org/kappa/".parse().unwrap()).unwrap();
        assert_eq!((target.port, target.prefix.as_str()), (80, "/kappa"));
        assert!(Target::parse(&"https://example.org".parse().unwrap()).is_err());
        assert!(Target::parse(&"/tail".parse().unwrap()).is_err());
    }

    #[test]
    fn each_line_kind_parses() {
        assert!(matches!(
            serde_json::from_str::<Line>(r#"{"heartbeat":true}"#),
            Ok(Line::Heartbeat { .. })
        ));
        match serde_json::from_str::<Line>(r#"{"end":{"reason":"bye"}}"#) {
            Ok(Line::End { end }) => assert_eq!(end.reason, "bye"),
            _ => panic!("not an end line"),
        }
        assert!(matches!(
            serde_json::from_str::<Line>(r#"{"cursor":"start"}"#),
            Ok(Line::Position { cursor }) if cursor == "start"
        ));
        assert!(serde_json::from_str::<Line>(r#"{"other":1}"#).is_err());
    }

    #[test]
    fn a_cursor_that_is_not_one_ends_the_session_and_is_not_kept() {
        let mut out = Vec::new();
        let mut cursor = None;
        let mut received = false;
        for line in [
            r#"{"cursor":"start&author=00"}"#,
            r#"{"cursor":"x y","entry":{}}"#,
        ] {
            let taken = take_line(line.as_bytes(), &mut out, &mut cursor, &mut received);
            assert!(
                matches!(taken, Ok(Some(Session::Dropped(ref why))) if why.contains("cursor")),
                "{line}"
            );
        }
        assert_eq!(cursor, None);
        assert!(out.is_empty() && !received);
        let kept = take_line(
            br#"{"cursor":"start"}"#,
            &mut out,
            &mut cursor,
            &mut received,
        );
        assert!(matches!(kept, Ok(None)));
        assert_eq!(cursor.as_deref(), Some("start"));
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_message(br#"{"error":"malformed cursor"}"#),
            "malformed cursor"
        );
        assert_eq!(error_message(b"plain\n"), "plain");
    }
}
