//! The receiving half of a session: reads frames, checks and stores what arrives, and hands
//! the sending half what it must answer (reconciliation frames, `Want`s). It never waits on the
//! sending half, only on the store, so a session always drains its socket.
//!
//! Rules enforced here (docs/PROTOCOL.md sections 6 and 11): no `Hello`/`Auth` after the
//! handshake, no message of a newer version than the session's, at most
//! `MAX_WANTS_PER_SESSION` `Want`s, the copy-search messages' bounds and order
//! ([`super::inbound_search`]), every proof checks, every batch passes
//! [`check_batch`] and the store's placement whole or nothing of it is stored. `Reconcile`
//! frames go to the sending half, whose reconciler checks them against the state of the
//! exchange.
//!
//! Checking a batch (signatures, on all cores) and storing the one before it (a group
//! commit, mostly waiting on `fdatasync`) overlap: a checked batch's append runs as its own
//! task while the next batch is read and checked. Appends still happen one at a time in
//! arrival order (a batch is offered only once the previous append is answered), and a
//! refused or failed append ends the session as soon as it is answered, whatever the peer
//! sends meanwhile.
//!
//! # One placement, by the store
//!
//! The session's check ([`check_batch`]) decides only what needs no placement: it decodes,
//! refuses authors (forked, skipped, outside the policy, new feeds over the admission
//! budget), drops what the store holds *durably* (so a peer replaying what the node holds
//! costs it no signature verification) and verifies the shape and signature of the rest.
//! Where each entry goes, and whether it links, is decided once, by the store's writer,
//! which places the batch whole against its own view of every feed: the index plus every
//! entry in flight, from this session, another session or any other source. A gap or a
//! broken link there refuses the whole batch before anything of it is written
//! ([`crate::store::Store::append_verified_batch`]): the session ends as it would on a bad
//! signature, and an entry continuing a feed whose earlier entries another session has in
//! flight is not mistaken for a gap. Forks the writer finds are recorded as proofs once the
//! batch is durable ([`Node::offer_verified_batch`]).
//!
//! What the session still keeps of its append in flight is admission bookkeeping, not a
//! view of any feed (`InFlight`): the feed-cap [`Reservation`] of the new feeds that
//! append starts, held until it settles, and which feeds those are, so the next batch
//! counts them as held rather than reserving them twice.

use crate::poison::lock;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::admission::{Admission, Reservation};
use super::batch::{check_batch, refused_by_store, BatchError, BatchOutcome};
use super::budget::Source;
use super::checkpoint_book::{note_author, note_digest, CheckpointOfferError, SharedBook};
use super::checkpoint_gossip::{NoteBucket, PeerNotes};
use super::connection::FrameReader;
use super::error::SessionError;
use super::message::{EncodedEntry, EncodedNote, Message, MAX_WANTS_PER_SESSION};
use super::plan::PeerProgress;
use super::reconcile::MAX_RECONCILE_FRAMES_PER_SESSION;
use super::search_slot::SessionSearch;
use super::status::{Control, PeerRegistry};
use crate::identity::Author;
use crate::node::{Node, NodeError};
use crate::store::AppendError;
use crate::store::StoreReader;

/// The most entries merged from consecutive buffered `Entries` frames into one check and one
/// store append. A merged batch is still a unit: if any entry fails, nothing of it is stored.
pub const MERGE_ENTRIES: usize = 4096;
/// The most encoded bytes merged into one batch (a merge stops once past it, so a batch is at
/// most this plus one frame). 4,096 value-only entries are ~650 KB, so honest batches reach
/// [`MERGE_ENTRIES`] first; a peer sending the largest entries (4,254 bytes) cannot make a
/// session hold 4,096 of them (17 MB, twice over once decoded) in each of its batches.
pub const MERGE_BYTES: usize = 1 << 20;

