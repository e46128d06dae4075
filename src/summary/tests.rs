//! Unit tests of the summary view: empty view, wide sums, forks, paging, the golden JSON and
//! the digest (recomputed from the documented layout, and pinned by a golden vector).

use super::tree::{INNER_LEVELS, LEAF_BUCKETS, TREE_FANOUT};
use super::*;
use crate::entry::UnsignedEntry;
use crate::identity::{Identity, Signature};

/// A feed's entries with their hashes, in seq order.
type Chain = Vec<(Entry, Hash)>;

/// A chain of entries with `values` for `author` (unsigned: views do not verify).
fn feed_of(author: Author, values: &[i64]) -> Chain {
    let mut prev = None;
    let mut out = vec![];
    for (i, &value) in values.iter().enumerate() {
        let seq = u64::try_from(i).unwrap() + 1;
        let unsigned = UnsignedEntry {
            author,
            seq,
            timestamp: 1000 * seq,
            prev,
            value,
            data: String::new(),
        };
        let hash = unsigned.hash();
        prev = Some(hash);
        out.push((unsigned.with_signature(Signature([0; 64])), hash));
    }
    out
}

/// [`feed_of`] the author whose 32 bytes are all `n`.
fn feed(n: u8, values: &[i64]) -> Vec<(Entry, Hash)> {
    feed_of(Author([n; 32]), values)
}

fn view_of(feeds: &[Vec<(Entry, Hash)>]) -> SummaryView {
    let mut view = SummaryView::new();
    for (entry, hash) in feeds.iter().flatten() {
        view.apply(entry, hash);
    }
    view
}

/// A live feed's length, head, first and last timestamps.
type SpecFeed = (u64, Hash, u64, u64);

/// The digest recomputed from docs/SUMMARY.md alone, walking the whole tree: `feeds` are
/// `(author, Some((length, head, first, last)))` for live feeds and `(author, None)` for
/// forked ones, in any order.
fn digest_by_the_spec(
    count: u64,
    sum: i128,
    range: Option<(i64, i64)>,
    feeds: &[(Author, Option<SpecFeed>)],
) -> Hash {
    let mut leaves = vec![vec![0x00u8]; LEAF_BUCKETS];
    let mut sorted = feeds.to_vec();
    sorted.sort_by_key(|(author, _)| *author);
    for (author, state) in &sorted {
        let leaf = &mut leaves[usize::from(author.0[0]) * 256 + usize::from(author.0[1])];
        leaf.extend_from_slice(&author.0);
        match state {
            Some((length, head, first, last)) => {
                leaf.push(0);
                leaf.extend_from_slice(&length.to_be_bytes());
                leaf.extend_from_slice(&head.0);
                leaf.extend_from_slice(&first.to_be_bytes());
                leaf.extend_from_slice(&last.to_be_bytes());
            }
            None => leaf.push(1),
        }
    }
    let mut level: Vec<Hash> = leaves.iter().map(|l| Hash::digest_parts(&[l])).collect();
    for _ in 0..INNER_LEVELS {
        level = level
            .chunks(TREE_FANOUT)
            .map(|children| {
                let mut input = vec![0x01u8];
                for child in children {
                    input.extend_from_slice(&child.0);
                }
                Hash::digest_parts(&[&input])
            })
            .collect();
    }
    assert_eq!(level.len(), 1);
    let mut input = Vec::new();
    input.extend_from_slice(b"kappalog/summary");
    input.push(2);
    input.extend_from_slice(&count.to_be_bytes());
    input.extend_from_slice(&sum.to_be_bytes());
    for bound in [range.map(|r| r.0), range.map(|r| r.1)] {
        match bound {
            Some(v) => {
                input.push(1);
                input.extend_from_slice(&v.to_be_bytes());
            }
            None => input.extend_from_slice(&[0; 9]),
        }
    }
    input.extend_from_slice(&u64::try_from(feeds.len()).unwrap().to_be_bytes());
    input.extend_from_slice(&level[0].0);
    Hash::digest_parts(&[&input])
}

#[test]
fn empty_view_has_nulls() {
    let s = SummaryView::new().summary();
    assert_eq!(
        (s.count, s.sum, s.min, s.max, s.mean, s.feed_count),
        (0, 0, None, None, None, 0)
    );
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["mean"].is_null() && json["min"].is_null() && json["max"].is_null());
    assert_eq!(s.digest, digest_by_the_spec(0, 0, None, &[]));
    assert_eq!(
        SummaryView::new().feeds_page(None, 10),
        FeedsPage {
            feeds: vec![],
            next: None
        }
    );
}

#[test]
fn sum_goes_beyond_i64() {
    let s = view_of(&[feed(1, &[i64::MAX, i64::MAX, i64::MAX])]).summary();
    assert_eq!(s.sum, 3 * i128::from(i64::MAX));
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"sum\":27670116110564327421,"), "{json}");
    assert_eq!(s.mean, Some(i64::MAX as f64));
}

