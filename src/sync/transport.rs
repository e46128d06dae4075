//! The encrypted, authenticated channel every session runs over (docs/PROTOCOL.md sections 2
//! and 3): a plaintext version opening, a Noise `NNpsk0` handshake keyed by the network
//! secret, then a stream of encrypted records that carries the v1 framing unchanged.
//!
//! # Bytes on the wire
//!
//! 1. **Opening** (plaintext, in v1 framing so a v1 node understands it): the frame of
//!    `Message::Hello { version, author: 0^32, nonce: 0^32 }` ([`OPENING_FRAME_BYTES`] = 72
//!    bytes). It says only "I speak this version": the real identity travels encrypted. The
//!    dialer sends its own at once; the responder reads the dialer's first and answers with
//!    the same version if it speaks it (2 or 3), else with its own and `Bye(VersionMismatch)`
//!    ("unsupported protocol version N"); see [`super::opening`]. A node held to v2 sends its
//!    opening at once and accepts only 2, as every v2 node does. A node reads at most
//!    [`MAX_OPENING_FRAME_BYTES`] = 74 bytes of the peer's opening: the longest `Hello`
//!    frame, whose version of 251 or more takes 3 varint bytes. A node at its connection cap
//!    sends `Bye(Busy)` here instead.
//! 2. **Noise handshake** `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`, prologue
//!    `kappalog/sync/v2` in a v2 session, `kappalog/sync/v3` followed by both openings in a
//!    v3 one ([`super::opening::prologue`]), psk = [`NetworkKey`]. The dialer is the
//!    initiator. Each handshake
//!    message is one record (below): `-> psk, e` (48 bytes), `<- e, ee` (48 bytes). A
//!    responder whose network key does not open the first message answers with the one-byte
//!    refusal record `0x01` ([`REFUSE_DIFFERENT_NETWORK`]) and closes; both sides log
//!    "different network".
//! 3. **Records**: a u16 big-endian length `L`, then `L` bytes. After the handshake every
//!    record is one Noise transport message: ciphertext of 1 to [`MAX_RECORD_PLAINTEXT`]
//!    bytes plus a 16-byte tag (ChaCha20-Poly1305, nonce = the record's index in its
//!    direction). The plaintext of the records, concatenated, is the v1 frame stream. A
//!    record that fails to decrypt (a flipped byte, a dropped, reordered or replayed record)
//!    ends the session: its plaintext is never used, and a frame is only decoded once all
//!    of its records have decrypted.
//!
//! # Why this pattern
//!
//! The node's identity is an ed25519 key that the session already proves by signing (see
//! [`super::handshake`]); Noise static keys would be a second identity to bind and manage.
//! `NN` gives fresh ephemeral Diffie-Hellman keys (forward secrecy, nothing readable by a
//! passive observer, authors included), `psk0` mixes the network secret into the very first
//! message so a node of another network (or a scanner without the secret) is refused before
//! it costs a signature check, and the handshake hash ([`Channel::binding`]) is what both
//! identities sign, so a man in the middle that runs two separate Noise sessions cannot
//! relay the signatures (each session has its own hash).

use std::sync::Arc;

use sha2::{Digest, Sha256};
use snow::{HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{decode_frame, encode_frame, frame_len, FrameError, LENGTH_PREFIX_BYTES};
use super::message::{Bye, ByeReason, Message, PROTOCOL_VERSION};
use super::opening::{self, opening_frame_of, V2};

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// The secret used when the operator names none: any default node can sync with any other.
pub const DEFAULT_NETWORK_SECRET: &str = "kappalog/public";
/// The tag hashed with the secret into the psk.
const NETWORK_KEY_TAG: &[u8] = b"kappalog/network/v2";
/// Bytes of the opening frame (4-byte length + bincode `Hello`): the variant tag, the version
/// 2 in one varint byte, then author and nonce as 32-byte strings with a 1-byte length.
pub const OPENING_FRAME_BYTES: usize = 4 + 1 + 1 + 33 + 33;
/// The most bytes read of a peer's opening: the longest `Hello` frame (in the shortest
/// encoding bincode writes), whose version of 251 or more takes 3 varint bytes. Any other
/// version must still be answered with `Bye(VersionMismatch)`, so the bound admits every
/// `u16`; it keeps a stranger from making us buffer more before it proved anything.
pub const MAX_OPENING_FRAME_BYTES: usize = 4 + 1 + 3 + 33 + 33;
/// The shortest record after the handshake: one byte of ciphertext and the tag. A shorter one
/// cannot be a Noise transport message.
pub const MIN_RECORD_BYTES: usize = TAG_BYTES + 1;
/// The shortest handshake record (the one-byte refusal).
const MIN_HANDSHAKE_RECORD_BYTES: usize = 1;
/// The largest record body (a Noise message).
pub const MAX_RECORD_BYTES: usize = 65_535;
/// Noise's authentication tag.
pub const TAG_BYTES: usize = 16;
/// The most plaintext one record carries.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD_BYTES - TAG_BYTES;
/// A handshake record of this one byte: "your first message did not open under my network
/// key".
pub const REFUSE_DIFFERENT_NETWORK: u8 = 1;
/// Noise handshake messages of this pattern (32-byte ephemeral + 16-byte tag).
const HANDSHAKE_MESSAGE_BYTES: usize = 48;
/// Raw bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The pre-shared key all nodes of one network hold: sha256 of a tag and the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkKey([u8; 32]);

impl NetworkKey {
    /// The key of the network whose operators share `secret` (`--network-secret`).
    pub fn from_secret(secret: &str) -> NetworkKey {
        let mut hasher = Sha256::new();
        hasher.update(NETWORK_KEY_TAG);
        hasher.update(secret.as_bytes());
        NetworkKey(hasher.finalize().into())
    }
}

impl Default for NetworkKey {
    fn default() -> Self {
        NetworkKey::from_secret(DEFAULT_NETWORK_SECRET)
    }
}

impl std::fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key: it is the network's secret.
        f.write_str("NetworkKey(..)")
    }
}

