//! The planner's whole mode: a sync batch placed whole or not at all (see
//! [`super::super::Request::Foreign`]), against the same view every other request is placed
//! against, with what it touched in that view put back if it is refused.

use std::collections::HashMap;

use super::{PendingFeed, Planner};
use crate::entry::Seq;
use crate::identity::Author;
use crate::store::writer::planned::Placed;
use crate::store::writer::{Checked, Misplaced, Unplaceable};
use crate::store::{AppendError, Outcome};
use crate::validate::FeedHead;

impl Planner {
    /// Places a request whole (a sync batch, see [`super::super::Request::Foreign`]): as
    /// [`Planner::plan_foreign`] does, against the same view (so an entry continuing a feed
    /// whose earlier entries are in flight from any source is the next one, not a gap), but
    /// the first entry that is a gap or rejected (its chain link broken), or whose held
    /// neighbour cannot be read, refuses the whole request: every feed it touched is put
    /// back as it was, so nothing of it is planned, and the answer names that entry.
    pub(super) fn plan_whole(
        &self,
        entries: Vec<Checked>,
        feeds: &mut HashMap<Author, PendingFeed>,
    ) -> Result<Vec<Placed>, AppendError> {
        let positions: Vec<(Author, Seq)> = entries
            .iter()
            .map(|c| (c.entry.author, c.entry.seq))
            .collect();
        let mut marks: HashMap<Author, Option<Mark>> = HashMap::new();
        for (author, _) in &positions {
            marks
                .entry(*author)
                .or_insert_with(|| feeds.get(author).map(Mark::of));
        }
        let (placed, failed) = self.plan_foreign(entries, feeds);
        let misplaced = placed.iter().enumerate().find_map(|(index, p)| match p {
            Placed::Decided(Outcome::Gap { next }) => Some((index, Misplaced::Gap { next: *next })),
            Placed::Decided(Outcome::Rejected(e)) => Some((index, Misplaced::Invalid(e.clone()))),
            _ => None,
        });
        let refusal = match (misplaced, failed) {
            (Some((index, reason)), _) => {
                // `placed` holds one verdict per entry up to its end or the failed read.
                let (author, seq) = positions
                    .get(index)
                    .copied()
                    .ok_or(AppendError::Internal("a placement without its entry"))?;
                AppendError::Unplaceable(Unplaceable {
                    index,
                    author,
                    seq,
                    reason,
                })
            }
            (None, Some(e)) => e,
            (None, None) => return Ok(placed),
        };
        for (author, mark) in marks {
            match mark {
                Some(mark) => {
                    if let Some(feed) = feeds.get_mut(&author) {
                        mark.restore(feed);
                    }
                }
                None => {
                    feeds.remove(&author);
                }
            }
        }
        Err(refusal)
    }
}

/// What a feed of the planner's view was before a request placed whole touched it, to put
/// back if the request is refused. Planning only extends a feed (its head, its last
/// timestamp, entries pushed onto `planned`), so these three undo it.
struct Mark {
    head: Option<FeedHead>,
    last_timestamp: u64,
    planned: usize,
}

impl Mark {
    fn of(feed: &PendingFeed) -> Mark {
        Mark {
            head: feed.head,
            last_timestamp: feed.last_timestamp,
            planned: feed.planned.len(),
        }
    }

    fn restore(self, feed: &mut PendingFeed) {
        feed.head = self.head;
        feed.last_timestamp = self.last_timestamp;
        feed.planned.truncate(self.planned);
    }
}
