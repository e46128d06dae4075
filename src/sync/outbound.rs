//! The sending half of a session: our proofs and `Have`, then the plan (witnesses, `Want`s,
//! the ranges the peer lacks, read from the store in chunks), then live pushes until the
//! session ends.
//!
//! Live pushes come from the node's commit broadcast. For each committed feed the half
//! compares with what the peer is known to hold ([`PeerProgress`]): entries already held are
//! skipped, entries that continue the peer's copy are sent from the event, and a gap (the
//! peer is further behind) is filled by a range read from the store. When this half falls
//! behind the broadcast (it lagged), it does not buffer: it compares every feed with the
//! peer's progress and sends what is missing from the store (`Outbound::resync`).
//! Feeds for which the plan found a fork are never pushed (their entries would not link on
//! the peer's side); the proofs settle them.

use crate::poison::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::admission::Admission;
use super::budget::Source;
use super::checkpoint_gossip::{next_change, CheckpointGossip};
use super::claims::ClaimState;
use super::connection::FrameWriter;
use super::error::SessionError;
use super::message::{
    checkpoint_batches, encoded_batches, entry_batches, proof_batches, EncodedEntry, EncodedNote,
    FeedHave, Message, Subtrees, Want, WantSubtrees, RECONCILE_TIMEOUT_MS,
};
use super::plan::{self, FeedState, Feeds, Fence, PeerProgress, Push, SeqRange};
use super::reconcile::{Reconcile, Reconciler, Step};
use super::search_slot::Answering;
use super::status::{Control, PeerRegistry};
use super::transport::Role;
use crate::entry::{Entry, Seq};
use crate::fence::FenceEvent;
use crate::hash::Hash;
use crate::identity::Author;
use crate::node::{Node, NodeEvent};

/// Entries read from the store per blocking call when sending a range.
const RANGE_READ_ENTRIES: usize = 1024;
/// A range shorter than this is sent together with its neighbours
/// ([`Outbound::send_ranges`]).
const SHORT_RANGE_ENTRIES: u64 = 128;
/// What one range costs a stranger's send budget on top of its bytes: the index lookups and
/// the read of each feed the node sends, about what 1 KiB of a long range costs.
pub const STRANGER_RANGE_COST_BYTES: u64 = 1024;

/// [`next_change`] of a v3 session's gossip; never in a v2 session.
async fn next_change_of(
    changes: Option<&mut Option<broadcast::Receiver<Author>>>,
) -> Result<Author, broadcast::error::RecvError> {
    match changes {
        Some(changes) => next_change(changes).await,
        None => std::future::pending().await,
    }
}

/// Called once with the fence outcome of the initial exchange and whether the peer's key is
/// trusted (the startup fence tracker).
pub type OnHave = Box<dyn FnOnce(Fence, bool) + Send + Sync>;

pub(super) struct Outbound {
    pub node: Node,
    pub writer: FrameWriter<super::net::WriteHalf>,
    pub progress: Arc<Mutex<PeerProgress>>,
    pub registry: Arc<PeerRegistry>,
    pub key: String,
    pub events: broadcast::Receiver<NodeEvent>,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub shutdown: watch::Receiver<bool>,
    pub stop: Arc<AtomicBool>,
    pub ping_interval: Duration,
    pub on_have: Option<OnHave>,
    pub no_push: BTreeSet<Author>,
    pub last_sent: Instant,
    pub peer: Author,
    /// A stranger's source: what is sent to it is charged to that source's send budget,
    /// and sending waits while the budget is in debt. `None` for a trusted peer.
    pub throttle: Option<Source>,
    pub admission: Arc<Admission>,
    pub claim_timeout: Duration,
    /// A live claim of this (trusted) peer that it holds more of our own feed: the length
    /// claimed and when it lapses unless more of our feed is stored.
    pub claim: Option<(Seq, Instant)>,
    /// Initiator when we dialed: the dialer opens reconciliation.
    pub role: Role,
    /// Checkpoint gossip, in a v3 session only.
    pub gossip: Option<CheckpointGossip>,
    /// How the peer's `WantSubtrees` are answered (v4).
    pub answering: Answering,
}