/// Which side of the Noise handshake we play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We dialed.
    Initiator,
    /// We accepted.
    Responder,
}

/// Why the encrypted channel could not be opened or broke. The opening's and handshake's
/// variants come before any identity is known.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection before its opening frame was complete.
    #[error("peer closed the connection during the opening")]
    ClosedEarly,
    /// The peer's opening is not a frame (bad length prefix or undecodable message).
    #[error("bad opening: {0}")]
    BadOpening(FrameError),
    /// The peer's opening is a frame but not a `Hello` or `Bye`, or too long to be one.
    #[error("unexpected opening message (expected a version Hello)")]
    UnexpectedOpening,
    /// The peer's `Hello` names another protocol version; we answered `Bye(VersionMismatch)`.
    #[error("unsupported protocol version {theirs} (this node speaks {ours})")]
    UnsupportedVersion {
        /// The version we opened with (dialing), or the highest we speak (answering).
        ours: u16,
        /// The version the peer's opening names.
        theirs: u16,
    },
    /// The peer answered the opening with `Bye` and this reason (e.g. `Busy`, or a v1 node's
    /// `VersionMismatch`).
    #[error("peer refused: {0:?}")]
    PeerBye(ByeReason),
    /// We are the responder, and the initiator's first handshake message does not open under
    /// our network key.
    #[error("different network: the peer's handshake did not open under our network secret")]
    DifferentNetwork,
    /// We are the initiator, and the responder refused with [`REFUSE_DIFFERENT_NETWORK`].
    #[error("peer refused: different network (it holds another network secret)")]
    PeerDifferentNetwork,
    /// The responder refused with a one-byte code this version does not know (carried).
    #[error("peer refused the handshake with code {0}")]
    PeerRefused(u8),
    /// The Noise handshake failed for another reason (snow's message carried).
    #[error("handshake failed: {0}")]
    Noise(String),
    /// A record's length prefix is outside what its phase allows; nothing is read past it.
    #[error("record of {len} bytes is outside {min}..={max}")]
    BadRecordLength {
        /// The length the prefix claims, in bytes.
        len: usize,
        /// The shortest record allowed now, in bytes.
        min: usize,
        /// The longest record allowed now, in bytes.
        max: usize,
    },
    /// A transport record failed authentication; the session ends and its plaintext is
    /// never used.
    #[error("record {index} failed to decrypt: damaged or tampered in transit")]
    Decrypt {
        /// The record's index in its direction (its nonce), from 0.
        index: u64,
    },
    /// The peer closed the connection with part of a record unread.
    #[error("connection closed in the middle of a record ({buffered} bytes buffered)")]
    ClosedMidRecord {
        /// Bytes of the incomplete record received.
        buffered: usize,
    },
    /// The u64 record counter of one direction ran out; the nonce must never repeat.
    #[error("record counter exhausted")]
    NonceExhausted,
}

/// The opening frame of this node's highest version, [`PROTOCOL_VERSION`].
pub fn opening_frame() -> Vec<u8> {
    opening_frame_of(PROTOCOL_VERSION)
}

impl TransportError {
    /// The peer's version, if it is one we speak below the one we opened with: a dialer that
    /// opened with 4 reached a v3 (or v2) node, and redials with its version
    /// ([`super::opening`]).
    pub fn older_version(&self) -> Option<u16> {
        match self {
            TransportError::UnsupportedVersion { ours, theirs }
                if theirs < ours && opening::speaks(*theirs, *ours) =>
            {
                Some(*theirs)
            }
            _ => None,
        }
    }
}

/// The outcome of an established channel: its two halves and the handshake hash.
pub struct Channel<R, W> {
    /// The receiving half: decrypts the peer's records into the frame stream.
    pub reader: SecureReader<R>,
    /// The sending half: encrypts our frame stream into records.
    pub writer: SecureWriter<W>,
    /// The Noise handshake hash: unique to this session, signed by both identities.
    pub binding: [u8; 32],
    /// The protocol version both openings agreed on: what both `Hello`s carry.
    pub version: u16,
}

