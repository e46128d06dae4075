//! Frames on and off one TCP connection, with the protocol's timeouts: a reader that waits at
//! most the idle timeout for a frame to start and then at most the frame timeout for the
//! rest of it (a peer that trickles bytes is dropped), and a writer whose every frame must be
//! written within the frame timeout (a peer that stops reading is dropped too).
//!
//! Every length prefix is checked against `MAX_FRAME_BYTES` by `decode_frame` as soon as its
//! four bytes are buffered, before more of that frame is read.
//!
//! Both halves run over the encrypted channel of [`super::transport`]: the bytes they frame are
//! the records' plaintext.
//!
//! The two halves are used by different tasks of a session (see [`super::session`]), so a
//! session never stops reading because it is busy writing: that is what keeps two peers that
//! both send large ranges at once from deadlocking on full socket buffers.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::error::SessionError;
use super::frame::{decode_frame, encode_frame};
use super::message::Message;
use super::transport::{SecureReader, SecureWriter};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

pub struct FrameReader<R> {
    reader: SecureReader<R>,
    buf: Vec<u8>,
    idle: Duration,
    frame: Duration,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: SecureReader<R>, idle: Duration, frame: Duration) -> Self {
        FrameReader {
            reader,
            buf: Vec::new(),
            idle,
            frame,
        }
    }

    /// The next message; [`SessionError::Closed`] when the peer closed between frames.
    pub async fn next(&mut self) -> Result<Message, SessionError> {
        // Set once the current frame's first byte is in: the rest must follow in time.
        let mut frame_deadline = (!self.buf.is_empty()).then(|| Instant::now() + self.frame);
        loop {
            if let Some(message) = decode_frame(&mut self.buf)? {
                return Ok(message);
            }
            // Read what the socket has, up to a chunk: the buffer never holds more than one
            // maximal frame plus one chunk, and several small frames arrive in one read.
            let start = self.buf.len();
            self.buf.resize(start + READ_CHUNK_BYTES, 0);
            let read = self.reader.read(&mut self.buf[start..]);
            let outcome =
                match frame_deadline {
                    None => tokio::time::timeout(self.idle, read).await.map_err(|_| {
                        SessionError::Timeout {
                            what: "waiting for a frame",
                        }
                    }),
                    Some(deadline) => tokio::time::timeout_at(deadline, read).await.map_err(|_| {
                        SessionError::Timeout {
                            what: "reading the rest of a frame",
                        }
                    }),
                };
            let n = match outcome {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    self.buf.truncate(start);
                    return Err(e.into());
                }
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            };
            self.buf.truncate(start + n);
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    SessionError::Closed
                } else {
                    SessionError::ClosedMidFrame {
                        buffered: self.buf.len(),
                    }
                });
            }
            frame_deadline.get_or_insert_with(|| Instant::now() + self.frame);
        }
    }

    /// The next message if it is already complete in the buffer (no socket read).
    pub fn next_buffered(&mut self) -> Result<Option<Message>, SessionError> {
        Ok(decode_frame(&mut self.buf)?)
    }
}

pub struct FrameWriter<W> {
    writer: SecureWriter<W>,
    timeout: Duration,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(writer: SecureWriter<W>, timeout: Duration) -> Self {
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
