//! Prometheus metrics of a node: what `GET /metrics` serves in the text exposition format.
//!
//! Counters are updated where the event happens (the node for appends, imports and
//! rejections; the HTTP layer for requests); the entries-per-feed-status gauge is read from
//! the store when scraped, so it is never stale.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;

use crate::store::health::StoreHealth;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `kappalog_http_requests`: one series per method, route and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// The HTTP method (`GET`, `POST`, ...); any method outside the standard ones is `other`,
    /// so cardinality stays bounded.
    pub(crate) method: &'static str,
    /// The matched route pattern (e.g. `/entries/{hash}`), never the raw path, so label
    /// cardinality stays bounded whatever clients send.
    pub(crate) route: &'static str,
    /// The response's status code.
    pub(crate) status: u16,
}

/// Labels of `kappalog_http_request_duration_seconds`: the status is left out so each route
/// has one histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    /// As in [`RequestLabels::method`].
    pub(crate) method: &'static str,
    /// As in [`RequestLabels::route`].
    pub(crate) route: &'static str,
}

/// A `status` label: a feed status (`kappalog_stored_entries`) or a peer state
/// (`kappalog_sync_peers`: `connected`, `disconnected`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    /// The status's name, lowercase.
    pub(crate) status: String,
}

/// The `direction` label of `kappalog_sync_entries`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DirectionLabels {
    /// `sent` (to peers) or `received` (from peers).
    pub(crate) direction: &'static str,
}

/// The `reason` label of `kappalog_sync_refused` and `kappalog_sync_feeds_skipped`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    /// A fixed snake_case reason name (e.g. `stranger_slots_full`, `feed_cap`), so the
    /// label's values are a closed set.
    pub(crate) reason: &'static str,
}

/// What the sync layer reports at scrape time, summed over its peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncFigures {
    /// Peers listed by `GET /peers` with a session open now.
    pub peers_connected: u64,
    /// Peers listed by `GET /peers` with no session open now.
    pub peers_disconnected: u64,
    /// Entries sent, summed over the peers listed.
    pub entries_sent: u64,
    /// Entries received, summed over the peers listed.
    pub entries_received: u64,
    /// Connections and sessions refused, by reason, since start.
    pub refused: std::collections::BTreeMap<&'static str, u64>,
    /// New feeds skipped (author policy, budget, feed cap), by reason, since start.
    pub feeds_skipped: std::collections::BTreeMap<&'static str, u64>,
}

/// The `outcome` label of `kappalog_imported_entries`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    /// `added`, `duplicate`, `rejected` or `fork`.
    pub(crate) outcome: String,
}

