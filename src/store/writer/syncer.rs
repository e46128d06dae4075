//! The durable half of the writer: writes and syncs the log (and the forks file), recovers
//! after a failure, publishes to the index and the forked set, tells the observer, and
//! answers every planned request from its own value (see [`super`]).

use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, PoisonError};
use std::time::Duration;

use super::planned::{replace_outcomes, Placed, Planned, Sealed};
use super::replace;
use super::{answer, io_error, Durable, OwnAppend};
use crate::clock::now_ms;
use crate::entry::Entry;
use crate::fork::ForkProof;
use crate::hash::Hash;
use crate::identity::Author;
use crate::store::fork_log::{ForkLogError, Forked};
use crate::store::format;
use crate::store::health::Part;
use crate::store::{AppendError, Outcome};

/// How the forks file's append for one write went: nothing to append or appended (`Ok`),
/// or the error every new proof of the write is answered with.
type ForksWritten = Result<(), Arc<ForkLogError>>;

/// How often an idle writer retries the fork proofs it could not record.
const PROOF_RETRY_DELAY: Duration = Duration::from_secs(1);

pub(super) struct Syncer {
    parts: Durable,
    /// Failures so far: bumped here, read by the planner (see the module docs).
    epoch: Arc<AtomicU64>,
    /// The error of the latest failure: what batches of earlier epochs are failed with.
    last_error: Option<Arc<io::Error>>,
    /// A failure left bytes past `end` that must be cut before the next write.
    needs_recovery: bool,
    /// Offset of the last durable record, re-read by a recovery.
    last_record: Option<u64>,
    /// Records were written since the last commit marker: write one when idle.
    marker_due: bool,
    /// Checked proofs whose append to the forks file failed: retried with the next proofs,
    /// and when idle, until they are recorded. Their authors are forked meanwhile (their
    /// fork notes are in the log), so no feed is re-admitted while its proof waits.
    unrecorded: Vec<ForkProof>,
}

impl Syncer {
    pub(super) fn new(parts: Durable, epoch: Arc<AtomicU64>) -> Syncer {
        Syncer {
            parts,
            epoch,
            last_error: None,
            needs_recovery: false,
            last_record: None,
            marker_due: false,
            unrecorded: Vec::new(),
        }
    }

