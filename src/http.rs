//! The HTTP facade (axum): adapters only. Each handler extracts, calls one node method, and
//! maps the result; [`ApiError`] owns the status mapping.
//!
//! Routes (JSON unless stated; binary fields lowercase hex):
//!
//! | method | path              | what                                                 |
//! |--------|-------------------|------------------------------------------------------|
//! | POST   | `/add`            | append to the node's own feed; 201 + the entry (200 for a retry under the same `Idempotency-Key`) |
//! | GET    | `/summary`        | the summary view: aggregates, feed counts, digest (constant size) |
//! | GET    | `/entries`        | `?author=HEX&from=SEQ&limit=N`: one feed, paginated  |
//! | GET    | `/entries/{hash}` | one entry or 404                                     |
//! | GET    | `/feeds`          | `?limit=N&after=AUTHOR`: the feeds in author order, paginated, each with its `tree_size` and `checkpoint_size` |
//! | GET    | `/feeds/{author}/checkpoint` | the feed's served checkpoint, a C2SP signed note (`text/plain`; [`tlog`]) |
//! | POST   | `/feeds/{author}/checkpoint` | a signed note of the feed's checkpoint with cosignatures (e.g. a `--witness-key` witness's), offered to the checkpoint book as a peer's note; authenticated by its signatures, not the token; a JSON summary ([`feed_checkpoint`]) |
//! | GET    | `/feeds/{author}/proof` | `?seq=N[&size=S]`: entry N's `c2sp.org/tlog-proof@v1` bundle (`text/plain`) |
//! | GET    | `/feeds/{author}/consistency` | `?from=A&to=B`: a consistency proof, one base64 hash a line (`text/plain`) |
//! | GET    | `/feeds/{author}/tile/{*path}` | tlog-tiles: `L/N[.p/W]` hash tiles and `entries/N[.p/W]` entry bundles (binary; [`tiles`]) |
//! | GET    | `/export.csv`     | the CSV export, streamed (`text/csv`)                |
//! | GET    | `/tail`           | committed entries live, SSE or NDJSON ([`crate::tail`]) |
//! | POST   | `/import`         | a CSV body, streamed; the import counts              |
//! | GET    | `/forks`          | recorded fork proofs (author, seq, both entries)     |
//! | GET    | `/peers`          | sync peers: connected, last sync, counts, lag, error |
//! | POST   | `/peers`          | `{"addr": "[AUTHOR@]HOST:PORT"}`: dial a peer (pinning its key if given) |
//! | DELETE | `/peers/{addr}`   | forget a configured peer's learned key               |
//! | POST   | `/sync`           | a sync round with every connected peer now           |
//! | GET    | `/query`          | `?sql=...&:NAME=VALUE&after=CURSOR`: a read-only SQL statement over the index ([`crate::query`]); JSON or CSV |
//! | POST   | `/query`          | the same, the statement as the body (at most 64 KiB)  |
//! | GET    | `/health`         | liveness, the SQL index's state, and alarms (a copy of the node's key seen) |
//! | GET    | `/metrics`        | Prometheus text format                               |
//! | GET    | `/`               | the dashboard page (HTML; [`dashboard`] serves it)    |
//! | GET    | `/dashboard/{file}` | its script (`app.js`) and stylesheet (`app.css`)   |
//! | POST   | `/witness/add-checkpoint` | C2SP tlog-witness, for the `--witness-for` logs; authenticated by the checkpoint's signature, not the token; text answers ([`witness`]) |
//!
//! Every error is `{"error": "..."}` (the witness route's protocol answers excepted: they are
//! the spec's text); internal causes are logged, not echoed. The verifiable-feed routes
//! answer in the C2SP formats on success and JSON errors otherwise.

mod add;
pub mod dashboard;
mod error;
mod feed_checkpoint;
mod middleware;
mod query;
mod read;
mod stream;
mod sync;
mod tail;
mod tiles;
mod tlog;
mod views;
mod witness;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use tower::limit::ConcurrencyLimit;

pub use add::{parse_add_body, AddRequest};
pub use error::ApiError;
pub use middleware::Gate;
pub use query::{AS_OF_HEADER, DIGEST_HEADER, TRUNCATED_HEADER};

