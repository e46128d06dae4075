//! The node: owns the identity, the store (the single writer), the views folded over it, the
//! fork proofs, the own-feed fence and the metrics. The CLI's one-shot commands, HTTP and
//! peer sync all go through it, so the same rules apply whichever door an entry comes in by:
//!
//! - entries of an author known to be forked are refused before they reach the store;
//! - a fork the store reports (`Outcome::Fork`) becomes a proof: checked, persisted in
//!   `DATA_DIR/forks` ([`crate::store::fork_log`]), the author marked forked in the views, and the
//!   proof broadcast to sync sessions;
//! - own appends pass the own-feed fence ([`crate::fence`]), which the store's writer owns
//!   and checks where it orders own appends; the node passes it the events it learns of
//!   ([`Node::fence_event`]: a fork proof of its own author here, the rest from sync);
//! - an own append under an idempotency key ([`crate::idempotency`]) that the store already
//!   holds appends nothing and answers with the entry appended under the key
//!   ([`Node::append_idempotent`]).
//!
//! Every durable batch is folded into the views and then broadcast as a [`NodeEvent`] to
//! whoever subscribed (sync sessions push it live to their peers; the tail renders it for its
//! streams, [`crate::tail`]). The node knows none of its callers: they subscribe.
//!
//! # Lifecycle
//!
//! [`Node::open`] opens the store and keeps its [`StoreOwner`]; clones of the node share
//! both. Every task that works for the node — the sync listener, its sessions and dialers,
//! tail streams — is spawned through [`Node::spawn`], onto one task tracker. The node is
//! stopped in one place, [`Node::shutdown`]: tail streams and sync sessions are told to end
//! ([`Node::end_streams`], [`Node::stopping`]: they watch for it; sessions say
//! `Bye(Shutdown)`), the tracked tasks are awaited for at most
//! [`SHUTDOWN_TASKS_TIMEOUT_MS`], and then the store is shut down, which returns once the
//! directory lock is released. A task that still holds a clone of the node after that (one
//! past the bound, or a blocking read off the async workers) does not keep the store open:
//! its requests are answered `Closed`. Nothing polls for the last clone; dropping every
//! clone without a shutdown sends the store its shutdown request without waiting.

pub mod follower;
mod replication;

use crate::poison::lock;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio_util::task::TaskTracker;

use crate::csv::CsvWriter;
use crate::entry::{Entry, EntryJson};
use crate::fence::{Fence, FenceError, FenceEvent, OwnFeedState};
use crate::fork::ForkProof;
use crate::hash::Hash;
use crate::idempotency::{self, IdempotencyKey};
use crate::identity::{Author, Identity};
use crate::keys::{self, KeyOrigin};
use crate::metrics::Metrics;
use crate::progress::{NoProgress, Progress, Stage};
use crate::store::fork_log::ForkLogError;
use crate::store::{
    AppendError, CommitObserver, OpenReport, OwnAppend, Store, StoreError, StoreOptions,
    StoreOwner, StoreReader,
};
use crate::summary::{FeedsPage, SummaryView};
use crate::view::View;

/// Events buffered per subscriber before it lags (a lagging sync session falls back to a
/// range read from the store, so nothing is lost, only re-read).
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// How long [`Node::shutdown`] waits for the node's tasks to end before it shuts the store
/// down anyway. Sessions end with a `Bye` bounded by their write timeout, streams at once;
/// this bounds a shutdown that something stuck would otherwise hold open.
pub const SHUTDOWN_TASKS_TIMEOUT_MS: u64 = 5_000;

/// What subscribers of [`Node::subscribe`] are told, in commit order.
#[derive(Clone, Debug)]
pub enum NodeEvent {
    /// A durable batch of entries (own appends, imports, entries from peers).
    Committed(Arc<Committed>),
    /// A newly recorded fork proof.
    Proof(Arc<ForkProof>),
}

/// One durable batch, as [`NodeEvent::Committed`] tells it. Derefs to its entries.
#[derive(Debug)]
pub struct Committed {
    entries: Vec<(Entry, Hash)>,
    /// Where each entry's record starts in the log (one per entry; the tail's cursors).
    offsets: Vec<u64>,
}

impl Committed {
    /// Where each entry's record starts in the log, in the order of the entries.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }
}

