//! Sync endpoints: fork proofs, peers, and a sync round on demand.
//!
//! - `GET /forks`: every recorded proof, ascending by author: `{author, seq, a, b}` with both
//!   entries in the shape `GET /entries` uses.
//! - `GET /peers`: `{peers, refused, feeds_skipped}`: one record per peer (see
//!   [`crate::sync::PeerInfo`]) and the refusal and skip counters by reason; empty when
//!   sync is not running.
//! - `POST /peers` `{"addr": "HOST:PORT"}` (write endpoint): dial a new peer; 201 if added,
//!   200 if it was already configured.
//! - `POST /sync` (write endpoint): every connected session sends what its peer is known to
//!   lack, disconnected peers are redialled now; answers each session's result.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::entry::{EntryJson, Seq};
use crate::identity::Author;
use crate::sync::{PeerInfo, SyncRound};

#[derive(Debug, Serialize)]
pub struct ForkJson {
    pub author: Author,
    pub seq: Seq,
    pub a: EntryJson,
    pub b: EntryJson,
}

pub async fn forks(State(state): State<AppState>) -> Json<Vec<ForkJson>> {
    let proofs = state
        .node
        .fork_proofs()
        .into_iter()
        .map(|p| ForkJson {
            author: p.author(),
            seq: p.seq(),
            a: EntryJson::new(&p.a, &p.a.hash()),
            b: EntryJson::new(&p.b, &p.b.hash()),
        })
        .collect();
    Json(proofs)
}

/// `GET /peers`: the peer records, and the node's refusal and skip counters.
#[derive(Debug, Serialize)]
pub struct PeersAnswer {
    pub peers: Vec<PeerInfo>,
    /// Connections and sessions refused since start, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// New feeds offered by peers and skipped since start, by reason.
    pub feeds_skipped: BTreeMap<&'static str, u64>,
}

pub async fn peers(State(state): State<AppState>) -> Json<PeersAnswer> {
    let Some(sync) = state.node.sync() else {
        return Json(PeersAnswer {
            peers: Vec::new(),
            refused: BTreeMap::new(),
            feeds_skipped: BTreeMap::new(),
        });
    };
    let (refused, feeds_skipped) = sync.refusals();
    Json(PeersAnswer {
        peers: sync.peers(&state.node),
        refused,
        feeds_skipped,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPeer {
    addr: String,
}

pub async fn add_peer(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let request: AddPeer = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("body must be {{\"addr\": \"HOST:PORT\"}}: {e}"))
    })?;
    let sync = state
        .node
        .sync()
        .ok_or_else(|| ApiError::Unavailable("peer sync is not running".into()))?;
    let added = sync
        .add_peer(&state.node, request.addr.clone())
        .map_err(|e| match e {
            crate::sync::SyncError::BadAddr(_) => ApiError::BadRequest(e.to_string()),
            crate::sync::SyncError::ShutDown => ApiError::Unavailable(e.to_string()),
        })?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({ "addr": request.addr, "added": added })),
    ))
}

#[derive(Debug, Serialize)]
pub struct SyncAnswer {
    pub sessions: Vec<SyncRound>,
}

pub async fn sync_now(State(state): State<AppState>) -> Result<Json<SyncAnswer>, ApiError> {
    let sync = state
        .node
        .sync()
        .ok_or_else(|| ApiError::Unavailable("peer sync is not running".into()))?;
    Ok(Json(SyncAnswer {
        sessions: sync.sync_now().await,
    }))
}
