//! The node's witness of operator-named logs, durable: [`DurableWitness`] owns
//! `DATA_DIR/witness` and answers `add-checkpoint` requests under one lock, keeping the
//! contract of [`add_checkpoint`]: decide, record, make durable, THEN release the
//! cosignature.
//!
//! # Why a journal, not snapshots
//!
//! The file is the journal of [`crate::tlog::witness`]'s format (version 1): the header, then
//! one `<origin> <size> <root>` line appended per new cosigned tree, made durable with
//! `fdatasync` before the cosignature leaves. A cosignature then costs one short append and
//! one flush, whatever the number of origins; a snapshot (tmp file, fsync, rename, directory
//! fsync) would rewrite every origin per request and cost three flushes. The journal's one
//! weakness, growth, is bounded at open: when it holds more than twice as many lines as
//! origins (and more than [`COMPACT_MIN_LINES`]), it is rewritten once as a snapshot, by
//! tmp + fsync + rename + directory fsync, so a crash leaves the old file or the new one.
//!
//! # Crashes
//!
//! - A crash mid-append leaves a line without its newline. Its cosignature was never
//!   released, so at open the torn bytes are dropped (the file is truncated to its last
//!   complete line) and logged.
//! - A crash after the flush and before the answer leaves a record whose cosignature nobody
//!   saw: the witness is then only stricter (a client gets 409 with that size and proves
//!   from it).
//! - The header is written and flushed (file and directory) when the file is created, before
//!   any request is answered.
//!
//! # One owner
//!
//! A `std::sync::Mutex` serialises decide -> record -> append -> flush -> answer for every
//! origin, so two requests can never both be checked against one old record (the race
//! tlog-witness describes). It is held across a flush, so [`DurableWitness::add_checkpoint`]
//! blocks: callers run it on a blocking thread. Requests that change nothing (a repeat,
//! every refusal) write nothing.
//!
//! # One file backend
//!
//! Every read, write, flush, cut and rename of the file goes through a [`LogIo`]
//! ([`WitnessOptions::io`]): the real system calls for the node, and in the power-cut tests
//! ([`crate::store::io::memory::MemoryIo`]) a file in memory that loses what was not flushed,
//! cut at every call (`tests/it/witness_crash.rs`).
//!
//! # A failed write
//!
//! If an append or its flush fails, the file's tail is unknown (a line may be there,
//! unflushed). The cosignature is dropped and the witness stops cosigning until the node
//! restarts and reads the file back: every later request is [`WitnessError::Broken`] (503).
//! Refusing is always safe; guessing the file's state is not.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::durable_file::replace_with_snapshot_via;
use crate::poison::lock;
use crate::store::io::{read_to_end, LogFile, LogIo, OpenMode, SystemIo};
use crate::tlog::author_checkpoint::author_of_origin;
use crate::tlog::checkpoint::author_vkey;
use crate::tlog::vkey::VerifierKey;
use crate::tlog::witness::{
    add_checkpoint, encode_record, encode_state, parse_state, Accepted, AddCheckpointRequest,
    CosignedTree, Cosigner, Refusal, StateError, StateFileError, WitnessState, WitnessedLogs,
    STATE_HEADER,
};

/// The state file's name in the data directory.
pub const WITNESS_FILE: &str = "witness";

/// Below this many lines a journal is never compacted: rewriting a small file saves nothing
/// worth a rename and two flushes at every start.
pub const COMPACT_MIN_LINES: usize = 1024;

/// How [`DurableWitness::open_with_options`] keeps its file.
#[derive(Clone, Debug)]
pub struct WitnessOptions {
    /// The file backend: [`SystemIo`] for the node.
    pub io: Arc<dyn LogIo>,
    /// Below this many lines the journal is not compacted at open ([`COMPACT_MIN_LINES`];
    /// tests lower it to compact a short journal).
    pub compact_min_lines: usize,
}

impl Default for WitnessOptions {
    fn default() -> Self {
        WitnessOptions {
            io: Arc::new(SystemIo),
            compact_min_lines: COMPACT_MIN_LINES,
        }
    }
}

/// Why the witness could not be opened (a startup error: the node does not start).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Reading, truncating, creating or compacting the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a witness state file, or is corrupt: refusing to start keeps the
    /// witness from forgetting what it cosigned.
    #[error("{path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        source: StateFileError,
    },
    /// A served log's key, or the records read back, were refused.
    #[error("witness state: {0}")]
    State(#[from] StateError),
}

/// Why a request got no cosignature.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The decision refused it: the answer tlog-witness prescribes.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The record could not be stored (too many origins): 500, nothing released.
    #[error("cannot record the cosigned checkpoint: {0}")]
    Record(StateError),
    /// Writing the record failed just now: 503, nothing released; the witness is broken.
    #[error("writing the witness state failed: {0}")]
    Write(io::Error),
    /// An earlier write failed: the witness cosigns nothing until the node restarts.
    #[error("the witness state could not be written earlier; restart the node")]
    Broken,
}

