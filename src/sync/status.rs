//! What `GET /peers` shows: one record per configured peer (keyed by the address as given)
//! and per inbound connection (keyed by the remote address), updated by the sessions.
//! Disconnected inbound records are kept (their `last_error` is how an operator sees why a
//! hostile or broken peer was dropped) up to [`MAX_CLOSED_INBOUND_RECORDS`], oldest dropped
//! first, except the records of trusted keys (allow-listed or configured), which are never
//! dropped: junk connections cannot erase the evidence about a peer that matters. Records of
//! configured peers (outbound) are never dropped either.

use crate::clock::now_ms;
use crate::poison::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;

use super::plan::PeerProgress;
use crate::identity::Author;
use crate::node::Node;

/// Conditions an operator must act on, shown by `GET /health` (and logged at `error`).
#[derive(Debug, Default)]
pub struct Alarms {
    key_copy: Mutex<Option<KeyCopySeen>>,
}

/// A peer proved it holds this node's own key.
#[derive(Clone, Debug, Serialize)]
pub struct KeyCopySeen {
    /// Where it was last seen (the configured address, or the remote address).
    pub addr: String,
    /// Unix milliseconds of the last time.
    pub at_ms: u64,
    /// How many sessions so far.
    pub sessions: u64,
}

impl Alarms {
    /// A session at `addr` authenticated with our own key.
    pub fn key_copy(&self, addr: &str) {
        tracing::error!(peer = %addr, "a peer authenticated with this node's own key: another process holds a copy of it. Two writers of one feed will fork it; retire this key");
        let mut seen = lock(&self.key_copy);
        let sessions = seen.as_ref().map_or(0, |s| s.sessions).saturating_add(1);
        *seen = Some(KeyCopySeen {
            addr: addr.to_owned(),
            at_ms: now_ms(),
            sessions,
        });
    }

    /// The last key copy seen, if any.
    pub fn key_copy_seen(&self) -> Option<KeyCopySeen> {
        lock(&self.key_copy).clone()
    }
}

/// Closed inbound records kept for `/peers`.
pub const MAX_CLOSED_INBOUND_RECORDS: usize = 64;

/// Requests a session's sending half takes from outside the session.
#[derive(Debug)]
pub enum Control {
    /// A reconciliation frame from the peer (from the receiving half).
    Reconcile(super::reconcile::Reconcile),
    /// A frame of the peer's checkpoint reconciliation (v3).
    CheckpointReconcile(super::reconcile::Reconcile),
    /// Answer the peer's `Want` with our entry, if we hold it.
    SendEntry {
        /// The feed the peer wants from.
        author: Author,
        /// The position it wants.
        seq: u64,
    },
    /// Answer the peer's `WantSubtrees` (v4), in the order they came.
    AnswerSubtrees(super::subtrees::WantSubtrees),
    /// Send our running copy search's wants (v4), in order.
    SendWants(Vec<super::subtrees::WantSubtrees>),
    /// Send everything the peer is known to lack now; reply with the entries sent.
    Resync(tokio::sync::oneshot::Sender<u64>),
    /// The receiving half ended: send `Bye` with this reason (if any) and close.
    Stop(Option<super::message::ByeReason>),
}

/// Who opened the connection a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// We dialled a configured peer; keyed by its address as configured.
    Outbound,
    /// A peer dialled us; keyed by its remote address.
    Inbound,
}

