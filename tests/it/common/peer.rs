//! A hand-driven peer for protocol tests: it speaks the real v2 transport (opening, Noise,
//! encrypted records) and the identity handshake through the library's own pieces, then
//! lets a test send any message, valid or not, and read what the node answers.

use std::net::{IpAddr, SocketAddr};

use kappalog::identity::Identity;
use kappalog::sync::connection::FrameReader;
use kappalog::sync::error::SessionError;
use kappalog::sync::frame::encode_frame;
use kappalog::sync::handshake::Handshake;
use kappalog::sync::message::{FeedHave, Message, Nonce, PROTOCOL_VERSION};
use kappalog::sync::plan::Feeds;
use kappalog::sync::reconcile::{Bound, Range, RangeMode, Reconcile, Reconciler, Step};
use kappalog::sync::transport::{establish, negotiate, NetworkKey, Role, SecureWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use super::DEADLINE;

/// Accepts one dial on `listener` and answers with a `Hello` that names `claimed` as its
/// author and an `Auth` signed by `signer` (a liar when they differ, a copy of the key when
/// `claimed` is the node's own and `signer` holds it). Returns what the node sent after its
/// `Hello`, until it closed.
pub async fn answer_as(
    listener: &tokio::net::TcpListener,
    claimed: kappalog::identity::Author,
    signer: &Identity,
) -> Vec<Message> {
    let (stream, _) = tokio::time::timeout(DEADLINE, listener.accept())
        .await
        .expect("no node dialed before the deadline")
        .unwrap();
    let (read, write) = stream.into_split();
    let channel = establish(read, write, Role::Responder, &NetworkKey::default())
        .await
        .unwrap();
    let mut reader = FrameReader::new(channel.reader, DEADLINE, DEADLINE);
    let mut writer = channel.writer;
    let hs = Handshake::new(claimed, Nonce(rand::random()), channel.binding);
    send_frame(&mut writer, &Message::Hello(hs.hello().clone()))
        .await
        .unwrap();
    let theirs = match reader.next().await.unwrap() {
        Message::Hello(hello) => hello,
        other => panic!("expected Hello, got {other:?}"),
    };
    let auth = hs.on_own_hello(signer, &theirs).unwrap();
    let _ = send_frame(&mut writer, &Message::Auth(auth)).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, async {
        while let Ok(m) = reader.next().await {
            got.push(m);
        }
    })
    .await;
    got
}

/// A fixed identity for any `n` (tests that need more keys than `identity(u8)` has).
pub fn many_identity(n: u32) -> Identity {
    let mut seed = [0x5a; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    Identity::from_seed(seed)
}

/// A TCP connection to `addr` from the loopback source address `from` (127.x.y.z: Linux
/// routes the whole 127/8 to loopback), so one test can be many sources.
pub async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// The reconciliation frames of a dialer that lists `items` (sorted by author) as one
/// `Items` round, cut into frames of at most `per_frame` items: a claim of any size built
/// without computing a fingerprint.
pub fn items_round(items: &[FeedHave], per_frame: usize) -> Vec<Reconcile> {
    let chunks: Vec<&[FeedHave]> = items.chunks(per_frame.max(1)).collect();
    let mut frames = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let upper = match chunks.get(i + 1) {
            Some(next) => Bound::Author(next[0].author),
            None => Bound::End,
        };
        frames.push(Reconcile {
            ranges: vec![Range {
                upper,
                mode: RangeMode::Items(chunk.to_vec()),
            }],
            last: i + 1 == chunks.len(),
        });
    }
    if frames.is_empty() {
        frames.push(Reconcile {
            ranges: vec![Range {
                upper: Bound::End,
                mode: RangeMode::Items(vec![]),
            }],
            last: true,
        });
    }
    frames
}

pub struct RawPeer {
    pub reader: FrameReader<OwnedReadHalf>,
    /// Under the framing, so a test can also send bytes that are not a valid frame.
    pub writer: SecureWriter<OwnedWriteHalf>,
    pub local: SocketAddr,
}

impl RawPeer {
    /// Dials `addr` on the default network and authenticates as `id`.
    pub async fn connect(addr: SocketAddr, id: &Identity) -> RawPeer {
        let stream = TcpStream::connect(addr).await.unwrap();
        Self::over(stream, id, &NetworkKey::default()).await
    }

    /// Runs the opening, the Noise handshake and Hello/Auth as `id` over `stream`.
    pub async fn over(stream: TcpStream, id: &Identity, network: &NetworkKey) -> RawPeer {
        Self::try_over(stream, id, network).await.unwrap()
    }

    pub async fn try_over(
        stream: TcpStream,
        id: &Identity,
        network: &NetworkKey,
    ) -> Result<RawPeer, SessionError> {
        Self::handshake(stream, id, network, Role::Initiator, PROTOCOL_VERSION).await
    }

    /// Dials `addr` with an opening of `version` and authenticates as `id` in a session of
    /// that version.
    pub async fn connect_at(addr: SocketAddr, id: &Identity, version: u16) -> RawPeer {
        let stream = TcpStream::connect(addr).await.unwrap();
        Self::handshake(stream, id, &NetworkKey::default(), Role::Initiator, version)
            .await
            .unwrap()
    }

