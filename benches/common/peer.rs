//! A hand-driven sync peer for the benchmarks that play a hostile peer against a real node
//! (adapted from tests/it/common/peer.rs): it speaks the real transport (opening, Noise,
//! encrypted records) and the identity handshake through the library's own pieces, counts
//! the bytes that cross its socket each way, and lets a benchmark send any message.
//!
//! Every wait is bounded: a read that gets nothing within [`READ_IDLE`] fails, and the
//! loops that read until something happens take a deadline.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use kappalog::identity::{Author, Identity};
use kappalog::sync::connection::FrameReader;
use kappalog::sync::error::SessionError;
use kappalog::sync::frame::encode_frame;
use kappalog::sync::handshake::Handshake;
use kappalog::sync::message::{FeedHave, Message, Nonce};
use kappalog::sync::reconcile::{Reconciler, Step};
use kappalog::sync::transport::{establish, NetworkKey, Role, SecureWriter};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

/// The longest a read waits for a frame to start, and then for the rest of it.
pub const READ_IDLE: Duration = Duration::from_secs(30);
/// The longest the opening, Noise and Hello/Auth may take.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// The longest one write may take (a node that stops reading does not hang the benchmark).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(120);

/// A socket half that adds every byte it moves to a shared counter.
pub struct Counted<T> {
    inner: T,
    bytes: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = buf.filled().len() - before;
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bytes that crossed one session's socket (TCP payload, TCP/IP headers not included).
#[derive(Clone, Default)]
pub struct Wire {
    pub sent: Arc<AtomicU64>,
    pub received: Arc<AtomicU64>,
}

impl Wire {
    /// (bytes sent by this peer, bytes received from the node) so far.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}

pub struct RawPeer {
    pub reader: FrameReader<Counted<OwnedReadHalf>>,
    pub writer: SecureWriter<Counted<OwnedWriteHalf>>,
    /// The node's author, from its authenticated `Hello`.
    pub node: Author,
    pub wire: Wire,
}

impl RawPeer {
    /// Dials `addr` and authenticates as `id`.
    pub async fn dial(addr: SocketAddr, id: &Identity) -> Result<RawPeer, SessionError> {
        let stream = timeout(HANDSHAKE_DEADLINE, TcpStream::connect(addr))
            .await
            .map_err(|_| SessionError::Timeout { what: "connecting" })??;
        Self::over(stream, id, Role::Initiator).await
    }

    /// Dials `addr` from the loopback address `source` (a node limits connections per
    /// source address), and authenticates as `id`.
    pub async fn dial_from(
        source: IpAddr,
        addr: SocketAddr,
        id: &Identity,
    ) -> Result<RawPeer, SessionError> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = timeout(HANDSHAKE_DEADLINE, socket.connect(addr))
            .await
            .map_err(|_| SessionError::Timeout { what: "connecting" })??;
        Self::over(stream, id, Role::Initiator).await
    }

    /// Runs the opening, the Noise handshake and Hello/Auth as `id` over `stream`, in `role`
    /// (`Responder` for a connection the node dialed).
    pub async fn over(
        stream: TcpStream,
        id: &Identity,
        role: Role,
    ) -> Result<RawPeer, SessionError> {
        timeout(HANDSHAKE_DEADLINE, Self::handshake(stream, id, role))
            .await
            .map_err(|_| SessionError::Timeout {
                what: "in the handshake",
            })?
    }

