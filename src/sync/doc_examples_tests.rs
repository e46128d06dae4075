//! The worked byte examples of docs/PROTOCOL.md, checked against the encoder.
//!
//! Every fenced block whose info string is `hex NAME` is an example: each of its lines holds
//! bytes in hex (pairs, spaces between them ignored), then optionally `|` and a note. The
//! block's bytes must be exactly what the code produces for the value [`examples`] builds
//! under that name, and decoding them must give that value back. A block without a value
//! here, or a value whose block is missing, fails too: the text and the code change
//! together or not at all.

use std::collections::BTreeMap;

use super::*;
use crate::entry::{Entry, UnsignedEntry};
use crate::fork::ForkProof;
use crate::identity::Identity;
use crate::sync::frame::{decode_frame, encode_frame};
use crate::sync::handshake::{auth_message, Handshake};
use crate::sync::opening::V2;
use crate::sync::reconcile::{fingerprint, Bound, Range, RangeMode, Reconcile};

const PROTOCOL_MD: &str = include_str!("../../docs/PROTOCOL.md");

/// What an example shows: a whole frame, or other bytes the protocol computes (what `Auth`
/// signs, a fingerprint).
enum Example {
    Frame(Message),
    Bytes(Vec<u8>),
}

/// The FORMAT.md worked-example key: the RFC 8032 secret key of 32 zero bytes.
fn format_key() -> Identity {
    Identity::from_seed([0; 32])
}

/// FORMAT.md's first worked entry: seq 1, timestamp 0, no prev, value 0, no data.
fn first_entry(value: i64) -> Entry {
    let identity = format_key();
    UnsignedEntry {
        author: identity.author(),
        seq: 1,
        timestamp: 0,
        prev: None,
        value,
        data: String::new(),
    }
    .sign(&identity)
    .0
}

fn feed(author: u8, length: u64, head: u8) -> FeedHave {
    FeedHave {
        author: Author([author; 32]),
        length,
        head: Hash([head; 32]),
    }
}

/// The handshake of the `Auth` example: the FORMAT.md key signs for the key of seed 1.
fn handshake_parties() -> (Identity, Hello, Hello, [u8; 32]) {
    let signer = format_key();
    let signer_hello = Hello {
        version: V2,
        author: signer.author(),
        nonce: Nonce([0x11; 32]),
    };
    let verifier_hello = Hello {
        version: V2,
        author: Identity::from_seed([1; 32]).author(),
        nonce: Nonce([0x22; 32]),
    };
    (signer, signer_hello, verifier_hello, [0x33; 32])
}

/// Every example the doc must hold, by name.
fn examples() -> BTreeMap<&'static str, Example> {
    let mut all = handshake_examples();
    all.extend(reconcile_examples());
    all.extend(subtree_examples());
    let proof = ForkProof::new(first_entry(0), first_entry(1));
    let bye = |reason| Example::Frame(Message::Bye(Bye { reason }));
    all.extend([
        (
            "fork-proofs",
            Example::Frame(Message::ForkProofs(ForkProofs {
                proofs: vec![EncodedProof::from_proof(&proof)],
            })),
        ),
        (
            "want",
            Example::Frame(Message::Want(Want {
                author: format_key().author(),
                seq: 300,
            })),
        ),
        (
            "entries",
            Example::Frame(Message::Entries(Entries {
                entries: vec![EncodedEntry::from_entry(&first_entry(0))],
            })),
        ),
        ("ping", Example::Frame(Message::Ping)),
        ("bye-version-mismatch", bye(ByeReason::VersionMismatch)),
        ("bye-busy", bye(ByeReason::Busy)),
        ("bye-claim-not-delivered", bye(ByeReason::ClaimNotDelivered)),
    ]);
    all
}

