//! The planner's placement of foreign requests, planned batch by batch with no syncer
//! behind it: what one batch plans stays in flight for every later one, never durable.

use std::path::Path;
use std::sync::atomic::AtomicU64;

use tokio::sync::oneshot;

use super::*;
use crate::entry::testing::feed;
use crate::entry::Entry;
use crate::store::io::memory::MemoryIo;
use crate::store::io::OpenMode;
use crate::store::writer::{ForeignResult, Misplaced, Unplaceable};
use crate::validate::ValidationError;

fn planner() -> Planner {
    let io: Arc<dyn LogIo> = Arc::new(MemoryIo::new());
    let file = io
        .open(Path::new("entries.log"), OpenMode::ReadWrite)
        .unwrap();
    let index = Arc::new(RwLock::new(Index::new(0)));
    let (fence, _) = watch::channel(Fence::default());
    let epoch = Arc::new(AtomicU64::new(0));
    Planner::new(io, Arc::new(file), index, None, epoch, fence)
}

/// A foreign request for `entries` (checked), and where its answer comes.
fn offer(entries: &[(Entry, Hash)], whole: bool) -> (Request, oneshot::Receiver<ForeignResult>) {
    let (reply, answer) = oneshot::channel();
    let entries = entries
        .iter()
        .map(|(entry, hash)| Checked {
            entry: entry.clone(),
            hash: *hash,
            verdict: Ok(()),
        })
        .collect();
    let request = Request::Foreign {
        entries,
        whole,
        reply,
    };
    (request, answer)
}

/// Plans one batch of requests; each planned foreign request's placements, in order.
fn plan(planner: &mut Planner, requests: Vec<Request>) -> Vec<Vec<&'static str>> {
    planner
        .commit(requests)
        .requests
        .iter()
        .map(|planned| match planned {
            Planned::Foreign { placed, .. } => placed
                .iter()
                .map(|p| match p {
                    Placed::Write(_) => "write",
                    Placed::Decided(Outcome::Duplicate(_)) => "duplicate",
                    Placed::Decided(Outcome::Fork { .. }) => "fork",
                    Placed::Decided(Outcome::Gap { .. }) => "gap",
                    Placed::Decided(Outcome::Rejected(_)) => "rejected",
                    Placed::Decided(Outcome::Added(_)) => "added",
                })
                .collect(),
            _ => vec!["not foreign"],
        })
        .collect()
}

/// Plans one request alone.
fn plan_one(planner: &mut Planner, entries: &[(Entry, Hash)], whole: bool) -> Vec<&'static str> {
    let (request, _answer) = offer(entries, whole);
    plan(planner, vec![request]).concat()
}

/// Plans a whole request that must be refused; returns why.
fn refused(planner: &mut Planner, entries: &[(Entry, Hash)]) -> Unplaceable {
    let (request, mut answer) = offer(entries, true);
    let planned = plan(planner, vec![request]);
    assert!(
        planned.is_empty(),
        "a refused request is planned: {planned:?}"
    );
    // Answered at once, before any write.
    match answer.try_recv() {
        Ok(Err(AppendError::Unplaceable(refused))) => refused,
        other => panic!("not refused: {other:?}"),
    }
}

/// An entry continuing a feed whose earlier entries are in flight from another request (an
/// import, another session) is the feed's next one, in a later batch or the same one.
#[test]
fn a_whole_request_continues_entries_in_flight_from_another_request() {
    let mut planner = planner();
    let f = feed(1, 6, 0);
    assert_eq!(plan_one(&mut planner, &f[..3], false), ["write"; 3]);
    assert_eq!(plan_one(&mut planner, &f[3..4], true), ["write"]);
    let (first, _a) = offer(&f[4..5], true);
    let (second, _b) = offer(&f[5..6], true);
    assert_eq!(
        plan(&mut planner, vec![first, second]),
        [["write"], ["write"]]
    );
    // Beyond what is in flight, it is a gap.
    let gap = refused(&mut planner, &feed(1, 8, 0)[7..8]);
    assert_eq!(gap.reason, Misplaced::Gap { next: 7 });
}

/// A gap refuses the whole request, the entries before it included, and leaves the view as
/// it was: the same entries offered again are written, not duplicates of a refused plan.
#[test]
fn a_gap_refuses_the_whole_request_and_leaves_the_view_untouched() {
    let mut planner = planner();
    let f = feed(1, 5, 0);
    let g = feed(2, 3, 0);
    assert_eq!(plan_one(&mut planner, &f[..2], true), ["write"; 2]);

    let batch = [f[2].clone(), g[0].clone(), f[4].clone()];
    let gap = refused(&mut planner, &batch);
    assert_eq!(
        gap,
        Unplaceable {
            index: 2,
            author: f[4].0.author,
            seq: 5,
            reason: Misplaced::Gap { next: 4 },
        }
    );
    let new_feed_gap = refused(&mut planner, &[g[0].clone(), g[2].clone()]);
    assert_eq!(new_feed_gap.index, 1);

    assert_eq!(plan_one(&mut planner, &f[2..4], true), ["write"; 2]);
    assert_eq!(plan_one(&mut planner, &g[..1], true), ["write"]);
}

/// An entry that does not link to its feed's head (here the head in flight) refuses the
/// whole request; nothing of it is planned.
#[test]
fn a_broken_link_refuses_the_whole_request_and_leaves_the_view_untouched() {
    let mut planner = planner();
    let f = feed(1, 3, 0);
    let other = feed(1, 3, 1);
    assert_eq!(plan_one(&mut planner, &f[..1], true), ["write"]);
    let broken = refused(&mut planner, &[f[1].clone(), other[2].clone()]);
    assert_eq!(broken.index, 1);
    assert_eq!(broken.seq, 3);
    assert!(
        matches!(
            broken.reason,
            Misplaced::Invalid(ValidationError::PrevMismatch { .. })
        ),
        "{broken:?}"
    );
    assert_eq!(plan_one(&mut planner, &f[1..3], true), ["write"; 2]);
}

/// Duplicates and forks of entries in flight are outcomes, not refusals, in a whole request.
#[test]
fn duplicates_and_forks_do_not_refuse_a_whole_request() {
    let mut planner = planner();
    let f = feed(1, 3, 0);
    let other = feed(1, 3, 1);
    assert_eq!(plan_one(&mut planner, &f[..2], false), ["write"; 2]);
    assert_eq!(
        plan_one(
            &mut planner,
            &[f[1].clone(), other[1].clone(), f[2].clone()],
            true
        ),
        ["duplicate", "fork", "write"]
    );
}

/// Per-entry requests (an import, `POST`ed entries) keep their semantics: a gap is that
/// entry's outcome, and the entries around it are still planned.
#[test]
fn a_per_entry_request_plans_around_a_gap() {
    let mut planner = planner();
    let f = feed(1, 4, 0);
    let g = feed(2, 1, 0);
    assert_eq!(
        plan_one(
            &mut planner,
            &[f[0].clone(), f[2].clone(), g[0].clone()],
            false
        ),
        ["write", "gap", "write"]
    );
}
