//! The node's side of replication: foreign entries offered by peers, fork proofs recorded
//! from any door (a peer's batch or proof, an import, the store's `Outcome::Fork`), and the
//! forked set that refuses a forked author's entries from then on.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Node, NodeError, NodeEvent, OfferReport};
use crate::entry::Entry;
use crate::fence::FenceEvent;
use crate::fork::ForkProof;
use crate::hash::Hash;
use crate::identity::Author;
use crate::store::{AppendError, Outcome, ReplaceOutcome, VerifiedEntries};

impl Node {
    /// Whether `author` is known forked. An in-memory read that never waits on the disk:
    /// the store's writer takes this lock only after its `fsync`s ([`crate::store::Store::forked`]).
    pub fn is_forked(&self, author: &Author) -> bool {
        self.inner.store.forked().contains(author)
    }

    /// How many authors are known forked (O(unproven notes), no copy).
    pub fn forked_count(&self) -> u64 {
        u64::try_from(self.inner.store.forked().count()).unwrap_or(u64::MAX)
    }

    /// Every author known forked: with a proof, or noted in the log with its proof lost.
    pub fn forked_authors(&self) -> BTreeSet<Author> {
        self.inner.store.forked().authors()
    }

    /// Every recorded proof every sync peer can decode (entry forks: version 1), ascending by
    /// author: what sync v2 gossips. Split views are in [`Node::all_fork_proofs`].
    pub fn fork_proofs(&self) -> Vec<ForkProof> {
        let mut proofs = self.all_fork_proofs();
        proofs.retain(ForkProof::is_v1_encodable);
        proofs
    }