    async fn handshake(
        stream: TcpStream,
        id: &Identity,
        role: Role,
    ) -> Result<RawPeer, SessionError> {
        let _ = stream.set_nodelay(true);
        let wire = Wire::default();
        let (read, write) = stream.into_split();
        let read = Counted {
            inner: read,
            bytes: wire.received.clone(),
        };
        let write = Counted {
            inner: write,
            bytes: wire.sent.clone(),
        };
        let channel = establish(read, write, role, &NetworkKey::default()).await?;
        let mut peer = RawPeer {
            reader: FrameReader::new(channel.reader, READ_IDLE, READ_IDLE),
            writer: channel.writer,
            node: Author([0; 32]),
            wire,
        };
        let hs = Handshake::new(id.author(), Nonce(rand::random()), channel.binding);
        peer.send(&Message::Hello(hs.hello().clone())).await?;
        let theirs = match peer.reader.next().await? {
            Message::Hello(hello) => hello,
            Message::Bye(bye) => return Err(SessionError::PeerBye(bye.reason)),
            _ => return Err(out_of_order("at the start of the handshake")),
        };
        let auth = hs.on_hello(id, &theirs)?;
        peer.send(&Message::Auth(auth)).await?;
        peer.node = match peer.reader.next().await? {
            Message::Auth(auth) => hs.on_auth(&theirs, &auth)?,
            Message::Bye(bye) => return Err(SessionError::PeerBye(bye.reason)),
            _ => return Err(out_of_order("after Hello")),
        };
        Ok(peer)
    }

    pub async fn send(&mut self, message: &Message) -> Result<(), SessionError> {
        self.send_encoded(&encode_frame(message)?).await
    }

    /// Sends frames encoded beforehand (one encoding shared by many sessions).
    pub async fn send_encoded(&mut self, frames: &[u8]) -> Result<(), SessionError> {
        timeout(WRITE_DEADLINE, self.writer.write_all(frames))
            .await
            .map_err(|_| SessionError::Timeout {
                what: "writing frames",
            })??;
        Ok(())
    }

    /// Reconciles as the dialer holding `items` (sorted by author), to its end, within
    /// `deadline`; other messages that arrive meanwhile are dropped. Returns how many feeds
    /// the node holds.
    pub async fn reconcile(
        &mut self,
        items: Vec<FeedHave>,
        deadline: Instant,
    ) -> Result<usize, SessionError> {
        let mut reconciler = Reconciler::new(items);
        for frame in reconciler.initiate() {
            self.send(&Message::Reconcile(frame)).await?;
        }
        self.finish_reconcile(reconciler, deadline).await
    }

    /// Answers the node's reconciliation (it dialed us) holding `items`, to its end.
    pub async fn answer_reconcile(
        &mut self,
        items: Vec<FeedHave>,
        deadline: Instant,
    ) -> Result<usize, SessionError> {
        self.finish_reconcile(Reconciler::new(items), deadline)
            .await
    }

    async fn finish_reconcile(
        &mut self,
        mut reconciler: Reconciler,
        deadline: Instant,
    ) -> Result<usize, SessionError> {
        while !reconciler.is_done() {
            let message = tokio::time::timeout_at(deadline, self.reader.next())
                .await
                .map_err(|_| SessionError::Timeout {
                    what: "reconciling feed sets",
                })??;
            match message {
                Message::Reconcile(frame) => {
                    if let Some(Step::Reply(frames)) = reconciler.receive(frame)? {
                        for frame in frames {
                            self.send(&Message::Reconcile(frame)).await?;
                        }
                    }
                }
                Message::Bye(bye) => return Err(SessionError::PeerBye(bye.reason)),
                _ => {}
            }
        }
        Ok(reconciler.peer_feeds().map_or(0, |feeds| feeds.len()))
    }

    /// Reads until the node closes the session or `deadline` passes, whichever is first;
    /// returns the messages read.
    pub async fn read_until_closed(&mut self, deadline: Instant) -> Vec<Message> {
        let mut got = Vec::new();
        let _ = tokio::time::timeout_at(deadline, async {
            while let Ok(message) = self.reader.next().await {
                got.push(message);
            }
        })
        .await;
        got
    }

    /// Ends a complete session politely: no more from us (TCP FIN), then reads what the node
    /// still sends until it closes too (bounded by `deadline`), so nothing unread makes our
    /// close a reset that could cut what the node has not processed yet.
    pub async fn close(mut self, deadline: Instant) {
        let _ = tokio::time::timeout_at(deadline, self.writer.shutdown()).await;
        self.read_until_closed(deadline).await;
    }
}

fn out_of_order(when: &'static str) -> SessionError {
    SessionError::OutOfOrder {
        got: "another message",
        when,
    }
}
