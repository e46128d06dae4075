//! Frames on and off one TCP connection, with the protocol's timeouts: a reader that waits at
//! most the idle timeout for a frame to start and then at most the frame timeout for the
//! rest of it (a peer that trickles bytes is dropped), and a writer whose every frame must be
//! written within the frame timeout (a peer that stops reading is dropped too). A frame
//! starts with the first byte of the record that carries it: a peer trickling the bytes of
//! one record, so that no plaintext ever appears, meets the frame timeout as well.
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

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::error::SessionError;
use super::frame::{decode_frame, encode_frame};
use super::message::Message;
use super::transport::{Received, SecureReader, SecureWriter};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The receiving half's frames: messages off the encrypted channel, each within the idle
/// and frame timeouts.
pub struct FrameReader<R> {
    reader: SecureReader<R>,
    buf: Vec<u8>,
    idle: Duration,
    frame: Duration,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `idle`: the longest wait for a frame to start; `frame`: from its first byte to its last.
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
        // Set once the current frame's first byte is in, as plaintext or as ciphertext of a
        // record not yet whole: the rest must follow in time.
        let started = !self.buf.is_empty() || self.reader.has_partial_record();
        let mut frame_deadline = started.then(|| Instant::now() + self.frame);
        loop {
            if let Some(message) = decode_frame(&mut self.buf)? {
                return Ok(message);
            }
            // Read what the socket has, up to a chunk: the buffer never holds more than one
            // maximal frame plus one chunk, and several small frames arrive in one read.
            let read = self.reader.read_into(&mut self.buf, READ_CHUNK_BYTES);
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
            match outcome?? {
                Received::Closed if self.buf.is_empty() => return Err(SessionError::Closed),
                Received::Closed => {
                    return Err(SessionError::ClosedMidFrame {
                        buffered: self.buf.len(),
                    })
                }
                Received::Plaintext(_) | Received::PartialRecord => {}
            }
            frame_deadline.get_or_insert_with(|| Instant::now() + self.frame);
        }
    }

    /// The next message if it is complete without waiting: in the buffer, or in what the
    /// socket already holds (read without blocking). `None` when it is not, including when the
    /// peer has closed: the next [`Self::next`] reports that.
    pub fn next_ready(&mut self) -> Result<Option<Message>, SessionError> {
        loop {
            if let Some(message) = decode_frame(&mut self.buf)? {
                return Ok(Some(message));
            }
            // Polled once and dropped if the socket has nothing: `read_into` is cancel-safe.
            match self
                .reader
                .read_into(&mut self.buf, READ_CHUNK_BYTES)
                .now_or_never()
            {
                Some(Ok(Received::Closed)) | None => return Ok(None),
                Some(Ok(Received::Plaintext(_) | Received::PartialRecord)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }
}

/// The sending half's frames: messages onto the encrypted channel, each written within the
/// frame timeout.
pub(crate) struct FrameWriter<W> {
    writer: SecureWriter<W>,
    timeout: Duration,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// `timeout`: the longest one frame may take to write.
    pub(crate) fn new(writer: SecureWriter<W>, timeout: Duration) -> Self {
        FrameWriter { writer, timeout }
    }

    /// Sends one frame; returns its length in bytes (the plaintext of the frame).
    pub(crate) async fn send(&mut self, message: &Message) -> Result<usize, SessionError> {
        let frame = encode_frame(message)?;
        tokio::time::timeout(self.timeout, self.writer.write_all(&frame))
            .await
            .map_err(|_| SessionError::Timeout {
                what: "writing a frame",
            })??;
        Ok(frame.len())
    }

    /// Best effort: tell the peer why we close, without waiting long on a stuck socket.
    pub(crate) async fn bye(&mut self, reason: super::message::ByeReason) {
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

/// An established channel pair over an in-memory pipe, for tests of what reads frames.
#[cfg(test)]
pub(super) mod testing {
    use crate::sync::transport::{establish, Channel, NetworkKey, Role};
    use tokio::io::{duplex, split, DuplexStream, ReadHalf, WriteHalf};

    pub(crate) type PipeChannel = Channel<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>;

    /// Both ends of a pipe that buffers `capacity` bytes, handshake done. The pipe closes
    /// once both halves of an end are dropped.
    pub(crate) async fn channels(capacity: usize) -> (PipeChannel, PipeChannel) {
        let net = NetworkKey::default();
        let (a, b) = duplex(capacity);
        let ((ar, aw), (br, bw)) = (split(a), split(b));
        let (ours, theirs) = tokio::join!(
            establish(ar, aw, Role::Initiator, &net),
            establish(br, bw, Role::Responder, &net)
        );
        (ours.unwrap(), theirs.unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::channels;
    use super::*;
    use crate::sync::message::{EncodedEntry, Entries};

    /// A frame of `n` entries of distinct bytes, so a frame put together from the wrong
    /// bytes would not compare equal.
    fn entries(tag: u8, n: usize) -> Message {
        let entries = (0..n)
            .map(|i| EncodedEntry((0..200).map(|j| tag ^ (i as u8) ^ (j as u8)).collect()))
            .collect();
        Message::Entries(Entries { entries })
    }

    /// A peer that trickles the bytes of one record and never completes it: no plaintext
    /// ever appears, yet the frame began with the record's first byte, so the session ends
    /// at the frame timeout counted from there, not at the idle timeout.
    #[tokio::test(start_paused = true)]
    async fn a_record_trickled_byte_by_byte_ends_at_the_frame_timeout() {
        use crate::sync::transport::{establish, NetworkKey, Role};
        use tokio::io::{duplex, split, AsyncWriteExt};

        let net = NetworkKey::default();
        let (a, b) = duplex(4096);
        let ((ar, mut aw), (br, bw)) = (split(a), split(b));
        let (theirs, ours) = tokio::join!(
            establish(ar, &mut aw, Role::Initiator, &net),
            establish(br, bw, Role::Responder, &net)
        );
        // The trickler writes under the channel, straight to its socket.
        drop(theirs.unwrap());
        let (idle, frame) = (Duration::from_secs(60), Duration::from_secs(10));
        let mut reader = FrameReader::new(ours.unwrap().reader, idle, frame);
        let quiet = Duration::from_secs(5);
        let trickle = async {
            tokio::time::sleep(quiet).await;
            // A record of 100 bytes announced, then one byte every 2 s: it never completes.
            aw.write_all(&[0, 100]).await.unwrap();
            for _ in 0..99 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                aw.write_all(&[0x5a]).await.unwrap();
            }
            std::future::pending::<()>().await;
        };
        let start = Instant::now();
        let result = tokio::select! {
            result = reader.next() => result,
            () = trickle => unreachable!("the trickle never ends"),
        };
        assert!(
            matches!(
                result,
                Err(SessionError::Timeout {
                    what: "reading the rest of a frame"
                })
            ),
            "{result:?}"
        );
        // Counted from the record's first byte, not from the wait's start (the idle timeout).
        let elapsed = start.elapsed();
        assert!(
            elapsed >= quiet + frame && elapsed < quiet + frame + Duration::from_secs(1),
            "{elapsed:?}"
        );
    }

    /// Polling `next_ready` while a frame is only partly in, dropping each socket read that
    /// was not ready, must neither lose nor corrupt a byte: a pipe far smaller than one frame
    /// makes the sender block mid-record, again and again.
    #[tokio::test]
    async fn next_ready_polls_and_drops_reads_without_losing_bytes() {
        let (ours, theirs) = channels(997).await;
        let sent: Vec<Message> = (0..12u8).map(|t| entries(t, 1 + 11 * t as usize)).collect();
        let to_send = sent.clone();
        let sender = tokio::spawn(async move {
            let mut writer = FrameWriter::new(theirs.writer, Duration::from_secs(10));
            for message in &to_send {
                writer.send(message).await.unwrap();
            }
            // Both halves of the pipe end dropped: the stream is closed.
            drop((writer, theirs.reader));
        });
        let mut reader = FrameReader::new(
            ours.reader,
            Duration::from_secs(10),
            Duration::from_secs(10),
        );
        let mut got = Vec::new();
        let mut not_ready = 0u32;
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < sent.len() {
            assert!(
                Instant::now() < deadline,
                "only {} frames arrived",
                got.len()
            );
            match reader.next_ready().unwrap() {
                Some(message) => got.push(message),
                None => {
                    not_ready += 1;
                    tokio::task::yield_now().await;
                }
            }
        }
        assert_eq!(got, sent);
        assert!(not_ready > 0, "the reads were never dropped half way");
        sender.await.unwrap();
        // The peer closed: not a frame now, and `next` says why.
        assert!(reader.next_ready().unwrap().is_none());
        assert!(matches!(reader.next().await, Err(SessionError::Closed)));
    }
}