impl std::ops::Deref for Committed {
    type Target = [(Entry, Hash)];

    fn deref(&self) -> &[(Entry, Hash)] {
        &self.entries
    }
}

/// What offering foreign entries to the node came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferReport {
    /// Entries the store appended now.
    pub added: u64,
    /// Entries the store held already (same author, seq and hash): nothing written.
    pub duplicates: u64,
    /// Entries of authors known forked, not offered to the store.
    pub refused_forked: u64,
    /// Fork proofs built from the store's `Outcome::Fork` (new or already known).
    pub forks: u64,
    /// Entries the store refused as invalid or out of order (a gap); counted in the
    /// `rejections` metric too.
    pub rejected: u64,
}

/// Where a node keeps its state.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The directory holding `entries.log`, `forks` and `LOCK`; one open node per directory.
    pub data_dir: PathBuf,
    /// The node's secret key file; created (and logged) when missing.
    pub key_path: PathBuf,
}

/// Why a node operation failed: the boundary between the node and its callers (the HTTP
/// facade maps it to statuses in one `match`).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The key file could not be read, parsed or created.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// Opening, reading or shutting down the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's writer refused or failed an append (the fence's refusal is
    /// [`NodeError::Fence`] instead).
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The CSV export's destination failed (a closed HTTP body, a full disk).
    #[error("writing the export: {0}")]
    ExportWrite(#[source] std::io::Error),
    /// The fork-proof log (`DATA_DIR/forks`) failed.
    #[error(transparent)]
    Forks(#[from] ForkLogError),
    /// The own-feed fence refuses own appends now; retrying may succeed unless it is
    /// [`FenceError::Diverged`].
    #[error(transparent)]
    Fence(#[from] FenceError),
    /// A blocking task the node spawned panicked or was cancelled.
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A promise of our own code broken; says which.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The Idempotency-Key was used before for a request with a different body.
    #[error("Idempotency-Key \"{key}\" was used for a different request: use a new key for a new request")]
    KeyReused {
        /// The key the client sent.
        key: IdempotencyKey,
    },
    /// The store remembers the key's append, but the entry at that seq is gone or differs:
    /// a broken promise of the store, never the client's fault.
    #[error("the entry appended under Idempotency-Key \"{key}\" (seq {seq}) is not in the store")]
    ReplayMissing {
        /// The key the client sent.
        key: IdempotencyKey,
        /// The seq of our own feed the key was recorded with.
        seq: u64,
    },
}

/// What a keyed own append came to.
#[derive(Debug, Clone)]
pub enum KeyedAppend {
    /// Appended now, durable.
    Created(Added),
    /// The key was used before for the same request: nothing appended; the entry appended
    /// then.
    Replayed(Added),
}

/// An own entry and where its record starts in the log: what `POST /add` needs to answer
/// the entry's tail cursor, which `GET /query?after=CURSOR` waits for (read your writes).
#[derive(Debug, Clone)]
pub struct Added {
    /// The entry.
    pub entry: EntryJson,
    /// The log offset where its record starts.
    pub offset: u64,
}

/// The views kept live as entries commit, and the cached JSON that readers are served.
pub struct Views {
    summary: Mutex<SummaryView>,
    /// `GET /summary` serves this string: rebuilt at most once per commit, so a read costs
    /// O(1) in the log's size and many readers share one serialisation.
    summary_json: Mutex<Option<Arc<str>>>,
}

impl Views {
    fn new() -> Views {
        Views {
            summary: Mutex::new(SummaryView::new()),
            summary_json: Mutex::new(None),
        }
    }

    /// The summary view as JSON (the same bytes `kappalog summary` prints): constant size,
    /// brought up to date at most once per commit (see [`crate::summary`] for the cost).
    pub fn summary_json(&self) -> Arc<str> {
        let mut cached = lock(&self.summary_json);
        if let Some(json) = cached.as_ref() {
            return json.clone();
        }
        let summary = lock(&self.summary).summary();
        // Serialising a struct of numbers and strings to a String cannot fail.
        let json: Arc<str> = serde_json::to_string(&summary)
            .expect("summary serialises")
            .into();
        *cached = Some(json.clone());
        json
    }

    fn mark_forked(&self, author: &Author) {
        lock(&self.summary).mark_forked(author);
        *lock(&self.summary_json) = None;
    }

    fn apply_all(&self, entries: &[(Entry, Hash)]) {
        {
            let mut summary = lock(&self.summary);
            for (entry, hash) in entries {
                summary.apply(entry, hash);
            }
        }
        *lock(&self.summary_json) = None;
    }
}

/// The store's one commit observer: fold into the views, then tell subscribers.
struct NodeObserver {
    views: Arc<Views>,
    events: broadcast::Sender<NodeEvent>,
}

impl CommitObserver for NodeObserver {
    fn committed(&self, entries: Vec<(Entry, Hash)>, offsets: Vec<u64>) {
        self.views.apply_all(&entries);
        let batch = Committed { entries, offsets };
        // An error only means nobody subscribed: nothing to tell.
        let _ = self.events.send(NodeEvent::Committed(Arc::new(batch)));
    }
}

/// Squares the fork notes in the log with the proofs in `DATA_DIR/forks`: a proof without a
/// note (recorded before notes existed) gets its note now, so from here on losing the forks
/// file cannot re-admit it; a note without its proof is logged (the author stays forked).
fn reconcile_fork_notes(
    store: &Store,
    notes: &std::collections::BTreeSet<Author>,
) -> Result<(), NodeError> {
    let (unnoted, unproven): (Vec<Author>, Vec<Author>) = {
        let forked = store.forked();
        (
            forked
                .proofs()
                .authors()
                .filter(|author| !notes.contains(author))
                .copied()
                .collect(),
            forked.unproven().copied().collect(),
        )
    };
    for author in unnoted {
        store.append_fork_note(author).wait()?;
    }
    for author in &unproven {
        tracing::error!(
            %author,
            "the log notes a fork proof of this author, but {} does not hold it (the file lost it): the feed stays excluded; a peer that holds the proof restores it",
            crate::store::fork_log::FORKS_FILE
        );
    }
    Ok(())
}

/// Folds a whole log into a fresh summary view, then marks the `forked` authors (used at
/// open and by read-only commands).
pub fn rebuild_summary<'a>(
    reader: &StoreReader,
    forked: impl IntoIterator<Item = &'a Author>,
) -> Result<SummaryView, StoreError> {
    let mut view = SummaryView::new();
    reader.for_each_in_log_order(|entry, hash| {
        view.apply(entry, hash);
        std::ops::ControlFlow::Continue(())
    })?;
    for author in forked {
        view.mark_forked(author);
    }
    Ok(view)
}

/// A running node. Cheap to clone; all clones share one store and one set of tasks.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Taken by [`Node::shutdown`]; dropped with the last clone otherwise.
    owner: Mutex<Option<StoreOwner>>,
    /// Every task working for the node ([`Node::spawn`]).
    tasks: TaskTracker,
    reader: StoreReader,
    author: Author,
    identity: Identity,
    views: Arc<Views>,
    metrics: Metrics,
    data_dir: PathBuf,
    events: broadcast::Sender<NodeEvent>,
    /// Set once the node is shutting down: long-lived readers (tail streams) end on it.
    ending: watch::Sender<bool>,
    /// Set when [`Node::shutdown`] begins: the tasks working for the node (peer sync) end
    /// on it, so the node stops them without knowing what they are.
    stopping: watch::Sender<bool>,
}

