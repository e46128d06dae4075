//! The verifiable-feed routes (docs/HTTP.md "Verifiable feeds"): a feed's checkpoint, an
//! entry's `c2sp.org/tlog-proof@v1` bundle and consistency proofs, read from the tree cache
//! ([`crate::tree::Trees`]). The tiles are [`super::tiles`].
//!
//! What a route refuses, before it reads anything: a malformed author or parameter (400),
//! a node without trees (`--no-tree`: 404), a forked feed (410: its author signed two
//! histories, `GET /forks` holds the proof, and no single tree speaks for it), a feed not
//! held (404). What is held but not yet in the tree (an own append a moment ago) is waited
//! for, at most `--query-wait`, then answered 503 with `Retry-After: 1`.
//!
//! Which checkpoint a feed is served with is [`served_checkpoint`]'s one decision.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64ct::{Base64, Encoding};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::identity::Author;
use crate::tlog::bundle::make_entry_proof;
use crate::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};
use crate::tree::Trees;

/// The content type of checkpoints, proof bundles and consistency proofs (C2SP's).
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// A checkpoint is mutable: tlog-tiles asks that caches keep it no more than a few
/// seconds. Proofs against one are as short-lived.
const CHECKPOINT_CACHE: &str = "public, max-age=2";

/// One feed a verifiable-feed route asks for, checked (see the module docs).
pub(crate) struct FeedTree {
    pub(crate) author: Author,
    pub(crate) trees: Trees,
    /// Entries the node holds of the feed: seqs `1..=held`.
    pub(crate) held: u64,
}

impl FeedTree {
    /// The feed named by the path's `author`, refused as the module docs say.
    pub(crate) fn open(state: &AppState, author: &str) -> Result<FeedTree, ApiError> {
        let author: Author = author
            .parse()
            .map_err(|e| ApiError::BadRequest(format!("author: {e}")))?;
        let trees = state.tree.clone().ok_or_else(|| {
            ApiError::NotFound("this node keeps no Merkle trees (it runs with --no-tree)".into())
        })?;
        if state.node.is_forked(&author) {
            return Err(ApiError::Gone(format!(
                "feed {author} is forked: its author signed two entries at one seq (GET /forks \
                 has the proof), so no tree, checkpoint or proof of it is served"
            )));
        }
        let held = state.node.reader().head(&author).map_or(0, |head| head.seq);
        if held == 0 && author != state.node.author() {
            return Err(ApiError::NotFound(format!("no feed for author {author}")));
        }
        Ok(FeedTree {
            author,
            trees,
            held,
        })
    }

    /// Whether this is the node's own feed, whose checkpoints it signs.
    fn is_own(&self, state: &AppState) -> bool {
        self.author == state.node.author()
    }

    /// Waits until the tree covers `size` leaves (`size` at most [`FeedTree::held`]), at
    /// most `--query-wait`: an append returns before the tree follower has read it.
    pub(crate) async fn covering(&self, state: &AppState, size: u64) -> Result<(), ApiError> {
        let wait = state.query.config().wait;
        match self.trees.wait_for_size(&self.author, size, wait).await {
            true => Ok(()),
            false => Err(ApiError::NotYet(format!(
                "the node holds {} entries of feed {} but its tree covers {} so far; retry",
                self.held,
                self.author,
                self.trees.size(&self.author)
            ))),
        }
    }
}

/// The checkpoint the node serves for `author`'s feed, with every cosignature line it holds
/// over it: the checkpoint book's note ([`crate::checkpoint_book`]: author checkpoints
/// received in sync and verified against the node's own tree, cosignatures from witnesses).
/// For its own feed the tree follower's newest checkpoint when the book has not caught up
/// with it yet (then without cosignatures: none exists for it yet). `None`: no author
/// checkpoint of this feed has reached the node (its entries still verify one by one, each
/// signed by its author).
pub(crate) fn served_checkpoint(
    state: &AppState,
    author: &Author,
) -> Option<Arc<SignedCheckpoint>> {
    let booked = state
        .book
        .as_ref()
        .and_then(|book| book.served_checkpoint(author));
    let own = match (*author == state.node.author(), &state.tree) {
        (true, Some(trees)) => trees.own_checkpoint(),
        _ => None,
    };
    match (booked, own) {
        (Some(booked), Some(own)) if own.checkpoint().size() > booked.checkpoint().size() => {
            Some(own)
        }
        (Some(booked), _) => Some(booked),
        (None, own) => own,
    }
}