/// One line of `GET /peers`.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    /// The record's key: the configured address (outbound) or the remote address (inbound).
    pub addr: String,
    /// Who opened the connection.
    pub direction: Direction,
    /// The key the peer authenticated with in its last session; `None` before the first.
    pub author: Option<Author>,
    /// For a configured peer: the key it must prove (`AUTHOR@HOST:PORT`, or learned on its
    /// first session), and where the pin came from.
    pub pinned: Option<Author>,
    /// Where `pinned` came from; `None` when nothing is pinned.
    pub pin: Option<super::pins::PinSource>,
    /// Whether the key of the last session was trusted here (pinned, `--trust-peer` or
    /// allow-listed): fence power, no stranger slot, no budgets.
    pub trusted: bool,
    /// Whether a session is open now.
    pub connected: bool,
    /// Unix milliseconds of the last completed initial exchange or resync.
    pub last_sync: Option<u64>,
    /// Entries sent to this peer since start, over all its sessions.
    pub entries_sent: u64,
    /// Entries received from this peer since start, over all its sessions.
    pub entries_received: u64,
    /// Times the session fell further behind the live pushes than the node buffers and
    /// resent what the peer lacks from the store instead.
    pub resyncs: u64,
    /// Entries we hold that the peer is known to lack (connected peers only).
    pub lag: Option<u64>,
    /// Why the last session ended or failed; kept after a clean session so the last fault
    /// stays visible.
    pub last_error: Option<String>,
    /// New feeds this peer offered that were skipped (author policy, budget, feed cap).
    pub feeds_skipped: u64,
    /// Why the last one was skipped.
    pub skip_reason: Option<String>,
    /// The protocol version of the last session: 3, or 2 with a v2 node (no checkpoints);
    /// `None` before the first.
    pub protocol: Option<u16>,
}

struct PeerRecord {
    info: PeerInfo,
    /// A trusted key's inbound record: never dropped to make room.
    keep: bool,
    progress: Option<Arc<Mutex<PeerProgress>>>,
    control: Option<mpsc::UnboundedSender<Control>>,
    /// Order of last disconnect, to drop the oldest closed inbound records first.
    closed_at: u64,
}

/// The records behind `GET /peers`, shared by the sync listener, the dialers and their
/// sessions. Every method takes the lock briefly and never across an `.await`.
#[derive(Default)]
pub struct PeerRegistry {
    peers: Mutex<BTreeMap<String, PeerRecord>>,
    closes: Mutex<u64>,
}

impl PeerRegistry {
    /// Adds a record if `addr` has none; returns whether it was added.
    pub fn ensure(&self, addr: &str, direction: Direction) -> bool {
        let mut peers = lock(&self.peers);
        if peers.contains_key(addr) {
            return false;
        }
        peers.insert(
            addr.to_owned(),
            PeerRecord {
                info: PeerInfo {
                    addr: addr.to_owned(),
                    direction,
                    author: None,
                    pinned: None,
                    pin: None,
                    trusted: false,
                    connected: false,
                    last_sync: None,
                    entries_sent: 0,
                    entries_received: 0,
                    resyncs: 0,
                    lag: None,
                    last_error: None,
                    feeds_skipped: 0,
                    skip_reason: None,
                    protocol: None,
                },
                keep: false,
                progress: None,
                control: None,
                closed_at: 0,
            },
        );
        true
    }

    /// A session with `addr` authenticated as `author` at protocol `version`: record it and
    /// the session's handles.
    /// A trusted key's record is kept from then on (never dropped to make room).
    pub fn connected(
        &self,
        addr: &str,
        (author, version): (Author, u16),
        trusted: bool,
        progress: Arc<Mutex<PeerProgress>>,
        control: mpsc::UnboundedSender<Control>,
    ) {
        if let Some(r) = lock(&self.peers).get_mut(addr) {
            r.keep |= trusted;
            r.info.trusted = trusted;
            r.info.author = Some(author);
            r.info.protocol = Some(version);
            r.info.connected = true;
            r.progress = Some(progress);
            r.control = Some(control);
        }
    }