/// The witness over `DATA_DIR/witness`: cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct DurableWitness {
    inner: Arc<Inner>,
}

struct Inner {
    cosigner: Cosigner,
    io: Arc<dyn LogIo>,
    locked: Mutex<Locked>,
    /// fdatasyncs of appended records so far: the group-commit tests count them.
    syncs: AtomicU64,
}

/// Everything the lock serialises.
struct Locked {
    state: WitnessState,
    file: LogFile,
    /// The file's length: where the next record goes.
    len: u64,
    broken: bool,
}

/// What [`DurableWitness::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenReport {
    /// Origins with a cosigned record.
    pub origins: usize,
    /// Bytes of a torn last line, dropped.
    pub torn_tail_bytes: usize,
    /// Whether the journal was rewritten as a snapshot.
    pub compacted: bool,
}

impl DurableWitness {
    /// Opens (or creates) `data_dir/witness`, serving the logs whose checkpoints `logs` sign
    /// and cosigning as `cosigner`. The caller holds the data directory's lock (the node
    /// does), so no other process appends meanwhile.
    pub fn open(
        data_dir: &Path,
        logs: &[VerifierKey],
        cosigner: Cosigner,
    ) -> Result<(Self, OpenReport), OpenError> {
        Self::open_with_options(data_dir, logs, cosigner, &WitnessOptions::default())
    }

    /// [`DurableWitness::open`] on the file backend and compaction threshold `options` name.
    pub fn open_with_options(
        data_dir: &Path,
        logs: &[VerifierKey],
        cosigner: Cosigner,
        options: &WitnessOptions,
    ) -> Result<(Self, OpenReport), OpenError> {
        let mut state = WitnessState::new();
        for vkey in logs {
            state.serve(vkey.clone())?;
        }
        let path = data_dir.join(WITNESS_FILE);
        let io = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        let (file, len, report) =
            open_file(options, data_dir, &path, &mut state).map_err(|e| match e {
                FileError::Io(source) => io(source),
                FileError::Corrupt(source) => OpenError::Corrupt {
                    path: path.clone(),
                    source,
                },
                FileError::State(e) => OpenError::State(e),
            })?;
        let witness = DurableWitness {
            inner: Arc::new(Inner {
                cosigner,
                io: options.io.clone(),
                locked: Mutex::new(Locked {
                    state,
                    file,
                    len,
                    broken: false,
                }),
                syncs: AtomicU64::new(0),
            }),
        };
        Ok((witness, report))
    }

    /// The cosigner's vkey, for verifiers' policies.
    pub fn cosigner_vkey(&self) -> VerifierKey {
        self.inner.cosigner.vkey()
    }

    /// Decides `request` at `now_secs` and, if it is cosigned, makes the new record durable
    /// before returning the cosignature. Blocks on a flush: call it off the async threads.
    pub fn add_checkpoint(
        &self,
        request: &AddCheckpointRequest,
        now_secs: u64,
    ) -> Result<Accepted, WitnessError> {
        let mut locked = lock(&self.inner.locked);
        if locked.broken {
            return Err(WitnessError::Broken);
        }
        let accepted = add_checkpoint(&locked.state, request, now_secs, &self.inner.cosigner)?;
        if accepted.entry.is_repeat() {
            return Ok(accepted);
        }
        // Recorded in memory first: if the write then fails, the witness is broken and
        // answers nothing more, so memory running ahead of the file is never acted on.
        locked
            .state
            .record(&accepted.entry)
            .map_err(WitnessError::Record)?;
        let line = encode_record(accepted.entry.origin(), accepted.entry.tree());
        self.append_durably(&mut locked, line.as_bytes())
            .map_err(WitnessError::Write)?;
        Ok(accepted)
    }

    /// Appends `bytes` and makes them durable (one fdatasync); on failure the witness is
    /// broken (module docs).
    fn append_durably(&self, locked: &mut Locked, bytes: &[u8]) -> io::Result<()> {
        let io = &*self.inner.io;
        let written = io
            .write_all_at(&locked.file, bytes, locked.len)
            .and_then(|()| io.sync_data(&locked.file));
        self.inner.syncs.fetch_add(1, Ordering::Relaxed);
        match &written {
            // A usize always fits in a u64 on the targets kappalog builds for.
            Ok(()) => locked.len += bytes.len() as u64,
            Err(e) => {
                locked.broken = true;
                tracing::error!("witness state: {e}; cosigning stops until the node restarts");
            }
        }
        written
    }

    /// The latest tree cosigned for `origin`, if any: where the next request must prove from.
    pub fn cosigned(&self, origin: &str) -> Option<CosignedTree> {
        lock(&self.inner.locked)
            .state
            .cosigned_trees()
            .get(origin)
            .copied()
    }

    /// How many times appended records were made durable since open.
    pub fn sync_count(&self) -> u64 {
        self.inner.syncs.load(Ordering::Relaxed)
    }