/// [`negotiate`] at this node's highest version, [`PROTOCOL_VERSION`].
pub async fn establish<R, W>(
    read: R,
    write: W,
    role: Role,
    network: &NetworkKey,
) -> Result<Channel<R, W>, TransportError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    negotiate(read, write, role, network, PROTOCOL_VERSION).await
}

/// Runs the opening and the Noise handshake over `read`/`write`. Timeouts are the caller's.
///
/// `version` is, for the initiator, the version it opens with, and for the responder the
/// highest it speaks (see [`super::opening`]). At [`V2`] either side runs v2's opening byte
/// for byte: it writes its opening at once and accepts only 2.
pub async fn negotiate<R, W>(
    mut read: R,
    mut write: W,
    role: Role,
    network: &NetworkKey,
    version: u16,
) -> Result<Channel<R, W>, TransportError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut raw = Vec::new();
    let (version, prologue) =
        exchange_openings(&mut read, &mut write, &mut raw, role, version).await?;
    let mut noise = noise_state(role, network, &prologue)?;
    let mut message = [0u8; HANDSHAKE_MESSAGE_BYTES + 16];
    match role {
        Role::Initiator => {
            let n = noise
                .write_message(&[], &mut message)
                .map_err(noise_error)?;
            write_record(&mut write, &message[..n]).await?;
            let reply = read_record(&mut read, &mut raw).await?;
            if reply.len() == 1 {
                return Err(match reply[0] {
                    REFUSE_DIFFERENT_NETWORK => TransportError::PeerDifferentNetwork,
                    code => TransportError::PeerRefused(code),
                });
            }
            noise
                .read_message(&reply, &mut message)
                .map_err(noise_error)?;
        }
        Role::Responder => {
            let first = read_record(&mut read, &mut raw).await?;
            if noise.read_message(&first, &mut message).is_err() {
                let _ = write_record(&mut write, &[REFUSE_DIFFERENT_NETWORK]).await;
                let _ = write.shutdown().await;
                return Err(TransportError::DifferentNetwork);
            }
            let n = noise
                .write_message(&[], &mut message)
                .map_err(noise_error)?;
            write_record(&mut write, &message[..n]).await?;
        }
    }
    let binding: [u8; 32] = noise
        .get_handshake_hash()
        .try_into()
        .map_err(|_| TransportError::Noise("handshake hash is not 32 bytes".into()))?;
    let cipher = Arc::new(noise.into_stateless_transport_mode().map_err(noise_error)?);
    Ok(Channel {
        reader: SecureReader {
            inner: read,
            cipher: cipher.clone(),
            next_index: 0,
            raw,
            plain: Vec::new(),
            plain_pos: 0,
        },
        writer: SecureWriter {
            inner: write,
            cipher,
            next_index: 0,
            out: Vec::new(),
        },
        binding,
        version,
    })
}

/// Sends our opening and reads the peer's, in the order `role` and `version` ask (see
/// [`negotiate`]); the session's version and its Noise prologue. Bytes read past the peer's
/// opening stay in `raw`.
async fn exchange_openings<R, W>(
    read: &mut R,
    write: &mut W,
    raw: &mut Vec<u8>,
    role: Role,
    version: u16,
) -> Result<(u16, Vec<u8>), TransportError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if version <= V2 || role == Role::Initiator {
        // Ours goes out at once (a v2 node's way, and the dialer's); theirs must match it.
        let ours = opening_frame_of(version.max(V2));
        write.write_all(&ours).await?;
        let theirs = read_opening(read, raw).await?;
        if theirs.version != version.max(V2) {
            return Err(refuse_version(write, version.max(V2), theirs.version).await);
        }
        let (dialer, responder) = match role {
            Role::Initiator => (&ours, &theirs.bytes),
            Role::Responder => (&theirs.bytes, &ours),
        };
        Ok((
            theirs.version,
            opening::prologue(theirs.version, dialer, responder),
        ))
    } else {
        // The responder reads first, so a v2 dialer hears a v2 opening.
        let theirs = read_opening(read, raw).await?;
        let Some(agreed) = opening::answer(theirs.version, version) else {
            write.write_all(&opening_frame_of(version)).await?;
            return Err(refuse_version(write, version, theirs.version).await);
        };
        let ours = opening_frame_of(agreed);
        write.write_all(&ours).await?;
        Ok((agreed, opening::prologue(agreed, &theirs.bytes, &ours)))
    }
}

fn noise_error(e: snow::Error) -> TransportError {
    TransportError::Noise(e.to_string())
}

