//! Frames on and off one TCP connection, with the protocol's timeouts: a reader that waits at
//! most the idle timeout for a frame to start and then at most the frame timeout for the
//! rest of it (a peer that trickles bytes is dropped), and a writer whose every frame must be
//! written within the frame timeout (a peer that stops reading is dropped too).
//!
//! The two halves are used by different tasks of a session (see [`super::session`]), so a
//! session never stops reading because it is busy writing: that is what keeps two peers that
//! both send large ranges at once from deadlocking on full socket buffers.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::SessionError;
use super::frame::{decode_frame, encode_frame, read_frame, ReadFrameError};
use super::message::Message;

/// Bytes asked of the socket while waiting for a frame to start.
const FIRST_READ_BYTES: usize = 8 * 1024;

pub struct FrameReader<R> {
    reader: R,
    buf: Vec<u8>,
    idle: Duration,
    frame: Duration,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, idle: Duration, frame: Duration) -> Self {
        FrameReader {
            reader,
            buf: Vec::new(),
            idle,
            frame,
        }
    }

    /// The next message; [`SessionError::Closed`] when the peer closed between frames.
    pub async fn next(&mut self) -> Result<Message, SessionError> {
        if let Some(message) = decode_frame(&mut self.buf)? {
            return Ok(message);
        }
        if self.buf.is_empty() {
            let mut first = [0u8; FIRST_READ_BYTES];
            let n = tokio::time::timeout(self.idle, self.reader.read(&mut first))
                .await
                .map_err(|_| SessionError::Timeout {
                    what: "waiting for a frame",
                })??;
            if n == 0 {
                return Err(SessionError::Closed);
            }
            self.buf.extend_from_slice(&first[..n]);
        }
        match tokio::time::timeout(self.frame, read_frame(&mut self.reader, &mut self.buf)).await {
            Err(_) => Err(SessionError::Timeout {
                what: "reading the rest of a frame",
            }),
            Ok(Ok(Some(message))) => Ok(message),
            Ok(Ok(None)) => Err(SessionError::Closed),
            Ok(Err(ReadFrameError::ClosedMidFrame { buffered })) => {
                Err(SessionError::ClosedMidFrame { buffered })
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }
}

pub struct FrameWriter<W> {
    writer: W,
    timeout: Duration,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(writer: W, timeout: Duration) -> Self {
        FrameWriter { writer, timeout }
    }

    pub async fn send(&mut self, message: &Message) -> Result<(), SessionError> {
        let frame = encode_frame(message)?;
        tokio::time::timeout(self.timeout, self.writer.write_all(&frame))
            .await
            .map_err(|_| SessionError::Timeout {
                what: "writing a frame",
            })??;
        Ok(())
    }

    /// Best effort: tell the peer why we close, without waiting long on a stuck socket.
    pub async fn bye(&mut self, reason: super::message::ByeReason) {
        let bye = Message::Bye(super::message::Bye { reason });
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            if let Ok(frame) = encode_frame(&bye) {
                let _ = self.writer.write_all(&frame).await;
                let _ = self.writer.flush().await;
            }
            let _ = self.writer.shutdown().await;
        })
        .await;
    }
}
