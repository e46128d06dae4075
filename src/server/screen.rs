//! Screening request heads before hyper reads them, so that every error the server sends is
//! `{"error": "..."}` and ambiguous framing is refused ([`super::head`] has the rules).
//!
//! hyper answers a head it cannot take (431, 414, 400) itself, with an empty body and no
//! hook to change it; and it takes `Content-Length` with `Transfer-Encoding: chunked`
//! without telling the service the length was there. So [`Screened`] sits between the
//! socket and hyper and follows the request framing of the bytes it reads
//! ([`super::framing`]):
//!
//! - body bytes and heads that pass go to hyper as read; a head split across reads is held
//!   until it is complete (at most [`super::head::MAX_HEAD_BYTES`]), so hyper only ever sees
//!   whole heads that were judged;
//! - a refused head never reaches hyper. In its place hyper reads [`STAND_IN`], a bodiless
//!   `GET` with `connection: close`, and then nothing more. The refusal and the number of
//!   the request on the connection go to the connection's [`Screening`], and the
//!   connection's service answers that request with the refusal's status and JSON body
//!   instead of calling the router ([`Screening::answer`]).
//!
//! Why a stand-in request rather than writing the error from here: the answer must follow
//! those of the requests pipelined before the bad head, and only hyper orders responses;
//! hyper then closes the connection as for any `connection: close` request.
//!
//! After the stand-in, reads never end: hyper (half-close support off) drops a request
//! whose connection reads EOF before the response is written. Bytes the client still sends
//! (the refused request's body) are read and dropped, up to [`MAX_DRAINED_BYTES`], so that
//! closing a socket with unread data does not reset the connection under the client before
//! it reads the answer.
//!
//! Fail safe: if the bookkeeping ever disagrees with itself, the follower goes blind and
//! bytes pass unchanged; hyper still guards them, as before this screen existed. An
//! `Upgrade` header or `CONNECT` cannot take the connection away from HTTP under the
//! follower: hyper serves without upgrades, so the bytes stay requests or the connection
//! ends.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use axum::http::{header, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::framing::{Framing, Scan};
use super::head::Refusal;
use crate::http::ApiError;

/// The path of [`STAND_IN`]; with the request's number it tells the service which request
/// to answer with the refusal (the number alone decides; a client sending this path gets
/// the router's 404).
pub(crate) const REFUSED_PATH: &str = "/.refused";
/// What hyper reads in place of a refused head.
pub(crate) const STAND_IN: &[u8] = b"GET /.refused HTTP/1.1\r\nconnection: close\r\n\r\n";
/// Bytes read and dropped after a refusal; a client that sends more is cut off when the
/// answer is written.
pub(crate) const MAX_DRAINED_BYTES: usize = 1024 * 1024;

/// What a connection's reader tells the connection's service: which request, if any, was
/// refused and why.
#[derive(Debug, Default)]
pub(crate) struct Screening {
    refused: OnceLock<(u64, Refusal)>,
    /// Requests the service has seen.
    seen: AtomicU64,
}

impl Screening {
    fn refuse(&self, request: u64, refusal: Refusal) {
        // At most one refusal per connection: nothing after it is read.
        let _ = self.refused.set((request, refusal));
    }

    /// For each request, in the order hyper hands them to the service: the answer to the
    /// refused one, or `None` to serve it as usual.
    pub(crate) fn answer<B>(&self, request: &Request<B>) -> Option<Response> {
        let number = self.seen.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let &(refused, refusal) = self.refused.get()?;
        if refused != number {
            return None;
        }
        if request.uri().path() != REFUSED_PATH {
            // The screen and hyper counted requests differently: serve as usual rather
            // than answer the wrong request.
            tracing::warn!(
                number,
                "request framing lost track; not answering a refusal"
            );
            return None;
        }
        tracing::debug!(%refusal, "refused a request head");
        let mut response = ApiError::from(refusal).into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Some(response)
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let message = refusal.to_string();
        match refusal {
            Refusal::HeadTooLarge { .. } | Refusal::TooManyHeaders { .. } => {
                ApiError::HeadTooLarge(message)
            }
            Refusal::UriTooLong { .. } => ApiError::UriTooLong(message),
            Refusal::Malformed { .. }
            | Refusal::LengthAndTransferEncoding
            | Refusal::ConflictingLengths
            | Refusal::InvalidLength
            | Refusal::UnsupportedTransferEncoding
            | Refusal::TransferEncodingInHttp10 => ApiError::BadRequest(message),
        }
    }
}

