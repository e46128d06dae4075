//! Property: after any sequence of appends and torn-tail cuts, reopening yields exactly the
//! entries appended and not cut, in order.

mod common;

use std::ops::ControlFlow;

use common::identity;
use kappalog::hash::Hash;
use kappalog::store::Store;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    /// Cut this many bytes (1..=165) off the end, tearing the last record.
    Tear(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..20).prop_map(Op::Append),
        1 => (1u8..=165).prop_map(Op::Tear),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn reopen_matches_model(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entries.log");
        let me = identity(1);
        let mut model: Vec<(Hash, u64)> = Vec::new();
        let mut store = Some(Store::open(dir.path(), Some(me.clone()), None).unwrap().0);
        for op in ops {
            match op {
                Op::Append(len) => {
                    let s = store.get_or_insert_with(|| Store::open(dir.path(), Some(me.clone()), None).unwrap().0);
                    let (e, h) = s.append_own(1, "d".repeat(len.into())).unwrap();
                    model.push((h, 8 + e.encoded_len() as u64));
                }
                Op::Tear(n) => {
                    if let Some(s) = store.take() { s.sync_and_close().unwrap(); }
                    // Recover any earlier tear first, so this one tears an intact record.
                    Store::open(dir.path(), None, None).unwrap().0.sync_and_close().unwrap();
                    let Some((_, last_len)) = model.pop() else { continue };
                    let len = std::fs::metadata(&path).unwrap().len();
                    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    f.set_len(len - u64::from(n).min(last_len)).unwrap();
                }
                Op::Reopen => {
                    if let Some(s) = store.take() { s.sync_and_close().unwrap(); }
                }
            }
        }
        if let Some(s) = store.take() { s.sync_and_close().unwrap(); }
        let (s, _) = Store::open(dir.path(), Some(me.clone()), None).unwrap();
        let mut got = Vec::new();
        s.reader().for_each_in_log_order(|_, h| { got.push(*h); ControlFlow::Continue(()) }).unwrap();
        let want: Vec<Hash> = model.iter().map(|(h, _)| *h).collect();
        prop_assert_eq!(got, want);
    }
}
