//! The fuzz targets: one function per decoder that takes bytes from outside the node.
//!
//! Each target takes arbitrary bytes and must never panic. Where the decoder has an encoder
//! it also asserts the round trip (decode, encode, decode again: the same value), and where
//! the decoded value feeds a pure state machine or check, it runs that too, so what the
//! fuzzer finds is what a peer, a file or an HTTP client could reach. A panic here is a bug
//! in kappalog (or a broken property), never in the harness.
//!
//! The afl binaries in `fuzz/src/bin/` call these functions, and so does the corpus replay
//! that `cargo test` runs (`tests/it/fuzz_corpus.rs` includes this file), so the file uses
//! kappalog's public API, `serde_json` and std only: no afl.

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use kappalog::csv::{CsvParser, CsvWriter, ParsedEntry, ParsedLine};
use kappalog::entry::{Entry, UnsignedEntry, MAX_DATA_BYTES};
use kappalog::fork::{decode_all, ForkProof};
use kappalog::hash::Hash;
use kappalog::http::parse_add_body;
use kappalog::identity::{Author, Identity};
use kappalog::sync::batch::check_batch;
use kappalog::sync::frame::{decode_frame, encode_frame};
use kappalog::sync::handshake::{Binding, Handshake};
use kappalog::sync::message::{
    Checkpoints, Entries, FeedHave, ForkProofs, Message, Nonce, SubtreeData,
};
use kappalog::sync::opening::opening_frame_of;
use kappalog::sync::reconcile::{Reconcile, ReconcileError, Reconciler, Step};
use kappalog::sync::transport::{establish, opening_frame, NetworkKey, Role};
use kappalog::tlog::author_checkpoint::AuthorCheckpoint;
use kappalog::tlog::checkpoint::SignedCheckpoint;
use kappalog::validate;

/// A fuzz target: runs on any bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target by the name of its binary and of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("entry", entry),
    ("frame", frame),
    ("message", message),
    ("fork_proof", fork_proof),
    ("handshake", handshake),
    ("transport", transport),
    ("reconcile", reconcile),
    ("csv", csv),
    ("add_body", add_body),
];

/// The key of the node under test in the handshake and batch targets.
pub const NODE_SEED: [u8; 32] = [1; 32];
/// The node's handshake nonce.
pub const NODE_NONCE: Nonce = Nonce([2; 32]);
/// The channel binding both sides sign in the handshake target.
pub const BINDING: Binding = [3; 32];
/// The author whose first [`HELD_ENTRIES`] entries the batch target's store holds.
pub const HELD_SEED: [u8; 32] = [5; 32];
/// How many entries of [`HELD_SEED`]'s feed the batch target's store holds.
pub const HELD_ENTRIES: usize = 2;
/// Item counts the reconcile target's node may hold (picked by the first input byte): none,
/// few (answered with lists), and enough to be cut into fingerprinted buckets.
pub const RECONCILE_ITEM_COUNTS: [usize; 4] = [0, 3, 40, 100];

/// `Entry::decode`: the fixed encoding is canonical, so a decoded entry re-encodes to exactly
/// the input, and its hash is the one computed from the same bytes.
pub fn entry(bytes: &[u8]) {
    let Ok((entry, hash)) = Entry::decode(bytes) else {
        return;
    };
    assert_eq!(entry.encode(), bytes, "re-encoding changed the bytes");
    assert_eq!(entry.encoded_len(), bytes.len());
    assert_eq!(entry.hash(), hash);
    let _ = validate::check_shape(&entry);
    let _ = validate::check_signature(&entry, &hash);
}

/// The frame decoder on a stream of frames: each decoded message re-encodes to a frame that
/// decodes to the same message, and nothing is consumed on "need more" or on an error.
pub fn frame(bytes: &[u8]) {
    let mut buf = bytes.to_vec();
    loop {
        let before = buf.len();
        match decode_frame(&mut buf) {
            Ok(Some(message)) => {
                let frame = encode_frame(&message).expect("a decoded message re-encodes");
                // Varints may arrive longer than needed; ours are minimal.
                assert!(frame.len() <= before - buf.len(), "re-encoding grew");
                let mut again = frame;
                assert_eq!(decode_frame(&mut again), Ok(Some(message.clone())));
                assert!(again.is_empty());
            }
            Ok(None) | Err(_) => {
                assert_eq!(buf.len(), before, "bytes consumed without a message");
                break;
            }
        }
    }
}