    /// Runs until the planner drops its sender, then covers the last write with a commit
    /// marker and returns (closing both files).
    pub(super) fn run(mut self, sealed: mpsc::Receiver<Sealed>) {
        loop {
            let marker_delay = self.parts.idle_marker_delay.filter(|_| self.marker_due);
            let retry_delay = (!self.unrecorded.is_empty()).then_some(PROOF_RETRY_DELAY);
            let idle_delay = match (marker_delay, retry_delay) {
                (Some(marker), Some(retry)) => Some(marker.min(retry)),
                (marker, retry) => marker.or(retry),
            };
            let first = if let Some(delay) = idle_delay {
                match sealed.recv_timeout(delay) {
                    Ok(first) => first,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.on_idle();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        self.on_idle();
                        break;
                    }
                }
            } else {
                match sealed.recv() {
                    Ok(first) => first,
                    Err(_) => {
                        // Closing: cover the last write with a marker either way.
                        self.on_idle();
                        break;
                    }
                }
            };
            let mut batches = vec![first];
            while let Ok(more) = sealed.try_recv() {
                batches.push(more);
            }
            tracing::trace!(
                batches = batches.len(),
                requests = batches.iter().map(|b| b.requests.len()).sum::<usize>(),
                "group commit"
            );
            self.finish(batches);
        }
        if !self.unrecorded.is_empty() {
            tracing::error!(
                proofs = self.unrecorded.len(),
                "closing with fork proofs unrecorded: their authors stay forked by their notes in the log, and a peer that holds a proof can send it again"
            );
        }
    }

    /// Makes the batches durable with one write and one sync (and one of each for the forks
    /// file when they hold new proofs), publishes them, notifies the observer and answers
    /// everyone, batch by batch in planning order. Batches planned before the latest failure
    /// are failed unwritten (see the module docs).
    pub(super) fn finish(&mut self, batches: Vec<Sealed>) {
        let epoch = self.epoch.load(Ordering::Acquire);
        let (mut fresh, stale): (Vec<Sealed>, Vec<Sealed>) =
            batches.into_iter().partition(|b| b.epoch == epoch);
        for batch in stale {
            let err = io_error(&self.failure_error());
            for request in batch.requests {
                request.fail(err.clone(), Some(&self.parts.index));
            }
        }
        match self.make_durable(&mut fresh) {
            Err(err) => {
                for request in fresh.into_iter().flat_map(|b| b.requests) {
                    request.fail(io_error(&err), Some(&self.parts.index));
                }
            }
            Ok(forks_written) => {
                for batch in fresh {
                    self.tell_observer(&batch);
                    for request in batch.requests {
                        answer_durable(request, &forks_written);
                    }
                }
            }
        }
    }

    /// Tells the observer about a durable batch's records, in write order.
    fn tell_observer(&self, batch: &Sealed) {
        let Some(observer) = &self.parts.observer else {
            return;
        };
        let (entries, offsets): (Vec<(Entry, Hash)>, Vec<u64>) = batch
            .requests
            .iter()
            .flat_map(Planned::records)
            .map(|r| ((r.entry.clone(), r.hash), r.offset))
            .unzip();
        if !entries.is_empty() {
            observer.committed(entries, offsets);
        }
    }

    /// Decides which proofs are new (see "Fork proofs" in [`super`]) and returns the fork
    /// notes this write carries: those asked for, and one per new proof whose author the
    /// log does not note yet.
    fn decide_forks(&self, batches: &mut [Sealed]) -> Vec<Author> {
        let forked = self
            .parts
            .forked
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut proven = BTreeSet::new();
        let mut notes = Vec::new();
        for request in batches.iter_mut().flat_map(|b| b.requests.iter_mut()) {
            match request {
                Planned::Note { author, .. } => notes.push(*author),
                Planned::Proof { proof, new, .. } => {
                    let author = proof.author();
                    *new = !forked.proofs().contains(&author) && proven.insert(author);
                    if *new && !forked.is_noted(&author) && !notes.contains(&author) {
                        notes.push(author);
                    }
                }
                _ => {}
            }
        }
        notes
    }

    /// Recovers if a failure asked for it, then writes and syncs the batches' records and
    /// notes, then their new proofs. A failure of the log starts a new epoch and degrades
    /// the store; a failure of the forks file fails only the new proofs.
    fn make_durable(&mut self, batches: &mut [Sealed]) -> Result<ForksWritten, Arc<io::Error>> {
        let notes = self.decide_forks(batches);
        let replacements = batches
            .iter_mut()
            .flat_map(|b| b.requests.iter_mut())
            .filter_map(|request| match request {
                Planned::Replace { copies, failed, .. } => Some((copies, failed)),
                _ => None,
            });
        replace::decide(
            replacements,
            &self.parts.index,
            &self.parts.forked,
            &*self.parts.io,
            &self.parts.file,
        );
        let records = batches
            .iter()
            .flat_map(|b| &b.requests)
            .flat_map(|r| r.records().map(|_| ()).chain(r.copies().map(|_| ())))
            .count();
        if records + notes.len() > 0 {
            if self.needs_recovery {
                if let Err(e) = self.recover() {
                    return Err(self.record_failure("recover the log's tail", e));
                }
            }
            if let Err(e) = self.write(batches, &notes) {
                let err = self.record_failure("write the log", e);
                // Cut the unacknowledged bytes now rather than at the next write, so the
                // file holds only durable records while nobody writes.
                if let Err(e) = self.recover() {
                    self.record_failure("recover the log's tail", e);
                }
                return Err(err);
            }
            if let Some(spell) = self.parts.health.succeed(Part::Log) {
                tracing::info!(
                    after_ms = now_ms().saturating_sub(spell.since_ms),
                    failure = %spell.reason,
                    "store writes resumed"
                );
            }
            if !notes.is_empty() {
                let mut forked = self.forked_mut();
                for author in notes {
                    forked.note(author);
                }
            }
        }
        Ok(self.append_proofs(batches))
    }

    /// What the writer does when no request came for a while: covers the last write with a
    /// commit marker, and retries the proofs it could not record.
    pub(super) fn on_idle(&mut self) {
        self.write_idle_marker();
        if !self.unrecorded.is_empty() {
            // The callers of the failed append were answered then; this retry answers no one.
            let _ = self.record_proofs(Vec::new());
        }
    }

    /// Appends the batches' new proofs to the forks file, after any still unrecorded.
    fn append_proofs(&mut self, batches: &[Sealed]) -> ForksWritten {
        let proofs = batches
            .iter()
            .flat_map(|b| &b.requests)
            .filter_map(|r| match r {
                Planned::Proof {
                    proof, new: true, ..
                } => Some((**proof).clone()),
                _ => None,
            })
            .collect();
        self.record_proofs(proofs)
    }

    /// Appends the unrecorded proofs and then `fresh` (one write, one sync, no lock held),
    /// then publishes them in the forked set. On failure they are all kept for a retry and
    /// the store is degraded (the forks file's spell) until a retry succeeds.
    fn record_proofs(&mut self, fresh: Vec<ForkProof>) -> ForksWritten {
        let retrying = !self.unrecorded.is_empty();
        let mut proofs = std::mem::take(&mut self.unrecorded);
        for proof in fresh {
            // One proof per author: a second one for an author still waiting adds nothing.
            if !proofs.iter().any(|p| p.author() == proof.author()) {
                proofs.push(proof);
            }
        }
        if proofs.is_empty() {
            return Ok(());
        }
        let refs: Vec<&ForkProof> = proofs.iter().collect();
        if let Err(e) = self.parts.forks.append(&*self.parts.forks_io, &refs) {
            if retrying {
                tracing::debug!(error = %e, proofs = proofs.len(), "fork proofs still not recorded");
            } else {
                tracing::error!(error = %e, "fork proofs not recorded; their authors stay forked by their notes, and the proofs are retried");
            }
            self.parts
                .health
                .fail(Part::Forks, format!("record fork proofs: {e}"), now_ms());
            self.unrecorded = proofs;
            return Err(Arc::new(e));
        }
        if let Some(spell) = self.parts.health.succeed(Part::Forks) {
            tracing::info!(
                after_ms = now_ms().saturating_sub(spell.since_ms),
                failure = %spell.reason,
                proofs = proofs.len(),
                "fork proofs recorded again"
            );
        }
        let mut forked = self.forked_mut();
        for proof in proofs {
            // Checked before it was sent ([`super::CheckedProof`]), so this inserts.
            if let Err(e) = forked.insert_proof(proof) {
                tracing::error!(error = %e, "a recorded fork proof does not check");
            }
        }
        Ok(())
    }

    fn forked_mut(&self) -> std::sync::RwLockWriteGuard<'_, Forked> {
        // Changed in single inserts, so a panic elsewhere cannot have left it torn.
        self.parts
            .forked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new failure epoch and degrades the store; returns the error to answer with.
    fn record_failure(&mut self, what: &str, e: io::Error) -> Arc<io::Error> {
        let reason = format!("{what}: {e}");
        tracing::error!(
            error = %reason,
            durable_end = self.parts.end,
            "store write failed; appends fail until the log is recovered and a write succeeds"
        );
        self.parts.health.fail(Part::Log, reason, now_ms());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.needs_recovery = true;
        let err = Arc::new(e);
        self.last_error = Some(err.clone());
        err
    }

    /// The error batches of a past epoch are failed with.
    fn failure_error(&self) -> Arc<io::Error> {
        self.last_error
            .clone()
            .unwrap_or_else(|| Arc::new(io::Error::other("an earlier write of the log failed")))
    }

    /// Cuts the file back to the durable end, syncs the cut, and checks what is left: the
    /// file's length, and the last durable record re-read from the file.
    fn recover(&mut self) -> io::Result<()> {
        let (io, file, end) = (&self.parts.io, &self.parts.file, self.parts.end);
        io.set_len(file, end)?;
        io.sync_data(file)?;
        let len = io.len(file)?;
        if len != end {
            return Err(io::Error::other(format!(
                "the log is {len} bytes after being cut back to its durable end {end}"
            )));
        }
        if let Some(offset) = self.last_record {
            format::read_record_at(&**io, file, offset, end).map_err(|fault| match fault {
                format::ReadFault::Io(e) => e,
                format::ReadFault::Bad(reason) => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the last durable record, at offset {offset}, reads back bad: {reason}"
                    ),
                ),
            })?;
        }
        self.needs_recovery = false;
        tracing::info!(durable_end = end, "cut the log back to its durable end");
        Ok(())
    }

    /// Writes and syncs the records, each learning its offset, and the fork notes after
    /// them; then publishes the records in the index.
    fn write(&mut self, batches: &mut [Sealed], notes: &[Author]) -> io::Result<()> {
        if self.parts.version < format::STORE_FORMAT_VERSION {
            self.upgrade_header()?;
        }
        let end = self.parts.end;
        let mut buf =
            Vec::with_capacity(16 + 200 * batches.iter().map(|b| b.requests.len()).sum::<usize>());
        // Every write starts with a commit marker: all before it is durable (see the
        // recovery rule in docs/STORE.md).
        format::encode_marker(end, &mut buf);
        let mut last_record = None;
        for record in batches
            .iter_mut()
            .flat_map(|b| b.requests.iter_mut())
            .flat_map(Planned::records_mut)
        {
            record.offset = end + buf.len() as u64;
            last_record = Some(record.offset);
            format::encode_keyed_record(&record.entry, record.key.as_ref(), &mut buf);
        }
        // Replacement records after the entries: a copy never replaces an entry of its own
        // write (the syncer decided it against the durable log).
        for copy in batches
            .iter_mut()
            .flat_map(|b| b.requests.iter_mut())
            .flat_map(Planned::copies_mut)
        {
            copy.offset = end + buf.len() as u64;
            last_record = Some(copy.offset);
            format::encode_replacement(&copy.entry, &mut buf);
        }
        for author in notes {
            format::encode_fork_note(end + buf.len() as u64, author, &mut buf);
        }
        self.parts
            .io
            .write_all_at(&self.parts.file, &buf, end)
            .and_then(|()| self.parts.io.sync_data(&self.parts.file))?;
        self.parts.end += buf.len() as u64;
        self.last_record = last_record.or(self.last_record);
        self.marker_due = true;
        let mut index = self
            .parts
            .index
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for record in batches
            .iter()
            .flat_map(|b| &b.requests)
            .flat_map(Planned::records)
        {
            index.insert(&record.entry, &record.hash, record.offset);
            if let Some(key) = &record.key {
                index.keys.insert(key, record.offset);
            }
        }
        for copy in batches
            .iter()
            .flat_map(|b| &b.requests)
            .flat_map(Planned::copies)
        {
            index.replace(copy.original, copy.offset);
        }
        index.end = self.parts.end;
        Ok(())
    }

    /// Rewrites the header's version to the newest (4) and syncs it, before the first write
    /// this code makes into a file of an older version ("The header version" in
    /// docs/STORE.md).
    fn upgrade_header(&mut self) -> io::Result<()> {
        self.parts
            .io
            .write_all_at(
                &self.parts.file,
                &format::STORE_FORMAT_VERSION.to_le_bytes(),
                format::VERSION_OFFSET,
            )
            .and_then(|()| self.parts.io.sync_data(&self.parts.file))?;
        tracing::info!(
            from = self.parts.version,
            to = format::STORE_FORMAT_VERSION,
            "upgraded the log's header version before writing to it"
        );
        self.parts.version = format::STORE_FORMAT_VERSION;
        Ok(())
    }

    /// Writes and syncs a commit marker at the end, so the records of the last write are
    /// covered by one (see the recovery rule in docs/STORE.md). Skipped while a failure
    /// waits for its recovery: the next append recovers first.
    fn write_idle_marker(&mut self) {
        if !self.marker_due || self.needs_recovery {
            return;
        }
        let mut buf = Vec::with_capacity(16);
        format::encode_marker(self.parts.end, &mut buf);
        let result = self
            .parts
            .io
            .write_all_at(&self.parts.file, &buf, self.parts.end)
            .and_then(|()| self.parts.io.sync_data(&self.parts.file));
        match result {
            Ok(()) => {
                self.parts.end += buf.len() as u64;
                self.marker_due = false;
                self.parts
                    .index
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .end = self.parts.end;
            }
            Err(e) => {
                self.record_failure("write a commit marker", e);
                if let Err(e) = self.recover() {
                    self.record_failure("recover the log's tail", e);
                }
            }
        }
    }
}

