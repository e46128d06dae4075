//! Tests of the session plan: one per rule, then properties over random feed pairs.

use super::*;
use proptest::prelude::*;

fn author(i: u8) -> Author {
    Author([i; 32])
}

/// The hash of entry `seq` of author `a` in history `variant` (forks use another variant).
fn h(a: u8, seq: Seq, variant: u8) -> Hash {
    Hash::digest_parts(&[&[a, variant], &seq.to_be_bytes()])
}

/// A side holding, per author, `length` entries of one history; `variant_from` gives the
/// seq from which the history switches to variant 1 (a fork), if any.
#[derive(Clone, Debug)]
struct Side {
    feeds: BTreeMap<u8, (Seq, Option<Seq>)>,
}

impl Side {
    fn hash(&self, a: u8, seq: Seq) -> Hash {
        let (_, variant_from) = self.feeds[&a];
        let variant = u8::from(variant_from.is_some_and(|from| seq >= from));
        h(a, seq, variant)
    }
    fn state(&self) -> Feeds {
        self.feeds
            .iter()
            .filter(|(_, (len, _))| *len > 0)
            .map(|(&a, &(length, _))| {
                (
                    author(a),
                    FeedState {
                        length,
                        head: self.hash(a, length),
                    },
                )
            })
            .collect()
    }
    fn plan(&self, own: u8, peer: &Side, forked: &BTreeSet<Author>) -> Plan {
        plan(
            &author(own),
            &self.state(),
            &peer.state(),
            forked,
            |au, seq| {
                let a = au.0[0];
                (seq >= 1 && seq <= self.feeds.get(&a)?.0).then(|| self.hash(a, seq))
            },
        )
        .unwrap()
    }
}

fn side(feeds: &[(u8, Seq)]) -> Side {
    Side {
        feeds: feeds.iter().map(|&(a, n)| (a, (n, None))).collect(),
    }
}

fn forked_side(feeds: &[(u8, Seq, Seq)]) -> Side {
    Side {
        feeds: feeds
            .iter()
            .map(|&(a, n, from)| (a, (n, Some(from))))
            .collect(),
    }
}

fn none() -> BTreeSet<Author> {
    BTreeSet::new()
}

fn range(a: u8, from: Seq, to: Seq) -> SeqRange {
    SeqRange {
        author: author(a),
        from,
        to,
    }
}

#[test]
fn peer_lacks_the_feed_send_all() {
    let p = side(&[(1, 3)]).plan(9, &side(&[]), &none());
    assert_eq!(p.send, vec![range(1, 1, 3)]);
    assert!(p.forks.is_empty());
}

#[test]
fn in_sync_does_nothing() {
    let p = side(&[(1, 3), (2, 1)]).plan(9, &side(&[(1, 3), (2, 1)]), &none());
    assert_eq!(p.send, vec![]);
    assert_eq!(p.forks, vec![]);
    assert_eq!(p.fence, Fence::Current);
}

#[test]
fn peer_holds_a_prefix_send_the_rest() {
    let p = side(&[(1, 5)]).plan(9, &side(&[(1, 2)]), &none());
    assert_eq!(p.send, vec![range(1, 3, 5)]);
}

#[test]
fn peer_is_longer_send_nothing_the_peer_sends_the_rest() {
    let (ours, theirs) = (side(&[(1, 2)]), side(&[(1, 5)]));
    let p = ours.plan(9, &theirs, &none());
    assert!(p.send.is_empty() && p.forks.is_empty());
    assert_eq!(theirs.plan(9, &ours, &none()).send, vec![range(1, 3, 5)]);
}

#[test]
fn equal_lengths_different_heads_is_a_fork_without_want() {
    let p = side(&[(1, 4)]).plan(9, &forked_side(&[(1, 4, 3)]), &none());
    assert_eq!(
        p.forks,
        vec![ForkCheck {
            author: author(1),
            seq: 4,
            want_theirs: false
        }]
    );
    assert!(p.send.is_empty());
}

