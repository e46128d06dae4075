//! Read endpoints: summary, entries, feeds, health, metrics.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::tlog::served_checkpoint;
use super::{ApiError, AppState};
use crate::entry::{EntryJson, Seq};
use crate::hash::Hash;
use crate::identity::Author;
use crate::metrics::SyncFigures;
use crate::summary::{FeedSummary, FeedsPage};

/// Default page size of `GET /entries`.
pub(crate) const DEFAULT_PAGE_ENTRIES: usize = 100;
/// Largest page `GET /entries` serves, whatever `limit` asks.
pub(crate) const MAX_PAGE_ENTRIES: usize = 1000;
/// Default page size of `GET /feeds`.
pub(crate) const DEFAULT_PAGE_FEEDS: usize = 100;
/// Largest page `GET /feeds` serves, whatever `limit` asks: a page is built under the
/// summary view's lock, which commits wait for, so anyone who can reach the port could
/// otherwise hold it for a walk of every feed.
pub(crate) const MAX_PAGE_FEEDS: usize = 1000;

/// The summary view's JSON with a trailing `"own_feed"` field (the own-feed fence state:
/// `ok`, `starting`, `catching_up` or `diverged`). It is about this node, not about the
/// entries, so it is not part of the digest.
///
/// The view's JSON is cached once, by the node (serialised at most once per commit); the
/// body is that plus one short field, so it is rendered per request rather than cached a
/// second time.
pub(crate) async fn summary(State(state): State<AppState>) -> Response {
    let json = state.node.summary_json();
    let own_feed = state.node.own_feed_state().as_str();
    let body = splice_own_feed(&json, own_feed);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The node's summary is a JSON object: splice the field in before its closing brace rather
/// than parse and re-serialise it (one copy of a constant-size string).
fn splice_own_feed(json: &str, own_feed: &str) -> axum::body::Bytes {
    match json.strip_suffix('}') {
        Some(rest) => format!("{rest},\"own_feed\":\"{own_feed}\"}}").into(),
        None => axum::body::Bytes::copy_from_slice(json.as_bytes()),
    }
}

/// Query parameters arrive as text so each bad one gets its own message.
#[derive(Debug, Deserialize)]
pub(crate) struct EntriesParams {
    author: Option<String>,
    from: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct EntriesPage {
    pub author: Author,
    pub length: u64,
    pub entries: Vec<EntryJson>,
    /// The `from` of the next page, or null when this page reaches the head.
    pub next: Option<Seq>,
}

pub(crate) async fn entries(
    State(state): State<AppState>,
    params: Result<Query<EntriesParams>, QueryRejection>,
) -> Result<Json<EntriesPage>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let author: Author = params
        .author
        .ok_or_else(|| ApiError::BadRequest("missing query parameter \"author\"".into()))?
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("\"author\": {e}")))?;
    let from: Seq = match params.from {
        None => 1,
        Some(text) => text.parse().ok().filter(|&seq| seq >= 1).ok_or_else(|| {
            ApiError::BadRequest(format!("\"from\" must be a seq >= 1, got {text:?}"))
        })?,
    };
    let limit = parse_limit(params.limit, DEFAULT_PAGE_ENTRIES, MAX_PAGE_ENTRIES)?;
    let head = state
        .node
        .reader()
        .head(&author)
        .ok_or_else(|| ApiError::NotFound(format!("no feed for author {author}")))?;
    let node = state.node.clone();
    let rows = tokio::task::spawn_blocking(move || node.reader().range(&author, from, limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let last = rows.last().map(|(entry, _)| entry.seq);
    let next = last.filter(|&seq| seq < head.seq).map(|seq| seq + 1);
    Ok(Json(EntriesPage {
        author,
        length: head.seq,
        entries: rows
            .iter()
            .map(|(entry, hash)| EntryJson::new(entry, hash))
            .collect(),
        next,
    }))
}

pub(crate) async fn entry_by_hash(
    State(state): State<AppState>,
    Path(hash): Path<String>,
) -> Result<Json<EntryJson>, ApiError> {
    let hash: Hash = hash
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("entry hash: {e}")))?;
    let node = state.node.clone();
    let found = tokio::task::spawn_blocking(move || node.reader().get_by_hash(&hash))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match found {
        Some((entry, hash)) => Ok(Json(EntryJson::new(&entry, &hash))),
        None => Err(ApiError::NotFound(format!("no entry with hash {hash}"))),
    }
}

/// Query parameters of `GET /feeds`, as text so each bad one gets its own message.
#[derive(Debug, Deserialize)]
pub(crate) struct FeedsParams {
    limit: Option<String>,
    after: Option<String>,
}

/// One feed of `GET /feeds`: the summary view's line, and what the node can prove of it.
#[derive(Debug, Serialize)]
pub(crate) struct FeedLine {
    #[serde(flatten)]
    summary: FeedSummary,
    /// Entries the tree covers (null without the tree cache).
    tree_size: Option<u64>,
    /// The size of the checkpoint `GET /feeds/AUTHOR/checkpoint` serves (null: none).
    checkpoint_size: Option<u64>,
    /// The cosigners whose largest cosigned checkpoint the node holds is consistent with
    /// the served one (0 without a checkpoint book).
    k: usize,
}

/// A page of [`FeedLine`]s; `next` as [`FeedsPage::next`].
#[derive(Debug, Serialize)]
pub(crate) struct FeedLines {
    feeds: Vec<FeedLine>,
    next: Option<Author>,
}

