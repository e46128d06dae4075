//! A connection that stops taking our bytes is closed: [`StallGuard`] wraps a socket and
//! fails a write that has made no progress for the stall timeout (`--stream-idle-timeout`).
//!
//! Threat: a client that asks for a large response (`GET /export.csv`, or any response once
//! the socket buffers are full) and then stops reading. Without a bound it holds its
//! connection slot, the response's buffers and whatever produces them, for ever. Reads need
//! no guard here: a request head has hyper's header timeout, and handlers that read a body
//! bound the wait for each chunk themselves.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::shed::Activity;

/// A socket whose writes fail with `TimedOut` after `timeout` without progress. `Unpin`
/// (hyper needs that of its I/O): the timer is boxed, and only armed while a write waits.
pub(crate) struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    /// Told whenever bytes move either way (the shedding rule reads it).
    activity: Arc<Activity>,
}

impl<T> StallGuard<T> {
    pub(crate) fn new(inner: T, timeout: Duration, activity: Arc<Activity>) -> StallGuard<T> {
        StallGuard {
            inner,
            timeout,
            stalled: None,
            activity,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.moved();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> StallGuard<T> {
    /// Turns a `Pending` write into a `TimedOut` error once the stall lasted `timeout`.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self.stalled.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + timeout))
                });
                if sleep.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client took none of the response for the stall timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
            ready => {
                self.stalled = None;
                self.activity.moved();
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.watch(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.watch(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.watch(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_fails_after_the_timeout() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let mut guarded =
            StallGuard::new(ours, Duration::from_secs(5), Activity::new(Instant::now()));
        let error = guarded.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let (ours, mut theirs) = tokio::io::duplex(16);
        let mut guarded =
            StallGuard::new(ours, Duration::from_secs(5), Activity::new(Instant::now()));
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut got = 0;
            let mut buf = [0u8; 16];
            while got < 256 {
                // Slower than the buffer fills, faster than the timeout.
                tokio::time::sleep(Duration::from_secs(2)).await;
                got += theirs.read(&mut buf).await.unwrap();
            }
        });
        guarded.write_all(&[0u8; 256]).await.unwrap();
        reader.await.unwrap();
    }
}
