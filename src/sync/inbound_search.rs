//! The receiving half's part in copy searches (v4, docs/PROTOCOL.md section 7, "Copy
//! searches"): the peer's wants are bounded ([`super::search_slot::PeerWants`]) and handed to
//! the sending half to answer; a note the checkpoint book did not take may start a search
//! with this peer; the peer's answers are matched against the search's wants
//! ([`SearchSlot`]) and handed to the search off the async workers; its new wants go to the
//! sending half. A search that runs past its deadline is dropped and the session goes on.

use tokio::time::Instant;

use super::copy_searches::{CopySearchRun, SearchEnd, SharedCopySearches};
use super::error::SessionError;
use super::inbound::{Inbound, Next};
use super::message::EncodedNote;
use super::search_slot::Matched;
use super::status::Control;
use super::subtrees::{Subtrees, WantSubtrees};
use crate::identity::Author;

impl Inbound {
    /// The next frame, or the running search's deadline if that comes first.
    pub(super) async fn next_frame_or_expiry(&mut self) -> Next {
        let Some(deadline) = self.search.slot.deadline() else {
            return Next::Frame(self.next_frame().await);
        };
        // Reading a frame is cancel-safe (see `next_frame`).
        tokio::select! {
            m = self.next_frame() => Next::Frame(m),
            _ = tokio::time::sleep_until(deadline) => Next::SearchExpired,
        }
    }

    /// Drops the running search if its deadline passed.
    pub(super) fn expire_search(&mut self) {
        if let Some(author) = self.search.slot.expire(Instant::now()) {
            tracing::info!(peer = %self.key, peer_author = %self.peer, %author, "copy search gave up: timed out; the session goes on");
        }
    }

    /// A peer's want: counted against its bounds and answered by the sending half, in order.
    pub(super) fn on_want_subtrees(&mut self, want: WantSubtrees) -> Result<(), SessionError> {
        self.search.peer_wants.take(Instant::now())?;
        let _ = self.control.send(Control::AnswerSubtrees(want));
        Ok(())
    }

    /// The peer's answer to the oldest want of ours: handed to the search, whose next wants
    /// go out.
    pub(super) async fn on_subtrees(&mut self, answer: Subtrees) -> Result<(), SessionError> {
        let (mut run, want) = match self.search.slot.take_answer(&answer)? {
            Matched::Step(run, want) => (run, want),
            Matched::Dropped => return Ok(()),
        };
        let data = answer.data();
        let (run, step) = crate::determinism::blocking(move || {
            let step = run.on_reply(&want, data);
            (run, step)
        })
        .await?;
        let author = run.author();
        let step = self.search.slot.resume(run, step, Instant::now());
        self.after_step(author, step)
    }

    /// Starts a search for the first of `declined` (notes the book did not take) that the
    /// node wants searched, unless one runs already.
    pub(super) async fn maybe_search(
        &mut self,
        declined: Vec<EncodedNote>,
    ) -> Result<(), SessionError> {
        let Some(searches) = self.search.searches.clone() else {
            return Ok(());
        };
        if declined.is_empty() || self.search.slot.is_busy() {
            return Ok(());
        }
        let peer = self.peer;
        let started =
            crate::determinism::blocking(move || start_first(&searches, &peer, &declined)).await?;
        let Some((run, first)) = started else {
            return Ok(());
        };
        let author = run.author();
        tracing::debug!(peer = %self.key, peer_author = %self.peer, %author, "copy search started");
        let step = self.search.slot.begin(run, first, Instant::now());
        self.after_step(author, step)
    }

    /// Sends the search's new wants, or logs its end; a violation ends the session.
    fn after_step(
        &mut self,
        author: Author,
        step: Result<Vec<WantSubtrees>, SearchEnd>,
    ) -> Result<(), SessionError> {
        match step {
            Ok(wants) => {
                if !wants.is_empty() {
                    let _ = self.control.send(Control::SendWants(wants));
                }
                Ok(())
            }
            Err(SearchEnd::Done) => {
                tracing::info!(peer = %self.key, peer_author = %self.peer, %author, "copy search done");
                Ok(())
            }
            Err(SearchEnd::GaveUp(why)) => {
                tracing::info!(peer = %self.key, peer_author = %self.peer, %author, reason = %why, "copy search gave up; the session goes on");
                Ok(())
            }
            Err(SearchEnd::Violation(why)) => Err(SessionError::CopySearch(why)),
        }
    }
}

type Started = (Box<dyn CopySearchRun>, Result<Vec<WantSubtrees>, SearchEnd>);

/// The first search the node starts for one of `notes`, with its first step.
fn start_first(
    searches: &SharedCopySearches,
    peer: &Author,
    notes: &[EncodedNote],
) -> Option<Started> {
    notes.iter().find_map(|note| {
        let mut run = searches.0.start(peer, &note.0)?;
        let first = run.start();
        Some((run, first))
    })
}