    /// Dials `addr` from the loopback source `from` and authenticates as `id`.
    pub async fn connect_from(from: IpAddr, addr: SocketAddr, id: &Identity) -> RawPeer {
        let stream = connect_from(from, addr).await.unwrap();
        Self::over(stream, id, &NetworkKey::default()).await
    }

    /// Accepts one connection on `listener` (a node dialing it) and answers as `id`.
    pub async fn accept(listener: &tokio::net::TcpListener, id: &Identity) -> RawPeer {
        let (stream, _) = tokio::time::timeout(DEADLINE, listener.accept())
            .await
            .expect("no node dialed before the deadline")
            .unwrap();
        Self::handshake(
            stream,
            id,
            &NetworkKey::default(),
            Role::Responder,
            PROTOCOL_VERSION,
        )
        .await
        .unwrap()
    }

    async fn handshake(
        stream: TcpStream,
        id: &Identity,
        network: &NetworkKey,
        role: Role,
        version: u16,
    ) -> Result<RawPeer, SessionError> {
        let local = stream.local_addr().unwrap();
        let (read, write) = stream.into_split();
        let channel = negotiate(read, write, role, network, version).await?;
        let mut reader = FrameReader::new(channel.reader, DEADLINE, DEADLINE);
        let mut writer = channel.writer;
        let hs = Handshake::for_version(
            channel.version,
            id.author(),
            Nonce([7; 32]),
            channel.binding,
        );
        send_frame(&mut writer, &Message::Hello(hs.hello().clone())).await?;
        let theirs = match reader.next().await? {
            Message::Hello(hello) => hello,
            Message::Bye(bye) => return Err(SessionError::PeerBye(bye.reason)),
            other => panic!("expected Hello, got {other:?}"),
        };
        let auth = hs.on_hello(id, &theirs)?;
        send_frame(&mut writer, &Message::Auth(auth)).await?;
        match reader.next().await? {
            Message::Auth(auth) => {
                hs.on_auth(&theirs, &auth)?;
            }
            Message::Bye(bye) => return Err(SessionError::PeerBye(bye.reason)),
            other => panic!("expected Auth, got {other:?}"),
        }
        Ok(RawPeer {
            reader,
            writer,
            local,
        })
    }

    /// Dials, authenticates and reconciles as a peer holding no feeds.
    pub async fn connect_and_have(addr: SocketAddr, id: &Identity) -> RawPeer {
        let mut peer = Self::connect(addr, id).await;
        peer.reconcile(vec![]).await;
        peer
    }

    /// Runs reconciliation as the dialer holding `items`, to its end; messages other than
    /// `Reconcile` that arrive meanwhile are dropped. Returns what the node holds.
    pub async fn reconcile(&mut self, items: Vec<FeedHave>) -> Feeds {
        let mut reconciler = Reconciler::new(items);
        for frame in reconciler.initiate() {
            self.send(&Message::Reconcile(frame)).await;
        }
        self.finish_reconcile(reconciler).await
    }

    /// Answers the node's reconciliation (it dialed, so it opens) as a side holding
    /// `items`, to its end; other messages meanwhile are dropped. Returns what the node holds.
    pub async fn answer_reconcile(&mut self, items: Vec<FeedHave>) -> Feeds {
        self.finish_reconcile(Reconciler::new(items)).await
    }

    async fn finish_reconcile(&mut self, mut reconciler: Reconciler) -> Feeds {
        tokio::time::timeout(DEADLINE, async {
            while !reconciler.is_done() {
                if let Message::Reconcile(frame) = self.reader.next().await.unwrap() {
                    if let Some(Step::Reply(frames)) = reconciler.receive(frame).unwrap() {
                        for frame in frames {
                            self.send(&Message::Reconcile(frame)).await;
                        }
                    }
                }
            }
        })
        .await
        .expect("reconciliation within the deadline");
        reconciler.into_peer_feeds().unwrap()
    }

    pub async fn send(&mut self, message: &Message) {
        send_frame(&mut self.writer, message).await.unwrap();
    }

    /// [`RawPeer::send`] for a peer the node may close on at any moment.
    pub async fn try_send(&mut self, message: &Message) -> Result<(), SessionError> {
        send_frame(&mut self.writer, message).await
    }

    /// Sends `plaintext` through the channel as it is: frames, parts of frames or bytes
    /// that are no frame at all, all in one write.
    pub async fn send_plain(&mut self, plaintext: &[u8]) {
        self.writer.write_all(plaintext).await.unwrap();
    }

    /// Reads until the node closes the session (bounded); returns the messages it sent.
    pub async fn read_until_closed(&mut self) -> Vec<Message> {
        let mut got = Vec::new();
        let closed = tokio::time::timeout(DEADLINE, async {
            while let Ok(m) = self.reader.next().await {
                got.push(m);
            }
        })
        .await;
        assert!(closed.is_ok(), "the node did not close the session");
        got
    }
}

async fn send_frame(
    writer: &mut SecureWriter<OwnedWriteHalf>,
    message: &Message,
) -> Result<(), SessionError> {
    writer.write_all(&encode_frame(message)?).await?;
    Ok(())
}