#[test]
fn longer_side_with_a_different_entry_at_peer_length_sends_witness_and_wants() {
    let p = side(&[(1, 6)]).plan(9, &forked_side(&[(1, 4, 2)]), &none());
    assert_eq!(
        p.forks,
        vec![ForkCheck {
            author: author(1),
            seq: 4,
            want_theirs: true
        }]
    );
    assert!(p.send.is_empty());
}

#[test]
fn forked_authors_are_skipped() {
    let forked = BTreeSet::from([author(1)]);
    let (ours, theirs) = (side(&[(1, 6), (2, 1)]), side(&[(1, 2), (3, 1)]));
    let p = ours.plan(9, &theirs, &forked);
    assert_eq!(p.send, vec![range(2, 1, 1)]);
    assert!(p.forks.is_empty());
    let q = theirs.plan(9, &ours, &forked);
    assert_eq!(q.send, vec![range(3, 1, 1)]);
}

#[test]
fn missing_hash_is_an_error() {
    let ours = side(&[(1, 6)]).state();
    let theirs = side(&[(1, 2)]).state();
    assert_eq!(
        plan(&author(9), &ours, &theirs, &none(), |_, _| None),
        Err(MissingHash {
            author: author(1),
            seq: 2
        })
    );
}

#[test]
fn fence_current_when_peer_lacks_equals_or_trails() {
    for peer in [side(&[]), side(&[(7, 3)]), side(&[(7, 1)])] {
        assert_eq!(
            side(&[(7, 3)]).plan(7, &peer, &none()).fence,
            Fence::Current
        );
    }
}

#[test]
fn fence_peer_ahead_when_restored_from_an_old_backup() {
    let p = side(&[(7, 3)]).plan(7, &side(&[(7, 8)]), &none());
    assert_eq!(p.fence, Fence::PeerAhead { their_length: 8 });
    let fresh = side(&[]).plan(7, &side(&[(7, 8)]), &none());
    assert_eq!(fresh.fence, Fence::PeerAhead { their_length: 8 });
}

#[test]
fn fence_diverged_from_heads_or_lookup() {
    let same_len = side(&[(7, 3)]).plan(7, &forked_side(&[(7, 3, 3)]), &none());
    assert_eq!(same_len.fence, Fence::Diverged { seq: 3 });
    let longer = side(&[(7, 5)]).plan(7, &forked_side(&[(7, 3, 2)]), &none());
    assert_eq!(longer.fence, Fence::Diverged { seq: 3 });
    let known = side(&[(7, 5)]).plan(7, &side(&[]), &BTreeSet::from([author(7)]));
    assert_eq!(known.fence, Fence::Diverged { seq: 0 });
}

#[test]
fn have_lines_leave_out_forked_authors_in_order() {
    let ours = side(&[(3, 1), (1, 2), (2, 5)]).state();
    let lines = have_lines(&ours, &BTreeSet::from([author(2)]));
    let authors: Vec<_> = lines.iter().map(|l| l.author).collect();
    assert_eq!(authors, vec![author(1), author(3)]);
}

#[test]
fn merged_feeds_keep_the_longer_length() {
    let mut progress = PeerProgress::default();
    progress.note(&author(1), 9);
    progress.merge_feeds(&side(&[(1, 3), (2, 4)]).state());
    assert_eq!(progress.length(&author(1)), 9);
    assert_eq!(progress.length(&author(2)), 4);
}

#[test]
fn peer_progress_decides_live_pushes() {
    let mut progress = PeerProgress::default();
    progress.merge_feeds(&side(&[(1, 3)]).state());
    assert_eq!(progress.push(&author(1), 2, 2), Push::AlreadyHeld);
    assert_eq!(progress.push(&author(1), 1, 3), Push::AlreadyHeld);
    assert_eq!(progress.push(&author(1), 4, 4), Push::Next { held: 3 });
    // A run that overlaps what the peer holds still reaches its next entry.
    assert_eq!(progress.push(&author(1), 2, 5), Push::Next { held: 3 });
    assert_eq!(progress.push(&author(1), 6, 6), Push::Behind { from: 4 });
    assert_eq!(progress.push(&author(1), 5, 7), Push::Behind { from: 4 });
    assert_eq!(progress.push(&author(2), 1, 2), Push::Next { held: 0 });
    progress.note(&author(1), 6);
    progress.note(&author(1), 5);
    assert_eq!(progress.length(&author(1)), 6);
    assert_eq!(progress.push(&author(1), 6, 6), Push::AlreadyHeld);
}

