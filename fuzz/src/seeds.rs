//! The seed corpus: small, real-looking inputs for each target, made from fixed-seed keys so
//! the same files come out on every run. They are committed as `fuzz/corpus/<target>/seed-*`;
//! `tests/it/fuzz_corpus.rs` fails when they differ from what this generator makes (a format
//! change must refresh them) and rewrites them when `KAPPALOG_BLESS_FUZZ_SEEDS=1` is set.
//! Inputs the fuzzer found (`afl-*`) and crashers (`crash-*`) are kept next to them.

use kappalog::csv::CsvWriter;
use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::fork::ForkProof;
use kappalog::hash::Hash;
use kappalog::identity::{Identity, Signature};
use kappalog::sync::frame::encode_frame;
use kappalog::sync::handshake::Handshake;
use kappalog::sync::message::{
    Auth, Bye, ByeReason, Checkpoints, EncodedEntry, EncodedNote, EncodedProof, Entries, FeedHave,
    ForkProofs, Hello, Message, Nonce, SubtreeData, Subtrees, Want, WantSubtrees, PROTOCOL_VERSION,
};
use kappalog::sync::opening::{opening_frame_of, V2};
use kappalog::sync::reconcile::{Reconcile, Reconciler, Step};
use kappalog::sync::transport::opening_frame;
use kappalog::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};

// `super`, not `crate`: tests/it/fuzz_corpus.rs includes this file and targets.rs as
// submodules of its own, below the root of the test binary.
use super::targets::{
    reconcile_items, signed_feed, BINDING, HELD_ENTRIES, HELD_SEED, NODE_NONCE, NODE_SEED,
    RECONCILE_ITEM_COUNTS,
};

/// One seed file: `fuzz/corpus/{target}/seed-{name}`.
pub struct Seed {
    pub target: &'static str,
    pub name: &'static str,
    pub bytes: Vec<u8>,
}

/// The key of the peer in the handshake seeds.
const PEER_SEED: [u8; 32] = [9; 32];