/// Every metric a node exports.
pub struct Metrics {
    registry: Registry,
    /// `kappalog_http_requests`: requests answered, counted by the HTTP middleware.
    pub(crate) requests: Family<RequestLabels, Counter>,
    /// `kappalog_http_request_duration_seconds`: latency per route, 100 µs to ~6.5 s buckets.
    pub(crate) request_seconds: Family<RouteLabels, Histogram>,
    /// HTTP connections open now (see `server::serve_http`).
    pub http_connections: Gauge,
    /// `kappalog_appends`: entries appended to the node's own feed.
    pub appends: Counter,
    /// `kappalog_imported_entries`: entries offered by imports, by outcome (see
    /// [`Metrics::count_import`]).
    pub(crate) imported: Family<OutcomeLabels, Counter>,
    /// `kappalog_rejected_entries`: entries refused as invalid, from imports and peers.
    pub rejections: Counter,
    /// `kappalog_stored_entries`: entries held per feed status; set at scrape time.
    pub(crate) entries: Family<StatusLabels, Gauge>,
    /// `kappalog_sync_peers`: peers by state; set at scrape time from [`SyncFigures`].
    pub(crate) sync_peers: Family<StatusLabels, Gauge>,
    /// `kappalog_sync_entries`: entries sent and received since start; a gauge because the
    /// sync layer keeps the count and it is copied in at scrape time.
    pub(crate) sync_entries: Family<DirectionLabels, Gauge>,
    /// `kappalog_sync_refused`: refusals since start by reason; set at scrape time.
    pub(crate) sync_refused: Family<ReasonLabels, Gauge>,
    /// `kappalog_sync_feeds_skipped`: new feeds skipped since start by reason; set at scrape
    /// time.
    pub(crate) sync_feeds_skipped: Family<ReasonLabels, Gauge>,
    /// Live `GET /tail` streams (see `tail::stream::Slot`).
    pub tail_streams: Gauge,
    /// `kappalog_store_degraded`: 1 while the store cannot write, else 0; set at scrape time.
    pub store_degraded: Gauge,
    /// `kappalog_store_write_failures`: failed writes, syncs and recoveries since start.
    pub store_write_failures: Gauge,
    /// `kappalog_store_recoveries`: times the store resumed writing after a failure.
    pub store_recoveries: Gauge,
    /// `kappalog_index_lag_bytes`: log bytes committed and not yet covered by the SQL index;
    /// set at scrape time (stays 0 on a node without an indexer).
    pub index_lag_bytes: Gauge,
    /// `kappalog_tree_lag_bytes`: log bytes committed and not yet in the Merkle tree cache;
    /// set at scrape time (stays 0 on a node without the tree follower).
    pub tree_lag_bytes: Gauge,
    /// `kappalog_checkpoint_notes_received`, `_kept`, `_refused`: checkpoint notes peers
    /// offered to the checkpoint book, those that changed a served note, those refused as
    /// violations; `kappalog_cosignatures_made`: the node's own cosignatures of feeds it
    /// holds. Set at scrape time from the book's counters (0 without a book).
    pub checkpoint_notes: [Gauge; 3],
    /// See [`Metrics::checkpoint_notes`].
    pub cosignatures_made: Gauge,
    /// `kappalog_cosignatures_unknown_key`: cosignature lines dropped unchecked because the
    /// book knows no key of their name (neither a kappalog node's nor a `--witness-key`);
    /// set at scrape time.
    pub cosignatures_unknown_key: Gauge,
    /// `kappalog_copy_searches`, `_failed`, `kappalog_copies_replaced`: searches of a
    /// peer's tree started because an author checkpoint disagreed with the node's, those
    /// that ended without a result, and the node's copies of entries replaced by the
    /// author's (docs/TLOG.md section 8, "Two signatures of one entry hash"); set at scrape
    /// time.
    pub copy_searches: [Gauge; 3],
    /// `kappalog_query_running`: `/query` statements running now; set at scrape time. (Their
    /// outcomes, timeouts as 504 and refusals as 400 or 503, are `http_requests` by status.)
    pub query_running: Gauge,
    /// `kappalog_query_waiting`: `/query` statements queued for a connection; set at scrape
    /// time.
    pub query_waiting: Gauge,
    /// Serialises scrapes: encoding walks the registry, and two scrapes racing would only
    /// duplicate work.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `kappalog` prefix (in this order, which is
    /// the order a scrape lists them in).
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("kappalog"),
            requests: Family::default(),
            request_seconds: Family::<RouteLabels, Histogram>::new_with_constructor(|| {
                // 100 µs .. ~6.5 s
                Histogram::new(exponential_buckets(0.0001, 2.0, 17))
            }),
            http_connections: Gauge::default(),
            appends: Counter::default(),
            imported: Family::default(),
            rejections: Counter::default(),
            entries: Family::default(),
            sync_peers: Family::default(),
            sync_entries: Family::default(),
            sync_refused: Family::default(),
            sync_feeds_skipped: Family::default(),
            tail_streams: Gauge::default(),
            store_degraded: Gauge::default(),
            store_write_failures: Gauge::default(),
            store_recoveries: Gauge::default(),
            index_lag_bytes: Gauge::default(),
            tree_lag_bytes: Gauge::default(),
            checkpoint_notes: Default::default(),
            cosignatures_made: Gauge::default(),
            cosignatures_unknown_key: Gauge::default(),
            copy_searches: Default::default(),
            query_running: Gauge::default(),
            query_waiting: Gauge::default(),
            scrape: Mutex::new(()),
        };
        metrics.register_http();
        metrics.register_entries();
        metrics.register_sync();
        metrics.register_tail();
        metrics.register_store();
        metrics.registry.register(
            "index_lag_bytes",
            "log bytes committed and not yet covered by the SQL index",
            metrics.index_lag_bytes.clone(),
        );
        metrics.registry.register(
            "tree_lag_bytes",
            "log bytes committed and not yet in the Merkle tree cache",
            metrics.tree_lag_bytes.clone(),
        );
        metrics.register_checkpoints();
        metrics.registry.register(
            "query_running",
            "/query statements running now",
            metrics.query_running.clone(),
        );
        metrics.registry.register(
            "query_waiting",
            "/query statements queued for a connection",
            metrics.query_waiting.clone(),
        );
        metrics
    }

    fn register_http(&mut self) {
        self.registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            self.requests.clone(),
        );
        self.registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            self.request_seconds.clone(),
        );
        self.registry.register(
            "http_connections",
            "HTTP connections open now",
            self.http_connections.clone(),
        );
    }

    fn register_entries(&mut self) {
        self.registry.register(
            "appends",
            "entries appended to the node's own feed",
            self.appends.clone(),
        );
        self.registry.register(
            "imported_entries",
            "entries offered by imports, by outcome (added, duplicate, rejected, fork)",
            self.imported.clone(),
        );
        self.registry.register(
            "rejected_entries",
            "entries rejected as invalid (imports and peers)",
            self.rejections.clone(),
        );
        self.registry.register(
            "stored_entries",
            "entries held in the log, by feed status",
            self.entries.clone(),
        );
    }

    fn register_sync(&mut self) {
        self.registry.register(
            "sync_peers",
            "sync peers by state (connected, disconnected)",
            self.sync_peers.clone(),
        );
        self.registry.register(
            "sync_refused",
            "sync connections and sessions refused since start, by reason (not_allowed, stranger_slots_full, per_address_limit, different_network, unsupported_version, bad_auth, handshake_timeout, duplicate_session, ...)",
            self.sync_refused.clone(),
        );
        self.registry.register(
            "sync_feeds_skipped",
            "new feeds offered by peers and skipped since start, by reason (author_policy, new_feed_budget, feed_cap)",
            self.sync_feeds_skipped.clone(),
        );
        self.registry.register(
            "sync_entries",
            "entries sent to and received from sync peers since start, over all peers",
            self.sync_entries.clone(),
        );
    }

    fn register_tail(&mut self) {
        self.registry.register(
            "tail_streams",
            "GET /tail streams open now",
            self.tail_streams.clone(),
        );
    }

    /// The checkpoint book's gauges, set at scrape time from its counters.
    fn register_checkpoints(&mut self) {
        for (name, help, gauge) in [
            (
                "checkpoint_notes_received",
                "checkpoint notes peers offered to the checkpoint book",
                &self.checkpoint_notes[0],
            ),
            (
                "checkpoint_notes_kept",
                "checkpoint notes that changed a served note",
                &self.checkpoint_notes[1],
            ),
            (
                "checkpoint_notes_refused",
                "checkpoint notes refused as protocol violations",
                &self.checkpoint_notes[2],
            ),
            (
                "cosignatures_made",
                "cosignatures the node made of feeds it holds",
                &self.cosignatures_made,
            ),
            (
                "cosignatures_unknown_key",
                "cosignature lines dropped: no key known for their name",
                &self.cosignatures_unknown_key,
            ),
            (
                "copy_searches",
                "searches of a peer's tree started: an author checkpoint disagreed with the node's",
                &self.copy_searches[0],
            ),
            (
                "copy_searches_failed",
                "searches of a peer's tree that ended without a result",
                &self.copy_searches[1],
            ),
            (
                "copies_replaced",
                "entry copies replaced by the ones an author checkpoint chose",
                &self.copy_searches[2],
            ),
        ] {
            self.registry.register(name, help, gauge.clone());
        }
    }

    fn register_store(&mut self) {
        self.registry.register(
            "store_degraded",
            "1 while the store cannot write (its last write, sync or recovery failed), else 0",
            self.store_degraded.clone(),
        );
        self.registry.register(
            "store_write_failures",
            "failed log writes, syncs and recoveries since start",
            self.store_write_failures.clone(),
        );
        self.registry.register(
            "store_recoveries",
            "times the store resumed writing after a failure, since start",
            self.store_recoveries.clone(),
        );
    }

    /// Counts one import outcome.
    pub fn count_import(&self, outcome: &str, n: u64) {
        self.imported
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc_by(n);
    }

    /// The text exposition format. `stored` gives the entries held per feed status; `sync`
    /// the peer figures when sync runs.
    pub fn render(
        &self,
        stored: &[(&str, u64)],
        store: &StoreHealth,
        sync: Option<SyncFigures>,
    ) -> String {
        let _guard = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.store_degraded
            .set(i64::from(store.degraded().is_some()));
        self.store_write_failures.set(gauge(store.failures()));
        self.store_recoveries.set(gauge(store.recoveries()));
        if let Some(sync) = sync {
            for (status, n) in [
                ("connected", sync.peers_connected),
                ("disconnected", sync.peers_disconnected),
            ] {
                self.sync_peers
                    .get_or_create(&StatusLabels {
                        status: status.to_owned(),
                    })
                    .set(gauge(n));
            }
            for (direction, n) in [
                ("sent", sync.entries_sent),
                ("received", sync.entries_received),
            ] {
                self.sync_entries
                    .get_or_create(&DirectionLabels { direction })
                    .set(gauge(n));
            }
            for (reason, n) in &sync.refused {
                self.sync_refused
                    .get_or_create(&ReasonLabels { reason })
                    .set(gauge(*n));
            }
            for (reason, n) in &sync.feeds_skipped {
                self.sync_feeds_skipped
                    .get_or_create(&ReasonLabels { reason })
                    .set(gauge(*n));
            }
        }
        for (status, n) in stored {
            self.entries
                .get_or_create(&StatusLabels {
                    status: (*status).to_owned(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