fn noise_state(
    role: Role,
    network: &NetworkKey,
    prologue: &[u8],
) -> Result<HandshakeState, TransportError> {
    // The parameter string is a constant this module controls.
    let params = NOISE_PARAMS.parse().map_err(noise_error)?;
    let builder = snow::Builder::new(params)
        .prologue(prologue)
        .map_err(noise_error)?
        .psk(0, &network.0)
        .map_err(noise_error)?;
    match role {
        Role::Initiator => builder.build_initiator(),
        Role::Responder => builder.build_responder(),
    }
    .map_err(noise_error)
}

/// The peer's opening: the version its `Hello` names and the frame's bytes as they crossed
/// the wire (a v3 session's prologue holds them).
struct PeerOpening {
    version: u16,
    bytes: Vec<u8>,
}

/// Reads the peer's opening frame, bounded by [`MAX_OPENING_FRAME_BYTES`]. Bytes read past it
/// stay in `raw`: they begin the first handshake record.
async fn read_opening<R>(read: &mut R, raw: &mut Vec<u8>) -> Result<PeerOpening, TransportError>
where
    R: AsyncRead + Unpin,
{
    let (message, bytes) = loop {
        // A whole frame is in once its announced length is; keep its bytes before decoding
        // takes them.
        let whole = frame_len(raw)
            .ok()
            .flatten()
            .map(|len| LENGTH_PREFIX_BYTES + len)
            .filter(|&end| end <= raw.len())
            .map(|end| raw[..end].to_vec());
        match decode_frame(raw) {
            Ok(Some(message)) => break (message, whole.unwrap_or_default()),
            Ok(None) => {}
            Err(e) => return Err(TransportError::BadOpening(e)),
        }
        // A Hello of any version, or a v1 peer's Bye, fits in the bound; a frame announcing
        // more is no opening, and the bound keeps a stranger from making us buffer more.
        let announced = frame_len(raw).map_err(TransportError::BadOpening)?;
        if raw.len() >= MAX_OPENING_FRAME_BYTES
            || announced.is_some_and(|len| LENGTH_PREFIX_BYTES + len > MAX_OPENING_FRAME_BYTES)
        {
            return Err(TransportError::UnexpectedOpening);
        }
        let mut byte = [0u8; MAX_OPENING_FRAME_BYTES];
        let want = MAX_OPENING_FRAME_BYTES - raw.len();
        let n = read.read(&mut byte[..want]).await?;
        if n == 0 {
            return Err(TransportError::ClosedEarly);
        }
        raw.extend_from_slice(&byte[..n]);
    };
    match message {
        Message::Hello(hello) => Ok(PeerOpening {
            version: hello.version,
            bytes,
        }),
        Message::Bye(bye) => Err(TransportError::PeerBye(bye.reason)),
        _ => Err(TransportError::UnexpectedOpening),
    }
}

/// Answers an opening of a version we do not speak (here: other than `ours`) with the
/// plaintext `Bye(VersionMismatch)` and closes; the error to return.
async fn refuse_version<W: AsyncWrite + Unpin>(
    write: &mut W,
    ours: u16,
    theirs: u16,
) -> TransportError {
    if let Ok(bye) = encode_frame(&Message::Bye(Bye {
        reason: ByeReason::VersionMismatch,
    })) {
        let _ = write.write_all(&bye).await;
        let _ = write.shutdown().await;
    }
    TransportError::UnsupportedVersion { ours, theirs }
}

async fn write_record<W: AsyncWrite + Unpin>(
    write: &mut W,
    body: &[u8],
) -> Result<(), TransportError> {
    let len = u16::try_from(body.len()).map_err(|_| TransportError::BadRecordLength {
        len: body.len(),
        min: MIN_HANDSHAKE_RECORD_BYTES,
        max: MAX_RECORD_BYTES,
    })?;
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    write.write_all(&out).await?;
    Ok(())
}