    /// The session with `addr` ended, with `error` if it failed (a clean end keeps the
    /// previous error). Drops the oldest closed inbound records past
    /// [`MAX_CLOSED_INBOUND_RECORDS`].
    pub fn disconnected(&self, addr: &str, error: Option<String>) {
        let closed_at = {
            let mut closes = lock(&self.closes);
            *closes += 1;
            *closes
        };
        let mut peers = lock(&self.peers);
        if let Some(r) = peers.get_mut(addr) {
            r.info.connected = false;
            r.progress = None;
            r.control = None;
            r.closed_at = closed_at;
            if error.is_some() {
                r.info.last_error = error;
            }
        }
        let mut closed: Vec<(u64, String)> = peers
            .iter()
            .filter(|(_, r)| r.info.direction == Direction::Inbound && !r.info.connected && !r.keep)
            .map(|(k, r)| (r.closed_at, k.clone()))
            .collect();
        if closed.len() > MAX_CLOSED_INBOUND_RECORDS {
            closed.sort();
            let excess = closed.len() - MAX_CLOSED_INBOUND_RECORDS;
            for (_, key) in closed.into_iter().take(excess) {
                peers.remove(&key);
            }
        }
    }

    /// Records a fault with `addr` outside a session's end (a failed connect, a key that is
    /// not the pinned one).
    pub fn set_error(&self, addr: &str, error: String) {
        if let Some(r) = lock(&self.peers).get_mut(addr) {
            r.info.last_error = Some(error);
        }
    }

    /// Counts `n` entries sent to `addr`.
    pub fn add_sent(&self, addr: &str, n: u64) {
        if let Some(r) = lock(&self.peers).get_mut(addr) {
            r.info.entries_sent = r.info.entries_sent.saturating_add(n);
        }
    }

    /// Counts `n` entries received from `addr`.
    pub fn add_received(&self, addr: &str, n: u64) {
        if let Some(r) = lock(&self.peers).get_mut(addr) {
            r.info.entries_received = r.info.entries_received.saturating_add(n);
        }
    }

    /// Counts `n` new feeds from `addr` skipped, and why (the last reason is shown).
    pub fn add_skipped(&self, addr: &str, n: u64, reason: &str) {
        if let Some(r) = lock(&self.peers).get_mut(addr) {
            r.info.feeds_skipped = r.info.feeds_skipped.saturating_add(n);
            r.info.skip_reason = Some(reason.to_owned());
        }
    }

    /// The session with `addr` fell behind the live pushes and resent from the store.
    pub fn lagged(&self, addr: &str) {
        if let Some(r) = lock(&self.peers).get_mut(addr) {
            r.info.resyncs = r.info.resyncs.saturating_add(1);
        }
    }

    /// The session with `addr` finished an initial exchange or a resync, now.
    pub fn synced(&self, addr: &str) {
        if let Some(r) = lock(&self.peers).get_mut(addr) {
            r.info.last_sync = Some(now_ms());
        }
    }

    /// The control channels of connected sessions, by address.
    pub fn controls(&self) -> Vec<(String, mpsc::UnboundedSender<Control>)> {
        lock(&self.peers)
            .iter()
            .filter_map(|(k, r)| r.control.clone().map(|c| (k.clone(), c)))
            .collect()
    }

    /// Every record, ascending by address, with the lag computed against `node`'s feeds:
    /// one walk over the store's feeds per connected peer, merged with what the peer is known
    /// to hold (no copy of the feed list, so polling this stays cheap at many feeds).
    pub fn list(&self, node: &Node) -> Vec<PeerInfo> {
        let records: Vec<(PeerInfo, Option<Arc<Mutex<PeerProgress>>>)> = lock(&self.peers)
            .values()
            .map(|r| (r.info.clone(), r.progress.clone()))
            .collect();
        let forked = node.forked_authors();
        let reader = node.reader();
        records
            .into_iter()
            .map(|(mut info, progress)| {
                info.lag = progress.map(|p| {
                    let p = lock(&p);
                    reader.fold_feed_lengths(0u64, |lag, author, length| {
                        if forked.contains(author) {
                            lag
                        } else {
                            lag.saturating_add(length.saturating_sub(p.length(author)))
                        }
                    })
                });
                info
            })
            .collect()
    }
}