/// Feeds 1 (values 5, -3) and 2 (value 10) live, feed 3 (value 7) forked.
fn golden_view() -> (SummaryView, Chain, Chain) {
    let (a, b) = (feed(1, &[5, -3]), feed(2, &[10]));
    let mut view = view_of(&[a.clone(), b.clone(), feed(3, &[7])]);
    view.mark_forked(&Author([3; 32]));
    (view, a, b)
}

#[test]
fn golden_json() {
    let (mut view, a, b) = golden_view();
    let digest = view.summary().digest;
    assert_eq!(
        serde_json::to_string(&view.summary()).unwrap(),
        format!(
            r#"{{"count":3,"sum":12,"min":-3,"max":10,"mean":4.0,"feed_count":3,"forked_feed_count":1,"digest":"{digest}"}}"#
        )
    );
    let page = serde_json::to_string(&view.feeds_page(None, 100)).unwrap();
    let expected = format!(
        concat!(
            r#"{{"feeds":["#,
            r#"{{"author":"{a1}","length":2,"head":"{ha}","first_timestamp":1000,"#,
            r#""last_timestamp":2000,"status":"ok"}},"#,
            r#"{{"author":"{a2}","length":1,"head":"{hb}","first_timestamp":1000,"#,
            r#""last_timestamp":1000,"status":"ok"}},"#,
            r#"{{"author":"{a3}","length":null,"head":null,"first_timestamp":null,"#,
            r#""last_timestamp":null,"status":"forked"}}],"next":null}}"#
        ),
        a1 = "01".repeat(32),
        a2 = "02".repeat(32),
        a3 = "03".repeat(32),
        ha = a[1].1,
        hb = b[0].1,
    );
    assert_eq!(page, expected);
}

#[test]
fn digest_follows_the_documented_layout() {
    let (mut view, a, b) = golden_view();
    let expected = digest_by_the_spec(
        3,
        12,
        Some((-3, 10)),
        &[
            (Author([2; 32]), Some((1, b[0].1, 1000, 1000))),
            (Author([3; 32]), None),
            (Author([1; 32]), Some((2, a[1].1, 1000, 2000))),
        ],
    );
    assert_eq!(view.summary().digest, expected);
}

/// The golden vector of docs/SUMMARY.md: a third party recomputing the digest of these
/// entries must get this hex (the doc's Python recomputation prints it too).
#[test]
fn golden_digest_vector() {
    let (mut view, a, b) = golden_view();
    assert_eq!(
        a[1].1.to_string(),
        "40f9884c4e55f5a7f0ee6af0d79bb688d828e13b184ac3d3464cbfe4bbd1b5bf"
    );
    assert_eq!(
        b[0].1.to_string(),
        "491288c8ceaa50dc8529b8ca58f57ade816281ff3c42d8f7db96de03f5bdd9d0"
    );
    let golden = "f050be2620c4a1a674782777646b67c4ef3c95e0cf37c43c30aadb942c9ff9ad";
    assert_eq!(view.summary().digest.to_string(), golden);
    let spec = include_str!("../../docs/SUMMARY.md");
    for pinned in [golden, &a[1].1.to_string(), &b[0].1.to_string()] {
        assert!(spec.contains(pinned), "docs/SUMMARY.md lacks {pinned}");
    }
}

#[test]
fn feeds_sharing_a_bucket_and_the_edge_buckets_are_ordered_by_author() {
    let mut authors = vec![];
    for (first, second, rest) in [
        (0, 0, 9),
        (0, 0, 1),
        (0xff, 0xff, 3),
        (0xff, 0xff, 0),
        (7, 1, 2),
    ] {
        let mut bytes = [rest; 32];
        bytes[0] = first;
        bytes[1] = second;
        authors.push(Author(bytes));
    }
    let feeds: Vec<Vec<(Entry, Hash)>> = authors
        .iter()
        .zip(1..)
        .map(|(a, v)| feed_of(*a, &[v, v * 2]))
        .collect();
    let mut forward = view_of(&feeds);
    let mut reversed: Vec<_> = feeds.clone();
    reversed.reverse();
    let mut backward = view_of(&reversed);
    assert_eq!(forward.summary(), backward.summary());
    let spec: Vec<_> = feeds
        .iter()
        .map(|f| (f[0].0.author, Some((2, f[1].1, 1000, 2000))))
        .collect();
    assert_eq!(
        forward.summary().digest,
        digest_by_the_spec(10, 45, Some((1, 10)), &spec)
    );
}