/// One frame body as a session receives it, then what the session does with each message
/// that a pure function handles: entries are decoded and checked as a batch against a store
/// holding part of one feed, proofs are decoded and checked, a reconcile frame is received.
pub fn message(bytes: &[u8]) {
    let Ok(len) = u32::try_from(bytes.len()) else {
        return;
    };
    let mut buf = len.to_be_bytes().to_vec();
    buf.extend_from_slice(bytes);
    let Ok(Some(message)) = decode_frame(&mut buf) else {
        return;
    };
    match message {
        Message::Entries(Entries { entries }) => {
            for encoded in &entries {
                entry(&encoded.0);
            }
            let held = held_feed();
            let held_at = |author: &Author, seq: u64| {
                let (first, _) = held.first()?;
                let index = usize::try_from(seq.checked_sub(1)?).ok()?;
                (*author == first.author)
                    .then(|| held.get(index).map(|(_, hash)| *hash))
                    .flatten()
            };
            if let Ok(outcome) = check_batch(&entries, |_| false, held_at) {
                assert_eq!(outcome.positions.len(), outcome.append.len());
                let counted = outcome.append.len() + outcome.duplicates + outcome.refused;
                assert_eq!(counted, entries.len(), "a batch entry is unaccounted for");
            }
        }
        Message::ForkProofs(ForkProofs { proofs }) => {
            for proof in &proofs {
                fork_proof(&proof.0);
            }
        }
        Message::Reconcile(frame) | Message::CheckpointReconcile(frame) => {
            let mut reconciler = Reconciler::new(reconcile_items(40));
            answer(&mut reconciler, frame);
        }
        // What the node's checkpoint book does first with each note a session hands it:
        // parse it as a signed checkpoint and check it is a feed author's.
        Message::Checkpoints(Checkpoints { notes }) => {
            for note in &notes {
                if let Ok(signed) = SignedCheckpoint::parse(&note.0) {
                    let _ = AuthorCheckpoint::verify(&signed);
                }
            }
        }
        // What a copy search is handed of an answer: the typed data, each entry decoded.
        Message::Subtrees(answer) => {
            if let Some(SubtreeData::Entries(entries)) = answer.data() {
                for encoded in &entries {
                    entry(&encoded.0);
                }
            }
        }
        // The handshake target covers Hello and Auth; the rest carry no bytes to decode.
        Message::Hello(_)
        | Message::Auth(_)
        | Message::Want(_)
        | Message::WantSubtrees(_)
        | Message::Ping
        | Message::Bye(_) => {}
    }
}

/// `ForkProof::decode` and the `forks` file decoder: a proof re-encodes to its bytes, checking
/// it never panics, and a file's complete records re-encode to exactly its valid prefix.
pub fn fork_proof(bytes: &[u8]) {
    if let Ok(proof) = ForkProof::decode(bytes) {
        assert_eq!(proof.encode(), bytes, "re-encoding changed the bytes");
        let _ = proof.check();
    }
    match decode_all(bytes) {
        Ok(decoded) => {
            let encoded: Vec<u8> = decoded.proofs.iter().flat_map(ForkProof::encode).collect();
            assert_eq!(encoded, &bytes[..decoded.valid_len]);
            assert_eq!(decoded.torn_tail, decoded.valid_len < bytes.len());
        }
        Err(corrupt) => assert!(corrupt.offset < bytes.len()),
    }
}

/// The identity handshake: the peer's `Hello` frame, then its `Auth` frame. Our `Auth` for an
/// accepted `Hello` verifies from the peer's side; an `Auth` we accept names the peer.
pub fn handshake(bytes: &[u8]) {
    let identity = Identity::from_seed(NODE_SEED);
    let ours = Handshake::new(identity.author(), NODE_NONCE, BINDING);
    let mut buf = bytes.to_vec();
    let Ok(Some(Message::Hello(theirs))) = decode_frame(&mut buf) else {
        return;
    };
    let Ok(auth) = ours.on_hello(&identity, &theirs) else {
        return;
    };
    let peer_side = Handshake::new(theirs.author, theirs.nonce, BINDING);
    assert_eq!(
        peer_side.on_auth(ours.hello(), &auth),
        Ok(identity.author()),
        "our Auth does not verify on the peer's side"
    );
    let Ok(Some(Message::Auth(their_auth))) = decode_frame(&mut buf) else {
        return;
    };
    if let Ok(author) = ours.on_auth(&theirs, &their_auth) {
        assert_eq!(author, theirs.author);
        assert_ne!(author, identity.author());
    }
}