/// Why a held feed has no served checkpoint, told truthfully.
fn no_checkpoint(state: &AppState, feed: &FeedTree) -> ApiError {
    match (feed.is_own(state), feed.held) {
        (true, 0) => ApiError::NotFound(format!(
            "no checkpoint of feed {} yet: it is this node's own feed and has no entries to sign",
            feed.author
        )),
        (true, _) => ApiError::NotYet(format!(
            "no checkpoint of feed {} yet: the tree has not covered this node's own entries",
            feed.author
        )),
        (false, _) => ApiError::NotFound(format!(
            "no checkpoint of feed {} yet: this node holds no checkpoint signed by its author; \
             its entries verify one by one (GET /entries)",
            feed.author
        )),
    }
}

/// The node's own feed's checkpoint of `size` leaves (covered by the tree), signed now.
/// Ed25519 signatures are deterministic, so a size always gets the same bytes; signing
/// costs tens of µs beside the proof's reads, so nothing is cached.
fn sign_own(state: &AppState, feed: &FeedTree, size: u64) -> Result<SignedCheckpoint, ApiError> {
    let root = feed.trees.root(&feed.author, size)?;
    Checkpoint::new(&origin_for(feed.author.as_bytes()), size, root)
        .and_then(|checkpoint| {
            SignedCheckpoint::sign(checkpoint, state.node.identity().signing_key())
        })
        .map_err(|e| ApiError::Internal(format!("signing the own checkpoint of size {size}: {e}")))
}

/// `GET /feeds/AUTHOR/checkpoint`: the served checkpoint's note.
pub(crate) async fn checkpoint(
    State(state): State<AppState>,
    Path(author): Path<String>,
) -> Result<Response, ApiError> {
    let feed = FeedTree::open(&state, &author)?;
    let signed =
        served_checkpoint(&state, &feed.author).ok_or_else(|| no_checkpoint(&state, &feed))?;
    Ok(text(signed.to_bytes()))
}

/// A text answer of the C2SP formats, cacheable a moment.
fn text(body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, TEXT),
            (header::CACHE_CONTROL, CHECKPOINT_CACHE),
        ],
        body,
    )
        .into_response()
}

/// Query parameters as text, so each bad one gets its own message.
#[derive(Debug, Deserialize)]
pub(crate) struct ProofParams {
    seq: Option<String>,
    size: Option<String>,
}

/// A decimal `u64` query parameter, or a 400 naming it.
fn number(name: &str, text: Option<String>) -> Result<Option<u64>, ApiError> {
    text.map(|text| {
        text.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!("{name:?} must be a decimal integer, got {text:?}"))
        })
    })
    .transpose()
}

fn required(name: &str, value: Option<u64>) -> Result<u64, ApiError> {
    value.ok_or_else(|| ApiError::BadRequest(format!("missing query parameter {name:?}")))
}

/// `GET /feeds/AUTHOR/proof?seq=N[&size=S]`: entry `N`'s bundle against the served
/// checkpoint, or, for the node's own feed, against its checkpoint of size `S` signed now.
pub(crate) async fn proof(
    State(state): State<AppState>,
    Path(author): Path<String>,
    params: Result<Query<ProofParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let seq = required("seq", number("seq", params.seq)?)?;
    if seq == 0 {
        return Err(ApiError::BadRequest(
            "\"seq\" must be at least 1 (the first entry is seq 1)".into(),
        ));
    }
    let size = number("size", params.size)?;
    if let Some(size) = size.filter(|&size| size < seq) {
        return Err(ApiError::BadRequest(format!(
            "size {size} is below seq {seq}: a tree of {size} entries does not hold it"
        )));
    }
    let feed = FeedTree::open(&state, &author)?;
    if seq > feed.held {
        return Err(ApiError::NotFound(format!(
            "feed {} has {} entries: there is no seq {seq}",
            feed.author, feed.held
        )));
    }
    let signed = match feed.is_own(&state) {
        true => own_proof_checkpoint(&state, &feed, seq, size).await?,
        false => foreign_proof_checkpoint(&state, &feed, seq, size).await?,
    };
    let tree_size = signed.checkpoint().size();
    let index = seq - 1;
    let hashes = feed.trees.inclusion_proof(&feed.author, index, tree_size)?;
    let encoded = state
        .node
        .reader()
        .range_encoded(&feed.author, seq, 1)
        .map_err(|e| ApiError::Internal(format!("reading entry {seq}: {e}")))?
        .pop()
        .ok_or_else(|| ApiError::Internal(format!("entry {seq} of a held feed is missing")))?;
    let bundle = make_entry_proof(encoded, index, hashes, signed)
        .map_err(|e| ApiError::Internal(format!("making the proof bundle: {e}")))?;
    Ok(text(bundle.to_bytes()))
}

