//! The summary a node maintains live equals the one rebuilt from its log after a restart,
//! and equals that of a node that received the same entries in another order.
//!
//! The entries are offered one at a time, each awaited before the next (as a peer's batches
//! arrive), not imported: an import sorts its input, so two imports of the same entries
//! reach the store in the same order whatever order their files had.

use crate::common;
use kappalog::entry::Entry;
use kappalog::hash::Hash;
use kappalog::node::Node;
use proptest::prelude::*;

/// Offers `entries` to `node` one by one, in this order: each is committed (and folded into
/// the live views) before the next arrives.
fn offer_in_order(runtime: &tokio::runtime::Runtime, node: &Node, entries: &[Entry]) {
    for entry in entries {
        let report = runtime
            .block_on(node.offer_entries(vec![entry.clone()]))
            .unwrap();
        assert_eq!(report.added, 1, "{} seq {}", entry.author, entry.seq);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn live_rebuilt_and_reordered_summaries_are_byte_identical(
        lengths in proptest::collection::vec(1u64..12, 2..5),
        picks in proptest::collection::vec(any::<u8>(), 40),
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let feeds: Vec<Vec<Entry>> = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let id = common::identity(u8::try_from(i).unwrap() + 10);
                common::feed(&id, n).into_iter().map(|(e, _): (Entry, Hash)| e).collect()
            })
            .collect();
        // A random interleaving that keeps each feed's order; `started` is the order in
        // which the feeds' first entries come.
        let mut cursors = vec![0usize; feeds.len()];
        let mut order = Vec::new();
        let mut started = Vec::new();
        let mut pick = picks.iter().cycle();
        while order.len() < feeds.iter().map(Vec::len).sum() {
            let open: Vec<usize> = (0..feeds.len()).filter(|&f| cursors[f] < feeds[f].len()).collect();
            let f = open[usize::from(*pick.next().unwrap()) % open.len()];
            if cursors[f] == 0 {
                started.push(f);
            }
            order.push(feeds[f][cursors[f]].clone());
            cursors[f] += 1;
        }

        // Node A: the interleaving, one entry per commit (live updates across commits).
        let a_dir = tempfile::tempdir().unwrap();
        let (a, _) = Node::open_with_identity(a_dir.path(), common::identity(1)).unwrap();
        offer_in_order(&runtime, &a, &order);
        let live = a.summary_json();
        let live_feeds = a.feeds_page(None, usize::MAX);
        a.shutdown_blocking().unwrap();
        let (a, _) = Node::open_with_identity(a_dir.path(), common::identity(1)).unwrap();
        prop_assert_eq!(&*live, &*a.summary_json(), "live vs rebuilt");
        prop_assert_eq!(&live_feeds, &a.feeds_page(None, usize::MAX), "live vs rebuilt");
        a.shutdown_blocking().unwrap();

        // Node B: whole feeds, the one A started last first: B's first entry is of another
        // feed than A's, so the two stores really got the entries in different orders.
        let b_dir = tempfile::tempdir().unwrap();
        let (b, _) = Node::open_with_identity(b_dir.path(), common::identity(2)).unwrap();
        let reordered: Vec<Entry> = started.iter().rev().flat_map(|&f| feeds[f].clone()).collect();
        prop_assert_ne!(&reordered[0].author, &order[0].author);
        offer_in_order(&runtime, &b, &reordered);
        prop_assert_eq!(&*live, &*b.summary_json(), "order of arrival");
        prop_assert_eq!(&live_feeds, &b.feeds_page(None, usize::MAX), "order of arrival");
        b.shutdown_blocking().unwrap();
    }
}