/// A page of the summary view's feeds in author order: `{"feeds": [...], "next": AUTHOR}`,
/// `next` being the `after` of the next page (null on the last).
pub(crate) async fn feeds(
    State(state): State<AppState>,
    params: Result<Query<FeedsParams>, QueryRejection>,
) -> Result<Json<FeedLines>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = parse_limit(params.limit, DEFAULT_PAGE_FEEDS, MAX_PAGE_FEEDS)?;
    let after: Option<Author> = params
        .after
        .map(|text| {
            text.parse().map_err(|e| {
                ApiError::BadRequest(format!("\"after\" must be an author (64 hex digits): {e}"))
            })
        })
        .transpose()?;
    let FeedsPage { feeds, next } = state.node.feeds_page(after.as_ref(), limit);
    let feeds = feeds
        .into_iter()
        .map(|summary| FeedLine {
            tree_size: state.tree.as_ref().map(|t| t.size(&summary.author)),
            checkpoint_size: served_checkpoint(&state, &summary.author)
                .map(|c| c.checkpoint().size()),
            k: state
                .book
                .as_ref()
                .map_or(0, |book| book.size_and_k(&summary.author).1),
            summary,
        })
        .collect();
    Ok(Json(FeedLines { feeds, next }))
}

/// A page size from the `limit` query parameter: `default` without it, at most `max`.
fn parse_limit(text: Option<String>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let limit = text
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "\"limit\" must be a positive integer, got {text:?}"
            ))
        })?;
    Ok(limit.min(max))
}

/// `GET /health`: 200 `{"status":"ok",...}` while the store writes, 503
/// `{"status":"degraded","reason":...,"since_ms":...}` while its last write failed (a load
/// balancer stops sending appends; reads still work). `"index"` says the SQL index's state
/// (`building` with `covered` and `end`, `ready`, `degraded` with `reason` and `since_ms`,
/// `failed` with `reason`, or `off`) and `lag_bytes`; `"tree"` the Merkle tree cache's the
/// same way (`building`, `ready`, `failed` or `off`, and `lag_bytes`). Either carries `"alarms"` when the
/// operator must act: `key_copy` (`{addr, at_ms, sessions}`) once a peer authenticated with
/// this node's own key.
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let author = state.node.author();
    let entries = state.node.reader().len();
    let key_copy = state.sync.as_ref().and_then(|s| s.key_copy_seen());
    let mut body = match state.node.store_health().degraded() {
        None => serde_json::json!({
            "status": "ok",
            "author": author,
            "entries": entries,
        }),
        Some(spell) => serde_json::json!({
            "status": "degraded",
            "reason": spell.reason,
            "since_ms": spell.since_ms,
            "author": author,
            "entries": entries,
        }),
    };
    if let Some(seen) = key_copy {
        body["alarms"] = serde_json::json!({ "key_copy": seen });
    }
    // The index is a cache: a failed one degrades queries, not the node, so it never
    // changes the status.
    body["index"] = match &state.index {
        Some(index) => {
            let mut figures = serde_json::to_value(index.state()).unwrap_or_default();
            figures["lag_bytes"] = index.lag_bytes().into();
            figures
        }
        None => serde_json::json!({ "state": "off" }),
    };
    // The tree cache likewise: proofs wait or fail, the node serves the rest.
    body["tree"] = match &state.tree {
        Some(tree) => {
            let mut figures = serde_json::to_value(tree.state()).unwrap_or_default();
            figures["lag_bytes"] = tree.lag_bytes().into();
            figures
        }
        None => serde_json::json!({ "state": "off" }),
    };
    let status = if body["status"] == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    // The store counts every entry; only the (rare) forked feeds are looked up, so a scrape
    // costs O(forked feeds), not O(feeds).
    let reader = state.node.reader();
    let forked_entries: u64 = state
        .node
        .forked_authors()
        .iter()
        .filter_map(|author| reader.head(author))
        .map(|head| head.seq)
        .sum();
    let ok = reader.len().saturating_sub(forked_entries);
    let sync = state.sync.as_ref().map(|sync| {
        let mut figures = SyncFigures::default();
        for peer in sync.peers(&state.node) {
            if peer.connected {
                figures.peers_connected += 1;
            } else {
                figures.peers_disconnected += 1;
            }
            figures.entries_sent += peer.entries_sent;
            figures.entries_received += peer.entries_received;
        }
        (figures.refused, figures.feeds_skipped) = sync.refusals();
        figures
    });
    if let Some(index) = &state.index {
        let lag = i64::try_from(index.lag_bytes()).unwrap_or(i64::MAX);
        state.node.metrics().index_lag_bytes.set(lag);
    }
    if let Some(tree) = &state.tree {
        let lag = i64::try_from(tree.lag_bytes()).unwrap_or(i64::MAX);
        state.node.metrics().tree_lag_bytes.set(lag);
    }
    if let Some(book) = &state.book {
        let stats = book.stats();
        let metrics = state.node.metrics();
        let counted = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        metrics.checkpoint_notes[0].set(counted(stats.notes_received));
        metrics.checkpoint_notes[1].set(counted(stats.notes_kept));
        metrics.checkpoint_notes[2].set(counted(stats.notes_refused));
        metrics
            .cosignatures_made
            .set(counted(stats.cosignatures_made));
        metrics
            .cosignatures_unknown_key
            .set(counted(stats.cosignatures_unknown_key));
        metrics.copy_searches[0].set(counted(stats.copy_searches));
        metrics.copy_searches[1].set(counted(stats.copy_searches_failed));
        metrics.copy_searches[2].set(counted(stats.copies_replaced));
    }
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let metrics = state.node.metrics();
    metrics.query_running.set(gauge(state.query.running()));
    metrics.query_waiting.set(gauge(state.query.waiting()));
    let text = state.node.metrics().render(
        &[("ok", ok), ("forked", forked_entries)],
        state.node.store_health(),
        sync,
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