/// The own feed's checkpoint a proof of `seq` is made against: of `size` when asked (signed
/// now), else the served one when it covers `seq`, else one signed now at the tree's size
/// once the tree covers `seq`.
async fn own_proof_checkpoint(
    state: &AppState,
    feed: &FeedTree,
    seq: u64,
    size: Option<u64>,
) -> Result<SignedCheckpoint, ApiError> {
    let served = served_checkpoint(state, &feed.author);
    if let Some(size) = size {
        if size > feed.held {
            return Err(ApiError::Conflict(format!(
                "no checkpoint of size {size}: feed {} has {} entries",
                feed.author, feed.held
            )));
        }
        feed.covering(state, size).await?;
        return match served.filter(|c| c.checkpoint().size() == size) {
            Some(served) => Ok((*served).clone()),
            None => sign_own(state, feed, size),
        };
    }
    if let Some(served) = served.filter(|c| c.checkpoint().size() >= seq) {
        return Ok((*served).clone());
    }
    feed.covering(state, seq).await?;
    match served_checkpoint(state, &feed.author).filter(|c| c.checkpoint().size() >= seq) {
        Some(served) => Ok((*served).clone()),
        // The follower publishes a size before it signs it: sign it here.
        None => sign_own(state, feed, feed.trees.size(&feed.author)),
    }
}

/// Another feed's checkpoint a proof of `seq` is made against: the served one only (the node
/// cannot sign for another author).
async fn foreign_proof_checkpoint(
    state: &AppState,
    feed: &FeedTree,
    seq: u64,
    size: Option<u64>,
) -> Result<SignedCheckpoint, ApiError> {
    let served =
        served_checkpoint(state, &feed.author).ok_or_else(|| no_checkpoint(state, feed))?;
    let served_size = served.checkpoint().size();
    if let Some(size) = size.filter(|&size| size != served_size) {
        return Err(ApiError::Conflict(format!(
            "no checkpoint of size {size}: this node holds feed {}'s checkpoint of size \
             {served_size} only (only its author signs others)",
            feed.author
        )));
    }
    if seq > served_size {
        return Err(ApiError::NotFound(format!(
            "seq {seq} is past the newest checkpoint of feed {} this node holds (size \
             {served_size}): no proof of it yet",
            feed.author
        )));
    }
    feed.covering(state, served_size).await?;
    Ok((*served).clone())
}

/// Query parameters of `GET /feeds/AUTHOR/consistency`, as text.
#[derive(Debug, Deserialize)]
pub(crate) struct ConsistencyParams {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /feeds/AUTHOR/consistency?from=A&to=B`: the RFC 6962 consistency proof from the
/// tree of `A` entries to the tree of `B`, one base64 hash a line (the form of a
/// tlog-witness add-checkpoint body's proof lines); empty when `A` is 0 or `B`.
pub(crate) async fn consistency(
    State(state): State<AppState>,
    Path(author): Path<String>,
    params: Result<Query<ConsistencyParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let from = required("from", number("from", params.from)?)?;
    let to = required("to", number("to", params.to)?)?;
    if from > to {
        return Err(ApiError::BadRequest(format!(
            "from={from} is above to={to}: a tree only grows"
        )));
    }
    let feed = FeedTree::open(&state, &author)?;
    if to > feed.held {
        return Err(ApiError::Conflict(format!(
            "to={to} is past feed {}'s {} entries",
            feed.author, feed.held
        )));
    }
    let hashes = match to {
        // The empty tree is consistent with every tree, by an empty proof.
        0 => Vec::new(),
        _ => {
            feed.covering(&state, to).await?;
            feed.trees.consistency_proof(&feed.author, from, to)?
        }
    };
    let mut body = String::with_capacity(hashes.len() * 45);
    for hash in &hashes {
        body.push_str(&Base64::encode_string(hash));
        body.push('\n');
    }
    Ok(text(body.into_bytes()))
}