use crate::checkpoint_book::CheckpointBook;
use crate::index::IndexHandle;
use crate::node::Node;
use crate::query::{index_path, QueryConfig, QueryEngine};
use crate::sync::SyncHandle;
use crate::tail::{TailConfig, Tails};
use crate::tree::Trees;
use crate::witness_state::DurableWitness;

/// `/add` bodies are tiny: a value and at most 4096 bytes of data, JSON-escaped.
pub const MAX_ADD_BODY_BYTES: usize = 64 * 1024;
/// `/import` bodies are streamed, never held whole; this bounds one request's work.
pub const MAX_IMPORT_BODY_BYTES: usize = 1024 * 1024 * 1024;
/// Requests in flight at once; further ones wait for a slot.
pub const MAX_CONCURRENT_REQUESTS: usize = 1024;
/// A request that takes longer than this is answered 503 (imports and exports excepted:
/// they stream and are bounded by their body size instead).
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// How long a streamed upload or download may go without moving a byte before it is
/// closed (`--stream-idle-timeout`).
pub const STREAM_IDLE_TIMEOUT_MS: u64 = 30_000;

/// What the router needs besides the node.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// When set, write endpoints require `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// An upload (`POST /import`) that sends no bytes for this long is refused (408) and
    /// imports nothing.
    pub stream_idle_timeout: Duration,
    /// A request taking longer is answered 503 (streams and `/add` once its body arrived
    /// excepted); an `/add` body must arrive within it. [`REQUEST_TIMEOUT_MS`] by default;
    /// tests shorten it.
    pub request_timeout: Duration,
    /// `GET /tail`'s limits and timings.
    pub tail: TailConfig,
    /// The node's running peer sync, if any: `/peers`, `/sync`, the sync figures of
    /// `/metrics` and the `key_copy` alarm of `/health` read it (without it, `/peers` is
    /// empty and its writes answer 503). Whoever started sync hands it here.
    pub sync: Option<SyncHandle>,
    /// The node's running SQL indexer, if any: `/health` reports its state and `/metrics`
    /// its lag. Whoever started it hands it here.
    pub index: Option<IndexHandle>,
    /// The node's running tree cache follower, if any ([`crate::tree`]): `/health` reports
    /// its state and `/metrics` its lag. Whoever started it hands it here.
    pub tree: Option<Trees>,
    /// The node's checkpoint book, if running ([`crate::checkpoint_book`]): the served
    /// notes, and `checkpoint_size` and `k` in `/feeds`. Whoever started it hands it here.
    pub book: Option<CheckpointBook>,
    /// The query engine over the node's index; `None` builds one over
    /// `DATA_DIR/index/index.sqlite` with [`QueryConfig::default`]. Given, the caller keeps a
    /// handle on it (its load).
    pub query: Option<QueryEngine>,
    /// The witness of the operator's `--witness-for` logs, if any; without it
    /// `POST /witness/add-checkpoint` answers 404 (unknown origin) to every request.
    pub witness: Option<DurableWitness>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            token: None,
            stream_idle_timeout: Duration::from_millis(STREAM_IDLE_TIMEOUT_MS),
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
            tail: TailConfig::default(),
            sync: None,
            index: None,
            tree: None,
            book: None,
            query: None,
            witness: None,
        }
    }
}

/// What handlers share: cloned per request, so only reference counts.
#[derive(Clone)]
pub struct AppState {
    /// The node every handler reads from and appends through.
    pub node: Node,
    /// [`HttpConfig::stream_idle_timeout`]: how long an `/import` upload may send nothing.
    pub stream_idle_timeout: Duration,
    /// How long an `/add` body may take to arrive.
    pub request_timeout: Duration,
    /// The open `GET /tail` streams' limits.
    pub tails: Tails,
    /// The node's running peer sync, if any ([`HttpConfig::sync`]).
    pub sync: Option<SyncHandle>,
    /// The node's running SQL indexer, if any ([`HttpConfig::index`]).
    pub index: Option<IndexHandle>,
    /// The node's tree cache, if running ([`HttpConfig::tree`]).
    pub tree: Option<Trees>,
    /// The node's checkpoint book, if running ([`HttpConfig::book`]).
    pub book: Option<CheckpointBook>,
    /// `/query`'s engine.
    pub query: QueryEngine,
    /// The witness, if any ([`HttpConfig::witness`]).
    pub witness: Option<DurableWitness>,
}