/// A connection's socket as hyper reads it: see the module docs. `Unpin`, as hyper needs.
pub(crate) struct Screened<T> {
    inner: T,
    framing: Framing,
    /// Bytes read and not yet given to hyper: `held[given..vetted]` may go to it,
    /// `held[vetted..]` is the start of a head not complete yet.
    held: Vec<u8>,
    given: usize,
    vetted: usize,
    screening: Arc<Screening>,
    /// A head was refused: the stand-in is queued and nothing more of the socket goes on.
    refused: bool,
    drained: usize,
}

/// Where screening some bytes stopped.
enum Stop {
    AllPassed,
    /// The rest starts a head that is not complete.
    Incomplete,
    Refused {
        request: u64,
        refusal: Refusal,
    },
}

/// Scans `bytes` to the end or to the first head that is incomplete or refused; returns
/// how many bytes passed.
fn screen(framing: &mut Framing, bytes: &[u8]) -> (usize, Stop) {
    let mut passed = 0;
    while let Some(rest) = bytes.get(passed..).filter(|rest| !rest.is_empty()) {
        match framing.scan(rest) {
            Scan::Pass(n) if (1..=rest.len()).contains(&n) => passed += n,
            Scan::Pass(_) => {
                // Never happens; if it did, fail open rather than guess (module docs).
                framing.lose_track();
                return (bytes.len(), Stop::AllPassed);
            }
            Scan::Incomplete => return (passed, Stop::Incomplete),
            Scan::Refuse { request, refusal } => {
                return (passed, Stop::Refused { request, refusal })
            }
        }
    }
    (passed, Stop::AllPassed)
}

impl<T> Screened<T> {
    pub(crate) fn new(inner: T, screening: Arc<Screening>) -> Screened<T> {
        Screened {
            inner,
            framing: Framing::default(),
            held: Vec::new(),
            given: 0,
            vetted: 0,
            screening,
            refused: false,
            drained: 0,
        }
    }

    /// Drops the refused head and everything after it, and queues the stand-in.
    fn refuse(&mut self, request: u64, refusal: Refusal) {
        self.screening.refuse(request, refusal);
        self.held.truncate(self.vetted);
        self.held.extend_from_slice(STAND_IN);
        self.vetted = self.held.len();
        self.refused = true;
    }

    /// Gives hyper what it may have of the held bytes.
    fn release(&mut self, buf: &mut ReadBuf<'_>) {
        let n = (self.vetted - self.given).min(buf.remaining());
        buf.put_slice(&self.held[self.given..self.given + n]);
        self.given += n;
        if self.given == self.vetted {
            self.held.drain(..self.vetted);
            (self.given, self.vetted) = (0, 0);
        }
    }
}

