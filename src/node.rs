//! The node: owns the identity, the store (the single writer), the views folded over it and
//! the metrics. The CLI's one-shot commands and `kappalog run` both go through it, so the
//! same rules apply whichever door an entry comes in by.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::csv::{CsvWriter, ImportReport};
use crate::entry::{Entry, EntryJson};
use crate::hash::Hash;
use crate::identity::{Author, Identity};
use crate::keys::{self, KeyOrigin};
use crate::metrics::Metrics;
use crate::store::{AppendError, CommitObserver, OpenReport, Store, StoreError, StoreReader};
use crate::summary::SummaryView;
use crate::view::View;

/// Where a node keeps its state.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub key_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("reading the import: {0}")]
    ImportRead(#[source] std::io::Error),
    #[error("writing the export: {0}")]
    ExportWrite(#[source] std::io::Error),
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

    /// The summary view as JSON (the same bytes `kappalog summary` prints).
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

impl CommitObserver for Views {
    fn committed(&self, entries: &[(Entry, Hash)]) {
        self.apply_all(entries);
    }
}

/// Locks a mutex, recovering from poisoning: views hold no invariant a panicking reader could
/// have broken half-way (apply is the only writer and does not panic on any input).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Folds a whole log into fresh views (used at open and by read-only commands).
pub fn rebuild_summary(reader: &StoreReader) -> Result<SummaryView, StoreError> {
    let mut view = SummaryView::new();
    reader.for_each_in_log_order(|entry, hash| {
        view.apply(entry, hash);
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(view)
}

/// A running node. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    reader: StoreReader,
    author: Author,
    views: Arc<Views>,
    metrics: Metrics,
    data_dir: PathBuf,
}

/// What opening a node found, for the caller to report.
#[derive(Debug)]
pub struct NodeOpened {
    pub store: OpenReport,
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
        let author = identity.author();
        let views = Arc::new(Views::new());
        let observer: Arc<dyn CommitObserver> = views.clone();
        let (store, report) = Store::open(data_dir, Some(identity), Some(observer))?;
        let reader = store.reader();
        // Nothing can commit before `open` returns the node, so folding now and observing
        // commits from here on sees every entry exactly once.
        *lock(&views.summary) = rebuild_summary(&reader)?;
        let node = Node {
            inner: Arc::new(Inner {
                store,
                reader,
                author,
                views,
                metrics: Metrics::new(),
                data_dir: data_dir.to_owned(),
            }),
        };
        Ok((node, report))
    }

    pub fn author(&self) -> Author {
        self.inner.author
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    pub fn reader(&self) -> &StoreReader {
        &self.inner.reader
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn summary_json(&self) -> Arc<str> {
        self.inner.views.summary_json()
    }

    /// Appends to the node's own feed; returns once the entry is durable.
    pub async fn append(&self, value: i64, data: String) -> Result<EntryJson, NodeError> {
        let (entry, hash) = self.inner.store.append_own_async(value, data).await?;
        self.inner.metrics.appends.inc();
        Ok(EntryJson::new(&entry, &hash))
    }

    /// Blocking form of [`Node::append`] for the CLI.
    pub fn append_blocking(&self, value: i64, data: String) -> Result<EntryJson, NodeError> {
        let (entry, hash) = self.inner.store.append_own(value, data)?;
        self.inner.metrics.appends.inc();
        Ok(EntryJson::new(&entry, &hash))
    }

    /// Imports CSV (any concatenation of exports). Blocking: call it off the async workers.
    pub fn import(&self, input: impl Read) -> Result<ImportReport, NodeError> {
        let report = crate::import::import_csv(&self.inner.store, input)?;
        let m = &self.inner.metrics;
        m.count_import("added", report.added);
        m.count_import("duplicate", report.duplicates);
        let rejected = u64::try_from(report.rejected.len()).unwrap_or(u64::MAX);
        let forks = u64::try_from(report.forks.len()).unwrap_or(u64::MAX);
        m.count_import("rejected", rejected);
        m.count_import("fork", forks);
        m.rejections.inc_by(rejected);
        Ok(report)
    }

    /// Writes the whole log as CSV. Blocking: call it off the async workers.
    pub fn export(&self, out: impl Write) -> Result<(), NodeError> {
        export(&self.inner.reader, out)
    }

    /// Drains queued appends, syncs the log and stops the writer.
    pub fn close(self) -> Result<(), NodeError> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner.store.sync_and_close().map_err(NodeError::from),
            // Other clones still exist (tasks that have not finished): the store's writer
            // syncs every batch before acknowledging it, so nothing acknowledged is at risk.
            Err(_) => Ok(()),
        }
    }
}

/// Writes every entry of `reader` as CSV, author then seq.
pub fn export(reader: &StoreReader, out: impl Write) -> Result<(), NodeError> {
    let mut writer = CsvWriter::new(out).map_err(NodeError::ExportWrite)?;
    let mut write_error = None;
    reader.for_each_sorted(|entry, hash| match writer.write_entry(entry, hash) {
        Ok(()) => std::ops::ControlFlow::Continue(()),
        Err(e) => {
            write_error = Some(e);
            std::ops::ControlFlow::Break(())
        }
    })?;
    if let Some(e) = write_error {
        return Err(NodeError::ExportWrite(e));
    }
    writer.finish().map_err(NodeError::ExportWrite)?;
    Ok(())
}