pub(super) struct Inbound {
    pub node: Node,
    pub reader: FrameReader<super::net::ReadHalf>,
    pub progress: Arc<Mutex<PeerProgress>>,
    pub control: mpsc::UnboundedSender<Control>,
    pub stop: Arc<AtomicBool>,
    pub registry: Arc<PeerRegistry>,
    pub key: String,
    pub peer: Author,
    /// The peer's key is trusted here: no budgets.
    pub trusted: bool,
    /// Where the peer connects from: a stranger's budgets are charged to it.
    pub source: Source,
    /// The store append of the last checked batch, while the next one is read and checked.
    pub in_flight: Option<tokio::task::JoinHandle<Result<(), SessionError>>>,
    /// What admission must know of that append while the next batch is checked.
    pub in_flight_view: Arc<InFlight>,
    pub admission: Arc<Admission>,
    /// New feeds of this peer's that were skipped (policy, budget, cap): skipped for the
    /// rest of the session, so their later entries never look like gaps.
    pub skipped: Arc<Mutex<HashSet<Author>>>,
    /// A stranger's share of the node-wide reconciliation budget, held until the session
    /// ends (what the peer stated stays in memory that long).
    pub reconcile_permits: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The session's protocol version: the checkpoint messages need 3.
    pub version: u16,
    /// Where the peer's checkpoint notes go (v3); `None`: they are dropped after their checks.
    pub book: Option<SharedBook>,
    /// The bound on the peer's checkpoint notes.
    pub notes: NoteBucket,
    /// Batches of new entries taken from the peer: while they keep coming the peer is still
    /// sending its plan, and the checkpoint reconciliation's deadline waits for it.
    pub delivered: Arc<AtomicU64>,
    /// What notes the peer holds, shared with the sending half: a note the peer sends is
    /// recorded before the book takes it, so it is not pushed back (see [`PeerNotes`]).
    pub peer_notes: PeerNotes,
    /// Copy searches with this peer, and the bound on its wants (v4).
    pub search: SessionSearch,
}

/// What waiting for the peer's next frame ended with
/// ([`Inbound::next_frame_or_expiry`], in `inbound_search.rs`).
pub(super) enum Next {
    /// A frame, or the failure to read one.
    Frame(Result<Message, SessionError>),
    /// The running copy search's deadline passed first.
    SearchExpired,
}

/// The admission bookkeeping of the session's append still in flight (see "One placement,
/// by the store" above): no positions, only which feeds it starts.
#[derive(Default)]
pub(super) struct InFlight {
    /// The new feeds this append starts: held feeds for the next batch's admission, which
    /// must neither refuse them as new nor reserve them a second time.
    started: HashSet<Author>,
    /// Those feeds count against the feed cap until the append is settled.
    _reserved: Option<Reservation>,
}