/// What opening a node found, for the caller to report.
#[derive(Debug)]
pub struct NodeOpened {
    /// What opening the store found: entries and feeds loaded, a torn tail cut, fork notes.
    pub store: OpenReport,
    /// True when no key file existed and a new key was generated: the operator should back
    /// it up.
    pub key_created: bool,
}

impl Node {
    /// Loads (or creates) the key, opens the store with its recovery, and rebuilds the views.
    pub fn open(config: &NodeConfig) -> Result<(Node, NodeOpened), NodeError> {
        let (identity, origin, warnings) = keys::load_or_create(&config.key_path)?;
        for warning in warnings {
            tracing::warn!(key = %config.key_path.display(), "{warning}");
        }
        let key_created = matches!(origin, KeyOrigin::Created);
        if key_created {
            tracing::info!(
                key = %config.key_path.display(),
                author = %identity.author(),
                "created a new node key; back it up (see keys/README.md)"
            );
        }
        Self::open_with_identity(&config.data_dir, identity)
            .map(|(node, store)| (node, NodeOpened { store, key_created }))
    }

    /// Opens a node with an identity already in hand (tests, `kappalog cluster`).
    pub fn open_with_identity(
        data_dir: &Path,
        identity: Identity,
    ) -> Result<(Node, OpenReport), NodeError> {
        Self::open_with_store_options(data_dir, identity, &StoreOptions::default())
    }