/// Answers a request whose write is durable, moving its entries into the answer.
fn answer_durable(request: Planned, forks_written: &ForksWritten) {
    match request {
        Planned::Own { record, reply } => {
            answer(
                reply,
                Ok(OwnAppend::Added(record.entry, record.hash, record.offset)),
            );
        }
        Planned::Replay { head, reply, .. } => answer(
            reply,
            Ok(OwnAppend::Replayed {
                seq: head.seq,
                hash: head.hash,
            }),
        ),
        Planned::Foreign {
            failed: Some(err),
            reply,
            ..
        } => answer(reply, Err(err)),
        Planned::Foreign {
            placed,
            failed: None,
            reply,
        } => answer(
            reply,
            Ok(placed
                .into_iter()
                .map(|p| match p {
                    Placed::Write(record) => Outcome::Added(record.hash),
                    Placed::Decided(outcome) => outcome,
                })
                .collect()),
        ),
        Planned::Note { reply, .. } => answer(reply, Ok(())),
        Planned::Replace {
            failed: Some(err),
            reply,
            ..
        } => answer(reply, Err(err)),
        Planned::Replace {
            copies,
            failed: None,
            reply,
        } => answer(reply, Ok(replace_outcomes(copies))),
        Planned::Proof {
            new: false, reply, ..
        } => answer(reply, Ok(false)),
        Planned::Proof {
            new: true, reply, ..
        } => answer(
            reply,
            forks_written
                .clone()
                .map(|()| true)
                .map_err(AppendError::ForkLog),
        ),
    }
}
