//! The summary a node maintains live equals the one rebuilt from its log after a restart,
//! and equals that of a node that received the same entries in another order.

use crate::common;
use kappalog::csv::CsvWriter;
use kappalog::entry::Entry;
use kappalog::hash::Hash;
use kappalog::node::Node;
use proptest::prelude::*;

fn csv_of(entries: &[(Entry, Hash)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = CsvWriter::new(&mut out).unwrap();
    for (entry, hash) in entries {
        writer.write_entry(entry, hash).unwrap();
    }
    writer.finish().unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn live_rebuilt_and_reordered_summaries_are_byte_identical(
        lengths in proptest::collection::vec(1u64..12, 1..4),
        picks in proptest::collection::vec(any::<u8>(), 40),
        chunks in 1usize..5,
    ) {
        let feeds: Vec<Vec<(Entry, Hash)>> = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| common::feed(&common::identity(u8::try_from(i).unwrap() + 10), n))
            .collect();
        // A random interleaving that keeps each feed's order.
        let mut cursors = vec![0usize; feeds.len()];
        let mut order = Vec::new();
        let mut pick = picks.iter().cycle();
        while order.len() < feeds.iter().map(Vec::len).sum() {
            let open: Vec<usize> = (0..feeds.len()).filter(|&f| cursors[f] < feeds[f].len()).collect();
            let f = open[usize::from(*pick.next().unwrap()) % open.len()];
            order.push(feeds[f][cursors[f]].clone());
            cursors[f] += 1;
        }

        // Node A: the interleaving, cut into several imports (live updates across commits).
        let a_dir = tempfile::tempdir().unwrap();
        let (a, _) = Node::open_with_identity(a_dir.path(), common::identity(1)).unwrap();
        let per_chunk = order.len().div_ceil(chunks);
        for chunk in order.chunks(per_chunk) {
            let report = a.import(&csv_of(chunk)[..]).unwrap();
            prop_assert!(report.rejected.is_empty(), "{report}");
        }
        let live = a.summary_json();
        let live_feeds = a.feeds_page(None, usize::MAX);
        a.shutdown_blocking().unwrap();
        let (a, _) = Node::open_with_identity(a_dir.path(), common::identity(1)).unwrap();
        prop_assert_eq!(&*live, &*a.summary_json(), "live vs rebuilt");
        prop_assert_eq!(&live_feeds, &a.feeds_page(None, usize::MAX), "live vs rebuilt");

        // Node B: everything at once, feeds in reverse order of the file.
        let b_dir = tempfile::tempdir().unwrap();
        let (b, _) = Node::open_with_identity(b_dir.path(), common::identity(2)).unwrap();
        let mut reversed: Vec<(Entry, Hash)> = feeds.iter().rev().flatten().cloned().collect();
        reversed.reverse();
        b.import(&csv_of(&reversed)[..]).unwrap();
        prop_assert_eq!(&*live, &*b.summary_json(), "order of arrival");
        prop_assert_eq!(&live_feeds, &b.feeds_page(None, usize::MAX), "order of arrival");
    }
}