    /// As [`Node::open_with_identity`], opening the store with `options` (tests use it to
    /// make the store's fdatasync slow or fail, see [`crate::store::io`]).
    pub fn open_with_store_options(
        data_dir: &Path,
        identity: Identity,
        options: &StoreOptions,
    ) -> Result<(Node, OpenReport), NodeError> {
        let author = identity.author();
        let views = Arc::new(Views::new());
        let (events, _) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        let observer: Arc<dyn CommitObserver> = Arc::new(NodeObserver {
            views: views.clone(),
            events: events.clone(),
        });
        let (store, owner, report) =
            Store::open_with_options(data_dir, options, Some(identity.clone()), Some(observer))?;
        let reader = store.reader();
        reconcile_fork_notes(&store, &report.fork_notes)?;
        let forked = store.forked().authors();
        // Nothing can commit before `open` returns the node, so folding now and observing
        // commits from here on sees every entry exactly once.
        *lock(&views.summary) = rebuild_summary(&reader, &forked)?;
        // The store's writer closed the fence at open if our own author is forked.
        if let Err(e) = store.fence().check(0, crate::clock::instant()) {
            tracing::error!(%author, "{e}");
        }
        if report.forks.proofs > 0 {
            tracing::info!(proofs = report.forks.proofs, "loaded fork proofs");
        }
        let node = Node {
            inner: Arc::new(Inner {
                store,
                owner: Mutex::new(Some(owner)),
                tasks: TaskTracker::new(),
                reader,
                author,
                identity,
                views,
                metrics: Metrics::new(),
                data_dir: data_dir.to_owned(),
                events,
                ending: watch::Sender::new(false),
                stopping: watch::Sender::new(false),
            }),
        };
        Ok((node, report))
    }

    /// The node's own author (its public key): the feed [`Node::append`] signs into.
    pub fn author(&self) -> Author {
        self.inner.author
    }

    /// The data directory the node opened (and holds locked until shutdown).
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// A reader of the committed log; it never sees an entry before it is durable.
    pub fn reader(&self) -> &StoreReader {
        &self.inner.reader
    }

    /// The store itself, for the layers above that drive it under the node's rules (an
    /// import refuses forked authors and records forks through the node, see
    /// [`crate::import`]). Own appends go through [`Node::append`], which passes the fence.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The node's Prometheus metrics, shared by every clone and served on `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The summary view as JSON, served by `/summary`; see [`Views::summary_json`].
    pub fn summary_json(&self) -> Arc<str> {
        self.inner.views.summary_json()
    }

    /// Up to `limit` feeds of the summary view in author order, after `after` (`GET /feeds`;
    /// the caller bounds `limit`).
    pub fn feeds_page(&self, after: Option<&Author>, limit: usize) -> FeedsPage {
        lock(&self.inner.views.summary).feeds_page(after, limit)
    }

    /// The node's key: sync sessions sign their handshake with it.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Whether the store can write right now (`GET /health`, `/metrics`).
    pub fn store_health(&self) -> &crate::store::health::StoreHealth {
        self.inner.store.health()
    }

    /// Events from now on (see [`NodeEvent`]).
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Tells long-lived readers (tail streams) that the node is shutting down: they end at
    /// once rather than hold the server's graceful shutdown open. New ones are refused.
    pub fn end_streams(&self) {
        self.inner.ending.send_replace(true);
    }

    /// Becomes `true` when [`Node::end_streams`] is called.
    pub fn streams_ending(&self) -> watch::Receiver<bool> {
        self.inner.ending.subscribe()
    }