/// Every seed of every target.
pub fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let mut add = |target, name, bytes| {
        out.push(Seed {
            target,
            name,
            bytes,
        })
    };

    // The held feed, two entries past it, and a second version of its entry 2 (a fork).
    let feed = signed_feed(HELD_SEED, HELD_ENTRIES + 2);
    let fork = sign(HELD_SEED, 2, Some(feed[0].1), "the other entry 2");
    let other = signed_feed([6; 32], 1);
    let long = sign([6; 32], 1, None, &"ü,\"\n".repeat(200));

    add("entry", "first", feed[0].0.encode());
    add("entry", "linked", feed[1].0.encode());
    add("entry", "long-data", long.0.encode());
    add("entry", "bad-signature", unsigned(&feed[2].0).encode());

    let proof = ForkProof::new(feed[1].0.clone(), fork.0.clone());
    let other_proof = ForkProof::new(other[0].0.clone(), long.0.clone());
    add("fork_proof", "proof", proof.encode());
    add(
        "fork_proof",
        "file",
        [proof.encode(), other_proof.encode()].concat(),
    );
    let torn = [proof.encode(), other_proof.encode()[..100].to_vec()].concat();
    add("fork_proof", "torn-tail", torn);

    let messages = sample_messages(&feed, &proof);
    for (name, message) in &messages {
        add("frame", name, frame(message));
    }
    let stream: Vec<u8> = messages.iter().flat_map(|(_, m)| frame(m)).collect();
    add("frame", "stream", stream);

    let batch = |entries: &[&Entry]| {
        let entries = entries
            .iter()
            .map(|e| EncodedEntry::from_entry(e))
            .collect();
        body(&Message::Entries(Entries { entries }))
    };
    add("message", "batch-held-and-next", {
        batch(&[&feed[0].0, &feed[1].0, &feed[2].0, &feed[3].0])
    });
    add("message", "batch-fork", batch(&[&fork.0]));
    add("message", "batch-gap", batch(&[&feed[3].0]));
    add("message", "batch-new-feed", batch(&[&other[0].0, &long.0]));
    for (name, message) in &messages {
        if matches!(
            message,
            Message::ForkProofs(_)
                | Message::Reconcile(_)
                | Message::CheckpointReconcile(_)
                | Message::Checkpoints(_)
                | Message::Subtrees(_)
        ) {
            add("message", name, body(message));
        }
    }

    let identity = Identity::from_seed(NODE_SEED);
    let node = Handshake::new(identity.author(), NODE_NONCE, BINDING);
    let peer_identity = Identity::from_seed(PEER_SEED);
    let peer = Handshake::new(peer_identity.author(), Nonce([8; 32]), BINDING);
    let peer_auth = peer.on_hello(&peer_identity, node.hello());
    let peer_hello = Message::Hello(peer.hello().clone());
    if let Ok(auth) = peer_auth {
        let valid = [frame(&peer_hello), frame(&Message::Auth(auth))].concat();
        add("handshake", "valid", valid);
    }
    let hello = |version, author, nonce| {
        frame(&Message::Hello(Hello {
            version,
            author,
            nonce,
        }))
    };
    let peer_author = peer_identity.author();
    add(
        "handshake",
        "old-version",
        hello(1, peer_author, Nonce([8; 32])),
    );
    add(
        "handshake",
        "self",
        hello(PROTOCOL_VERSION, identity.author(), Nonce([8; 32])),
    );
    add(
        "handshake",
        "reflected",
        hello(PROTOCOL_VERSION, peer_author, NODE_NONCE),
    );
    let forged = Message::Auth(Auth {
        signature: Signature([4; 64]),
    });
    add(
        "handshake",
        "forged-auth",
        [frame(&peer_hello), frame(&forged)].concat(),
    );

    let opening = opening_frame();
    add(
        "transport",
        "opening-and-noise",
        [&opening[..], &[0, 48], &[7; 48]].concat(),
    );
    add("transport", "refusal", [&opening[..], &[0, 1, 1]].concat());
    // A v2 or v3 dialer's opening: a v4 responder answers it with the same version.
    add(
        "transport",
        "v2-opening-and-noise",
        [&opening_frame_of(V2)[..], &[0, 48], &[7; 48]].concat(),
    );
    add(
        "transport",
        "v3-opening-and-noise",
        [&opening_frame_of(3)[..], &[0, 48], &[7; 48]].concat(),
    );
    add(
        "transport",
        "v1-hello",
        hello(1, peer_author, Nonce([8; 32])),
    );
    let bye = Message::Bye(Bye {
        reason: ByeReason::Busy,
    });
    add("transport", "busy", frame(&bye));

    // Honest exchanges, as the node under test receives them, for each item count and role.
    let names = [
        ["empty-opens", "empty-answers"],
        ["few-opens", "few-answers"],
        ["some-opens", "some-answers"],
        ["many-opens", "many-answers"],
    ];
    for (setup, name) in (0u8..8).zip(names.iter().flatten()) {
        let ours = RECONCILE_ITEM_COUNTS[usize::from(setup >> 1)];
        let theirs = peer_items(ours);
        add(
            "reconcile",
            name,
            exchange(setup, theirs, Message::Reconcile),
        );
    }
    // The checkpoint reconciliation of a v3 session (variant 8), then both at once.
    let checkpoint_names = [
        "checkpoints-few-opens",
        "checkpoints-few-answers",
        "checkpoints-some-opens",
        "checkpoints-some-answers",
    ];
    for (setup, name) in (2u8..6).zip(checkpoint_names) {
        let ours = RECONCILE_ITEM_COUNTS[usize::from(setup >> 1)];
        let frames = exchange(setup, peer_items(ours), Message::CheckpointReconcile);
        add("reconcile", name, frames);
    }
    let both = [
        exchange(5, peer_items(40), Message::Reconcile),
        exchange(5, peer_items(40), Message::CheckpointReconcile)[1..].to_vec(),
    ]
    .concat();
    add("reconcile", "both-some-answers", both);

    let mut export = CsvWriter::new(Vec::new()).expect("writing to a Vec cannot fail");
    for (entry, hash) in feed.iter().chain(&other).chain([&long]) {
        export
            .write_entry(entry, hash)
            .expect("writing to a Vec cannot fail");
    }
    let export = export.finish().expect("writing to a Vec cannot fail");
    let text = String::from_utf8_lossy(&export).into_owned();
    add("csv", "export", export.clone());
    add(
        "csv",
        "crlf-bom",
        format!("\u{feff}{}", text.replace('\n', "\r\n")).into_bytes(),
    );
    let mut damaged = text.replacen(",1,", ",-1,", 1);
    damaged.push_str("\n\nx,y\n");
    damaged.push_str(&text.replacen("entry 2", "entry two", 1));
    add("csv", "rejections", damaged.into_bytes());

    let bodies: [(&str, &str); 8] = [
        ("object", r#"{"value": 42, "data": "hi"}"#),
        ("integer", "-3"),
        ("empty", ""),
        ("null-data", r#"{"value": 1, "data": null}"#),
        (
            "escapes",
            r#"{"data": "\u00e9\n\"", "value": 9223372036854775807}"#,
        ),
        ("duplicate", r#"{"value": 1, "value": 2}"#),
        ("float", r#"{"value": 1e3}"#),
        ("nested", r#"{"value": [1, {"data": []}]}"#),
    ];
    for (name, body) in bodies {
        add("add_body", name, body.as_bytes().to_vec());
    }
    out
}

/// One message of each kind, named after it.
fn sample_messages(feed: &[(Entry, Hash)], proof: &ForkProof) -> Vec<(&'static str, Message)> {
    let author = feed[0].0.author;
    let mut initiator = Reconciler::new(reconcile_items(40));
    let reconcile = initiator
        .initiate()
        .into_iter()
        .next()
        .map(Message::Reconcile);
    let mut messages = vec![
        (
            "hello",
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                author,
                nonce: Nonce([8; 32]),
            }),
        ),
        (
            "auth",
            Message::Auth(Auth {
                signature: feed[0].0.signature,
            }),
        ),
        (
            "fork-proofs",
            Message::ForkProofs(ForkProofs {
                proofs: vec![EncodedProof::from_proof(proof)],
            }),
        ),
        ("want", Message::Want(Want { author, seq: 2 })),
        (
            "entries",
            Message::Entries(Entries {
                entries: feed
                    .iter()
                    .map(|(e, _)| EncodedEntry::from_entry(e))
                    .collect(),
            }),
        ),
        ("ping", Message::Ping),
        (
            "bye",
            Message::Bye(Bye {
                reason: ByeReason::ClaimNotDelivered,
            }),
        ),
    ];
    messages.extend(reconcile.map(|m| ("reconcile", m)));
    let checkpoint_reconcile = Reconciler::new(reconcile_items(40))
        .initiate()
        .into_iter()
        .next()
        .map(Message::CheckpointReconcile);
    messages.extend(checkpoint_reconcile.map(|m| ("checkpoint-reconcile", m)));
    // The held feed's note at two sizes (the root is not the feed's: the session and the
    // decoders do not look at it).
    let notes = [1u64, 2]
        .iter()
        .filter_map(|&size| checkpoint_note(HELD_SEED, size))
        .map(EncodedNote)
        .collect();
    messages.push(("checkpoints", Message::Checkpoints(Checkpoints { notes })));
    let want = |level, count| WantSubtrees {
        author,
        level,
        index: 0,
        count,
    };
    messages.push(("want-subtrees", Message::WantSubtrees(want(1, 2))));
    let hashes = SubtreeData::Hashes(feed[..2].iter().map(|(_, h)| *h).collect());
    messages.push((
        "subtrees-hashes",
        Message::Subtrees(Subtrees::answer(&want(1, 2), Some(hashes))),
    ));
    let entries = feed[..2]
        .iter()
        .map(|(e, _)| EncodedEntry::from_entry(e))
        .collect();
    messages.push((
        "subtrees-entries",
        Message::Subtrees(Subtrees::answer(
            &want(0, 2),
            Some(SubtreeData::Entries(entries)),
        )),
    ));
    messages
}

/// The signed checkpoint note of the feed of `seed` at `size`, over a made-up root.
fn checkpoint_note(seed: [u8; 32], size: u64) -> Option<Vec<u8>> {
    let identity = Identity::from_seed(seed);
    let origin = origin_for(identity.author().as_bytes());
    let checkpoint = Checkpoint::new(&origin, size, [7; 32]).ok()?;
    let signed = SignedCheckpoint::sign(checkpoint, identity.signing_key()).ok()?;
    Some(signed.to_bytes())
}

/// The peer of an exchange with a node holding `ours` items: some shared, some changed,
/// some its own.
fn peer_items(ours: usize) -> Vec<FeedHave> {
    let mut items = reconcile_items(ours + 5);
    for item in items.iter_mut().step_by(23) {
        item.length += 1;
    }
    items
}

/// The setup byte, then the frames an honest peer holding `theirs` sends the node under test
/// in a whole exchange, each wrapped by `wrap` (`Reconcile` or `CheckpointReconcile`).
fn exchange(setup: u8, theirs: Vec<FeedHave>, wrap: fn(Reconcile) -> Message) -> Vec<u8> {
    let count = RECONCILE_ITEM_COUNTS[usize::from(setup >> 1) % RECONCILE_ITEM_COUNTS.len()];
    let mut node = Reconciler::new(reconcile_items(count));
    let mut peer = Reconciler::new(theirs);
    let (mut to_peer, mut to_node) = if setup & 1 == 1 {
        (node.initiate(), Vec::new())
    } else {
        (Vec::new(), peer.initiate())
    };
    let mut out = vec![setup];
    // An honest exchange ends in a few rounds; the bound keeps a broken one from looping.
    for _ in 0..64 {
        to_node.extend(deliver(&mut peer, std::mem::take(&mut to_peer), None, wrap));
        if to_node.is_empty() {
            break;
        }
        to_peer.extend(deliver(
            &mut node,
            std::mem::take(&mut to_node),
            Some(&mut out),
            wrap,
        ));
        if to_peer.is_empty() {
            break;
        }
    }
    out
}

/// Hands `frames` to `receiver` (recording each as a frame in `record`); returns its replies.
fn deliver(
    receiver: &mut Reconciler,
    frames: Vec<Reconcile>,
    mut record: Option<&mut Vec<u8>>,
    wrap: fn(Reconcile) -> Message,
) -> Vec<Reconcile> {
    let mut replies = Vec::new();
    for reconcile in frames {
        if let Some(out) = record.as_deref_mut() {
            out.extend(frame(&wrap(reconcile.clone())));
        }
        if let Ok(Some(Step::Reply(frames))) = receiver.receive(reconcile) {
            replies.extend(frames);
        }
    }
    replies
}

fn sign(seed: [u8; 32], seq: u64, prev: Option<Hash>, data: &str) -> (Entry, Hash) {
    let identity = Identity::from_seed(seed);
    UnsignedEntry {
        author: identity.author(),
        seq,
        timestamp: 1_700_000_000_000,
        prev,
        value: -7,
        data: data.into(),
    }
    .sign(&identity)
}

/// `entry` with a signature of zeros.
fn unsigned(entry: &Entry) -> Entry {
    entry.unsigned().with_signature(Signature([0; 64]))
}

fn frame(message: &Message) -> Vec<u8> {
    encode_frame(message).expect("seed messages follow the protocol's rules")
}

/// A frame without its length prefix.
fn body(message: &Message) -> Vec<u8> {
    frame(message).split_off(4)
}