/// The whole HTTP API over one node, as a tower service: the router inside the [`Gate`]
/// (token, timeout, metrics, JSON errors) inside a concurrency limit. Tests drive it with
/// `tower::ServiceExt::oneshot`; `crate::server::serve_http` serves it over TCP.
pub type Api = ConcurrencyLimit<Gate<Router>>;

/// Whether a request's `Accept` names `media_type` (parameters such as `;q=` ignored): the
/// routes with a second form (`/tail`'s NDJSON, `/query`'s CSV) serve it only when asked.
pub(crate) fn accepts(headers: &axum::http::HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(media_type))
        })
}

/// Builds the [`Api`] over `node`.
pub fn router(node: Node, config: HttpConfig) -> Api {
    let state = AppState {
        node: node.clone(),
        stream_idle_timeout: config.stream_idle_timeout,
        request_timeout: config.request_timeout,
        tails: Tails::new(config.tail.clone()),
        sync: config.sync.clone(),
        index: config.index.clone(),
        tree: config.tree.clone(),
        book: config.book.clone(),
        query: config.query.clone().unwrap_or_else(|| {
            QueryEngine::new(index_path(node.data_dir()), QueryConfig::default())
        }),
        witness: config.witness.clone(),
    };

    // `/add` enforces its small body limit itself (see `add::add`): a layer here would cost
    // every request a boxed service and an allocated extension.
    let add = Router::new().route("/add", post(add::add));
    // `/import` enforces its body limit while spooling it (see `stream::import`).
    let import = Router::new()
        .route("/import", post(stream::import))
        .layer(DefaultBodyLimit::disable());
    let sync_writes = Router::new()
        .route("/peers", post(sync::add_peer))
        .route("/peers/{addr}", delete(sync::unpin_peer))
        .route("/sync", post(sync::sync_now))
        .layer(DefaultBodyLimit::max(MAX_ADD_BODY_BYTES));
    // `/query` bounds its statement itself (`query::query_post`), like `/add`.
    let query = Router::new().route("/query", get(query::query_get).post(query::query_post));
    // `PUT /views/NAME` bounds its body itself (`views::put`).
    let views = Router::new().route("/views", get(views::list)).route(
        "/views/{name}",
        get(views::run).put(views::put).delete(views::delete),
    );
    // Authenticated by the checkpoint's signature (the Gate asks no token of it), and its
    // body bounded by the handler to the largest well-formed request (413 past it).
    let witness = Router::new().route(witness::ADD_CHECKPOINT_PATH, post(witness::add_checkpoint));
    let reads = Router::new()
        .route("/summary", get(read::summary))
        .route("/entries", get(read::entries))
        .route("/entries/{hash}", get(read::entry_by_hash))
        .route("/feeds", get(read::feeds))
        // POST is authenticated by the note's signatures (the Gate asks no token of it),
        // its body bounded by the handler to the signed-note cap (413 past it).
        .route(
            "/feeds/{author}/checkpoint",
            get(tlog::checkpoint).post(feed_checkpoint::submit),
        )
        .route("/feeds/{author}/proof", get(tlog::proof))
        .route("/feeds/{author}/consistency", get(tlog::consistency))
        .route("/feeds/{author}/tile/{*path}", get(tiles::tile))
        .route("/forks", get(sync::forks))
        .route("/peers", get(sync::peers))
        .route("/health", get(read::health))
        .route("/metrics", get(read::metrics))
        .route("/export.csv", get(stream::export_csv))
        .route("/tail", get(tail::tail))
        .route("/", get(dashboard::page))
        .route("/dashboard/{file}", get(dashboard::asset));

    let routes = Router::new()
        .merge(add)
        .merge(import)
        .merge(sync_writes)
        .merge(query)
        .merge(views)
        .merge(witness)
        .merge(reads)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state);
    ConcurrencyLimit::new(
        Gate::new(routes, node, config.token, config.request_timeout),
        MAX_CONCURRENT_REQUESTS,
    )
}