/// The transport's plaintext part: the peer's opening and its first handshake record, for
/// both roles. The bytes after that are Noise messages a fuzzer cannot forge without the
/// network key, so the run ends there (with a refusal) unless Noise itself is broken.
pub fn transport(bytes: &[u8]) {
    let network = NetworkKey::default();
    for role in [Role::Responder, Role::Initiator] {
        let mut written = Vec::new();
        if let Ok(mut channel) = ready(establish(bytes, &mut written, role, &network)) {
            // Reachable only with the network key; read what follows, as a session would.
            let mut out = [0u8; 1024];
            while let Ok(1..) = ready(channel.reader.read(&mut out)) {}
        }
        match role {
            // The dialer opens at once with our highest version.
            Role::Initiator => assert!(written.starts_with(&opening_frame()), "no opening sent"),
            // The responder writes only once it read an opening: the dialer's version if it
            // speaks it, else its own.
            Role::Responder => assert!(
                written.is_empty()
                    || written.starts_with(&opening_frame())
                    || written.starts_with(&opening_frame_of(2))
                    || written.starts_with(&opening_frame_of(3)),
                "not an opening"
            ),
        }
    }
}

/// Reconciliation: the first byte picks how many feeds (or checkpoints) our node holds and
/// whether it opens the exchange; the rest is the peer's frames. `Reconcile` frames go to
/// the entries' reconciler and `CheckpointReconcile` frames (v3) to the checkpoints' one, as
/// in a session. Every frame we send fits the protocol's limits, an error ends that exchange
/// for good, and a finished one yields the peer's items.
pub fn reconcile(bytes: &[u8]) {
    let Some((&setup, rest)) = bytes.split_first() else {
        return;
    };
    let count = RECONCILE_ITEM_COUNTS[usize::from(setup >> 1) % RECONCILE_ITEM_COUNTS.len()];
    let mut entries = Reconciler::new(reconcile_items(count));
    let mut checkpoints = Reconciler::new(reconcile_items(count));
    if setup & 1 == 1 {
        for frame in entries.initiate().into_iter().chain(checkpoints.initiate()) {
            assert_sendable(frame);
        }
    }
    let (mut entries_open, mut checkpoints_open) = (true, true);
    let mut buf = rest.to_vec();
    while let Ok(Some(message)) = decode_frame(&mut buf) {
        match message {
            Message::Reconcile(frame) if entries_open => {
                entries_open = answer(&mut entries, frame);
            }
            Message::CheckpointReconcile(frame) if checkpoints_open => {
                checkpoints_open = answer(&mut checkpoints, frame);
            }
            _ => {}
        }
        if !entries_open && !checkpoints_open {
            break;
        }
    }
    for reconciler in [entries, checkpoints] {
        if let Some(feeds) = reconciler.peer_feeds() {
            assert!(feeds.values().all(|feed| feed.length >= 1));
        }
    }
}

/// The CSV import parser: line numbers never go back, and each parsed entry exports to a
/// record that parses back to the same entry and hash.
pub fn csv(bytes: &[u8]) {
    let mut last_line = 1;
    for parsed in CsvParser::new(bytes) {
        let parsed = parsed.expect("reading a byte slice cannot fail");
        let line = match &parsed {
            ParsedLine::Entry(parsed) => parsed.line,
            ParsedLine::Rejected(rejection) => rejection.line,
        };
        assert!(line >= last_line, "line {line} after line {last_line}");
        last_line = line;
        if let ParsedLine::Entry(ParsedEntry { entry, hash, .. }) = parsed {
            let mut writer = CsvWriter::continuing(Vec::new());
            writer
                .write_entry(&entry, &hash)
                .expect("writing to a Vec cannot fail");
            let exported = writer.finish().expect("writing to a Vec cannot fail");
            let again: Vec<ParsedLine> = CsvParser::new(exported.as_slice())
                .collect::<Result<_, _>>()
                .expect("reading a byte slice cannot fail");
            let line = 1;
            assert_eq!(
                again,
                [ParsedLine::Entry(ParsedEntry { line, entry, hash })],
                "exported record {:?}",
                String::from_utf8_lossy(&exported)
            );
        }
    }
}