#[test]
fn digest_kept_up_to_date_across_reads_equals_one_built_at_once() {
    let feeds: Vec<_> = (1..=6).map(|n| feed(n * 40, &[1, 2, 3, 4])).collect();
    let mut live = SummaryView::new();
    let mut digests = std::collections::BTreeSet::new();
    for round in 0..4 {
        for f in &feeds {
            live.apply(&f[round].0, &f[round].1);
            digests.insert(live.summary().digest);
        }
    }
    live.mark_forked(&Author([80; 32]));
    let mut at_once = view_of(&feeds);
    at_once.mark_forked(&Author([80; 32]));
    assert_eq!(live.summary(), at_once.summary());
    assert_eq!(digests.len(), 24, "every change moves the digest");
}

#[test]
fn forked_feed_leaves_every_aggregate() {
    let mut view = view_of(&[feed(1, &[1, 2]), feed(2, &[i64::MIN, i64::MAX])]);
    let before = view.summary();
    assert_eq!((before.min, before.max), (Some(i64::MIN), Some(i64::MAX)));
    view.mark_forked(&Author([2; 32]));
    let s = view.summary();
    assert_eq!((s.count, s.sum, s.min, s.max), (2, 3, Some(1), Some(2)));
    assert_eq!(s.mean, Some(1.5));
    assert_eq!((s.feed_count, s.forked_feed_count), (2, 1));
}

#[test]
fn forking_an_unknown_author_counts_it_once() {
    let mut view = view_of(&[feed(1, &[1])]);
    view.mark_forked(&Author([9; 32]));
    view.mark_forked(&Author([9; 32]));
    let s = view.summary();
    assert_eq!((s.count, s.feed_count, s.forked_feed_count), (1, 2, 1));
}

#[test]
fn entries_after_fork_are_ignored_and_digest_ignores_fork_point() {
    let b = feed(2, &[4, 5, 6]);
    let mut early = view_of(&[feed(1, &[1])]);
    early.mark_forked(&Author([2; 32]));
    for (e, h) in &b {
        early.apply(e, h);
    }
    let mut late = view_of(&[feed(1, &[1]), b[..2].to_vec()]);
    late.mark_forked(&Author([2; 32]));
    assert_eq!(early.summary(), late.summary());
    assert_eq!(early.summary().count, 1);
}

#[test]
fn out_of_order_and_replayed_entries_are_ignored() {
    let a = feed(1, &[1, 2, 3]);
    let mut view = SummaryView::new();
    view.apply(&a[1].0, &a[1].1); // seq 2 before seq 1
    view.apply(&a[0].0, &a[0].1);
    view.apply(&a[0].0, &a[0].1); // replay
    assert_eq!(view.summary(), view_of(&[a[..1].to_vec()]).summary());
}

#[test]
fn cache_is_refreshed_by_apply() {
    let a = feed(1, &[1, 2]);
    let mut view = view_of(&[a[..1].to_vec()]);
    assert_eq!(view.summary().count, 1);
    view.apply(&a[1].0, &a[1].1);
    assert_eq!(view.summary().count, 2);
}

#[test]
fn pages_walk_every_feed_once_in_author_order() {
    let feeds: Vec<_> = (1..=7).rev().map(|n| feed(n, &[1])).collect();
    let view = view_of(&feeds);
    for limit in 1..=8 {
        let mut seen = vec![];
        let mut after = None;
        loop {
            let page = view.feeds_page(after.as_ref(), limit);
            assert!(page.feeds.len() <= limit);
            seen.extend(page.feeds.iter().map(|f| f.author.0[0]));
            match page.next {
                Some(next) => {
                    assert_eq!(Some(next), page.feeds.last().map(|f| f.author));
                    after = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(seen, (1..=7).collect::<Vec<u8>>(), "limit {limit}");
    }
    // A page that ends exactly on the last feed says so: no empty page after it.
    assert_eq!(view.feeds_page(None, 7).next, None);
    // `after` need not be held: the page starts at the next author.
    let page = view.feeds_page(Some(&Author([3; 32])), 2);
    assert_eq!(page.feeds[0].author, Author([4; 32]));
    assert_eq!(page.next, Some(Author([5; 32])));
    assert_eq!(view.feeds_page(Some(&Author([7; 32])), 2).feeds, vec![]);
}

#[test]
fn signed_entries_work_the_same() {
    let id = Identity::from_seed([9; 32]);
    let (entry, hash) = UnsignedEntry {
        author: id.author(),
        seq: 1,
        timestamp: 5,
        prev: None,
        value: 42,
        data: "x".into(),
    }
    .sign(&id);
    let mut view = SummaryView::new();
    view.apply(&entry, &hash);
    let page = view.feeds_page(None, 1);
    assert_eq!(page.feeds[0].head, Some(hash));
    assert_eq!(page.feeds[0].author, id.author());
    assert_eq!(page.next, None);
}
