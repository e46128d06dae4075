//! The summary depends only on the set of entries and forked authors: never on the
//! interleaving of feeds, nor on where in a feed its fork was noticed.

use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::{Author, Signature};
use kappalog::summary::SummaryView;
use kappalog::view::View;
use proptest::prelude::*;

/// Values biased towards the extremes, where overflow bugs live.
fn value() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0i64),
        Just(-1i64),
        any::<i64>(),
    ]
}

/// Up to 5 feeds (distinct authors) of 0..8 entries each: (value, timestamp, data).
fn feeds() -> impl Strategy<Value = Vec<Vec<(Entry, Hash)>>> {
    prop::collection::vec(
        prop::collection::vec((value(), any::<u64>(), ".{0,8}"), 0..8),
        1..5,
    )
    .prop_map(|feeds| {
        feeds
            .into_iter()
            .enumerate()
            .map(|(i, rows)| {
                let author = Author([u8::try_from(i).unwrap() * 37 + 1; 32]);
                let mut prev = None;
                rows.into_iter()
                    .enumerate()
                    .map(|(j, (value, timestamp, data))| {
                        let unsigned = UnsignedEntry {
                            author,
                            seq: u64::try_from(j).unwrap() + 1,
                            timestamp,
                            prev,
                            value,
                            data,
                        };
                        let hash = unsigned.hash();
                        prev = Some(hash);
                        (unsigned.with_signature(Signature([7; 64])), hash)
                    })
                    .collect()
            })
            .collect()
    })
}

/// Interleaves the feeds by `picks` (each pick chooses which non-empty feed goes next), so
/// every feed keeps its seq order.
fn interleave(feeds: &[Vec<(Entry, Hash)>], picks: &[usize]) -> Vec<(Entry, Hash)> {
    let mut cursors = vec![0usize; feeds.len()];
    let mut out = vec![];
    let mut picks = picks.iter().cycle();
    loop {
        let open: Vec<usize> = (0..feeds.len())
            .filter(|&i| cursors[i] < feeds[i].len())
            .collect();
        if open.is_empty() {
            return out;
        }
        let i = open[picks.next().copied().unwrap_or(0) % open.len()];
        out.push(feeds[i][cursors[i]].clone());
        cursors[i] += 1;
    }
}

/// Applies `order`, marking each author of `forked` at position `at` of the order.
fn build(order: &[(Entry, Hash)], forked: &[(Author, usize)]) -> SummaryView {
    let mut view = SummaryView::new();
    for (pos, (entry, hash)) in order.iter().enumerate() {
        for (author, _) in forked.iter().filter(|(_, at)| *at == pos) {
            view.mark_forked(author);
        }
        view.apply(entry, hash);
    }
    for (author, _) in forked.iter().filter(|(_, at)| *at >= order.len()) {
        view.mark_forked(author);
    }
    view
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn interleaving_does_not_change_the_summary(
        feeds in feeds(),
        picks in prop::collection::vec(prop::collection::vec(any::<usize>(), 1..40), 2..6),
    ) {
        let mut reference_view = build(&interleave(&feeds, &[0]), &[]);
        let reference = serde_json::to_string(&reference_view.summary()).unwrap();
        let reference_feeds = reference_view.feeds_page(None, usize::MAX);
        for p in &picks {
            let mut view = build(&interleave(&feeds, p), &[]);
            let json = serde_json::to_string(&view.summary()).unwrap();
            prop_assert_eq!(&json, &reference);
            prop_assert_eq!(view.feeds_page(None, usize::MAX), reference_feeds.clone());
        }
    }

    #[test]
    fn fork_point_does_not_change_the_summary(
        feeds in feeds(),
        picks in prop::collection::vec(any::<usize>(), 1..40),
        forked_mask in any::<u8>(),
        points in prop::collection::vec((any::<usize>(), any::<usize>()), 5),
    ) {
        let forked: Vec<Author> = (0..feeds.len())
            .filter(|i| forked_mask & (1 << i) != 0)
            .map(|i| Author([u8::try_from(i).unwrap() * 37 + 1; 32]))
            .collect();
        let order = interleave(&feeds, &picks);
        // Reference: everything applied, forks marked at the end.
        let end: Vec<(Author, usize)> = forked.iter().map(|a| (*a, usize::MAX)).collect();
        let mut reference_view = build(&order, &end);
        let reference = reference_view.summary();
        // Forks marked at arbitrary points, in a different interleaving.
        let at: Vec<(Author, usize)> = forked
            .iter()
            .zip(&points)
            .map(|(a, (p, _))| (*a, p % (order.len() + 1)))
            .collect();
        let other_order = interleave(&feeds, &points.iter().map(|(_, q)| *q).collect::<Vec<_>>());
        let mut view = build(&other_order, &at);
        let summary = view.summary();
        prop_assert_eq!(summary.digest, reference.digest);
        prop_assert_eq!(view.feeds_page(None, usize::MAX), reference_view.feeds_page(None, usize::MAX));
        prop_assert_eq!(
            serde_json::to_string(&summary).unwrap(),
            serde_json::to_string(&reference).unwrap()
        );
        // A forked feed contributes none of its values.
        let live: Vec<i64> = feeds
            .iter()
            .flatten()
            .filter(|(e, _)| !forked.contains(&e.author))
            .map(|(e, _)| e.value)
            .collect();
        prop_assert_eq!(summary.count, live.len() as u64);
        prop_assert_eq!(summary.sum, live.iter().map(|&v| i128::from(v)).sum::<i128>());
        prop_assert_eq!(summary.min, live.iter().copied().min());
        prop_assert_eq!(summary.max, live.iter().copied().max());
    }
}
