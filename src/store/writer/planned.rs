//! What the two halves of the writer hand each other: a request as the planner leaves it
//! ([`Planned`], with its records and its reply channel) and a sealed batch of them
//! ([`Sealed`]). The planner ([`super::planner`]) builds them, the syncer ([`super::syncer`])
//! writes and answers them, and either answers one with an error ([`Planned::fail`]) when its
//! write cannot happen, so both import this module and neither imports the other.

use std::sync::{PoisonError, RwLock};

use super::replace::{Copy, ReplaceOutcome, ReplaceResult};
use super::{answer, ForeignResult, OwnAppend, OwnResult, Reply};
use crate::entry::Entry;
use crate::fork::ForkProof;
use crate::hash::Hash;
use crate::idempotency::IdempotencyKey;
use crate::identity::Author;
use crate::store::index::Index;
use crate::store::{AppendError, Outcome};
use crate::validate::FeedHead;

/// One record to write: the entry, its hash, its idempotency key if any, and — once the
/// syncer has laid out the write — where the record starts in the log.
pub(super) struct Record {
    pub entry: Entry,
    pub hash: Hash,
    pub key: Option<IdempotencyKey>,
    pub offset: u64,
}

impl Record {
    pub(super) fn new(entry: Entry, hash: Hash, key: Option<IdempotencyKey>) -> Record {
        Record {
            entry,
            hash,
            key,
            offset: 0,
        }
    }
}

/// One offered foreign entry, placed: a record to write, or an outcome decided without
/// writing anything.
pub(super) enum Placed {
    Write(Record),
    Decided(Outcome),
}

/// One request as the planner leaves it: what it writes, with the channel its answer goes
/// to. The syncer answers it from this value alone.
pub(super) enum Planned {
    Own {
        record: Record,
        reply: Reply<OwnResult>,
    },
    /// A keyed own request whose key's append is in flight: answered with that entry once
    /// it is durable.
    Replay {
        author: Author,
        head: FeedHead,
        reply: Reply<OwnResult>,
    },
    /// `failed`: reading a held entry failed part way; the entries placed before it are
    /// still written (the view counts them), and the request is answered with the error.
    Foreign {
        placed: Vec<Placed>,
        failed: Option<AppendError>,
        reply: Reply<ForeignResult>,
    },
    Note {
        author: Author,
        reply: Reply<Result<(), AppendError>>,
    },
    /// Copies to make current, each checked by the planner and decided by the syncer
    /// ([`super::replace::decide`]); `failed`: reading a held copy failed, nothing of the
    /// request is written and it is answered with the error.
    Replace {
        copies: Vec<Copy>,
        failed: Option<AppendError>,
        reply: Reply<ReplaceResult>,
    },
    /// `new` is decided by the syncer (see "Fork proofs" in [`super`]).
    Proof {
        proof: Box<ForkProof>,
        new: bool,
        reply: Reply<Result<bool, AppendError>>,
    },
}

impl Planned {
    /// The records this request writes, in write order.
    pub(super) fn records(&self) -> impl Iterator<Item = &Record> {
        let (own, foreign): (Option<&Record>, &[Placed]) = match self {
            Planned::Own { record, .. } => (Some(record), &[]),
            Planned::Foreign { placed, .. } => (None, placed),
            _ => (None, &[]),
        };
        own.into_iter()
            .chain(foreign.iter().filter_map(|p| match p {
                Placed::Write(record) => Some(record),
                Placed::Decided(_) => None,
            }))
    }

    /// As [`Planned::records`], to record their offsets.
    pub(super) fn records_mut(&mut self) -> impl Iterator<Item = &mut Record> {
        let (own, foreign): (Option<&mut Record>, &mut [Placed]) = match self {
            Planned::Own { record, .. } => (Some(record), &mut []),
            Planned::Foreign { placed, .. } => (None, placed),
            _ => (None, &mut []),
        };
        own.into_iter()
            .chain(foreign.iter_mut().filter_map(|p| match p {
                Placed::Write(record) => Some(record),
                Placed::Decided(_) => None,
            }))
    }

    /// Answers a request whose write failed (or was never attempted) with `err`. A replay
    /// whose entry became durable in an earlier write is still answered with it: this request
    /// appended nothing, and the entry its key names exists (`index` tells; without it, the
    /// replay fails too).
    pub(super) fn fail(self, err: AppendError, index: Option<&RwLock<Index>>) {
        match self {
            Planned::Own { reply, .. } => answer(reply, Err(err)),
            Planned::Replay {
                author,
                head,
                reply,
            } => {
                let durable = index.map_or(0, |index| {
                    let index = index.read().unwrap_or_else(PoisonError::into_inner);
                    index.feeds.get(&author).map_or(0, |f| f.length())
                });
                if head.seq <= durable {
                    answer(
                        reply,
                        Ok(OwnAppend::Replayed {
                            seq: head.seq,
                            hash: head.hash,
                        }),
                    );
                } else {
                    answer(reply, Err(err));
                }
            }
            Planned::Foreign { reply, .. } => answer(reply, Err(err)),
            Planned::Note { reply, .. } => answer(reply, Err(err)),
            Planned::Proof { reply, .. } => answer(reply, Err(err)),
            Planned::Replace { reply, .. } => answer(reply, Err(err)),
        }
    }

    /// The copies this request writes as replacement records, in write order.
    pub(super) fn copies(&self) -> impl Iterator<Item = &Copy> {
        let copies: &[Copy] = match self {
            Planned::Replace { copies, .. } => copies,
            _ => &[],
        };
        copies.iter().filter(|c| c.written())
    }

    /// As [`Planned::copies`], to record their offsets.
    pub(super) fn copies_mut(&mut self) -> impl Iterator<Item = &mut Copy> {
        let copies: &mut [Copy] = match self {
            Planned::Replace { copies, .. } => copies,
            _ => &mut [],
        };
        copies.iter_mut().filter(|c| c.written())
    }
}

/// The answer to a replacement request whose write is durable (or had nothing to write).
pub(super) fn replace_outcomes(copies: Vec<Copy>) -> Vec<ReplaceOutcome> {
    copies
        .into_iter()
        .map(|c| c.outcome.unwrap_or(ReplaceOutcome::AlreadyCurrent))
        .collect()
}

/// A planned, signed batch on its way to the syncer.
pub(super) struct Sealed {
    pub requests: Vec<Planned>,
    /// The failure epoch it was planned in (see the module docs).
    pub epoch: u64,
}