/// The opening, `Hello`, `Auth` and the bytes `Auth` signs.
fn handshake_examples() -> BTreeMap<&'static str, Example> {
    let (signer, signer_hello, verifier_hello, binding) = handshake_parties();
    let auth = Handshake::for_version(V2, signer_hello.author, signer_hello.nonce, binding)
        .on_hello(&signer, &verifier_hello)
        .expect("the example handshake is valid");
    let zero_hello = |version| {
        Example::Frame(Message::Hello(Hello {
            version,
            author: Author([0; 32]),
            nonce: Nonce([0; 32]),
        }))
    };
    BTreeMap::from([
        ("opening", zero_hello(V2)),
        ("opening-v3", zero_hello(3)),
        ("opening-v4", zero_hello(PROTOCOL_VERSION)),
        ("hello-v300", zero_hello(300)),
        (
            "hello",
            Example::Frame(Message::Hello(signer_hello.clone())),
        ),
        (
            "auth-message",
            Example::Bytes(auth_message(
                V2,
                &signer_hello.author,
                &signer_hello.nonce,
                &verifier_hello.author,
                &verifier_hello.nonce,
                &binding,
            )),
        ),
        ("auth", Example::Frame(Message::Auth(auth))),
    ])
}

/// Fingerprints and the three kinds of `Reconcile` frame.
fn reconcile_examples() -> BTreeMap<&'static str, Example> {
    let three = [feed(1, 1, 0xaa), feed(2, 2, 0xbb), feed(3, 3, 0xcc)];
    let mut half = [0; 32];
    half[0] = 0x80;
    let half = Bound::Author(Author(half));
    let round = |ranges: Vec<(Bound, RangeMode)>| {
        Example::Frame(Message::Reconcile(Reconcile {
            ranges: ranges
                .into_iter()
                .map(|(upper, mode)| Range { upper, mode })
                .collect(),
            last: true,
        }))
    };
    BTreeMap::from([
        (
            "fingerprint-empty",
            Example::Bytes(fingerprint(&[]).0.to_vec()),
        ),
        (
            "fingerprint-three",
            Example::Bytes(fingerprint(&three).0.to_vec()),
        ),
        (
            "reconcile",
            round(vec![
                (half, RangeMode::Fingerprint(fingerprint(&three))),
                (Bound::End, RangeMode::Items(vec![feed(0xc0, 300, 0xdd)])),
            ]),
        ),
        (
            "reconcile-reply",
            round(vec![
                (half, RangeMode::Skip),
                (Bound::End, RangeMode::ItemsReply(vec![])),
            ]),
        ),
        ("reconcile-done", round(vec![(Bound::End, RangeMode::Skip)])),
        (
            "checkpoint-reconcile-done",
            Example::Frame(Message::CheckpointReconcile(Reconcile {
                ranges: vec![Range {
                    upper: Bound::End,
                    mode: RangeMode::Skip,
                }],
                last: true,
            })),
        ),
        (
            "checkpoints",
            Example::Frame(Message::Checkpoints(Checkpoints {
                notes: vec![EncodedNote(b"(note)".to_vec())],
            })),
        ),
    ])
}

/// A `WantSubtrees`, its answer with one hash, and the empty answer.
fn subtree_examples() -> BTreeMap<&'static str, Example> {
    let want = WantSubtrees {
        author: format_key().author(),
        level: 8,
        index: 300,
        count: 1,
    };
    let hash = crate::hash::Hash::try_from([0x44; 32].as_slice()).expect("32 bytes");
    BTreeMap::from([
        ("want-subtrees", Example::Frame(Message::WantSubtrees(want))),
        (
            "subtrees",
            Example::Frame(Message::Subtrees(Subtrees::answer(
                &want,
                Some(SubtreeData::Hashes(vec![hash])),
            ))),
        ),
        (
            "subtrees-not-held",
            Example::Frame(Message::Subtrees(Subtrees::answer(&want, None))),
        ),
    ])
}