impl Outbound {
    /// Runs until the session ends; returns why (the receiving half's reason, if it ended
    /// first, is what the session reports).
    pub(crate) async fn run(mut self) -> SessionError {
        let error = self.run_inner().await;
        if let Some(reason) = error.bye_reason() {
            self.writer.bye(reason).await;
        }
        error
    }

    async fn send(&mut self, message: &Message) -> Result<(), SessionError> {
        if let Some(source) = self.throttle {
            // A stranger's source in debt waits here, not the socket: the receiving half
            // keeps reading meanwhile.
            let wait = self.admission.send_wait(source, crate::clock::instant());
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.shutdown.changed() => return Err(SessionError::Shutdown),
                }
            }
        }
        let bytes = self.writer.send(message).await?;
        if let Some(source) = self.throttle {
            let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
            self.admission
                .send_spent(source, bytes, crate::clock::instant());
        }
        self.last_sent = Instant::now();
        Ok(())
    }

    fn interrupted(&mut self) -> Option<SessionError> {
        if *self.shutdown.borrow() {
            return Some(SessionError::Shutdown);
        }
        // The receiving half stopped: its reason (and Bye) arrives on the control channel.
        if self.stop.load(Ordering::SeqCst) {
            while let Ok(control) = self.control.try_recv() {
                if let Control::Stop(reason) = control {
                    return Some(SessionError::ReceiverEnded(reason));
                }
            }
            return Some(SessionError::ReceiverEnded(None));
        }
        None
    }

    async fn run_inner(&mut self) -> SessionError {
        if let Err(e) = self.exchange().await {
            return e;
        }
        if let Err(e) = self.start_checkpoint_reconcile().await {
            return e;
        }
        match self.live().await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    /// Range-based reconciliation ([`super::reconcile`]) of our `items` with the peer's
    /// (the dialer opens); returns the peer's feed states. `checkpoints`: the second run, over
    /// checkpoint items, in `CheckpointReconcile` frames.
    async fn reconcile(&mut self, items: Vec<FeedHave>) -> Result<Feeds, SessionError> {
        let mut reconciler = crate::determinism::blocking(move || Reconciler::new(items)).await?;
        if self.role == Role::Initiator {
            for frame in reconciler.initiate() {
                self.send(&Message::Reconcile(frame)).await?;
            }
        }
        while !reconciler.is_done() {
            let frame = tokio::select! {
                c = self.control.recv() => match c {
                    Some(Control::Reconcile(frame)) => frame,
                    Some(other) => {
                        self.on_control(other).await?;
                        continue;
                    }
                    None => return Err(SessionError::Closed),
                },
                _ = self.shutdown.changed() => return Err(SessionError::Shutdown),
            };
            match reconciler.receive(frame)? {
                Some(Step::Reply(frames)) => {
                    for frame in frames {
                        self.send(&Message::Reconcile(frame)).await?;
                    }
                }
                Some(Step::Done) | None => {}
            }
        }
        reconciler
            .into_peer_feeds()
            .ok_or(SessionError::Node(crate::node::NodeError::Internal(
                "reconciliation ended without the peer's feeds",
            )))
    }

    /// The fork proofs this peer is sent at the session's start: split views (fork proofs
    /// from two checkpoints, record version 2) only to a v3 peer, since a v2 node cannot
    /// decode them and would end the session.
    fn proofs_for_peer(&self) -> Vec<crate::fork::ForkProof> {
        match self.gossip {
            Some(_) => self.node.all_fork_proofs(),
            None => self.node.fork_proofs(),
        }
    }

    /// Proofs, reconciliation, the plan and its sends.
    async fn exchange(&mut self) -> Result<(), SessionError> {
        let own = self.node.author();
        let forked = self.node.forked_authors();
        let ours: Feeds = self
            .node
            .reader()
            .feeds()
            .into_iter()
            // Feeds outside the author policy are neither offered nor forwarded.
            .filter(|f| f.author == own || self.admission.accepts_author(&f.author))
            .map(|f| (f.author, FeedState::from(&f)))
            .collect();
        for message in proof_batches(self.proofs_for_peer().iter()) {
            self.send(&message).await?;
        }
        let items = plan::have_lines(&ours, &forked);
        // A peer that keeps the session alive with pings but never finishes reconciling
        // would hold its slot for ever: the exchange has a deadline of its own.
        let theirs = tokio::time::timeout(
            std::time::Duration::from_millis(RECONCILE_TIMEOUT_MS),
            self.reconcile(items),
        )
        .await
        .map_err(|_| SessionError::Timeout {
            what: "reconciling feed sets",
        })??;
        {
            let mut progress = lock(&self.progress);
            progress.merge_feeds(&theirs);
        }

        // Proofs the peer sent while we reconciled are known now: plan without those feeds.
        let forked = self.node.forked_authors();
        let reader = self.node.reader().clone();
        let planned = crate::determinism::blocking(move || {
            plan::plan(&own, &ours, &theirs, &forked, |a, seq| {
                reader.get(a, seq).ok().flatten().map(|(_, h)| h)
            })
        })
        .await??;

        // The peer's feed states are claims nobody signed: they never diverge the fence
        // (only a recorded fork proof of our author does, and the witness/`Want` exchange
        // below produces one if the peer really holds a different entry), and a longer copy
        // holds appends only when a trusted peer claims it, only while it delivers.
        match planned.fence {
            Fence::Current => {}
            Fence::PeerAhead { their_length } if self.admission.claim_may_hold(&self.peer) => {
                let held = self.node.own_length();
                let now = crate::clock::instant();
                match self.admission.claim(self.peer, their_length, held, now) {
                    ClaimState::Holding { need, deadline } => {
                        tracing::info!(peer = %self.key, their_length, "own-feed fence: a trusted peer holds a longer copy of our feed, catching up before signing");
                        self.hold_claim(need, deadline);
                    }
                    ClaimState::Met => {}
                    ClaimState::Failed => {
                        tracing::info!(peer = %self.key, their_length, "own-feed fence: a trusted peer claims a longer copy of our feed but let an earlier claim lapse; only the signed entries it sends count until it delivers");
                    }
                }
            }
            Fence::PeerAhead { their_length } => {
                tracing::info!(peer = %self.key, their_length, "own-feed fence: an untrusted peer claims a longer copy of our feed; only the signed entries it sends count");
            }
            Fence::Diverged { seq } => {
                tracing::warn!(peer = %self.key, seq, "own-feed fence: a peer claims a different entry of our own feed; exchanging signed witnesses (a fork proof stops appends, a claim does not)");
            }
        }
        if let Some(on_have) = self.on_have.take() {
            on_have(planned.fence, self.throttle.is_none());
        }
        for check in &planned.forks {
            self.no_push.insert(check.author);
            self.send_entry(check.author, check.seq).await?;
            if check.want_theirs {
                self.send(&Message::Want(Want {
                    author: check.author,
                    seq: check.seq,
                }))
                .await?;
            }
        }
        self.send_ranges(&planned.send).await?;
        self.registry.synced(&self.key);
        self.admission.exchanged(&self.peer);
        Ok(())
    }

    /// Begins the checkpoint reconciliation (v3 only; the dialer opens it) once the
    /// entries' plan is sent. It runs alongside the live pushes, so a peer that never
    /// finishes it delays no entry; its deadline ends the session
    /// ([`super::checkpoint_gossip::ReconcileDeadline`]).
    async fn start_checkpoint_reconcile(&mut self) -> Result<(), SessionError> {
        let Some(gossip) = &self.gossip else {
            return Ok(());
        };
        let ours = gossip.items(&self.node.forked_authors());
        let items = ours.clone();
        let mut reconciler = crate::determinism::blocking(move || Reconciler::new(items)).await?;
        let first = match self.role {
            Role::Initiator => reconciler.initiate(),
            Role::Responder => Vec::new(),
        };
        let early = match &mut self.gossip {
            Some(gossip) => {
                gossip.reconcile = Some((reconciler, ours));
                gossip.start_deadline(Instant::now());
                std::mem::take(&mut gossip.early_frames)
            }
            None => return Ok(()),
        };
        for frame in first {
            self.send(&Message::CheckpointReconcile(frame)).await?;
        }
        for frame in early {
            self.on_checkpoint_frame(frame).await?;
        }
        Ok(())
    }

    /// One frame of the peer's checkpoint reconciliation: kept if ours has not begun,
    /// answered while it runs, and at its end the notes the peer lacks are sent.
    async fn on_checkpoint_frame(&mut self, frame: Reconcile) -> Result<(), SessionError> {
        let Some(gossip) = &mut self.gossip else {
            return Err(SessionError::CheckpointOutOfOrder {
                got: "CheckpointReconcile",
                when: "in a v2 session",
            });
        };
        let Some((reconciler, _)) = &mut gossip.reconcile else {
            if gossip.reconciled {
                return Err(SessionError::CheckpointOutOfOrder {
                    got: "CheckpointReconcile",
                    when: "after the checkpoint reconciliation ended",
                });
            }
            // The peer began while this half still sends the entries' plan.
            gossip.early_frames.push_back(frame);
            return Ok(());
        };
        let reply = match reconciler.receive(frame)? {
            Some(Step::Reply(frames)) => frames,
            Some(Step::Done) | None => Vec::new(),
        };
        let lacking = match gossip.reconcile.take_if(|(r, _)| r.is_done()) {
            Some((done, ours)) => {
                let theirs = done.into_peer_feeds().unwrap_or_default();
                gossip.after_reconcile(&ours, &theirs)
            }
            None => Vec::new(),
        };
        for frame in reply {
            self.send(&Message::CheckpointReconcile(frame)).await?;
        }
        self.send_notes(lacking).await
    }

    /// Sends the served notes of `authors` the peer is not known to hold, in full frames.
    async fn send_notes(&mut self, authors: Vec<Author>) -> Result<(), SessionError> {
        let Some(gossip) = &mut self.gossip else {
            return Ok(());
        };
        let now = Instant::now();
        let forked = self.node.forked_authors();
        let notes: Vec<EncodedNote> = authors
            .iter()
            .filter(|a| !forked.contains(a))
            .filter_map(|a| gossip.note_to_send(a, now))
            .map(EncodedNote)
            .collect();
        for message in checkpoint_batches(notes) {
            self.send(&message).await?;
        }
        Ok(())
    }

    /// Holds appends for the claim of `need` entries of our feed until `deadline` (kept by
    /// the admission per key, across sessions: see [`super::claims`]).
    fn hold_claim(&mut self, need: Seq, deadline: std::time::Instant) {
        self.node.fence_event(FenceEvent::Claim {
            peer: self.peer.to_string(),
            need,
            expires: deadline,
        });
        self.claim = Some((need, Instant::from_std(deadline)));
    }

    fn drop_claim(&mut self) {
        self.node.fence_event(FenceEvent::ClaimDropped {
            peer: self.peer.to_string(),
        });
        self.claim = None;
    }

    /// Our feed grew, or the claim's deadline passed: release a met claim, renew one that
    /// is being delivered, and end the session for one that is not.
    fn check_claim(&mut self, deadline_passed: bool) -> Result<(), SessionError> {
        let Some((need, _)) = self.claim else {
            return Ok(());
        };
        let held = self.node.own_length();
        let now = crate::clock::instant();
        if !deadline_passed {
            match self.admission.renew_claim(self.peer, held, now) {
                ClaimState::Holding { need, deadline } => self.hold_claim(need, deadline),
                ClaimState::Met => {
                    self.drop_claim();
                    tracing::info!(peer = %self.key, held, "own-feed fence: caught up on our feed");
                }
                ClaimState::Failed => self.drop_claim(),
            }
            return Ok(());
        }
        if !self.admission.expire_claim(self.peer, held, now) {
            // Met meanwhile, or renewed by a delivery the timer raced.
            return self.check_claim(false);
        }
        self.drop_claim();
        let waited_ms = u64::try_from(self.claim_timeout.as_millis()).unwrap_or(u64::MAX);
        Err(SessionError::ClaimNotDelivered {
            claimed: need,
            held,
            waited_ms,
        })
    }

    async fn live(&mut self) -> Result<std::convert::Infallible, SessionError> {
        loop {
            let ping_at = self.last_sent + self.ping_interval;
            let claim_at = self.claim.map(|(_, expires)| expires);
            let push_at = self.gossip.as_ref().and_then(CheckpointGossip::next_due);
            let reconcile_at = self
                .gossip
                .as_ref()
                .and_then(CheckpointGossip::reconcile_deadline);
            let changes = self.gossip.as_mut().map(|g| &mut g.changes);
            tokio::select! {
                change = next_change_of(changes) => {
                    let now = Instant::now();
                    if let Some(gossip) = &mut self.gossip {
                        match change {
                            Ok(author) => gossip.changed(author, now),
                            Err(broadcast::error::RecvError::Lagged(_)) => gossip.changed_all(now),
                            Err(broadcast::error::RecvError::Closed) => gossip.changes = None,
                        }
                    }
                }
                _ = tokio::time::sleep_until(push_at.unwrap_or(ping_at)), if push_at.is_some() => {
                    let due = self
                        .gossip
                        .as_mut()
                        .map(|g| g.take_due(Instant::now()))
                        .unwrap_or_default();
                    self.send_notes(due).await?;
                }
                _ = tokio::time::sleep_until(reconcile_at.unwrap_or(ping_at)), if reconcile_at.is_some() => {
                    let expired = self
                        .gossip
                        .as_mut()
                        .is_some_and(|g| g.reconcile_expired(Instant::now()));
                    if expired {
                        return Err(SessionError::Timeout {
                            what: "reconciling checkpoints",
                        });
                    }
                }
                _ = tokio::time::sleep_until(claim_at.unwrap_or(ping_at)), if claim_at.is_some() => {
                    self.check_claim(true)?;
                }
                event = self.events.recv() => match event {
                    Ok(NodeEvent::Committed(entries)) => {
                        let own = self.node.author();
                        if self.claim.is_some() && entries.iter().any(|(e, _)| e.author == own) {
                            self.check_claim(false)?;
                        }
                        self.push(&entries).await?
                    }
                    // A split view only to a v3 peer, as at the session's start.
                    Ok(NodeEvent::Proof(proof)) if !proof.is_v1_encodable() && self.gossip.is_none() => {
                        self.no_push.insert(proof.author());
                    }
                    Ok(NodeEvent::Proof(proof)) => {
                        self.no_push.insert(proof.author());
                        for message in proof_batches([proof.as_ref()]) {
                            self.send(&message).await?;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(peer = %self.key, missed, "session lagged behind commits, resyncing from the store");
                        self.registry.lagged(&self.key);
                        self.resync().await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(SessionError::Shutdown),
                },
                c = self.control.recv() => match c {
                    Some(c) => self.on_control(c).await?,
                    None => return Err(SessionError::Closed),
                },
                _ = tokio::time::sleep_until(ping_at) => self.send(&Message::Ping).await?,
                _ = self.shutdown.changed() => return Err(SessionError::Shutdown),
            }
        }
    }

    async fn on_control(&mut self, control: Control) -> Result<(), SessionError> {
        match control {
            Control::Reconcile(_) => Err(SessionError::OutOfOrder {
                got: "Reconcile",
                when: "after reconciliation ended",
            }),
            Control::CheckpointReconcile(frame) => self.on_checkpoint_frame(frame).await,
            Control::SendEntry { author, seq } => self.send_entry(author, seq).await,
            Control::AnswerSubtrees(want) => self.answer_subtrees(want).await,
            Control::SendWants(wants) => {
                for want in wants {
                    self.send(&Message::WantSubtrees(want)).await?;
                }
                Ok(())
            }
            Control::Resync(reply) => {
                let sent = self.resync().await?;
                self.registry.synced(&self.key);
                let _ = reply.send(sent);
                Ok(())
            }
            Control::Stop(reason) => Err(SessionError::ReceiverEnded(reason)),
        }
    }

    /// Our entry `seq` of `author` (a witness or a `Want` answer), if we hold it and the
    /// author is not known forked.
    async fn send_entry(&mut self, author: Author, seq: Seq) -> Result<(), SessionError> {
        if self.node.is_forked(&author) {
            return Ok(());
        }
        let reader = self.node.reader().clone();
        let found = crate::determinism::blocking(move || reader.get(&author, seq)).await??;
        if let Some((entry, _)) = found {
            for message in entry_batches(&[entry]) {
                self.send(&message).await?;
            }
        }
        Ok(())
    }

    /// Answers the peer's want from the node's trees (read off the async workers, as entries
    /// are); the empty answer when the node does not hold it, or has no copy searches.
    async fn answer_subtrees(&mut self, want: WantSubtrees) -> Result<(), SessionError> {
        let data = match self.answering.searches.clone() {
            Some(searches) => {
                crate::determinism::blocking(move || {
                    searches
                        .0
                        .subtrees(&want.author, want.level, want.index, want.count)
                })
                .await?
            }
            None => None,
        };
        // Data of the wrong shape would end the session on the peer's side: an answer the
        // node cannot give whole is "not held".
        let data = data.filter(|data| {
            let fits = data.answers(&want);
            if !fits {
                tracing::warn!(peer = %self.key, author = %want.author, level = want.level, index = want.index, count = want.count, "the node's subtrees do not fit the want; answering that it does not hold them");
            }
            fits
        });
        self.send(&Message::Subtrees(Subtrees::answer(&want, data)))
            .await?;
        self.answering.unanswered.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    /// Sends entries `from..=to` of `author` from the store, noting them as held by the peer.
    async fn send_range(
        &mut self,
        author: Author,
        from: Seq,
        to: Seq,
    ) -> Result<u64, SessionError> {
        let mut next = from;
        let mut sent = 0u64;
        while next <= to {
            if let Some(e) = self.interrupted() {
                return Err(e);
            }
            let want = usize::try_from(to - next + 1)
                .unwrap_or(usize::MAX)
                .min(RANGE_READ_ENTRIES);
            if let Some(source) = self.throttle {
                let now = crate::clock::instant();
                self.admission
                    .send_spent(source, STRANGER_RANGE_COST_BYTES, now);
            }
            let reader = self.node.reader().clone();
            // The stored bytes go out as they are: the receiver decodes, hashes and verifies
            // each entry, so decoding them here too would only double that work.
            let chunk: Vec<Vec<u8>> =
                crate::determinism::blocking(move || reader.range_encoded(&author, next, want))
                    .await??;
            if chunk.is_empty() {
                break;
            }
            let count = chunk.len();
            let last = next + count as Seq - 1;
            self.send_encoded(author, last, chunk.into_iter().map(EncodedEntry).collect())
                .await?;
            sent += u64::try_from(count).unwrap_or(u64::MAX);
            next = last + 1;
        }
        Ok(sent)
    }

    /// Sends consecutive encoded entries of one feed, the last of them seq `last`.
    async fn send_encoded(
        &mut self,
        author: Author,
        last: Seq,
        entries: Vec<EncodedEntry>,
    ) -> Result<(), SessionError> {
        let count = u64::try_from(entries.len()).unwrap_or(u64::MAX);
        if count == 0 {
            return Ok(());
        }
        for message in encoded_batches(entries) {
            self.send(&message).await?;
        }
        lock(&self.progress).note(&author, last);
        self.registry.add_sent(&self.key, count);
        Ok(())
    }

    fn pushable(&self, author: &Author) -> bool {
        !self.no_push.contains(author)
            && !self.node.is_forked(author)
            && (*author == self.node.author() || self.admission.accepts_author(author))
    }

    /// Pushes a committed batch (see the module docs).
    async fn push(&mut self, committed: &[(Entry, Hash)]) -> Result<(), SessionError> {
        let mut by_author: BTreeMap<Author, Vec<&Entry>> = BTreeMap::new();
        for (entry, _) in committed {
            by_author.entry(entry.author).or_default().push(entry);
        }
        for (author, entries) in by_author {
            if !self.pushable(&author) {
                continue;
            }
            let (Some(first), Some(last)) = (entries.first().copied(), entries.last().copied())
            else {
                continue;
            };
            let push = lock(&self.progress).push(&author, first.seq, last.seq);
            match push {
                Push::AlreadyHeld => {}
                Push::Next { held } => {
                    let fresh: Vec<EncodedEntry> = entries
                        .into_iter()
                        .filter(|e| e.seq > held)
                        .map(EncodedEntry::from_entry)
                        .collect();
                    self.send_encoded(author, last.seq, fresh).await?;
                }
                Push::Behind { from } => {
                    self.send_range(author, from, last.seq).await?;
                }
            }
        }
        Ok(())
    }

    /// Sends, from the store, every entry the peer is known to lack.
    async fn resync(&mut self) -> Result<u64, SessionError> {
        let feeds = self.node.reader().feeds();
        let mut ranges = Vec::new();
        for feed in feeds {
            if !self.pushable(&feed.author) {
                continue;
            }
            let held = lock(&self.progress).length(&feed.author);
            if feed.length > held {
                ranges.push(SeqRange {
                    author: feed.author,
                    from: held + 1,
                    to: feed.length,
                });
            }
        }
        self.send_ranges(&ranges).await
    }

    /// Sends `ranges` from the store, in order. Short ranges go together: one blocking read
    /// for up to [`RANGE_READ_ENTRIES`] of their entries and frames shared between feeds (a
    /// frame may mix feeds, each contiguous), so a peer lacking many small feeds costs a read
    /// and a frame per 128 entries, not per feed (a frame, a record and a blocking read per
    /// one-entry feed was ~45 µs of CPU each). Long ranges go one at a time.
    async fn send_ranges(&mut self, ranges: &[SeqRange]) -> Result<u64, SessionError> {
        let mut sent = 0u64;
        let mut rest = ranges;
        while let Some(first) = rest.first() {
            if range_len(first) >= SHORT_RANGE_ENTRIES {
                sent += self.send_range(first.author, first.from, first.to).await?;
                rest = &rest[1..];
                continue;
            }
            let mut entries = 0u64;
            let short = rest
                .iter()
                .take_while(|r| {
                    let len = range_len(r);
                    let fits =
                        len < SHORT_RANGE_ENTRIES && entries + len <= RANGE_READ_ENTRIES as u64;
                    entries += len;
                    fits
                })
                .count();
            let (group, after) = rest.split_at(short.max(1));
            sent += self.send_short_ranges(group.to_vec()).await?;
            rest = after;
        }
        Ok(sent)
    }

    /// Sends short ranges with one blocking read and shared frames (see
    /// [`Outbound::send_ranges`]).
    async fn send_short_ranges(&mut self, group: Vec<SeqRange>) -> Result<u64, SessionError> {
        if let Some(e) = self.interrupted() {
            return Err(e);
        }
        if let Some(source) = self.throttle {
            let cost = STRANGER_RANGE_COST_BYTES.saturating_mul(group.len() as u64);
            self.admission
                .send_spent(source, cost, crate::clock::instant());
        }
        let reader = self.node.reader().clone();
        let read = crate::determinism::blocking(move || {
            let mut feeds = Vec::with_capacity(group.len());
            for r in group {
                let want = usize::try_from(range_len(&r)).unwrap_or(usize::MAX);
                feeds.push((
                    r.author,
                    r.from,
                    reader.range_encoded(&r.author, r.from, want)?,
                ));
            }
            Ok::<_, crate::store::StoreError>(feeds)
        })
        .await??;
        let mut entries = Vec::new();
        let mut last = Vec::with_capacity(read.len());
        for (author, from, chunk) in read {
            if let Some(count) = Seq::try_from(chunk.len()).ok().filter(|c| *c > 0) {
                last.push((author, from + count - 1));
                entries.extend(chunk.into_iter().map(EncodedEntry));
            }
        }
        let count = u64::try_from(entries.len()).unwrap_or(u64::MAX);
        for message in encoded_batches(entries) {
            self.send(&message).await?;
        }
        {
            let mut progress = lock(&self.progress);
            for (author, seq) in &last {
                progress.note(author, *seq);
            }
        }
        self.registry.add_sent(&self.key, count);
        Ok(count)
    }
}

/// Entries in a planned range.
fn range_len(r: &SeqRange) -> u64 {
    (r.to + 1).saturating_sub(r.from)
}
