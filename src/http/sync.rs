//! Sync endpoints: fork proofs, peers, and a sync round on demand.
//!
//! - `GET /forks`: every recorded proof, ascending by author: `{author, seq, a, b}` with both
//!   entries in the shape `GET /entries` uses.
//! - `GET /peers`: `{peers, refused, feeds_skipped}`: one record per peer (see
//!   [`crate::sync::PeerInfo`]) and the refusal and skip counters by reason; empty when
//!   sync is not running.
//! - `POST /peers` `{"addr": "HOST:PORT"}` or `{"addr": "AUTHOR@HOST:PORT"}` (write
//!   endpoint): dial a new peer, pinning its key if given; 201 if added, 200 if it was
//!   already configured (it is dialed now, with the key pinned if one is given).
//! - `DELETE /peers/{addr}` (write endpoint): forget the learned key of the configured peer
//!   `addr` (`HOST:PORT`): the next session learns its key again (after the peer rotated
//!   its key). 200 with the key that was pinned; 404 if `addr` is not a configured peer
//!   with a learned pin; 409 if its key was given as `AUTHOR@HOST:PORT`.
//! - `POST /sync` (write endpoint): every connected session sends what its peer is known to
//!   lack, disconnected peers are redialled now; answers each session's result.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::entry::{EntryJson, Seq};
use crate::fork::ForkProof;
use crate::identity::Author;
use crate::sync::{PeerInfo, SyncRound};

/// One proof of `GET /forks`: an entry fork carries its two entries (`a`, `b`), a split
/// view its two author checkpoints' notes (`checkpoints`, smaller first) instead.
#[derive(Debug, Serialize)]
pub(crate) struct ForkJson {
    pub author: Author,
    pub seq: Seq,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<EntryJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<EntryJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<[String; 2]>,
}

pub(crate) async fn forks(State(state): State<AppState>) -> Json<Vec<ForkJson>> {
    let proofs = state
        .node
        .all_fork_proofs()
        .into_iter()
        .map(|p| {
            let (author, seq) = (p.author(), p.seq());
            match p {
                ForkProof::Entries(fork) => ForkJson {
                    author,
                    seq,
                    a: Some(EntryJson::new(&fork.a, &fork.a.hash())),
                    b: Some(EntryJson::new(&fork.b, &fork.b.hash())),
                    checkpoints: None,
                },
                ForkProof::Checkpoints(view) => ForkJson {
                    author,
                    seq,
                    a: None,
                    b: None,
                    checkpoints: Some([view.a.to_string(), view.b.to_string()]),
                },
            }
        })
        .collect();
    Json(proofs)
}

/// `GET /peers`: the peer records, and the node's refusal and skip counters.
#[derive(Debug, Serialize)]
pub(crate) struct PeersAnswer {
    pub peers: Vec<PeerInfo>,
    /// Connections and sessions refused since start, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// New feeds offered by peers and skipped since start, by reason.
    pub feeds_skipped: BTreeMap<&'static str, u64>,
}

pub(crate) async fn peers(State(state): State<AppState>) -> Json<PeersAnswer> {
    let Some(sync) = state.sync.as_ref() else {
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
pub(crate) struct AddPeer {
    addr: String,
}

pub(crate) async fn add_peer(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<crate::sync::AddedPeer>), ApiError> {
    let request: AddPeer = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "body must be {{\"addr\": \"HOST:PORT\"}} or {{\"addr\": \"AUTHOR@HOST:PORT\"}}: {e}"
        ))
    })?;
    let sync = state
        .sync
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("peer sync is not running".into()))?;
    let added = sync
        .add_peer(&state.node, request.addr)
        .map_err(sync_error)?;
    let status = if added.added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(added)))
}

/// `DELETE /peers/{addr}`: see the module docs.
pub(crate) async fn unpin_peer(
    State(state): State<AppState>,
    Path(addr): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sync = state
        .sync
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("peer sync is not running".into()))?;
    let author = sync.unpin(&addr).await.map_err(sync_error)?;
    Ok(Json(
        serde_json::json!({ "addr": addr, "unpinned": author }),
    ))
}

fn sync_error(e: crate::sync::SyncError) -> ApiError {
    use crate::sync::pins::UnpinError;
    use crate::sync::SyncError;
    match e {
        SyncError::BadPeer(_) => ApiError::BadRequest(e.to_string()),
        SyncError::NotConfigured(_) | SyncError::Unpin(UnpinError::NotPinned(_)) => {
            ApiError::NotFound(e.to_string())
        }
        SyncError::Unpin(UnpinError::Configured { .. }) => ApiError::Conflict(e.to_string()),
        SyncError::ShutDown => ApiError::Unavailable(e.to_string()),
        SyncError::Pins(_) => ApiError::Internal(e.to_string()),
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct SyncAnswer {
    pub sessions: Vec<SyncRound>,
}

pub(crate) async fn sync_now(State(state): State<AppState>) -> Result<Json<SyncAnswer>, ApiError> {
    let sync = state
        .sync
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("peer sync is not running".into()))?;
    Ok(Json(SyncAnswer {
        sessions: sync.sync_now().await,
    }))
}
