//! Frames: a u32 big-endian body length, then one bincode 2 encoded [`Message`]
//! (docs/PROTOCOL.md section 3).
//!
//! [`decode_frame`] works on a growing byte buffer the way mini-redis' `Frame::check` does:
//! `Ok(None)` means "not enough bytes yet" (not an error: the caller reads more), `Ok(Some)`
//! consumes exactly one frame from the front of the buffer. The length is checked against
//! [`MAX_FRAME_BYTES`] as soon as its 4 bytes are present, before the caller has any reason to
//! buffer (or allocate for) the body, so a hostile length costs nothing. The body is decoded
//! under a bincode byte limit of the same size, must be used entirely, and the decoded message
//! must pass [`Message::check_rules`].

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};

use super::message::{Message, MessageError, MAX_FRAME_BYTES};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

type WireConfig = Configuration<LittleEndian, Varint, Limit<MAX_FRAME_BYTES>>;

/// The one bincode configuration of the protocol.
fn wire_config() -> WireConfig {
    config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// Why bytes are not a valid frame. Every variant ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is 0: no message is empty.
    #[error("frame length 0")]
    EmptyFrame,
    /// A body over [`MAX_FRAME_BYTES`]: a peer's length prefix (refused before the body is
    /// buffered), or our own message (refused before it is sent).
    #[error("frame length {len} exceeds the limit of {MAX_FRAME_BYTES} bytes")]
    TooLarge {
        /// The length the prefix claims, in bytes.
        len: u64,
    },
    /// The body is not a bincode message (bincode's message carried).
    #[error("frame body does not decode: {0}")]
    Undecodable(String),
    /// The body holds more than one message.
    #[error("{extra} bytes left over after the message in the frame body")]
    TrailingBytes {
        /// Bytes after the message.
        extra: usize,
    },
    /// The message breaks a rule of its own (e.g. an empty batch), whether the peer's or
    /// ours about to be sent.
    #[error("message breaks a protocol rule: {0}")]
    Rule(#[from] MessageError),
    /// bincode refused to encode our own message (its message carried); never the peer's
    /// doing.
    #[error("message does not encode: {0}")]
    Unencodable(String),
}

/// Encodes a message as one frame (length prefix and body). Refuses a message the peer would
/// refuse: one that breaks a rule or whose body exceeds [`MAX_FRAME_BYTES`].
pub fn encode_frame(message: &Message) -> Result<Vec<u8>, FrameError> {
    message.check_rules()?;
    let body = bincode::serde::encode_to_vec(message, wire_config())
        .map_err(|e| FrameError::Unencodable(e.to_string()))?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| usize::try_from(len).is_ok_and(|l| l <= MAX_FRAME_BYTES))
        .ok_or(FrameError::TooLarge {
            len: u64::try_from(body.len()).unwrap_or(u64::MAX),
        })?;
    let mut frame = Vec::with_capacity(LENGTH_PREFIX_BYTES + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// The body length announced at the front of `buf`, checked against the limit; `Ok(None)`
/// while fewer than 4 bytes are buffered.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let mut bytes = [0u8; LENGTH_PREFIX_BYTES];
    bytes.copy_from_slice(prefix);
    let len = u32::from_be_bytes(bytes);
    if len == 0 {
        return Err(FrameError::EmptyFrame);
    }
    match usize::try_from(len) {
        Ok(len) if len <= MAX_FRAME_BYTES => Ok(Some(len)),
        _ => Err(FrameError::TooLarge {
            len: u64::from(len),
        }),
    }
}

/// Decodes one frame from the front of `buf` and removes it. `Ok(None)`: the frame is not
/// complete yet (nothing is consumed). On error the buffer is left as it was; the session ends.
pub fn decode_frame(buf: &mut Vec<u8>) -> Result<Option<Message>, FrameError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    // len <= MAX_FRAME_BYTES, so the sum cannot overflow.
    let end = LENGTH_PREFIX_BYTES + len;
    let Some(body) = buf.get(LENGTH_PREFIX_BYTES..end) else {
        return Ok(None);
    };
    let (message, used): (Message, usize) = bincode::serde::decode_from_slice(body, wire_config())
        .map_err(|e| FrameError::Undecodable(e.to_string()))?;
    if used != len {
        return Err(FrameError::TrailingBytes {
            extra: len.saturating_sub(used),
        });
    }
    message.check_rules()?;
    buf.drain(..end);
    Ok(Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::UnsignedEntry;
    use crate::hash::Hash;
    use crate::identity::{Author, Identity, Signature};
    use crate::sync::message::*;
    use crate::sync::reconcile::{Bound, Range, RangeMode, Reconcile};
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        let id = Identity::from_seed([1; 32]);
        let (entry, _) = UnsignedEntry {
            author: id.author(),
            seq: 1,
            timestamp: 5,
            prev: None,
            value: -3,
            data: "hello".into(),
        }
        .sign(&id);
        vec![
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                author: id.author(),
                nonce: Nonce([9; 32]),
            }),
            Message::Auth(Auth {
                signature: Signature([3; 64]),
            }),
            Message::Reconcile(Reconcile {
                ranges: vec![Range {
                    upper: Bound::End,
                    mode: RangeMode::Items(vec![FeedHave {
                        author: Author([1; 32]),
                        length: u64::MAX,
                        head: Hash([2; 32]),
                    }]),
                }],
                last: true,
            }),
            Message::Want(Want {
                author: Author([1; 32]),
                seq: 7,
            }),
            Message::Entries(Entries {
                entries: vec![EncodedEntry::from_entry(&entry)],
            }),
            Message::Ping,
            Message::Bye(Bye {
                reason: ByeReason::Busy,
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_through_a_frame() {
        for m in samples() {
            let frame = encode_frame(&m).unwrap();
            let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 4);
            let mut buf = frame.clone();
            assert_eq!(decode_frame(&mut buf), Ok(Some(m)));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn hello_uses_raw_bytes_not_hex() {
        let m = &samples()[0];
        // variant tag, u16 varint, 1 + 32 author, 1 + 32 nonce.
        assert_eq!(encode_frame(m).unwrap().len(), 4 + 1 + 1 + 33 + 33);
    }

    #[test]
    fn entries_carry_the_fixed_encoding() {
        let m = &samples()[4];
        let Message::Entries(Entries { entries }) = m else {
            unreachable!()
        };
        let (entry, _) = entries[0].decode().unwrap();
        let frame = encode_frame(m).unwrap();
        let fixed = entry.encode();
        assert!(frame.windows(fixed.len()).any(|w| w == fixed.as_slice()));
    }

    #[test]
    fn partial_frames_need_more_bytes_and_nothing_is_consumed() {
        let frame = encode_frame(&samples()[0]).unwrap();
        for cut in 0..frame.len() {
            let mut buf = frame[..cut].to_vec();
            assert_eq!(decode_frame(&mut buf), Ok(None), "cut {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn two_frames_in_one_buffer_decode_in_order() {
        let all = samples();
        let mut buf: Vec<u8> = all.iter().flat_map(|m| encode_frame(m).unwrap()).collect();
        for m in all {
            assert_eq!(decode_frame(&mut buf), Ok(Some(m)));
        }
        assert_eq!(decode_frame(&mut buf), Ok(None));
    }

    #[test]
    fn zero_length_is_refused() {
        let mut buf = vec![0, 0, 0, 0, 1, 2];
        assert_eq!(decode_frame(&mut buf), Err(FrameError::EmptyFrame));
    }

    #[test]
    fn oversize_length_is_refused_before_the_body_arrives() {
        let too_big = u32::try_from(MAX_FRAME_BYTES + 1).unwrap();
        let mut buf = too_big.to_be_bytes().to_vec();
        assert_eq!(
            decode_frame(&mut buf),
            Err(FrameError::TooLarge {
                len: u64::from(too_big)
            })
        );
        let mut buf = u32::MAX.to_be_bytes().to_vec();
        assert!(matches!(
            decode_frame(&mut buf),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_body_is_undecodable() {
        let mut buf = vec![0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode_frame(&mut buf),
            Err(FrameError::Undecodable(_))
        ));
    }

    #[test]
    fn wrong_length_raw_field_is_undecodable() {
        // A Hello whose author byte string is 31 bytes long.
        let mut body = vec![0u8, 1, 31];
        body.extend([1u8; 31]);
        body.push(32);
        body.extend([2u8; 32]);
        let mut buf = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        buf.extend(body);
        assert!(matches!(
            decode_frame(&mut buf),
            Err(FrameError::Undecodable(_))
        ));
    }

    #[test]
    fn leftover_body_bytes_are_refused() {
        let mut frame = encode_frame(&Message::Ping).unwrap();
        frame.push(0);
        frame[3] += 1;
        assert_eq!(
            decode_frame(&mut frame),
            Err(FrameError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn rule_breaking_message_is_refused_both_ways() {
        let empty = Message::Entries(Entries { entries: vec![] });
        assert_eq!(
            encode_frame(&empty),
            Err(FrameError::Rule(MessageError::EmptyBatch))
        );
        // Hand-encode it: variant 5, empty vec.
        let mut buf = vec![0, 0, 0, 2, 5, 0];
        assert_eq!(
            decode_frame(&mut buf),
            Err(FrameError::Rule(MessageError::EmptyBatch))
        );
    }

    #[test]
    fn huge_claimed_vec_length_does_not_allocate_or_panic() {
        // Entries with a claimed count of u64::MAX in a tiny body.
        let mut buf = vec![0, 0, 0, 10, 5, 0xff];
        buf.extend(u64::MAX.to_le_bytes());
        assert!(matches!(
            decode_frame(&mut buf),
            Err(FrameError::Undecodable(_))
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut buf = bytes.clone();
            let _ = decode_frame(&mut buf);
            // With a plausible length prefix, the body is what gets fuzzed.
            let mut framed = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
            framed.extend(&bytes);
            let _ = decode_frame(&mut framed);
        }

        #[test]
        fn truncated_valid_frames_need_more_bytes(i in 0usize..7, cut in 0usize..200) {
            let frame = encode_frame(&samples()[i]).unwrap();
            let cut = cut.min(frame.len() - 1);
            let mut buf = frame[..cut].to_vec();
            prop_assert_eq!(decode_frame(&mut buf), Ok(None));
        }
    }
}