/// Applies `plan`'s sends from `from` to `to`, asserting each range starts exactly at the
/// receiver's next position (so nothing it holds is ever sent, and nothing is skipped).
fn apply(plan: &Plan, from: &Side, to: &mut Side) {
    for r in &plan.send {
        let a = r.author.0[0];
        let held = to.feeds.get(&a).map_or(0, |f| f.0);
        assert_eq!(
            r.from,
            held + 1,
            "range {r:?} starts at the receiver's next seq"
        );
        assert!(r.to <= from.feeds[&a].0);
        // The receiver's chain rule: the first entry links to its head.
        assert!(r.from == 1 || to.hash(a, r.from - 1) == from.hash(a, r.from - 1));
        // The receiver now holds the sender's history for this feed.
        to.feeds.insert(a, (r.to, from.feeds[&a].1));
    }
}

fn arb_pair() -> impl Strategy<Value = (Vec<(Seq, Seq)>, u8)> {
    (
        proptest::collection::vec((0u64..12, 0u64..12), 1..6),
        0u8..6,
    )
}

proptest! {
    /// Both sides hold prefixes of one common history: after both plans are applied, both
    /// hold the union, and no range resends anything.
    #[test]
    fn plans_converge_on_the_union((lengths, own) in arb_pair()) {
        let a_feeds: Vec<(u8, Seq)> = lengths.iter().enumerate().map(|(i, l)| (i as u8, l.0)).collect();
        let b_feeds: Vec<(u8, Seq)> = lengths.iter().enumerate().map(|(i, l)| (i as u8, l.1)).collect();
        let (mut a, mut b) = (side(&a_feeds), side(&b_feeds));
        let plan_a = a.plan(own, &b, &none());
        let plan_b = b.plan(own, &a, &none());
        prop_assert!(plan_a.forks.is_empty() && plan_b.forks.is_empty());
        // Each feed is sent by at most one side, and only by a longer one.
        for r in plan_a.send.iter().chain(&plan_b.send) {
            let (la, lb) = lengths[usize::from(r.author.0[0])];
            prop_assert!(la != lb);
        }
        let (a0, b0) = (a.clone(), b.clone());
        apply(&plan_a, &a0, &mut b);
        apply(&plan_b, &b0, &mut a);
        for (i, (la, lb)) in lengths.iter().enumerate() {
            let i = i as u8;
            let union = (*la).max(*lb);
            prop_assert_eq!(a.feeds[&i].0, union);
            prop_assert_eq!(b.feeds[&i].0, union);
        }
        // The fence never reports divergence without a fork.
        let diverged = matches!(plan_a.fence, Fence::Diverged { .. });
        prop_assert!(!diverged);
    }

    /// Feeds whose copies diverge at `split`: a fork visible in the heads (both lengths reach
    /// the split) is reported by at least one side, and no side sends entries on top of a
    /// diverging prefix.
    #[test]
    fn visible_forks_are_found_before_any_range_is_sent(
        la in 0u64..10, lb in 0u64..10, split in 1u64..10,
    ) {
        let a = side(&[(1, la)]);
        let b = forked_side(&[(1, lb, split)]);
        let plan_a = a.plan(9, &b, &none());
        let plan_b = b.plan(9, &a, &none());
        let visible = la.min(lb) >= split;
        let found = !plan_a.forks.is_empty() || !plan_b.forks.is_empty();
        prop_assert_eq!(found, visible);
        if visible {
            prop_assert!(plan_a.send.is_empty() && plan_b.send.is_empty());
            let seqs: Vec<Seq> = plan_a.forks.iter().chain(&plan_b.forks).map(|f| f.seq).collect();
            prop_assert!(seqs.iter().all(|&s| s == la.min(lb)));
        } else {
            // Not yet a fork from what the two hold: the shorter copy is a common prefix.
            let (mut a2, mut b2) = (a.clone(), b.clone());
            apply(&plan_a, &a, &mut b2);
            apply(&plan_b, &b, &mut a2);
        }
    }
}