    /// Cosigns, as a witness of the feeds the node holds, a batch of checkpoints of
    /// `kappalog/feed/<hex>` origins (whose log key is that author's, [`FeedLogs`]): each is
    /// decided as [`DurableWitness::add_checkpoint`] would, under one lock, then ALL accepted
    /// records are appended and made durable with ONE fdatasync (group commit), and only then
    /// are the cosignatures returned. One answer per request, in order. If the write fails,
    /// every new cosignature of the batch is dropped and the witness is broken.
    pub fn add_feed_checkpoints(
        &self,
        requests: &[AddCheckpointRequest],
        now_secs: u64,
    ) -> Vec<Result<Accepted, WitnessError>> {
        let mut locked = lock(&self.inner.locked);
        if locked.broken {
            return requests.iter().map(|_| Err(WitnessError::Broken)).collect();
        }
        let mut answers = Vec::with_capacity(requests.len());
        let mut lines = String::new();
        for request in requests {
            let logs = FeedLogs(&locked.state);
            let answer = add_checkpoint(&logs, request, now_secs, &self.inner.cosigner)
                .map_err(WitnessError::from)
                .and_then(|accepted| {
                    if !accepted.entry.is_repeat() {
                        // In memory first, as in add_checkpoint: a later request of the batch
                        // for the same origin is checked against this record.
                        locked
                            .state
                            .record(&accepted.entry)
                            .map_err(WitnessError::Record)?;
                        lines.push_str(&encode_record(
                            accepted.entry.origin(),
                            accepted.entry.tree(),
                        ));
                    }
                    Ok(accepted)
                });
            answers.push(answer);
        }
        if lines.is_empty() {
            return answers;
        }
        if let Err(e) = self.append_durably(&mut locked, lines.as_bytes()) {
            for answer in &mut answers {
                if matches!(answer, Ok(accepted) if !accepted.entry.is_repeat()) {
                    *answer = Err(WitnessError::Write(io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
        answers
    }
}

/// The feeds a node holds, as logs it witnesses: the origin `kappalog/feed/<hex>` is signed
/// by that author's key; the cosigned records are the witness's, shared with the
/// `--witness-for` logs (one record per origin, whichever path cosigned it).
struct FeedLogs<'a>(&'a WitnessState);

impl WitnessedLogs for FeedLogs<'_> {
    fn log_keys(&self, origin: &str) -> Option<Vec<VerifierKey>> {
        let author = author_of_origin(origin)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(author.as_bytes()).ok()?;
        Some(vec![author_vkey(&key)])
    }
    fn cosigned(&self, origin: &str) -> Option<CosignedTree> {
        self.0.cosigned_trees().get(origin).copied()
    }
}

impl std::fmt::Debug for DurableWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cosigner's Debug shows its name, never the key.
        f.debug_struct("DurableWitness")
            .field("cosigner", &self.inner.cosigner)
            .finish_non_exhaustive()
    }
}

enum FileError {
    Io(io::Error),
    Corrupt(StateFileError),
    State(StateError),
}

impl From<io::Error> for FileError {
    fn from(e: io::Error) -> Self {
        FileError::Io(e)
    }
}

/// Reads the journal into `state`, drops a torn tail, compacts if worth it, and returns the
/// file to append to and its length.
fn open_file(
    options: &WitnessOptions,
    dir: &Path,
    path: &Path,
    state: &mut WitnessState,
) -> Result<(LogFile, u64, OpenReport), FileError> {
    let io = &*options.io;
    let mut file = io.open(path, OpenMode::ReadWrite)?;
    let bytes = read_to_end(io, &file)?;
    let loaded = parse_state(&bytes).map_err(FileError::Corrupt)?;
    let lines = bytes[..loaded.valid_len]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let mut report = OpenReport {
        origins: loaded.cosigned.len(),
        torn_tail_bytes: loaded.torn_tail_bytes,
        compacted: false,
    };
    state.restore(loaded.cosigned).map_err(FileError::State)?;
    // A usize always fits in a u64 on the targets kappalog builds for.
    let mut len = loaded.valid_len as u64;
    if loaded.valid_len == 0 {
        // New, empty, or only a torn header: start it afresh, durably, before any answer.
        io.set_len(&file, 0)?;
        io.write_all_at(&file, STATE_HEADER.as_bytes(), 0)?;
        io.sync_data(&file)?;
        io.sync_dir(dir)?;
        len = STATE_HEADER.len() as u64;
    } else if lines > options.compact_min_lines && lines > 2 * (report.origins + 1) {
        let snapshot = encode_state(state.cosigned_trees());
        file = replace_with_snapshot_via(io, dir, WITNESS_FILE, snapshot.as_bytes())?;
        len = snapshot.len() as u64;
        report.compacted = true;
    } else if loaded.torn_tail_bytes > 0 {
        io.set_len(&file, len)?;
        io.sync_data(&file)?;
    }
    if report.torn_tail_bytes > 0 {
        tracing::warn!(
            bytes = report.torn_tail_bytes,
            "witness state: dropped a torn last line (its cosignature was never released)"
        );
    }
    Ok((file, len, report))
}

#[cfg(test)]
mod tests;