impl Inbound {
    /// Runs until the peer closes, says bye or breaks a rule; returns why it ended, after
    /// telling the sending half to stop.
    pub(crate) async fn run(mut self) -> SessionError {
        let mut error = self.receive().await;
        // What was checked is stored even though the session is ending; a failure to store
        // it is the better reason to report.
        if let Err(e) = self.settle().await {
            error = e;
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.control.send(Control::Stop(error.bye_reason()));
        error
    }

    async fn receive(&mut self) -> SessionError {
        let mut wants = 0usize;
        let mut reconcile_frames = 0usize;
        // A frame read ahead while merging entry batches, handled next.
        let mut held: Option<Message> = None;
        loop {
            let message = match held.take() {
                Some(m) => m,
                None => match self.next_frame_or_expiry().await {
                    Next::Frame(Ok(m)) => m,
                    Next::Frame(Err(e)) => return e,
                    Next::SearchExpired => {
                        self.expire_search();
                        continue;
                    }
                },
            };
            let step = match message {
                m if !m.allowed_in(self.version) => Err(too_new(&m)),
                Message::WantSubtrees(want) => self.on_want_subtrees(want),
                Message::Subtrees(answer) => self.on_subtrees(answer).await,
                Message::CheckpointReconcile(frame) => {
                    self.on_reconcile(frame, &mut reconcile_frames, Control::CheckpointReconcile)
                }
                // Entries that arrived before the notes are stored before them: the book
                // drops a note of a feed the node does not hold yet, and the peer pushes a
                // note once, so a note offered while its feed's first entries are still in
                // flight would be lost for the session.
                Message::Checkpoints(checkpoints) => match self.settle().await {
                    Ok(()) => self.on_checkpoints(checkpoints.notes).await,
                    Err(e) => Err(e),
                },
                Message::Hello(_) => Err(out_of_order("Hello")),
                Message::Auth(_) => Err(out_of_order("Auth")),
                Message::Ping => Ok(()),
                Message::Bye(bye) => Err(SessionError::PeerBye(bye.reason)),
                Message::Reconcile(frame) => {
                    self.on_reconcile(frame, &mut reconcile_frames, Control::Reconcile)
                }
                Message::Want(want) => {
                    wants += 1;
                    if wants > MAX_WANTS_PER_SESSION {
                        Err(SessionError::TooManyWants {
                            limit: MAX_WANTS_PER_SESSION,
                        })
                    } else {
                        let _ = self.control.send(Control::SendEntry {
                            author: want.author,
                            seq: want.seq,
                        });
                        Ok(())
                    }
                }
                Message::ForkProofs(proofs) => match self.settle().await {
                    // Entries that arrived before the proofs are stored before them.
                    Ok(()) => self.on_proofs(proofs.proofs).await,
                    Err(e) => Err(e),
                },
                Message::Entries(entries) => {
                    let mut batch = entries.entries;
                    // A read that fails while merging (the peer closed mid-frame, a record
                    // damaged in transit) ends the session only after the whole frames read
                    // before it are checked and stored, as it would have without the merge.
                    let merged = merge_ready(&mut self.reader, &mut batch, &mut held);
                    match self.on_entries(batch).await {
                        Ok(()) => merged,
                        Err(e) => Err(e),
                    }
                }
            };
            if let Err(e) = step {
                return e;
            }
        }
    }

    /// A frame of either reconciliation (the entries' or, in v3, the checkpoints'): counted
    /// against the per-session frame limit they share, charged, and handed to the sending
    /// half as `control`.
    fn on_reconcile(
        &mut self,
        frame: super::reconcile::Reconcile,
        frames: &mut usize,
        control: fn(super::reconcile::Reconcile) -> Control,
    ) -> Result<(), SessionError> {
        *frames += 1;
        if *frames > MAX_RECONCILE_FRAMES_PER_SESSION {
            return Err(SessionError::OutOfOrder {
                got: "Reconcile",
                when: "past the per-session frame limit",
            });
        }
        self.charge_reconcile(&frame)?;
        let _ = self.control.send(control(frame));
        Ok(())
    }

    /// A stranger's reconciliation frame takes its items and ranges from the node-wide
    /// budget before it is queued: what strangers' claims make the node hold is bounded in
    /// total, whatever number of sessions they open. Trusted peers are not charged.
    fn charge_reconcile(
        &mut self,
        frame: &super::reconcile::Reconcile,
    ) -> Result<(), SessionError> {
        if self.trusted {
            return Ok(());
        }
        let units = frame
            .ranges
            .iter()
            .map(|r| 1 + r.mode.item_count())
            .fold(0usize, usize::saturating_add);
        let budget = self.admission.reconcile_budget();
        let taken = u32::try_from(units)
            .ok()
            .and_then(|units| budget.clone().try_acquire_many_owned(units).ok());
        match (taken, self.reconcile_permits.as_mut()) {
            (Some(taken), Some(held)) => held.merge(taken),
            (Some(taken), None) => self.reconcile_permits = Some(taken),
            (None, _) => {
                self.admission.count_refusal("reconcile_budget");
                return Err(SessionError::ReconcileBudget {
                    budget: self.admission.policy().stranger_reconcile_items,
                });
            }
        }
        Ok(())
    }

    /// Takes the notes from the session's bucket and hands them to the book, which verifies
    /// them (off the async workers: a note may carry 32 signatures). In a v4 session the
    /// notes the book did not take may start a copy search.
    async fn on_checkpoints(&mut self, notes: Vec<EncodedNote>) -> Result<(), SessionError> {
        if !self.notes.take(notes.len(), Instant::now()) {
            return Err(SessionError::TooManyCheckpoints {
                burst: self.notes.burst,
                per_second: self.notes.per_second,
            });
        }
        let Some(book) = self.book.clone() else {
            return Ok(());
        };
        let (peer, holds) = (self.peer, self.peer_notes.clone());
        let search =
            self.version >= 4 && self.search.searches.is_some() && !self.search.slot.is_busy();
        let declined = crate::determinism::blocking(move || {
            let mut declined = Vec::new();
            for note in notes {
                let digest = note_digest(&note.0);
                let author = note_author(&note.0);
                let before = author.map(|a| holds.set(a, digest));
                match book.0.offer(&peer, &note.0) {
                    Ok(true) => {}
                    Ok(false) => {
                        if let (Some(author), Some(before)) = (author, before) {
                            holds.restore(author, digest, before);
                        }
                        if search {
                            declined.push(note);
                        }
                    }
                    Err(CheckpointOfferError::Malformed(why)) => {
                        return Err(SessionError::BadCheckpoint(why))
                    }
                    Err(CheckpointOfferError::Internal(why)) => {
                        return Err(SessionError::CheckpointBook(why))
                    }
                }
            }
            Ok(declined)
        })
        .await??;
        self.maybe_search(declined).await
    }

    // `&mut self`: the session's copy search is `Send` but not `Sync`, so the half is too.
    async fn on_proofs(
        &mut self,
        proofs: Vec<super::message::EncodedProof>,
    ) -> Result<(), SessionError> {
        for encoded in proofs {
            let proof = encoded
                .decode()
                .map_err(|e| SessionError::BadProof(e.to_string()))?;
            proof
                .check()
                .map_err(|e| SessionError::BadProof(e.to_string()))?;
            if self.admit_proof(&proof.author()) {
                self.node.record_proof_async(proof).await?;
            }
        }
        Ok(())
    }

    /// Whether a checked proof of `author` is taken. A proof of our own key, of a feed the
    /// node holds or of an author already known forked is always taken: it is evidence about
    /// what the node holds and serves (or changes nothing). Any other proof brings a new
    /// author into the node's state (the forked set, the forks file, and every peer's copy,
    /// since proofs are passed on), as a new feed would, and anyone can sign a fork of a key
    /// they just made: so it passes the rules a new feed passes (the author policy, the feed
    /// cap, counting forked authors, and a stranger's hourly budget, docs/PROTOCOL.md
    /// section 9). A proof not taken is skipped like such a feed, counted and shown by
    /// reason, not an error; should the feed arrive later, its fork is found then.
    fn admit_proof(&self, author: &Author) -> bool {
        let reader = self.node.reader();
        if *author == self.node.author()
            || self.node.is_forked(author)
            || reader.head(author).is_some()
        {
            return true;
        }
        let held = || reader.feed_count().saturating_add(self.node.forked_count());
        // A proof is recorded at once (the caller awaits it): its reservation can go with it.
        let mut reserved = Reservation::new(self.admission.clone());
        match self.admission.admit_new_feed(
            &self.peer,
            self.source,
            author,
            &held,
            &mut reserved,
            crate::clock::instant(),
        ) {
            Ok(()) => true,
            Err(skip) => {
                self.registry.add_skipped(&self.key, 1, skip.as_str());
                false
            }
        }
    }

    /// Waits for the append in flight, if any; its failure (or the store's refusal of its
    /// batch) ends the session.
    async fn settle(&mut self) -> Result<(), SessionError> {
        if let Some(task) = self.in_flight.take() {
            self.settled(task.await)?;
        }
        Ok(())
    }

    /// The append in flight has ended (taken out of `in_flight` by the caller): its
    /// reservation goes, and its result is the session's.
    fn settled(
        &mut self,
        ended: Result<Result<(), SessionError>, tokio::task::JoinError>,
    ) -> Result<(), SessionError> {
        self.in_flight_view = Arc::default();
        ended?
    }

    /// The next frame from the peer; meanwhile the append in flight, if it ends first, is
    /// settled, so a batch the store refused (answered before anything of it is written)
    /// ends the session at once rather than when the peer next sends entries. Reading a
    /// frame is cancel-safe ([`FrameReader::next`] keeps what it has read in its buffer);
    /// an abandoned read only starts its timeout again, once per append.
    pub(super) async fn next_frame(&mut self) -> Result<Message, SessionError> {
        while let Some(task) = self.in_flight.as_mut() {
            tokio::select! {
                biased;
                ended = task => {
                    self.in_flight = None;
                    self.settled(ended)?;
                }
                message = self.reader.next() => return message,
            }
        }
        self.reader.next().await
    }

    /// Checks a batch off the async workers, then offers what it adds to the store (while
    /// the next batch is read). A refused batch ends the session.
    async fn on_entries(
        &mut self,
        batch: Vec<super::message::EncodedEntry>,
    ) -> Result<(), SessionError> {
        let check = self.batch_check();
        let (checked, reserved, started) = crate::determinism::blocking(move || {
            let mut reserved = Reservation::new(check.admission.clone());
            let mut started = HashSet::new();
            let checked = check.run(&batch, &mut reserved, &mut started);
            (checked, reserved, started)
        })
        .await?;
        let outcome =
            checked.inspect_err(|e| log_refused(self.trusted, &self.key, &self.peer, e))?;
        {
            let mut progress = lock(&self.progress);
            for (entry, _) in &outcome.append {
                progress.note(&entry.author, entry.seq);
            }
        }
        // Appends stay in arrival order: the previous one must be answered first, so the
        // store places this batch after it.
        self.settle().await?;
        if !outcome.append.is_empty() {
            self.delivered.fetch_add(1, Ordering::Relaxed);
            self.start_append(outcome, started, reserved);
        }
        Ok(())
    }

    /// What checking the next batch needs, taken now (see [`BatchCheck`]).
    fn batch_check(&self) -> BatchCheck {
        BatchCheck {
            node: self.node.clone(),
            reader: self.node.reader().clone(),
            in_flight: self.in_flight_view.clone(),
            admission: self.admission.clone(),
            skipped: self.skipped.clone(),
            peer: self.peer,
            source: self.source,
            registry: self.registry.clone(),
            key: self.key.clone(),
            own: self.node.author(),
        }
    }

    /// Starts storing a checked batch's new entries as the append in flight: the next batch
    /// is read and checked while the store places them and makes them durable.
    fn start_append(
        &mut self,
        outcome: BatchOutcome,
        started: HashSet<Author>,
        reserved: Reservation,
    ) {
        self.in_flight_view = Arc::new(InFlight {
            started,
            _reserved: Some(reserved),
        });
        let BatchOutcome {
            append, positions, ..
        } = outcome;
        let (node, registry, key) = (self.node.clone(), self.registry.clone(), self.key.clone());
        let (admission, peer, trusted) = (self.admission.clone(), self.peer, self.trusted);
        let own = node.author();
        let delivers_own = append.iter().any(|(e, _)| e.author == own);
        // One of the node's tasks: the session awaits it, and the node's shutdown waits
        // for it even if the session ended first.
        self.in_flight = Some(self.node.spawn(async move {
            let report = match node.offer_verified_batch(append).await {
                Err(NodeError::Append(AppendError::Unplaceable(refused))) => {
                    let e = refused_by_store(refused, &positions);
                    log_refused(trusted, &key, &peer, &e);
                    return Err(e.into());
                }
                other => other?,
            };
            registry.add_received(&key, report.added);
            if report.added > 0 {
                // Eviction spares a stranger that brings entries; a key that delivers our
                // own feed's signed entries regains fence power.
                admission.delivered(&peer, crate::clock::instant());
                if delivers_own {
                    admission.delivered_own(&peer);
                }
            }
            Ok(())
        }));
    }
}

/// Logs a refused batch (docs/PROTOCOL.md section 6, "Entries", step 4). A stranger's refused
/// batch ends its session, which is logged (at `debug`): only a trusted peer's is a `warn`.
fn log_refused(trusted: bool, key: &str, peer: &Author, e: &BatchError) {
    if trusted {
        tracing::warn!(
            peer = %key,
            peer_author = %peer,
            reason = %e,
            "refused an entries batch from a peer: nothing of it stored"
        );
    }
}

/// Checking one entries batch on a blocking thread (see [`check_batch`]): the session's and
/// the node's state it reads, owned.
struct BatchCheck {
    /// Asked who is forked, under the store's lock, rather than handed a copy of the set:
    /// the batch's entries are offered through the node, which reads it again there.
    node: Node,
    reader: StoreReader,
    in_flight: Arc<InFlight>,
    admission: Arc<Admission>,
    skipped: Arc<Mutex<HashSet<Author>>>,
    peer: Author,
    source: Source,
    registry: Arc<PeerRegistry>,
    key: String,
    own: Author,
}

impl BatchCheck {
    /// Checks `batch` (see [`check_batch`]), refusing forked authors, feeds skipped before,
    /// and new feeds the admission rules do not take; the new feeds it takes are reserved in
    /// `reserved` and named in `started`.
    fn run(
        &self,
        batch: &[super::message::EncodedEntry],
        reserved: &mut Reservation,
        started: &mut HashSet<Author>,
    ) -> Result<BatchOutcome, BatchError> {
        // Asked once per author of the batch: forked authors, authors outside the
        // policy, and new feeds the peer may not introduce are dropped unchecked.
        // Feeds this batch starts count against the feed cap as soon as they are taken: the
        // admission reserves them node-wide, so concurrent sessions cannot overshoot it.
        let refuse = |a: &Author| {
            if self.node.is_forked(a) || lock(&self.skipped).contains(a) {
                return true;
            }
            // Our own feed is always taken: its entries are signed evidence of what our
            // key signed, whoever relays them.
            if *a == self.own {
                return false;
            }
            // Held feeds outside the policy (stored before it was set) are skipped too. A
            // feed the append in flight starts is held already: reserved by that append.
            let held = self.reader.head(a).is_some() || self.in_flight.started.contains(a);
            if self.admission.accepts_author(a) && held {
                return false;
            }
            // Forked authors count too (a forked feed the node holds counts twice: the
            // cap errs on the safe side), as proofs of new authors do (`admit_proof`).
            let held = || {
                self.reader
                    .feed_count()
                    .saturating_add(self.node.forked_count())
            };
            match self.admission.admit_new_feed(
                &self.peer,
                self.source,
                a,
                &held,
                reserved,
                crate::clock::instant(),
            ) {
                Ok(()) => {
                    started.insert(*a);
                    false
                }
                Err(skip) => {
                    lock(&self.skipped).insert(*a);
                    self.registry.add_skipped(&self.key, 1, skip.as_str());
                    true
                }
            }
        };
        // A position the durable store holds but cannot read back is offered anyway: the
        // store's writer places it against the hash it holds (or fails to read it).
        check_batch(batch, refuse, |a, seq| {
            self.reader.get(a, seq).ok().flatten().map(|(_, h)| h)
        })
    }
}

/// Merges into `batch` the entry frames that have already arrived behind it (in the buffer
/// or waiting in the socket, read without blocking), up to [`MERGE_ENTRIES`] entries and
/// [`MERGE_BYTES`]: one check, one store append and one fsync for all of them. While a batch
/// is checked the peer's frames queue up in the socket, so the further behind the node falls,
/// the larger (and the cheaper per entry) the next check. A frame of another kind ends the
/// merge and goes to `held`, to be handled next.
fn merge_ready<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    batch: &mut Vec<EncodedEntry>,
    held: &mut Option<Message>,
) -> Result<(), SessionError> {
    let mut bytes: usize = batch.iter().map(|e| e.0.len()).sum();
    while held.is_none() && batch.len() < MERGE_ENTRIES && bytes < MERGE_BYTES {
        match reader.next_ready()? {
            Some(Message::Entries(more)) => {
                bytes += more.entries.iter().map(|e| e.0.len()).sum::<usize>();
                batch.extend(more.entries);
            }
            Some(other) => *held = Some(other),
            None => break,
        }
    }
    Ok(())
}