/// The body of the next complete record in `raw`, if there is one (removed from `raw`).
fn take_record(raw: &mut Vec<u8>) -> Result<Option<Vec<u8>>, TransportError> {
    let Some(prefix) = raw.get(..2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if len < MIN_HANDSHAKE_RECORD_BYTES {
        return Err(TransportError::BadRecordLength {
            len,
            min: MIN_HANDSHAKE_RECORD_BYTES,
            max: MAX_RECORD_BYTES,
        });
    }
    let Some(body) = raw.get(2..2 + len) else {
        return Ok(None);
    };
    let body = body.to_vec();
    raw.drain(..2 + len);
    Ok(Some(body))
}

/// Reads one whole handshake record.
async fn read_record<R: AsyncRead + Unpin>(
    read: &mut R,
    raw: &mut Vec<u8>,
) -> Result<Vec<u8>, TransportError> {
    loop {
        if let Some(body) = take_record(raw)? {
            return Ok(body);
        }
        let mut chunk = [0u8; 256];
        let n = read.read(&mut chunk).await?;
        if n == 0 {
            return Err(TransportError::ClosedMidRecord {
                buffered: raw.len(),
            });
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// The receiving half: decrypts records and hands out their plaintext.
pub struct SecureReader<R> {
    inner: R,
    cipher: Arc<StatelessTransportState>,
    /// The index (Noise nonce) the next record must have been sent with.
    next_index: u64,
    /// Ciphertext read from the socket, not yet a whole record.
    raw: Vec<u8>,
    plain: Vec<u8>,
    plain_pos: usize,
}

/// What one [`SecureReader::read_into`] brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// This many bytes of plaintext (at least one) were appended.
    Plaintext(usize),
    /// Ciphertext arrived but no record is whole yet. A frame has begun on the wire even
    /// though none of its plaintext exists before its record is complete: a caller timing
    /// frames starts the clock here, or a peer trickling one record's bytes would only ever
    /// meet the idle timeout.
    PartialRecord,
    /// The peer closed cleanly between records (or `max` was 0).
    Closed,
}

/// Where [`SecureReader::fill`] stopped.
enum Filled {
    /// Plaintext is ready to hand out.
    Plaintext,
    /// Bytes arrived, but only part of a record (only when asked to stop there).
    PartialRecord,
    /// The peer closed cleanly between records.
    Closed,
}

impl<R: AsyncRead + Unpin> SecureReader<R> {
    /// Fills `out` with plaintext, waiting for a whole record. `Ok(0)`: the peer closed
    /// cleanly between records.
    pub async fn read(&mut self, out: &mut [u8]) -> Result<usize, TransportError> {
        match self.fill(false).await? {
            Filled::Plaintext => {}
            Filled::PartialRecord | Filled::Closed => return Ok(0),
        }
        let n = out.len().min(self.plain.len() - self.plain_pos);
        out[..n].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        Ok(n)
    }

    /// Appends at most `max` bytes of plaintext to `out`, or says that only part of a record
    /// arrived (see [`Received`]).
    ///
    /// Cancel-safe: a future dropped while it waits on the socket has taken nothing out of
    /// the stream and left `out` as it was, so a caller may poll it once and drop it (see
    /// `FrameReader::next_ready`).
    pub async fn read_into(
        &mut self,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Received, TransportError> {
        if max == 0 {
            return Ok(Received::Closed);
        }
        match self.fill(true).await? {
            Filled::Plaintext => {}
            Filled::PartialRecord => return Ok(Received::PartialRecord),
            Filled::Closed => return Ok(Received::Closed),
        }
        let n = max.min(self.plain.len() - self.plain_pos);
        out.extend_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        Ok(Received::Plaintext(n))
    }

    /// Whether ciphertext of a record that is not whole yet is buffered: the peer has begun
    /// sending a frame.
    pub fn has_partial_record(&self) -> bool {
        !self.raw.is_empty()
    }

    /// Waits until plaintext is ready to hand out, or, with `stop_at_partial`, until a socket
    /// read brought bytes that complete no record. The one await is a socket read into
    /// `raw`'s spare capacity, which changes `raw` only once bytes have arrived, so dropping
    /// this future loses nothing.
    async fn fill(&mut self, stop_at_partial: bool) -> Result<Filled, TransportError> {
        let mut read_some = false;
        loop {
            if self.plain_pos < self.plain.len() {
                return Ok(Filled::Plaintext);
            }
            self.plain.clear();
            self.plain_pos = 0;
            self.decrypt_buffered()?;
            if !self.plain.is_empty() {
                continue;
            }
            if read_some && stop_at_partial {
                return Ok(Filled::PartialRecord);
            }
            self.raw.reserve(READ_CHUNK_BYTES);
            let n = self.inner.read_buf(&mut self.raw).await?;
            if n == 0 {
                return if self.raw.is_empty() {
                    Ok(Filled::Closed)
                } else {
                    Err(TransportError::ClosedMidRecord {
                        buffered: self.raw.len(),
                    })
                };
            }
            read_some = true;
        }
    }

    /// Decrypts every whole record in the raw buffer into the plaintext buffer.
    fn decrypt_buffered(&mut self) -> Result<(), TransportError> {
        let mut pos = 0;
        while let Some(prefix) = self.raw.get(pos..pos + 2) {
            let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
            if len < MIN_RECORD_BYTES {
                return Err(TransportError::BadRecordLength {
                    len,
                    min: MIN_RECORD_BYTES,
                    max: MAX_RECORD_BYTES,
                });
            }
            let Some(body) = self.raw.get(pos + 2..pos + 2 + len) else {
                break;
            };
            let start = self.plain.len();
            self.plain.resize(start + len - TAG_BYTES, 0);
            let index = self.next_index;
            let n = self
                .cipher
                .read_message(index, body, &mut self.plain[start..])
                .map_err(|_| TransportError::Decrypt { index })?;
            self.plain.truncate(start + n);
            self.next_index = index.checked_add(1).ok_or(TransportError::NonceExhausted)?;
            pos += 2 + len;
        }
        self.raw.drain(..pos);
        Ok(())
    }
}

/// The sending half: encrypts plaintext into records.
pub struct SecureWriter<W> {
    inner: W,
    cipher: Arc<StatelessTransportState>,
    next_index: u64,
    out: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> SecureWriter<W> {
    /// Encrypts `plaintext` into records and writes them all.
    pub async fn write_all(&mut self, plaintext: &[u8]) -> Result<(), TransportError> {
        self.out.clear();
        for chunk in plaintext.chunks(MAX_RECORD_PLAINTEXT) {
            let len = chunk.len() + TAG_BYTES;
            // `chunk.len() <= MAX_RECORD_PLAINTEXT`, so `len <= u16::MAX`.
            let prefix = u16::try_from(len).map_err(|_| TransportError::BadRecordLength {
                len,
                min: MIN_RECORD_BYTES,
                max: MAX_RECORD_BYTES,
            })?;
            self.out.extend_from_slice(&prefix.to_be_bytes());
            let start = self.out.len();
            self.out.resize(start + len, 0);
            let index = self.next_index;
            self.cipher
                .write_message(index, chunk, &mut self.out[start..])
                .map_err(noise_error)?;
            self.next_index = index.checked_add(1).ok_or(TransportError::NonceExhausted)?;
        }
        self.inner.write_all(&self.out).await?;
        Ok(())
    }

    /// Flushes the socket (records are written whole by [`SecureWriter::write_all`]).
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        self.inner.flush().await?;
        Ok(())
    }

    /// Shuts down the socket's write side: the peer reads end of stream after our last record.
    pub async fn shutdown(&mut self) -> Result<(), TransportError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Author;
    use crate::sync::message::{Hello, Nonce};
    use tokio::io::{duplex, split, DuplexStream, ReadHalf, WriteHalf};

    type Half = (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>);

    async fn pair(
        a_net: &NetworkKey,
        b_net: &NetworkKey,
    ) -> (
        Result<Channel<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>, TransportError>,
        Result<Channel<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>, TransportError>,
    ) {
        let (a, b) = duplex(1 << 20);
        let (ar, aw): Half = split(a);
        let (br, bw): Half = split(b);
        tokio::join!(
            establish(ar, aw, Role::Initiator, a_net),
            establish(br, bw, Role::Responder, b_net)
        )
    }

    #[test]
    fn opening_is_a_v1_hello_of_the_stated_size() {
        let frame = opening_frame();
        assert_eq!(frame.len(), OPENING_FRAME_BYTES);
        let mut buf = frame.clone();
        assert!(matches!(
            decode_frame(&mut buf),
            Ok(Some(Message::Hello(Hello { version: 4, .. })))
        ));
    }

    #[test]
    fn network_key_depends_on_the_secret_and_is_not_printed() {
        assert_ne!(NetworkKey::from_secret("a"), NetworkKey::from_secret("b"));
        assert_eq!(
            NetworkKey::default(),
            NetworkKey::from_secret(DEFAULT_NETWORK_SECRET)
        );
        assert_eq!(
            format!("{:?}", NetworkKey::from_secret("hunter2")),
            "NetworkKey(..)"
        );
    }

    #[tokio::test]
    async fn same_network_establishes_and_carries_bytes_both_ways() {
        let net = NetworkKey::from_secret("n");
        let (a, b) = pair(&net, &net).await;
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.binding, b.binding);
        // More than one record's worth, so records split and join.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let send = big.clone();
        let writer = tokio::spawn(async move {
            a.writer.write_all(&send).await.unwrap();
            a.writer.write_all(b"tail").await.unwrap();
            a.writer.shutdown().await.unwrap();
            a
        });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 10_000];
        loop {
            let n = b.reader.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(&got[big.len()..], b"tail");
    }

    #[tokio::test]
    async fn different_networks_are_refused_on_both_sides() {
        let (a, b) = pair(&NetworkKey::from_secret("x"), &NetworkKey::from_secret("y")).await;
        assert!(matches!(a, Err(TransportError::PeerDifferentNetwork)));
        assert!(matches!(b, Err(TransportError::DifferentNetwork)));
    }

    #[tokio::test]
    async fn a_v1_hello_is_refused_with_version_mismatch() {
        let (ours, mut theirs) = duplex(4096);
        let (r, w) = split(ours);
        let v1 = Message::Hello(Hello {
            version: 1,
            author: Author([5; 32]),
            nonce: Nonce([6; 32]),
        });
        theirs.write_all(&encode_frame(&v1).unwrap()).await.unwrap();
        let result = establish(r, w, Role::Responder, &NetworkKey::default()).await;
        assert!(matches!(
            result,
            Err(TransportError::UnsupportedVersion { ours: 4, theirs: 1 })
        ));
        // What the v1 peer reads: our opening, then Bye(VersionMismatch).
        let mut buf = Vec::new();
        theirs.read_to_end(&mut buf).await.unwrap();
        assert!(matches!(
            decode_frame(&mut buf),
            Ok(Some(Message::Hello(_)))
        ));
        assert_eq!(
            decode_frame(&mut buf),
            Ok(Some(Message::Bye(Bye {
                reason: ByeReason::VersionMismatch
            })))
        );
    }

    /// What a peer that opened with `opening` reads back from a responder, and how the
    /// responder's `establish` ended.
    async fn answer_to(opening: &[u8]) -> (Result<(), TransportError>, Vec<Message>) {
        let (ours, mut theirs) = duplex(4096);
        let (r, w) = split(ours);
        theirs.write_all(opening).await.unwrap();
        // Nothing more follows: a responder waiting for more reads the end instead of hanging.
        theirs.shutdown().await.unwrap();
        let result = establish(r, w, Role::Responder, &NetworkKey::default())
            .await
            .map(|_| ());
        let mut buf = Vec::new();
        theirs.read_to_end(&mut buf).await.unwrap();
        let mut got = Vec::new();
        while let Ok(Some(message)) = decode_frame(&mut buf) {
            got.push(message);
        }
        (result, got)
    }

    /// Pairs of `negotiate` over a pipe: the dialer opening with `dial`, the responder
    /// speaking up to `max`; `relay` may change the bytes from dialer to responder.
    async fn negotiated(
        dial: u16,
        max: u16,
        tamper: Option<usize>,
    ) -> (
        Result<PipeChannel, TransportError>,
        Result<PipeChannel, TransportError>,
    ) {
        let net = NetworkKey::default();
        let (a, a_far) = duplex(1 << 16);
        let (b, b_far) = duplex(1 << 16);
        let ((ar, aw), (br, bw)) = (split(a), split(b));
        // The path: a_far <-> b_far, the dialer's first bytes possibly flipped at `tamper`.
        let (mut afr, mut afw) = split(a_far);
        let (mut bfr, mut bfw) = split(b_far);
        let forward = async move {
            let mut seen = 0usize;
            let mut buf = [0u8; 4096];
            loop {
                let n = match afr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Some(at) = tamper.filter(|&at| (seen..seen + n).contains(&at)) {
                    buf[at - seen] ^= 0x01;
                }
                seen += n;
                if bfw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = bfw.shutdown().await;
        };
        let back = async move {
            let _ = tokio::io::copy(&mut bfr, &mut afw).await;
            let _ = afw.shutdown().await;
        };
        let path = tokio::spawn(async move { tokio::join!(forward, back) });
        let result = tokio::join!(
            negotiate(ar, aw, Role::Initiator, &net, dial),
            negotiate(br, bw, Role::Responder, &net, max)
        );
        path.abort();
        result
    }

    type PipeChannel = Channel<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>;

    #[tokio::test]
    async fn a_responder_answers_a_v2_opening_with_v2_and_a_v3_one_with_v3() {
        for (dial, max, agreed) in [
            (2, 3, 2),
            (3, 3, 3),
            (2, 2, 2),
            (2, 4, 2),
            (3, 4, 3),
            (4, 4, 4),
        ] {
            let (a, b) = negotiated(dial, max, None).await;
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!((a.version, b.version), (agreed, agreed), "{dial} to {max}");
            assert_eq!(a.binding, b.binding);
        }
    }

    /// A node held to v2 writes its v2 opening at once and refuses our v3 one; the dialer
    /// reads "2": a version it speaks, below the one it opened with.
    #[tokio::test]
    async fn a_v3_dialer_meeting_a_v2_node_learns_it_speaks_2() {
        let (a, b) = negotiated(3, 2, None).await;
        let a = a.err().unwrap();
        assert!(
            matches!(a, TransportError::UnsupportedVersion { ours: 3, theirs: 2 }),
            "{a:?}"
        );
        assert_eq!(a.older_version(), Some(2));
        let b = b.err().unwrap();
        assert!(
            matches!(b, TransportError::UnsupportedVersion { ours: 2, theirs: 3 }),
            "{b:?}"
        );
        assert_eq!(b.older_version(), None);
    }

    /// A node held to v3 reads our v4 opening, answers with its own v3 one and refuses; the
    /// v4 dialer reads "3" and redials with it.
    #[tokio::test]
    async fn a_v4_dialer_meeting_a_v3_node_learns_it_speaks_3() {
        let (a, b) = negotiated(4, 3, None).await;
        let a = a.err().unwrap();
        assert!(
            matches!(a, TransportError::UnsupportedVersion { ours: 4, theirs: 3 }),
            "{a:?}"
        );
        assert_eq!(a.older_version(), Some(3));
        let b = b.err().unwrap();
        assert!(
            matches!(b, TransportError::UnsupportedVersion { ours: 3, theirs: 4 }),
            "{b:?}"
        );
        assert_eq!(b.older_version(), None);
    }

    /// A v3 session's prologue holds both openings: a byte changed on the path (here in the
    /// author field of the dialer's opening, which still decodes to a v3 `Hello`) fails the
    /// handshake. A v2 session binds no opening: the same change goes unnoticed there,
    /// as it does between v2 nodes.
    #[tokio::test]
    async fn a_changed_opening_fails_a_v3_handshake_but_not_a_v2_one() {
        for version in [3, 4] {
            let (a, b) = negotiated(version, version, Some(10)).await;
            assert!(a.is_err() && b.is_err(), "{:?} {:?}", a.err(), b.err());
        }
        let (a, b) = negotiated(2, 3, Some(10)).await;
        assert!(a.is_ok() && b.is_ok());
    }

    /// Every version but ours is answered, including those of 251 and above, whose varint
    /// takes 3 bytes and makes the frame 74 bytes, longer than our own opening.
    #[tokio::test]
    async fn an_opening_of_any_other_version_is_answered_with_version_mismatch() {
        for version in [0, 1, 5, 250, 251, 300, u16::MAX] {
            let hello = Message::Hello(Hello {
                version,
                author: Author([5; 32]),
                nonce: Nonce([6; 32]),
            });
            let frame = encode_frame(&hello).unwrap();
            assert!(frame.len() <= MAX_OPENING_FRAME_BYTES);
            let (result, got) = answer_to(&frame).await;
            assert!(
                matches!(
                    result,
                    Err(TransportError::UnsupportedVersion { ours: 4, theirs }) if theirs == version
                ),
                "version {version}: {result:?}"
            );
            assert_eq!(
                got[1..],
                [Message::Bye(Bye {
                    reason: ByeReason::VersionMismatch
                })],
                "version {version}"
            );
        }
        let longest = Message::Hello(Hello {
            version: 300,
            author: Author([5; 32]),
            nonce: Nonce([6; 32]),
        });
        assert_eq!(
            encode_frame(&longest).unwrap().len(),
            MAX_OPENING_FRAME_BYTES
        );
    }

    /// A length prefix announcing more than the longest `Hello` is refused at once, without
    /// waiting for (or buffering) the body it announces.
    #[tokio::test]
    async fn an_opening_announcing_more_than_a_hello_is_refused_at_once() {
        let too_long = u32::try_from(MAX_OPENING_FRAME_BYTES - LENGTH_PREFIX_BYTES + 1).unwrap();
        let (result, got) = answer_to(&too_long.to_be_bytes()).await;
        assert!(
            matches!(result, Err(TransportError::UnexpectedOpening)),
            "{result:?}"
        );
        // A responder writes its opening only once it has read the dialer's.
        assert!(got.is_empty(), "nothing: {got:?}");
    }

    #[tokio::test]
    async fn a_flipped_byte_fails_to_decrypt_and_yields_nothing() {
        let net = NetworkKey::default();
        let (a, b) = pair(&net, &net).await;
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        a.writer.write_all(b"first").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(b.reader.read(&mut buf).await.unwrap(), 5);
        // Tamper: encrypt a record, flip a byte, and feed it to the reader's buffer.
        let mut tampered = Vec::new();
        let mut forged = SecureWriter {
            inner: &mut tampered,
            cipher: a.writer.cipher.clone(),
            next_index: a.writer.next_index,
            out: Vec::new(),
        };
        forged.write_all(b"second").await.unwrap();
        tampered[5] ^= 1;
        b.reader.raw.extend_from_slice(&tampered);
        assert!(matches!(
            b.reader.read(&mut buf).await,
            Err(TransportError::Decrypt { index: 1 })
        ));
    }

    /// After the handshake a record holds at least one byte and the tag: the error names the
    /// range the length broke.
    #[tokio::test]
    async fn a_record_shorter_than_its_tag_names_the_range_it_breaks() {
        let net = NetworkKey::default();
        let (_a, b) = pair(&net, &net).await;
        let mut b = b.unwrap();
        b.reader.raw.extend_from_slice(&[0, 16]);
        b.reader.raw.extend_from_slice(&[0; 16]);
        let mut buf = [0u8; 64];
        let error = b.reader.read(&mut buf).await.unwrap_err();
        assert!(matches!(
            error,
            TransportError::BadRecordLength {
                len: 16,
                min: 17,
                max: 65_535
            }
        ));
        assert_eq!(
            error.to_string(),
            "record of 16 bytes is outside 17..=65535"
        );
    }

    #[tokio::test]
    async fn a_replayed_record_fails_to_decrypt() {
        let net = NetworkKey::default();
        let (a, b) = pair(&net, &net).await;
        let (a, mut b) = (a.unwrap(), b.unwrap());
        let mut first = Vec::new();
        let mut w = SecureWriter {
            inner: &mut first,
            cipher: a.writer.cipher.clone(),
            next_index: 0,
            out: Vec::new(),
        };
        w.write_all(b"once").await.unwrap();
        b.reader.raw.extend_from_slice(&first);
        b.reader.raw.extend_from_slice(&first);
        let mut buf = [0u8; 64];
        assert!(matches!(
            b.reader.read(&mut buf).await,
            Err(TransportError::Decrypt { index: 1 })
        ));
    }
}