    /// Every recorded proof, split views included, ascending by author: `GET /forks`, and
    /// what a v3 session may gossip.
    pub fn all_fork_proofs(&self) -> Vec<ForkProof> {
        self.inner
            .store
            .forked()
            .proofs()
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Checks and records a proof: persisted by the store's writer (the fork note in the
    /// log, then the proof in `DATA_DIR/forks`, see [`crate::store::Store::record_fork_proof`]), the
    /// author excluded from the views and refused from now on, subscribers told. Returns
    /// whether it was new.
    pub async fn record_proof_async(&self, proof: ForkProof) -> Result<bool, NodeError> {
        // Run to the end as one of the node's tasks, whoever awaits it: a caller that stops
        // waiting (a sync session aborted mid-proof) must not leave a proof durable in the
        // store but unknown to the views and the subscribers, who learn of it only here.
        let node = self.clone();
        self.spawn(async move {
            let recorded = node.inner.store.record_fork_proof(proof.clone()).await;
            node.proof_recorded(proof, recorded)
        })
        .await?
    }

    /// [`Node::record_proof_async`] for a caller off the async workers (an import).
    /// Blocking: waits for the writer's `fsync`s.
    pub fn record_proof(&self, proof: ForkProof) -> Result<bool, NodeError> {
        let recorded = self.inner.store.record_fork_proof(proof.clone()).wait();
        self.proof_recorded(proof, recorded)
    }

    /// Keeps `copies` in place of the node's copies of the same entries (the same entry hash
    /// under another signature: only a misbehaving author makes two), as the author's
    /// checkpoint chose them ([`crate::checkpoint_book::copies`]): appended as replacement
    /// records by the store's writer, which checks each copy itself (docs/STORE.md,
    /// "Replacement records"), and durable when this returns. Bodies do not change, so the
    /// views, the summary and the subscribers have nothing to learn; the tree follows the
    /// store's replacement count. Blocking: waits for the writer's `fdatasync`.
    pub fn replace_copies(&self, copies: Vec<Entry>) -> Result<Vec<ReplaceOutcome>, NodeError> {
        Ok(self.inner.store.replace_copies(copies).wait()?)
    }

    /// What follows the store's answer to a proof: for a new one, the views, the fence and
    /// the subscribers learn of it.
    fn proof_recorded(
        &self,
        proof: ForkProof,
        recorded: Result<bool, AppendError>,
    ) -> Result<bool, NodeError> {
        match recorded {
            Ok(true) => {
                self.act_on_proof(proof);
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(AppendError::ForkLog(e)) => {
                // The proof checked and its author's fork note is durable; only the forks
                // file failed, and the store's writer retries the proof by itself. It is
                // signed evidence all the same: act on it now (the fence above all, if it
                // is our own feed), and tell the caller it is not durable yet.
                self.act_on_proof(proof);
                Err(AppendError::ForkLog(e).into())
            }
            Err(e) => {
                // The note may be durable though the proof is not: the author is then forked
                // without a proof, and the views exclude it as a restart would.
                let author = proof.author();
                if self.is_forked(&author) {
                    self.inner.views.mark_forked(&author);
                }
                Err(e.into())
            }
        }
    }

    /// A checked proof of a new fork: the views exclude its author, the fence stops own
    /// appends if it is ours, and the subscribers (sync sessions hand it to peers) hear of it.
    fn act_on_proof(&self, proof: ForkProof) {
        let author = proof.author();
        let seq = proof.seq();
        self.inner.views.mark_forked(&author);
        if author == self.inner.author {
            let reason = format!("a fork proof of our own author {author} at seq {seq}");
            tracing::error!(
                %author, seq,
                "OWN FEED FORKED: another process signed with this node's key; appends stop for good, retire the key"
            );
            self.fence_event(FenceEvent::Diverged { reason });
        } else {
            tracing::warn!(%author, seq, "feed forked: proof recorded, feed excluded");
        }
        // Sessions hand the event's proof to their peer as it is, except a split view
        // (record version 2) to a v2 peer, which cannot decode it (`sync::outbound`).
        let _ = self.inner.events.send(NodeEvent::Proof(Arc::new(proof)));
    }

    /// Records the fork between `offered` and the entry the store holds at its position —
    /// the one place a held and an offered entry become a proof, whichever door the offered
    /// one came in by (a peer's batch, an import, the store's `Outcome::Fork`). Returns
    /// whether a new proof was recorded. Blocking (a read, then maybe an fsync).
    pub fn record_fork_against_held(&self, offered: Entry) -> Result<bool, NodeError> {
        let held = self.inner.reader.get(&offered.author, offered.seq)?;
        let Some((held, _)) = held else {
            // Nothing held there (yet): no proof, nothing to record.
            return Ok(false);
        };
        match self.record_proof(ForkProof::new(held, offered)) {
            // Same hash, or a side that does not verify: not a fork after all.
            Err(NodeError::Append(AppendError::InvalidProof(e))) => {
                tracing::warn!(error = %e, "a reported fork whose proof does not check");
                Ok(false)
            }
            other => other,
        }
    }

    /// Offers foreign entries (from a peer): entries of forked authors are refused, the rest
    /// go to the store (which checks signatures in parallel), and each fork the store reports
    /// becomes a recorded proof.
    pub async fn offer_entries(&self, entries: Vec<Entry>) -> Result<OfferReport, NodeError> {
        self.offer(entries.into_iter().map(|e| (e, None)).collect())
            .await
    }

    /// Offers a sync batch the session's check already verified (shape and signature, see
    /// `sync::batch::check_batch`), with their hashes: the store does not verify them a
    /// second time, and places the batch whole ([`crate::store::Store::append_verified_batch`]):
    /// a batch with an entry that leaves a gap or breaks its chain is refused with
    /// [`AppendError::Unplaceable`], its `index` counted in `entries`, and nothing of it is
    /// stored.
    pub async fn offer_verified_batch(
        &self,
        entries: Vec<(Entry, Hash)>,
    ) -> Result<OfferReport, NodeError> {
        self.offer(entries.into_iter().map(|(e, h)| (e, Some(h))).collect())
            .await
    }

    /// Entries with their hash when already verified (a sync batch, placed whole), `None`
    /// when the store must verify (placed one by one).
    async fn offer(&self, entries: Vec<(Entry, Option<Hash>)>) -> Result<OfferReport, NodeError> {
        let mut report = OfferReport::default();
        // Read under the store's lock (held only for the partition, never across an await),
        // not copied: a sync session offers a batch at a time. Each kept entry's position in
        // `entries` names it if the store refuses the batch.
        let (kept, refused): (Vec<_>, Vec<_>) = {
            let forked = self.inner.store.forked();
            entries
                .into_iter()
                .enumerate()
                .partition(|(_, (e, _))| !forked.contains(&e.author))
        };
        report.refused_forked = u64::try_from(refused.len()).unwrap_or(u64::MAX);
        if kept.is_empty() {
            return Ok(report);
        }
        let (positions, entries): (Vec<usize>, Vec<(Entry, Option<Hash>)>) =
            kept.into_iter().unzip();
        let offered: Vec<Entry> = entries.iter().map(|(e, _)| e.clone()).collect();
        let outcomes = if entries.iter().all(|(_, h)| h.is_some()) {
            let verified = entries
                .into_iter()
                .filter_map(|(e, h)| h.map(|h| (e, h)))
                .collect();
            match self
                .inner
                .store
                .append_verified_batch(VerifiedEntries::vouch(verified))
                .await
            {
                Err(AppendError::Unplaceable(mut refused)) => {
                    // `positions` has one element per entry the store was offered.
                    refused.index = positions
                        .get(refused.index)
                        .copied()
                        .unwrap_or(refused.index);
                    return Err(AppendError::Unplaceable(refused).into());
                }
                other => other?,
            }
        } else {
            let unverified = entries.into_iter().map(|(e, _)| e).collect();
            self.inner.store.append_entries(unverified).await?
        };
        let mut fork_entries = Vec::new();
        for (entry, outcome) in offered.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Added(_) => report.added += 1,
                Outcome::Duplicate(_) => report.duplicates += 1,
                Outcome::Fork { .. } => fork_entries.push(entry),
                Outcome::Rejected(_) | Outcome::Gap { .. } => report.rejected += 1,
            }
        }
        self.inner.metrics.rejections.inc_by(report.rejected);
        if !fork_entries.is_empty() {
            report.forks = u64::try_from(fork_entries.len()).unwrap_or(u64::MAX);
            let node = self.clone();
            crate::determinism::blocking(move || {
                for entry in fork_entries {
                    node.record_fork_against_held(entry)?;
                }
                Ok::<(), NodeError>(())
            })
            .await??;
        }
        Ok(report)
    }
}