/// A message of a newer protocol version than the session's: a violation, as the older
/// node would see it (it would not even decode it).
fn too_new(message: &Message) -> SessionError {
    let (got, when) = match message.since_version() {
        3 => ("checkpoint", "in a v2 session"),
        _ => ("copy search", "in a session below v4"),
    };
    SessionError::CheckpointOutOfOrder { got, when }
}

fn out_of_order(got: &'static str) -> SessionError {
    SessionError::OutOfOrder {
        got,
        when: "after the handshake",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::connection::testing::channels;
    use crate::sync::connection::FrameWriter;
    use crate::sync::message::{Entries, MAX_ENTRIES_PER_BATCH};
    use std::time::Duration;

    fn frame(entry_bytes: usize) -> Message {
        Message::Entries(Entries {
            entries: vec![EncodedEntry(vec![7; entry_bytes]); MAX_ENTRIES_PER_BATCH],
        })
    }

    /// What has arrived is merged up to the entry count for small entries, and up to the
    /// byte bound (plus the frame that crosses it) for large ones, whatever else is queued;
    /// a frame of another kind ends the merge and is handed back, in order.
    #[tokio::test]
    async fn merging_stops_at_the_entry_and_byte_bounds_and_at_another_frame() {
        let (ours, theirs) = channels(64 << 20).await;
        let mut writer = FrameWriter::new(theirs.writer, Duration::from_secs(10));
        let mut reader = FrameReader::new(
            ours.reader,
            Duration::from_secs(10),
            Duration::from_secs(10),
        );
        let small = 40 * MERGE_ENTRIES / MAX_ENTRIES_PER_BATCH;
        for _ in 0..small {
            writer.send(&frame(150)).await.unwrap();
        }
        for _ in 0..40 {
            writer.send(&frame(4000)).await.unwrap();
        }
        writer.send(&frame(150)).await.unwrap();
        writer.send(&Message::Ping).await.unwrap();
        writer.send(&frame(150)).await.unwrap();

        let mut held = None;
        let mut batches = Vec::new();
        while held.is_none() {
            let Message::Entries(first) = reader.next().await.unwrap() else {
                panic!("an entries frame first");
            };
            let mut batch = first.entries;
            merge_ready(&mut reader, &mut batch, &mut held).unwrap();
            batches.push(batch);
            // As a session does while the batch is checked: the task gives the runtime its
            // turn, which renews tokio's budget of socket polls (a spent budget ends a merge
            // early, harmlessly, but this test counts).
            tokio::task::yield_now().await;
        }
        let sizes: Vec<(usize, usize)> = batches
            .iter()
            .map(|b| (b.len(), b.iter().map(|e| e.0.len()).sum()))
            .collect();
        let frame_bytes = MAX_ENTRIES_PER_BATCH * 4000;
        for &(entries, bytes) in &sizes {
            assert!(entries <= MERGE_ENTRIES, "{sizes:?}");
            assert!(bytes < MERGE_BYTES + frame_bytes, "{sizes:?}");
        }
        // The small entries came in batches of MERGE_ENTRIES; the large ones in batches
        // just past MERGE_BYTES.
        assert!(
            sizes[..40].iter().all(|&(n, _)| n == MERGE_ENTRIES),
            "{sizes:?}"
        );
        assert!(
            sizes[40..].iter().any(|&(_, b)| b >= MERGE_BYTES),
            "{sizes:?}"
        );
        let total: usize = sizes.iter().map(|&(n, _)| n).sum();
        assert_eq!(total, (small + 41) * MAX_ENTRIES_PER_BATCH);
        assert_eq!(held, Some(Message::Ping));
        assert!(matches!(reader.next().await.unwrap(), Message::Entries(_)));
    }
}
