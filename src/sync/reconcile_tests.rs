//! Tests of range-based reconciliation: two reconcilers driven against each other in memory,
//! the fingerprint layout pinned, one test per frame rule, and robustness on any input.

use super::*;
use crate::entry::Seq;
use crate::hash::Hash;
use crate::sync::plan::FeedState;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The author with index `i` (ascending in `i`).
fn author(i: u32) -> Author {
    let mut bytes = [0x5a; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    Author(bytes)
}

/// Author `i`'s feed of `length` entries in history `variant`.
fn item(i: u32, length: Seq, variant: u8) -> FeedHave {
    let mut head = [variant; 32];
    head[..4].copy_from_slice(&i.to_be_bytes());
    head[4..12].copy_from_slice(&length.to_be_bytes());
    FeedHave {
        author: author(i),
        length,
        head: Hash(head),
    }
}

fn items(map: &BTreeMap<u32, (Seq, u8)>) -> Vec<FeedHave> {
    map.iter().map(|(&i, &(n, v))| item(i, n, v)).collect()
}

fn feeds(items: &[FeedHave]) -> Feeds {
    items
        .iter()
        .map(|f| {
            (
                f.author,
                FeedState {
                    length: f.length,
                    head: f.head,
                },
            )
        })
        .collect()
}

fn encoded_len(frame: &Reconcile) -> usize {
    bincode::serde::encode_to_vec(frame, bincode::config::standard())
        .expect("a frame encodes")
        .len()
}

/// What an exchange cost.
#[derive(Debug, Default)]
struct Exchange {
    /// Rounds sent, both sides together.
    rounds: usize,
    frames: usize,
    bytes: usize,
}

/// Runs `a` (the initiator) against `b` until one side reports `Done`, checking every frame
/// against the per-frame limits.
fn exchange(a: &mut Reconciler, b: &mut Reconciler) -> Exchange {
    let mut stats = Exchange::default();
    let mut frames = a.initiate();
    let mut to_b = true;
    for _ in 0..2 * MAX_RECONCILE_ROUNDS {
        stats.rounds += 1;
        let receiver = if to_b { &mut *b } else { &mut *a };
        let count = frames.len();
        let mut step = None;
        for (k, frame) in frames.into_iter().enumerate() {
            let len = encoded_len(&frame);
            assert!(len < MAX_FRAME_BYTES);
            assert!(frame.ranges.len() <= MAX_RECONCILE_RANGES_PER_FRAME);
            let items: usize = frame.ranges.iter().map(|r| r.mode.items().len()).sum();
            assert!(items <= MAX_RECONCILE_ITEMS_PER_FRAME);
            assert_eq!(frame.last, k + 1 == count);
            stats.frames += 1;
            stats.bytes += len;
            step = receiver.receive(frame).expect("a valid frame");
            assert_eq!(step.is_some(), k + 1 == count);
        }
        match step.expect("the round completes") {
            Step::Done => {
                assert!(a.is_done() && b.is_done());
                return stats;
            }
            Step::Reply(next) => frames = next,
        }
        to_b = !to_b;
    }
    panic!("the exchange did not end: {stats:?}");
}

/// Reconciles `ours` (initiator) with `theirs` and checks that each learns the other exactly.
fn reconcile(ours: &[FeedHave], theirs: &[FeedHave]) -> Exchange {
    let mut a = Reconciler::new(ours.to_vec());
    let mut b = Reconciler::new(theirs.to_vec());
    let stats = exchange(&mut a, &mut b);
    assert_eq!(a.peer_feeds(), Some(&feeds(theirs)));
    assert_eq!(b.into_peer_feeds(), Some(feeds(ours)));
    stats
}

fn many(n: u32) -> Vec<FeedHave> {
    (0..n)
        .map(|i| item(2 * i, Seq::from(i % 7) + 1, 0))
        .collect()
}

#[test]
fn identical_sides_settle_in_one_round_trip() {
    let all = many(100_000);
    let stats = reconcile(&all, &all);
    println!("100,000 identical feeds: {stats:?}");
    assert_eq!(stats.rounds, 2);
    assert_eq!(stats.frames, 2);
    assert!(stats.bytes < 2048, "{} bytes", stats.bytes);
}

#[test]
fn ten_differences_in_many_feeds() {
    let ours = many(100_000);
    let mut theirs = ours.clone();
    for k in [17, 9_000, 40_000, 99_999] {
        theirs[k].length += 1;
        theirs[k].head = Hash([9; 32]);
    }
    theirs[55_555].head = Hash([8; 32]);
    for k in [70_000, 30, 5] {
        theirs.remove(k);
    }
    for i in [1, 50_001, 199_999] {
        theirs.push(item(i, 3, 1));
    }
    theirs.sort_by_key(|f| f.author);
    let stats = reconcile(&ours, &theirs);
    println!("100,000 feeds, 10 differing: {stats:?}");
    assert!(stats.rounds <= 8, "{stats:?}");
    assert!(stats.bytes < 64 * 1024, "{stats:?}");
}

#[test]
fn one_side_empty_receives_the_full_list() {
    let all = many(100_000);
    let stats = reconcile(&[], &all);
    println!("empty initiator, 100,000 feeds: {stats:?}");
    assert_eq!(stats.rounds, 3);
    let stats = reconcile(&all, &[]);
    println!("100,000 feeds, empty responder: {stats:?}");
    assert_eq!(stats.rounds, 4);
}

#[test]
fn both_sides_empty() {
    let stats = reconcile(&[], &[]);
    assert_eq!(stats.rounds, 3);
}

#[test]
fn disjoint_sides_exchange_everything() {
    // Lists of about 12 items in 4,096 ranges: frames fill up on items and cut lists.
    let ours: Vec<FeedHave> = (0..50_000).map(|i| item(2 * i, 1, 0)).collect();
    let theirs: Vec<FeedHave> = (0..50_000).map(|i| item(2 * i + 1, 1, 0)).collect();
    let stats = reconcile(&ours, &theirs);
    println!("50,000 feeds each, disjoint: {stats:?}");
    assert!(stats.rounds <= 6, "{stats:?}");
}

#[test]
fn packed_rounds_are_valid_rounds() {
    let lists = |mode: fn(Vec<FeedHave>) -> RangeMode| {
        let mut ranges: Vec<Range> = (0..3u32)
            .map(|k| {
                let list = (k * 10_000..k * 10_000 + 5_000)
                    .map(|i| item(i, 1, 0))
                    .collect();
                range(at(k * 10_000 + 9_999), mode(list))
            })
            .collect();
        ranges.extend((30_000..35_000).map(|i| range(at(i), mode(vec![]))));
        ranges.push(range(Bound::End, mode(vec![item(40_000, 1, 0)])));
        ranges
    };
    // Receivers whose last round makes these lists the answers: fingerprints over the whole
    // author space (answered with `Items`), and one list (answered with `ItemsReply`).
    let fingerprinted = || {
        let mut r = Reconciler::new(many(50));
        r.initiate();
        r
    };
    let listed = || {
        let mut r = Reconciler::new(vec![]);
        r.initiate();
        r
    };
    for (mode, receiver) in [
        (
            RangeMode::Items as fn(_) -> _,
            fingerprinted as fn() -> Reconciler,
        ),
        (RangeMode::ItemsReply, listed),
    ] {
        let ranges = lists(mode);
        let sent: Vec<FeedHave> = ranges
            .iter()
            .flat_map(|r| r.mode.items().to_vec())
            .collect();
        let frames = pack(ranges);
        // 15,001 items need two frames; 5,004 ranges (with the cuts) one more.
        assert_eq!(frames.len(), 3);
        let mut r = receiver();
        let count = frames.len();
        for (k, frame) in frames.into_iter().enumerate() {
            let step = r.receive(frame).expect("a packed frame is valid");
            assert_eq!(step.is_some(), k + 1 == count);
        }
        let recorded: Vec<&Author> = r.peer.keys().collect();
        assert_eq!(recorded, sent.iter().map(|f| &f.author).collect::<Vec<_>>());
    }
}

/// Side B as side A with edits: `None` removes the author's feed, `Some` sets it.
fn edited(
    base: &BTreeMap<u32, (Seq, u8)>,
    edits: &BTreeMap<u32, Option<(Seq, u8)>>,
) -> Vec<FeedHave> {
    let mut side = base.clone();
    for (&i, edit) in edits {
        match edit {
            Some(state) => side.insert(i, *state),
            None => side.remove(&i),
        };
    }
    items(&side)
}

fn side_strategy(size: usize) -> impl Strategy<Value = BTreeMap<u32, (Seq, u8)>> {
    prop::collection::btree_map(0u32..400, (1u64..4, 0u8..2), 0..size)
}

fn edits_strategy() -> impl Strategy<Value = BTreeMap<u32, Option<(Seq, u8)>>> {
    prop::collection::btree_map(0u32..400, prop::option::of((1u64..4, 0u8..2)), 0..40)
}

proptest! {
    #[test]
    fn both_sides_learn_each_other_exactly(
        base in side_strategy(300),
        edits_a in edits_strategy(),
        edits_b in edits_strategy(),
    ) {
        let a = edited(&base, &edits_a);
        let b = edited(&base, &edits_b);
        let stats = reconcile(&a, &b);
        // At most 400 authors: a split or two, lists, their answers, the all-skip round.
        prop_assert!(stats.rounds <= 8, "{:?}", stats);
    }

    #[test]
    fn range_fingerprint_equals_direct_fingerprint(
        side in side_strategy(200),
        start in 0u32..420,
        len in 0u32..420,
    ) {
        let all = items(&side);
        let r = Reconciler::new(all.clone());
        let (start, upper) = (author(start), match start.checked_add(len) {
            Some(end) if end < 410 => Bound::Author(author(end)),
            _ => Bound::End,
        });
        let (lo, hi) = r.span(&start, &upper);
        let inside: Vec<FeedHave> = all
            .into_iter()
            .filter(|f| f.author >= start && Bound::Author(f.author) < upper)
            .collect();
        prop_assert_eq!(r.fingerprint(lo, hi), fingerprint(&inside));
    }

    #[test]
    fn random_frames_never_panic(
        side in side_strategy(60),
        initiate in any::<bool>(),
        frames in prop::collection::vec(frame_strategy(), 1..6),
    ) {
        let mut r = Reconciler::new(items(&side));
        if initiate {
            r.initiate();
        }
        for frame in frames {
            let _ = r.receive(frame);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let config = bincode::config::standard().with_limit::<MAX_FRAME_BYTES>();
        if let Ok((frame, _)) = bincode::serde::decode_from_slice::<Reconcile, _>(&bytes, config) {
            let mut r = Reconciler::new(many(50));
            let _ = r.receive(frame);
        }
    }
}

fn frame_strategy() -> impl Strategy<Value = Reconcile> {
    let item = (0u32..64, 0u64..3, 0u8..2).prop_map(|(i, n, v)| item(i, n, v));
    let mode = prop_oneof![
        Just(RangeMode::Skip),
        any::<[u8; 16]>().prop_map(|fp| RangeMode::Fingerprint(Fingerprint(fp))),
        prop::collection::vec(item.clone(), 0..5).prop_map(RangeMode::Items),
        prop::collection::vec(item, 0..5).prop_map(RangeMode::ItemsReply),
    ];
    let bound = prop_oneof![
        (0u32..64).prop_map(|i| Bound::Author(author(i))),
        Just(Bound::End)
    ];
    (
        prop::collection::vec((bound, mode), 0..8),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut ranges, sorted, last)| {
            if sorted {
                ranges.sort_by_key(|(upper, _)| *upper);
            }
            let ranges = ranges
                .into_iter()
                .map(|(upper, mode)| Range { upper, mode })
                .collect();
            Reconcile { ranges, last }
        })
}

// ---- One test per frame rule, each from one valid base frame. ----

/// A responder holding 40 feeds, authors 0, 3, 6, ...
fn responder() -> Reconciler {
    Reconciler::new((0..40).map(|i| item(3 * i, 1, 0)).collect())
}

fn range(upper: Bound, mode: RangeMode) -> Range {
    Range { upper, mode }
}

fn at(i: u32) -> Bound {
    Bound::Author(author(i))
}

/// A valid opening round: a list below author 10, then two fingerprints.
fn base() -> Reconcile {
    Reconcile {
        ranges: vec![
            range(at(10), RangeMode::Items(vec![item(2, 1, 0), item(5, 4, 1)])),
            range(at(50), RangeMode::Fingerprint(Fingerprint([0; 16]))),
            range(Bound::End, RangeMode::Fingerprint(Fingerprint([1; 16]))),
        ],
        last: true,
    }
}

fn refused(frame: Reconcile) -> ReconcileError {
    responder()
        .receive(frame)
        .expect_err("the frame breaks a rule")
}

fn list(frame: &mut Reconcile) -> &mut Vec<FeedHave> {
    match &mut frame.ranges[0].mode {
        RangeMode::Items(items) => items,
        _ => unreachable!("the base frame starts with a list"),
    }
}

#[test]
fn base_frame_is_valid() {
    let step = responder().receive(base()).unwrap();
    assert!(matches!(step, Some(Step::Reply(_))));
}

#[test]
fn no_frame_after_done() {
    let all = many(50);
    let mut a = Reconciler::new(all.clone());
    let mut b = Reconciler::new(all);
    exchange(&mut a, &mut b);
    let done_frame = Reconcile {
        ranges: vec![range(Bound::End, RangeMode::Skip)],
        last: true,
    };
    assert_eq!(
        a.receive(done_frame.clone()),
        Err(ReconcileError::NotExpecting)
    );
    assert_eq!(b.receive(done_frame), Err(ReconcileError::NotExpecting));
    assert!(a.is_done() && b.is_done());
}

#[test]
fn no_frame_after_an_error() {
    let mut r = responder();
    let mut bad = base();
    bad.ranges.clear();
    assert_eq!(r.receive(bad), Err(ReconcileError::EmptyFrame));
    assert_eq!(r.receive(base()), Err(ReconcileError::NotExpecting));
    assert_eq!(r.peer_feeds(), None);
}

#[test]
fn frame_limits() {
    let mut frame = base();
    frame.ranges.clear();
    assert_eq!(refused(frame), ReconcileError::EmptyFrame);

    let mut frame = base();
    let count = MAX_RECONCILE_RANGES_PER_FRAME + 1;
    frame.ranges = (1..=count)
        .map(|i| range(at(u32::try_from(i).unwrap()), RangeMode::Skip))
        .collect();
    assert_eq!(refused(frame), ReconcileError::TooManyRanges { count });

    let mut frame = base();
    let count = MAX_RECONCILE_ITEMS_PER_FRAME + 1;
    frame.ranges[0] = range(
        Bound::End,
        RangeMode::Items(
            (0..u32::try_from(count).unwrap())
                .map(|i| item(i, 1, 0))
                .collect(),
        ),
    );
    frame.ranges.truncate(1);
    assert_eq!(refused(frame), ReconcileError::TooManyItems { count });
}

#[test]
fn round_limit() {
    // The answer rules end every exchange long before the cap (see the module docs), so no
    // sequence of valid rounds reaches it: the count is set as if one had.
    let mut r = responder();
    r.rounds = MAX_RECONCILE_ROUNDS - 1;
    let reply = r.receive(base()).unwrap();
    assert!(matches!(reply, Some(Step::Reply(_))));
    let skip = Reconcile {
        ranges: vec![range(Bound::End, RangeMode::Skip)],
        last: true,
    };
    assert_eq!(r.receive(skip), Err(ReconcileError::TooManyRounds));
}

#[test]
fn peer_item_limit() {
    // An opening round of full frames listing distinct authors: the session total counts.
    let per_frame = u32::try_from(MAX_RECONCILE_ITEMS_PER_FRAME).unwrap();
    let full_frames =
        u32::try_from(MAX_RECONCILE_PEER_ITEMS / MAX_RECONCILE_ITEMS_PER_FRAME).unwrap();
    let mut r = responder();
    for f in 0..full_frames {
        let first = f * per_frame;
        let list = (first..first + per_frame).map(|i| item(i, 1, 0)).collect();
        let frame = Reconcile {
            ranges: vec![range(at(first + per_frame), RangeMode::Items(list))],
            last: false,
        };
        assert_eq!(r.receive(frame), Ok(None));
    }
    let first = full_frames * per_frame;
    let one_more = Reconcile {
        ranges: vec![range(Bound::End, RangeMode::Items(vec![item(first, 1, 0)]))],
        last: true,
    };
    assert_eq!(r.receive(one_more), Err(ReconcileError::TooManyPeerItems));
}

#[test]
fn peer_range_limit() {
    // Skips answering our opening fingerprints, cut as fine as the peer likes.
    let mut r = Reconciler::new(many(50));
    r.initiate();
    let per_frame = MAX_RECONCILE_RANGES_PER_FRAME;
    let mut next = 1u32;
    for _ in 0..MAX_RECONCILE_PEER_RANGES / per_frame {
        let ranges = (0..per_frame)
            .map(|_| {
                next += 1;
                range(at(next), RangeMode::Skip)
            })
            .collect();
        assert_eq!(
            r.receive(Reconcile {
                ranges,
                last: false
            }),
            Ok(None)
        );
    }
    let frame = Reconcile {
        ranges: vec![range(Bound::End, RangeMode::Skip)],
        last: true,
    };
    assert_eq!(r.receive(frame), Err(ReconcileError::TooManyPeerRanges));
}

#[test]
fn ranges_must_ascend() {
    let mut frame = base();
    frame.ranges[1].upper = at(10);
    assert_eq!(
        refused(frame),
        ReconcileError::RangesNotAscending { range: 1 }
    );

    let mut frame = base();
    frame.ranges[0] = range(Bound::Author(FIRST_AUTHOR), RangeMode::Skip);
    assert_eq!(
        refused(frame),
        ReconcileError::RangesNotAscending { range: 0 }
    );

    let mut frame = base();
    frame
        .ranges
        .push(range(Bound::End, RangeMode::Items(vec![])));
    assert_eq!(
        refused(frame),
        ReconcileError::RangesNotAscending { range: 3 }
    );

    // Across the frames of one round.
    let mut r = responder();
    let mut first = base();
    first.ranges.truncate(2);
    first.last = false;
    assert_eq!(r.receive(first), Ok(None));
    let second = Reconcile {
        ranges: vec![range(at(50), RangeMode::Items(vec![]))],
        last: true,
    };
    assert_eq!(
        r.receive(second),
        Err(ReconcileError::RangesNotAscending { range: 0 })
    );

    // After a frame that reached the end but did not end the round.
    let mut r = responder();
    let mut first = base();
    first.last = false;
    assert_eq!(r.receive(first), Ok(None));
    assert_eq!(
        r.receive(base()),
        Err(ReconcileError::RangesNotAscending { range: 0 })
    );
}

#[test]
fn last_frame_ends_at_end() {
    let mut frame = base();
    frame.ranges.pop();
    assert_eq!(refused(frame), ReconcileError::RoundNotEnded);
}

#[test]
fn listed_items_rules() {
    let mut frame = base();
    list(&mut frame).push(item(10, 1, 0));
    assert_eq!(
        refused(frame),
        ReconcileError::ItemOutsideRange {
            range: 0,
            item: 2,
            author: author(10)
        }
    );

    let mut frame = base();
    frame.ranges[1].mode = RangeMode::ItemsReply(vec![item(9, 1, 0)]);
    assert_eq!(
        refused(frame),
        ReconcileError::ItemOutsideRange {
            range: 1,
            item: 0,
            author: author(9)
        }
    );

    let mut frame = base();
    list(&mut frame).push(item(5, 1, 0));
    assert_eq!(
        refused(frame),
        ReconcileError::ItemsNotAscending { range: 0, item: 2 }
    );

    let mut frame = base();
    list(&mut frame)[1].length = 0;
    assert_eq!(
        refused(frame),
        ReconcileError::EmptyFeed { range: 0, item: 1 }
    );
}

#[test]
fn a_list_we_sent_must_be_answered() {
    let mut initiator = Reconciler::new(many(5));
    let opening = initiator.initiate();
    assert!(matches!(opening[0].ranges[0].mode, RangeMode::Items(_)));
    let skip = Reconcile {
        ranges: vec![range(Bound::End, RangeMode::Skip)],
        last: true,
    };
    assert_eq!(
        initiator.receive(skip),
        Err(ReconcileError::ItemsUnanswered { range: 0 })
    );
}

#[test]
fn frames_encode_compactly() {
    let bound = encoded_len(&Reconcile {
        ranges: vec![range(at(1), RangeMode::Fingerprint(Fingerprint([7; 16])))],
        last: false,
    });
    // Vector length, bound tag, author length and bytes, mode tag, fingerprint, `last`.
    assert_eq!(bound, 1 + 1 + 1 + 32 + 1 + 16 + 1);
    let done = encoded_len(&Reconcile {
        ranges: vec![range(Bound::End, RangeMode::Skip)],
        last: true,
    });
    assert_eq!(done, 4);
}

// ---- The answer rules, each violation built from one honest exchange. ----

/// 50 feeds on each side, differing in one. The rounds of the honest exchange, one frame
/// each: the dialer opens with 16 fingerprints (round 0); the peer skips the 15 buckets that
/// match and lists its 3 items in the one that differs (1); the dialer skips and replies with
/// its own list there (2); the peer ends with the all-`Skip` frame (3).
fn one_difference() -> (Vec<FeedHave>, Vec<FeedHave>, Vec<Reconcile>) {
    let ours = many(50);
    let mut theirs = ours.clone();
    theirs[20].length += 1;
    let mut a = Reconciler::new(ours.clone());
    let mut b = Reconciler::new(theirs.clone());
    let mut rounds = Vec::new();
    let mut frames = a.initiate();
    loop {
        assert_eq!(frames.len(), 1, "one frame per round");
        let frame = frames.remove(0);
        rounds.push(frame.clone());
        let receiver = if rounds.len() % 2 == 1 {
            &mut b
        } else {
            &mut a
        };
        match receiver.receive(frame).unwrap() {
            Some(Step::Reply(next)) => frames = next,
            Some(Step::Done) => break,
            None => unreachable!("one frame per round"),
        }
    }
    assert_eq!(a.peer_feeds(), Some(&feeds(&theirs)));
    assert_eq!(b.peer_feeds(), Some(&feeds(&ours)));
    (ours, theirs, rounds)
}

/// Where round `k` of [`one_difference`] holds a range of the given kind.
fn position(rounds: &[Reconcile], k: usize, kind: fn(&RangeMode) -> bool) -> usize {
    let found: Vec<usize> = (0..rounds[k].ranges.len())
        .filter(|&i| kind(&rounds[k].ranges[i].mode))
        .collect();
    assert_eq!(found.len(), 1, "round {k}: {:?}", rounds[k]);
    found[0]
}

/// Replays the honest rounds before round `k` between fresh reconcilers, then hands the
/// receiver round `k` as `tamper` leaves it.
fn replay_tampered(k: usize, tamper: impl FnOnce(&mut Vec<Range>)) -> ReconcileError {
    let (ours, theirs, rounds) = one_difference();
    let mut a = Reconciler::new(ours);
    let mut b = Reconciler::new(theirs);
    a.initiate();
    let receivers = [&mut b, &mut a];
    for (i, frame) in rounds[..k].iter().enumerate() {
        receivers[i % 2].receive(frame.clone()).unwrap();
    }
    let mut frame = rounds[k].clone();
    tamper(&mut frame.ranges);
    receivers[k % 2]
        .receive(frame)
        .expect_err("the tampered round breaks an answer rule")
}

#[test]
fn the_honest_exchange_the_rule_tests_build_on() {
    let (ours, theirs, rounds) = one_difference();
    assert_eq!(rounds.len(), 4);
    assert_eq!(rounds[0].ranges.len(), RECONCILE_BUCKETS);
    let listed = position(&rounds, 1, |m| matches!(m, RangeMode::Items(_)));
    assert_eq!(
        rounds[1].ranges.len(),
        3,
        "skip, list, skip: {:?}",
        rounds[1]
    );
    assert_eq!(
        position(&rounds, 2, |m| matches!(m, RangeMode::ItemsReply(_))),
        listed
    );
    assert_eq!(
        rounds[3].ranges,
        [range(Bound::End, RangeMode::Skip)],
        "the done frame"
    );
    // The differing bucket: the dialer's list there and the peer's differ.
    let (start, upper) = (
        start_of(&rounds[1].ranges, listed),
        rounds[1].ranges[listed].upper,
    );
    assert_ne!(within(&ours, start, upper), within(&theirs, start, upper));
}

/// Where range `i` of a round starts.
fn start_of(ranges: &[Range], i: usize) -> Author {
    match i.checked_sub(1).map(|previous| ranges[previous].upper) {
        None => FIRST_AUTHOR,
        Some(Bound::Author(author)) => author,
        Some(Bound::End) => unreachable!("no range follows the one ending at End"),
    }
}

/// The items of `side` in `[start, upper)`.
fn within(side: &[FeedHave], start: Author, upper: Bound) -> Vec<FeedHave> {
    side.iter()
        .filter(|f| f.author >= start && Bound::Author(f.author) < upper)
        .copied()
        .collect()
}

#[test]
fn an_opening_round_holds_only_fingerprints_and_lists() {
    for mode in [RangeMode::Skip, RangeMode::ItemsReply(vec![])] {
        assert_eq!(
            replay_tampered(0, move |ranges| ranges[3].mode = mode),
            ReconcileError::NotAnOpening { range: 3 }
        );
    }
    let done = replay_tampered(0, |ranges| {
        *ranges = vec![range(Bound::End, RangeMode::Skip)];
    });
    assert_eq!(done, ReconcileError::NotAnOpening { range: 0 });
}

#[test]
fn an_items_reply_answers_only_our_list() {
    // Round 1 answers our fingerprints: its list must be `Items`, and no range a reply.
    let (_, _, rounds) = one_difference();
    let listed = position(&rounds, 1, |m| matches!(m, RangeMode::Items(_)));
    let error = replay_tampered(1, |ranges| {
        let items = ranges[listed].mode.items().to_vec();
        ranges[listed].mode = RangeMode::ItemsReply(items);
    });
    assert_eq!(error, ReconcileError::ReplyWithoutItems { range: listed });
    let error = replay_tampered(1, |ranges| ranges[0].mode = RangeMode::ItemsReply(vec![]));
    assert_eq!(error, ReconcileError::ReplyWithoutItems { range: 0 });
}

#[test]
fn our_list_is_answered_only_with_the_peers_list() {
    // Round 2 answers the list of round 1: anything but `ItemsReply` there is refused.
    let (_, _, rounds) = one_difference();
    let replied = position(&rounds, 2, |m| matches!(m, RangeMode::ItemsReply(_)));
    for mode in [
        RangeMode::Skip,
        RangeMode::Fingerprint(Fingerprint([0; 16])),
        RangeMode::Items(vec![]),
    ] {
        assert_eq!(
            replay_tampered(2, move |ranges| ranges[replied].mode = mode),
            ReconcileError::ItemsUnanswered { range: replied }
        );
    }
}

#[test]
fn a_settled_range_is_never_reopened() {
    // Round 3 answers round 2, where the dialer sent `Skip` (buckets settled by matching
    // fingerprints) and `ItemsReply` (the bucket settled by both lists): only `Skip` may
    // answer either.
    let (ours, theirs, rounds) = one_difference();
    let replied = position(&rounds, 2, |m| matches!(m, RangeMode::ItemsReply(_)));
    // Reopened wholesale: one fingerprint over the whole author space.
    let error = replay_tampered(3, |ranges| {
        *ranges = vec![range(
            Bound::End,
            RangeMode::Fingerprint(fingerprint(&theirs)),
        )];
    });
    assert_eq!(error, ReconcileError::SettledRangeReopened { range: 0 });
    // The listed bucket listed again, as `Items` or as a fingerprint.
    let bucket: Vec<Range> = rounds[2].ranges.clone();
    let theirs_there = within(&theirs, start_of(&bucket, replied), bucket[replied].upper);
    assert_eq!(theirs_there.len(), 3);
    for mode in [
        RangeMode::Items(theirs_there.clone()),
        RangeMode::Fingerprint(fingerprint(&theirs_there)),
    ] {
        let reopened: Vec<Range> = bucket
            .iter()
            .enumerate()
            .map(|(i, r)| match i == replied {
                true => range(r.upper, mode.clone()),
                false => range(r.upper, RangeMode::Skip),
            })
            .collect();
        assert_eq!(
            replay_tampered(3, move |ranges| *ranges = reopened),
            ReconcileError::SettledRangeReopened { range: replied }
        );
    }
    // A bucket settled by matching fingerprints, listed again.
    let first = within(&ours, FIRST_AUTHOR, bucket[0].upper);
    let error = replay_tampered(3, move |ranges| {
        *ranges = vec![
            range(bucket[0].upper, RangeMode::Items(first)),
            range(Bound::End, RangeMode::Skip),
        ];
    });
    assert_eq!(error, ReconcileError::SettledRangeReopened { range: 0 });
}
