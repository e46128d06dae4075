//! The query engine the HTTP handlers share: at most [`QueryConfig::connections`] statements
//! run at once, each on its own read-only connection on a statement thread of low priority
//! ([`super::workers`]); at most [`QueryConfig::queued`] more wait for one (in arrival order), and a statement beyond
//! that is refused at once as [`QueryError::Busy`] rather than piling up.
//!
//! Connections are opened on first use and kept; one whose file was replaced (the index
//! was rebuilt) is reopened, so a query never reads a deleted index.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::workers::Workers;
use super::{Answer, Coverage, QueryConfig, QueryConnection, QueryError, Statement};
use crate::poison::lock;
use crate::views::{DefinitionError, ViewDef, ViewRequest};

/// Why a view was not vetted.
#[derive(Debug, thiserror::Error)]
pub enum VetError {
    /// Its definition is refused.
    #[error(transparent)]
    Definition(DefinitionError),
    /// The engine could not run the check (busy, closed).
    #[error(transparent)]
    Query(QueryError),
}
use crate::tail::cursor::Cursor;

/// The longest pause between two looks at `meta` while `after=CURSOR` waits.
const COVERAGE_POLL_MAX_MS: u64 = 20;

/// The engine (see the module docs). Cloning shares it.
#[derive(Clone)]
pub struct QueryEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("path", &self.inner.path)
            .field("running", &self.running())
            .field("waiting", &self.waiting())
            .finish()
    }
}

struct Inner {
    path: PathBuf,
    config: QueryConfig,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Requests waiting for the index to cover their `after` cursor.
    covering: AtomicUsize,
    idle: Mutex<Vec<QueryConnection>>,
    /// The statement threads; `None` if they could not be started (then tokio's blocking
    /// pool, at normal priority).
    workers: Option<Workers>,
}

impl Inner {
    /// An idle connection to the current index file, or a new one ([`QueryError::NoIndex`]
    /// when there is no index). A connection to a replaced (rebuilt) file is dropped.
    fn checkout(&self) -> Result<QueryConnection, QueryError> {
        match lock(&self.idle).pop() {
            Some(connection) if connection.is_current(&self.path) => Ok(connection),
            _ => QueryConnection::open(&self.path, &self.config),
        }
    }

    /// Keeps `connection` for the next statement.
    fn give_back(&self, connection: QueryConnection) {
        lock(&self.idle).push(connection);
    }
}

/// Counts a request waiting (for a connection, or for coverage) for as long as it waits,
/// also when the client goes away meanwhile.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl QueryEngine {
    /// An engine over the index database at `path` (which may not exist yet: each query
    /// then answers [`QueryError::NoIndex`]).
    pub fn new(path: PathBuf, config: QueryConfig) -> QueryEngine {
        let slots = Arc::new(Semaphore::new(config.connections.max(1)));
        let workers = Workers::start(config.connections)
            .map_err(|e| tracing::warn!(error = %e, "query threads not started; using the blocking pool"))
            .ok();
        QueryEngine {
            inner: Arc::new(Inner {
                path,
                config,
                slots,
                waiting: AtomicUsize::new(0),
                covering: AtomicUsize::new(0),
                idle: Mutex::new(Vec::new()),
                workers,
            }),
        }
    }

    /// The bounds the engine applies.
    pub fn config(&self) -> &QueryConfig {
        &self.inner.config
    }

    /// Statements running now (each holds a connection and a statement thread).
    pub fn running(&self) -> usize {
        self.inner
            .config
            .connections
            .max(1)
            .saturating_sub(self.inner.slots.available_permits())
    }

    /// Statements waiting for a connection.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    /// Requests waiting for the index to cover their `after` cursor.
    pub fn covering(&self) -> usize {
        self.inner.covering.load(Ordering::SeqCst)
    }

    /// Runs one client statement.
    pub async fn query(&self, statement: Statement) -> Result<Answer, QueryError> {
        self.with_connection(move |connection| connection.run(&statement))
            .await
    }

    /// Vets `request` as view `name` ([`super::vet`]) on a statement thread, holding a
    /// connection slot like a query (its sample is read from the index; with no index yet,
    /// the check runs on its made-up rows alone).
    pub async fn vet(&self, name: &str, request: &ViewRequest) -> Result<ViewDef, VetError> {
        let permit = self.admit().await.map_err(VetError::Query)?;
        let inner = Arc::clone(&self.inner);
        let (name, request) = (name.to_owned(), request.clone());
        self.on_worker(move || {
            let _permit = permit;
            let mut connection = inner.checkout().ok();
            let vetted = super::vet::vet(connection.as_mut(), &inner.config, &name, &request);
            if let Some(connection) = connection {
                inner.give_back(connection);
            }
            vetted.map_err(VetError::Definition)
        })
        .await
        .map_err(|e| {
            VetError::Query(QueryError::Internal(format!(
                "a check's thread failed: {e}"
            )))
        })?
    }

    /// How far the index covers now.
    pub async fn coverage(&self) -> Result<Coverage, QueryError> {
        self.with_connection(QueryConnection::coverage).await
    }

    /// Waits until the index covers `cursor` (docs/QUERY.md: `covered > cursor.offset`), at
    /// most `wait`; [`QueryError::NotCovered`] with the index's `as_of` past it. The caller
    /// has checked that the cursor is of this node's log.
    pub async fn wait_for(&self, cursor: Cursor, wait: Duration) -> Result<(), QueryError> {
        self.inner.covering.fetch_add(1, Ordering::SeqCst);
        let _covering = Waiting(&self.inner.covering);
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            let coverage = self.coverage().await?;
            if coverage.covers(&cursor) {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(QueryError::NotCovered {
                    ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    as_of: coverage.to_string(),
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(COVERAGE_POLL_MAX_MS));
        }
    }

    /// Runs `work` on a connection once one is free (or refuses it as busy), on a statement
    /// thread. The slot is released when the work ends, not when the caller stops waiting: a
    /// client that goes away never lets more statements run than there are connections.
    async fn with_connection<R, F>(&self, work: F) -> Result<R, QueryError>
    where
        R: Send + 'static,
        F: FnOnce(&mut QueryConnection) -> Result<R, QueryError> + Send + 'static,
    {
        let permit = self.admit().await?;
        let inner = Arc::clone(&self.inner);
        self.on_worker(move || {
            let _permit = permit;
            let mut connection = inner.checkout()?;
            let result = work(&mut connection);
            inner.give_back(connection);
            result
        })
        .await
        .map_err(|e| QueryError::Internal(format!("a query's thread failed: {e}")))?
    }

    /// Runs `work` on a statement thread (see [`Workers`]).
    async fn on_worker<F, R>(&self, work: F) -> Result<R, String>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        match &self.inner.workers {
            Some(workers) => workers.run(work).await,
            None => crate::determinism::blocking(work)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn admit(&self) -> Result<OwnedSemaphorePermit, QueryError> {
        if let Ok(permit) = Arc::clone(&self.inner.slots).try_acquire_owned() {
            return Ok(permit);
        }
        let before = self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.inner.waiting);
        if before >= self.inner.config.queued {
            return Err(QueryError::Busy {
                running: self.running(),
                queued: before,
            });
        }
        Arc::clone(&self.inner.slots)
            .acquire_owned()
            .await
            .map_err(|_| QueryError::Internal("the query engine is closed".into()))
    }
}
