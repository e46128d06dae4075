//! The tlog-tiles read path of each feed (docs/HTTP.md "Verifiable feeds"):
//! `GET /feeds/AUTHOR/tile/L/N[.p/W]` (hash tiles) and `GET /feeds/AUTHOR/tile/entries/N[.p/W]`
//! (entry bundles: each entry's encoding behind its big-endian `u16` length), so any
//! tlog-tiles client or HTTP cache can read and check a feed.
//!
//! One wildcard route; the path is parsed by [`Tile::parse_path`], strictly (every tile has
//! one path): anything else is a 400 naming what is wrong (tlog-tiles says nothing of
//! malformed paths; the reason helps a client author more than a bare 404). A tile the tree
//! does not have yet (past its size, or a partial one wider than the tree's) is a 404,
//! decided from the tree's size before anything is read, so a huge index costs nothing.
//!
//! Caching: a full tile never changes (tlog-tiles: "immutable"), so it is cached a year. A
//! partial tile's bytes do not change either, but a growing feed replaces it by a wider one
//! within seconds and tlog-tiles lets a log stop serving it once the full tile exists: a
//! minute keeps caches from holding every width a client ever passed through.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::tlog::FeedTree;
use super::{ApiError, AppState};
use crate::tlog::tiles::bundle::entry_bundle_bytes;
use crate::tlog::tiles::{Tile, TileKind, TILE_WIDTH};

/// `Cache-Control` of a full tile: a year, immutable.
pub(crate) const FULL_TILE_CACHE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of a partial tile (see the module docs).
pub(crate) const PARTIAL_TILE_CACHE: &str = "public, max-age=60";

/// `GET /feeds/AUTHOR/tile/{*rest}`.
pub(crate) async fn tile(
    State(state): State<AppState>,
    Path((author, rest)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let path = format!("tile/{rest}");
    let tile =
        Tile::parse_path(&path).map_err(|e| ApiError::BadRequest(format!("{path:?}: {e}")))?;
    let feed = FeedTree::open(&state, &author)?;
    let size = feed.trees.size(&feed.author);
    if !tile.in_tree(size) {
        return Err(ApiError::NotFound(format!(
            "the tree of feed {} covers {size} entries: it has no tile {path}",
            feed.author
        )));
    }
    // A level-0 tile or a bundle reads up to 256 entries from the log: off the async workers.
    let bytes = tokio::task::spawn_blocking(move || read_tile(&state, &feed, &tile))
        .await
        .map_err(|e| ApiError::Internal(format!("tile task failed: {e}")))??;
    let cache = match tile.is_full() {
        true => FULL_TILE_CACHE,
        false => PARTIAL_TILE_CACHE,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}

/// The tile's bytes; `tile` is in the tree (checked by the caller).
fn read_tile(state: &AppState, feed: &FeedTree, tile: &Tile) -> Result<Vec<u8>, ApiError> {
    match tile.kind() {
        TileKind::Hashes { level } => {
            Ok(feed
                .trees
                .hash_tile(&feed.author, level, tile.index(), tile.width())?)
        }
        TileKind::Entries => {
            // in_tree bounds index * 256 + width by the tree's size.
            let first = tile.index() * u64::from(TILE_WIDTH) + 1;
            let width = usize::from(tile.width());
            let encoded = state
                .node
                .reader()
                .range_encoded(&feed.author, first, width)
                .map_err(|e| ApiError::Internal(format!("reading an entry bundle: {e}")))?;
            if encoded.len() != width {
                return Err(ApiError::Internal(format!(
                    "the log holds {} of the {width} entries of {} from seq {first}",
                    encoded.len(),
                    feed.author
                )));
            }
            entry_bundle_bytes(&encoded)
                .map_err(|e| ApiError::Internal(format!("making an entry bundle: {e}")))
        }
    }
}