/// The `hex NAME` blocks of the doc: name and bytes, in order.
fn doc_blocks(doc: &str) -> Vec<(String, Vec<u8>)> {
    let mut blocks = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```hex ") else {
            continue;
        };
        let mut hex_digits = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            let bytes = line.split('|').next().unwrap_or_default();
            hex_digits.extend(bytes.chars().filter(|c| !c.is_whitespace()));
        }
        let bytes = hex::decode(&hex_digits)
            .unwrap_or_else(|e| panic!("example {name}: not hex bytes ({e}): {hex_digits}"));
        blocks.push((name.trim().to_string(), bytes));
    }
    blocks
}

fn dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_example_in_the_protocol_doc_is_what_the_code_sends() {
    let mut expected = examples();
    let blocks = doc_blocks(PROTOCOL_MD);
    for (name, bytes) in &blocks {
        let example = expected
            .remove(name.as_str())
            .unwrap_or_else(|| panic!("example {name} in the doc is not checked here"));
        match example {
            Example::Frame(message) => {
                let encoded = encode_frame(&message).unwrap();
                assert_eq!(
                    dump(bytes),
                    dump(&encoded),
                    "example {name}: the doc's bytes (left) are not the encoding of {message:?}"
                );
                let mut buf = bytes.clone();
                assert_eq!(decode_frame(&mut buf), Ok(Some(message)), "example {name}");
                assert!(buf.is_empty(), "example {name}: bytes left over");
            }
            Example::Bytes(computed) => {
                assert_eq!(dump(bytes), dump(&computed), "example {name}");
            }
        }
    }
    let missing: Vec<&str> = expected.into_keys().collect();
    assert!(
        missing.is_empty(),
        "examples missing from the doc: {missing:?}"
    );
}

/// The examples are not only well encoded but true: the `Auth` verifies on the verifier's
/// side, the proof checks, the entry is FORMAT.md's.
#[test]
fn the_examples_are_valid_protocol_values() {
    let (_, signer_hello, verifier_hello, binding) = handshake_parties();
    let Some(Example::Frame(Message::Auth(auth))) = examples().remove("auth") else {
        unreachable!("the auth example is a frame")
    };
    let verifier = Handshake::for_version(V2, verifier_hello.author, verifier_hello.nonce, binding);
    assert_eq!(
        verifier.on_auth(&signer_hello, &auth),
        Ok(signer_hello.author)
    );
    let proof = ForkProof::new(first_entry(0), first_entry(1));
    assert_eq!(proof.check(), Ok(format_key().author()));
    assert_eq!(
        first_entry(0).hash().to_string(),
        "57a64594d936c6b1ee709c4986e3976e66f7691a18a4b20b2046f21b4423550f"
    );
}

/// Section 10's sizes are those of the largest frames the encoder writes.
#[test]
fn the_sizes_in_section_10_are_the_encoded_sizes() {
    use crate::entry::MAX_ENCODED_BYTES;
    use crate::fork::MAX_PROOF_BYTES;
    let body = |message: &Message| encode_frame(message).unwrap().len() - 4;
    let entries = body(&Message::Entries(Entries {
        entries: vec![EncodedEntry(vec![0; MAX_ENCODED_BYTES]); MAX_ENTRIES_PER_BATCH],
    }));
    let proofs = body(&Message::ForkProofs(ForkProofs {
        proofs: vec![EncodedProof(vec![0; MAX_PROOF_BYTES]); MAX_PROOFS_PER_FRAME],
    }));
    let section = PROTOCOL_MD
        .split("## 10. Limits")
        .nth(1)
        .and_then(|rest| rest.split("\n## 11.").next())
        .expect("the doc has a section 10");
    // Lines may wrap anywhere: compare with single spaces.
    let section = section.split_whitespace().collect::<Vec<_>>().join(" ");
    let (entry, proof) = (thousands(MAX_ENCODED_BYTES), thousands(MAX_PROOF_BYTES));
    for phrase in [
        format!("`entry::MAX_ENCODED_BYTES` = {entry} bytes"),
        format!(
            "{MAX_ENTRIES_PER_BATCH} x (3 + {entry}) = {} bytes",
            thousands(entries)
        ),
        format!("the frame {}", thousands(entries + 4)),
        format!("`fork::MAX_PROOF_BYTES` = 13 + 2 x {entry} = {proof} bytes"),
        format!(
            "{MAX_PROOFS_PER_FRAME} x (3 + {proof}) = {} bytes",
            thousands(proofs)
        ),
    ] {
        assert!(
            section.contains(&phrase),
            "section 10 does not say {phrase:?}"
        );
    }
}

/// `1234567` as `1,234,567`, the way the doc writes numbers.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