/// The `POST /add` body parser: an accepted request, written back as the canonical JSON
/// object, parses to the same request, and its data is within the entry limit.
pub fn add_body(bytes: &[u8]) {
    let Ok(request) = parse_add_body(bytes) else {
        return;
    };
    assert!(request.data.len() <= MAX_DATA_BYTES);
    // An empty body (no value: the node picks one) has no data either.
    let canonical = match request.value {
        Some(value) => serde_json::json!({ "value": value, "data": request.data }).to_string(),
        None => {
            assert!(request.data.is_empty());
            String::new()
        }
    };
    let again = parse_add_body(canonical.as_bytes()).ok();
    assert_eq!(again, Some(request));
}

/// Hands one peer frame to `reconciler`; checks what comes back. `false`: the exchange ended.
fn answer(reconciler: &mut Reconciler, frame: Reconcile) -> bool {
    match reconciler.receive(frame.clone()) {
        Ok(None) => true,
        Ok(Some(Step::Reply(frames))) => {
            for frame in frames {
                assert_sendable(frame);
            }
            !reconciler.is_done()
        }
        Ok(Some(Step::Done)) => {
            assert!(reconciler.is_done());
            false
        }
        Err(_) => {
            assert!(!reconciler.is_done());
            assert_eq!(reconciler.receive(frame), Err(ReconcileError::NotExpecting));
            false
        }
    }
}

/// A frame we send must pass the checks a peer's frame decoder applies.
fn assert_sendable(frame: Reconcile) {
    let message = Message::Reconcile(frame);
    let mut bytes = encode_frame(&message).expect("our reconcile frame encodes");
    assert_eq!(decode_frame(&mut bytes), Ok(Some(message)));
}

/// `count` feeds with deterministic authors, sorted by author as a node's items are.
pub fn reconcile_items(count: usize) -> Vec<FeedHave> {
    let mut items: Vec<FeedHave> = (0..count)
        .map(|i| {
            let i = u64::try_from(i).unwrap_or(u64::MAX);
            FeedHave {
                author: Author(Hash::digest_parts(&[b"fuzz/author", &i.to_be_bytes()]).0),
                length: i + 1,
                head: Hash::digest_parts(&[b"fuzz/head", &i.to_be_bytes()]),
            }
        })
        .collect();
    items.sort_by_key(|item| item.author);
    items
}

/// The signed feed of [`HELD_SEED`]: `len` entries, value `seq`, hash-linked.
pub fn signed_feed(seed: [u8; 32], len: usize) -> Vec<(Entry, Hash)> {
    let identity = Identity::from_seed(seed);
    let mut feed: Vec<(Entry, Hash)> = Vec::with_capacity(len);
    for seq in 1..=u64::try_from(len).unwrap_or(u64::MAX) {
        let signed = UnsignedEntry {
            author: identity.author(),
            seq,
            timestamp: 1_700_000_000_000 + seq,
            prev: feed.last().map(|(_, hash)| *hash),
            value: i64::try_from(seq).unwrap_or(i64::MAX),
            data: format!("entry {seq}"),
        }
        .sign(&identity);
        feed.push(signed);
    }
    feed
}

/// What the batch target's store holds: the first [`HELD_ENTRIES`] of [`HELD_SEED`]'s feed.
fn held_feed() -> &'static [(Entry, Hash)] {
    static HELD: OnceLock<Vec<(Entry, Hash)>> = OnceLock::new();
    HELD.get_or_init(|| signed_feed(HELD_SEED, HELD_ENTRIES))
}

/// Runs a future over in-memory streams, which never wait, to completion in one poll.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("waited on an in-memory stream that is always ready"),
    }
}