impl<T: AsyncRead + Unpin> Screened<T> {
    /// After a refusal: reads and drops what the client still sends, and never ends.
    fn poll_drain(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // hyper's free buffer space serves as scratch; nothing read here reaches it.
        while self.drained < MAX_DRAINED_BYTES && buf.remaining() > 0 {
            let before = buf.filled().len();
            let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
            let read = buf.filled().len() - before;
            buf.set_filled(before);
            match polled {
                Poll::Ready(Ok(())) if read > 0 => self.drained += read,
                // EOF or an error: nothing more to drain. The answer's write will fail on
                // its own if the socket is gone.
                Poll::Ready(_) => self.drained = MAX_DRAINED_BYTES,
                // The socket wakes the task when more arrives.
                Poll::Pending => break,
            }
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Screened<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.given < this.vetted {
                this.release(buf);
                return Poll::Ready(Ok(()));
            }
            if this.refused {
                return this.poll_drain(cx, buf);
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if buf.filled().len() == before {
                // EOF. A partial head held is dropped: hyper, given it, would close without
                // an answer too.
                this.held.clear();
                return Poll::Ready(Ok(()));
            }
            if this.held.is_empty() {
                // The common case: judge the bytes where they lie in hyper's buffer, and
                // copy out only a partial head (or drop a refused one).
                let fresh = &buf.filled()[before..];
                let (passed, stop) = screen(&mut this.framing, fresh);
                match stop {
                    Stop::AllPassed => return Poll::Ready(Ok(())),
                    Stop::Incomplete => this.held.extend_from_slice(&fresh[passed..]),
                    Stop::Refused { request, refusal } => this.refuse(request, refusal),
                }
                buf.set_filled(before + passed);
                if passed > 0 {
                    return Poll::Ready(Ok(()));
                }
            } else {
                // More of a held head: add to it and judge it again from its start.
                this.held.extend_from_slice(&buf.filled()[before..]);
                buf.set_filled(before);
                let (passed, stop) = screen(&mut this.framing, &this.held[this.vetted..]);
                this.vetted += passed;
                if let Stop::Refused { request, refusal } = stop {
                    this.refuse(request, refusal);
                }
            }
            // Nothing for hyper yet: give it what was vetted, or read more of the head.
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Screened<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const GET: &[u8] = b"GET /summary HTTP/1.1\r\n\r\n";
    const SMUGGLE: &[u8] =
        b"POST /add HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    /// A screened socket, the client's end of it, and the shared screening.
    fn pair() -> (
        Screened<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<Screening>,
    ) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let screening = Arc::new(Screening::default());
        (Screened::new(ours, screening.clone()), theirs, screening)
    }

    /// Reads exactly `n` bytes as hyper would, through a small buffer.
    async fn read_n(screened: &mut Screened<tokio::io::DuplexStream>, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            let mut buf = [0u8; 7];
            let read = screened.read(&mut buf).await.unwrap();
            assert!(read > 0, "EOF after {} bytes", got.len());
            got.extend_from_slice(&buf[..read]);
        }
        got
    }

    #[tokio::test]
    async fn a_refused_head_reaches_hyper_as_the_stand_in_after_the_good_ones() {
        let (mut screened, mut client, screening) = pair();
        client
            .write_all(&[GET, SMUGGLE, GET].concat())
            .await
            .unwrap();
        let got = read_n(&mut screened, GET.len() + STAND_IN.len()).await;
        assert_eq!(got, [GET, STAND_IN].concat());
        // Nothing after it, and no EOF either.
        let mut buf = [0u8; 64];
        assert!(screened.read(&mut buf).now_or_never().is_none());
        assert_eq!(
            screening.refused.get(),
            Some(&(2, Refusal::LengthAndTransferEncoding))
        );
    }

    #[tokio::test]
    async fn a_head_split_across_writes_reaches_hyper_whole() {
        let (mut screened, mut client, _) = pair();
        let (first, second) = GET.split_at(10);
        client.write_all(first).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(
            screened.read(&mut buf).now_or_never().is_none(),
            "held back"
        );
        client.write_all(second).await.unwrap();
        assert_eq!(read_n(&mut screened, GET.len()).await, GET);
    }

    #[tokio::test]
    async fn eof_ends_reads_and_drops_a_partial_head() {
        let (mut screened, mut client, _) = pair();
        client.write_all(&GET[..10]).await.unwrap();
        drop(client);
        let mut buf = [0u8; 64];
        assert_eq!(screened.read(&mut buf).await.unwrap(), 0);
    }

    #[test]
    fn the_service_answers_only_the_refused_request_and_only_the_stand_in() {
        let request = |path: &str| Request::get(path).body(()).unwrap();
        let screening = Screening::default();
        screening.refuse(2, Refusal::UriTooLong { limit: 8 });
        assert!(
            screening.answer(&request(REFUSED_PATH)).is_none(),
            "request 1"
        );
        let answer = screening.answer(&request(REFUSED_PATH)).expect("request 2");
        assert_eq!(answer.status(), axum::http::StatusCode::URI_TOO_LONG);
        assert_eq!(answer.headers()[header::CONNECTION], "close");

        let forged = Screening::default();
        forged.refuse(1, Refusal::InvalidLength);
        assert!(forged.answer(&request("/summary")).is_none());
    }
}