    /// Becomes `true` when [`Node::shutdown`] begins: every long-lived task working for
    /// the node ends on it (peer sync sessions say `Bye(Shutdown)` first), and the
    /// shutdown waits for them.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    /// The own-feed fence state, as `/summary` reports it (from the copy the store's
    /// writer publishes after each event, see [`Store::fence`]).
    pub fn own_feed_state(&self) -> OwnFeedState {
        let length = self.own_length();
        self.fence().state(length, crate::clock::instant())
    }

    /// The own-feed fence as the store's writer last published it.
    pub fn fence(&self) -> Fence {
        self.inner.store.fence()
    }

    /// How many entries of its own feed the node holds.
    pub fn own_length(&self) -> u64 {
        self.inner
            .reader
            .head(&self.inner.author)
            .map_or(0, |h| h.seq)
    }

    /// Tells the own-feed fence of `event` (the sync layer: startup, claims; a fork proof
    /// of our own author). Ordered before every own append requested after it returns
    /// ([`Store::fence_event`]).
    pub fn fence_event(&self, event: FenceEvent) {
        self.inner.store.fence_event(event);
    }

    /// Appends to the node's own feed; returns once the entry is durable. Refused while the
    /// own-feed fence is closed.
    pub async fn append(&self, value: i64, data: String) -> Result<EntryJson, NodeError> {
        self.append_located(value, data)
            .await
            .map(|added| added.entry)
    }

    /// [`Node::append`], answered with the entry's tail cursor too (`POST /add`).
    pub async fn append_located(&self, value: i64, data: String) -> Result<Added, NodeError> {
        let outcome = self
            .inner
            .store
            .append_own_keyed(value, data, None)
            .await
            .map_err(own_append_error)?;
        match outcome {
            OwnAppend::Added(entry, hash, offset) => {
                self.inner.metrics.appends.inc();
                Ok(self.located(&entry, &hash, offset))
            }
            // The writer replays only keyed requests; fail closed rather than panic.
            OwnAppend::Replayed { .. } => Err(NodeError::Append(AppendError::Internal(
                "the writer replayed an append that carried no key",
            ))),
        }
    }

    fn located(&self, entry: &Entry, hash: &Hash, offset: u64) -> Added {
        Added {
            entry: EntryJson::new(entry, hash),
            offset,
        }
    }

    /// Appends to the own feed under an idempotency key (`value: None` lets the node pick a
    /// random one). A key the store remembers ([`crate::store::keys::MAX_REMEMBERED_KEYS`]
    /// most recent) appends nothing: the same request (see [`idempotency::same_request`])
    /// gets [`KeyedAppend::Replayed`] with the entry appended under the key, a different one
    /// [`NodeError::KeyReused`]. Two requests with one key never both append: the store's
    /// writer deduplicates them in order, in flight included.
    ///
    /// A replay signs nothing, so it is answered even while the own-feed fence is closed:
    /// the writer looks the key up before it consults the fence.
    pub async fn append_idempotent(
        &self,
        key: IdempotencyKey,
        value: Option<i64>,
        data: String,
    ) -> Result<KeyedAppend, NodeError> {
        let chosen = value.unwrap_or_else(rand::random::<i64>);
        let outcome = self
            .inner
            .store
            .append_own_keyed(chosen, data.clone(), Some(key.clone()))
            .await
            .map_err(own_append_error)?;
        match outcome {
            OwnAppend::Added(entry, hash, offset) => {
                self.inner.metrics.appends.inc();
                Ok(KeyedAppend::Created(self.located(&entry, &hash, offset)))
            }
            OwnAppend::Replayed { seq, hash } => {
                let reader = self.inner.reader.clone();
                let author = self.inner.author;
                let found = crate::determinism::blocking(move || {
                    reader
                        .get(&author, seq)
                        .map(|found| found.zip(reader.offset_of(&author, seq)))
                })
                .await??;
                match found {
                    Some(((entry, held), offset)) if held == hash => {
                        if idempotency::same_request(&entry, value, &data) {
                            Ok(KeyedAppend::Replayed(self.located(&entry, &hash, offset)))
                        } else {
                            Err(NodeError::KeyReused { key })
                        }
                    }
                    _ => Err(NodeError::ReplayMissing { key, seq }),
                }
            }
        }
    }

    /// Blocking form of [`Node::append`] for the CLI.
    pub fn append_blocking(&self, value: i64, data: String) -> Result<EntryJson, NodeError> {
        let (entry, hash) = self
            .inner
            .store
            .append_own(value, data)
            .wait()
            .map_err(own_append_error)?;
        self.inner.metrics.appends.inc();
        Ok(EntryJson::new(&entry, &hash))
    }

    /// Writes the whole log as CSV. Blocking: call it off the async workers.
    pub fn export(&self, out: impl Write) -> Result<(), NodeError> {
        export(&self.inner.reader, out)
    }

    /// Runs `task` as one of the node's tasks: [`Node::shutdown`] waits for it (bounded).
    /// Every long-lived task that works for the node is spawned here, so the node knows
    /// them all.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.tasks.spawn(task)
    }

    /// Stops the node, in one place (see the module docs): ends tail streams and sync
    /// sessions, waits for the node's tasks for at most [`SHUTDOWN_TASKS_TIMEOUT_MS`], then
    /// shuts the store down. Returns once the store has answered every request queued
    /// before, synced, and released the directory lock, so the data directory can be opened
    /// again at once. A second call (from another clone) finds the store already taken and
    /// returns at once.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(SHUTDOWN_TASKS_TIMEOUT_MS);
        self.end_streams();
        self.inner.stopping.send_replace(true);
        self.inner.tasks.close();
        if tokio::time::timeout_at(deadline, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.inner.tasks.len(),
                timeout_ms = SHUTDOWN_TASKS_TIMEOUT_MS,
                "node tasks still running at the shutdown deadline; closing the store under them (they get `closed` errors)"
            );
        }
        let owner = lock(&self.inner.owner).take();
        if let Some(owner) = owner {
            owner.shutdown().await?;
        }
        Ok(())
    }

    /// [`Node::shutdown`] for the one-shot CLI commands, which run no async runtime and so
    /// no tasks: shuts the store down, blocking the calling thread until it is done. Never
    /// call it on an async worker.
    pub fn shutdown_blocking(self) -> Result<(), NodeError> {
        if !self.inner.tasks.is_empty() {
            tracing::warn!(
                tasks = self.inner.tasks.len(),
                "blocking shutdown of a node with tasks running; they get `closed` errors"
            );
        }
        let owner = lock(&self.inner.owner).take();
        if let Some(owner) = owner {
            owner.shutdown_blocking()?;
        }
        Ok(())
    }
}

/// An own append's error as the node answers it: the fence's refusal is
/// [`NodeError::Fence`] whichever door asked (its text and HTTP status are the fence's).
fn own_append_error(e: AppendError) -> NodeError {
    match e {
        AppendError::Fence(refused) => NodeError::Fence(refused),
        other => NodeError::Append(other),
    }
}

/// Writes every entry of `reader` as CSV, author then seq.
pub fn export(reader: &StoreReader, out: impl Write) -> Result<(), NodeError> {
    export_with_progress(reader, out, &NoProgress)
}

/// Entries written between two reports of an export's progress.
const EXPORT_PROGRESS_ENTRIES: u64 = 4096;

/// [`export`], reporting [`Stage::Export`] to `progress`: the entries the log holds as the
/// total, then every `EXPORT_PROGRESS_ENTRIES` written.
pub fn export_with_progress(
    reader: &StoreReader,
    out: impl Write,
    progress: &dyn Progress,
) -> Result<(), NodeError> {
    progress.begin(Stage::Export, Some(reader.len()));
    let mut writer = CsvWriter::new(out).map_err(NodeError::ExportWrite)?;
    let mut write_error = None;
    let mut unreported = 0u64;
    reader.for_each_sorted(|entry, hash| match writer.write_entry(entry, hash) {
        Ok(()) => {
            unreported += 1;
            if unreported == EXPORT_PROGRESS_ENTRIES {
                progress.advance(std::mem::take(&mut unreported));
            }
            std::ops::ControlFlow::Continue(())
        }
        Err(e) => {
            write_error = Some(e);
            std::ops::ControlFlow::Break(())
        }
    })?;
    if let Some(e) = write_error {
        return Err(NodeError::ExportWrite(e));
    }
    writer.finish().map_err(NodeError::ExportWrite)?;
    progress.advance(unreported);
    Ok(())
}
