//! [`StoreReader`]: lookups through the shared index, entries read from the file with
//! positional reads on the reader's own handle, through the store's [`LogIo`]. The index lock is held only to copy offsets
//! out, never across a read.
//!
//! # Replaced copies
//!
//! Every read returns an entry's *current* copy: the latest replacement record of it if the
//! log has one (docs/STORE.md, "Replacement records"), else the record it entered the log
//! in. Lookups by seq, hash or key resolve the offset through [`Index::current`]. The
//! scanners that walk the log in log order ([`StoreReader::for_each_record_between`],
//! [`StoreReader::for_each_entry_bytes_between`], and so [`StoreReader::for_each_in_log_order`])
//! yield each entry once, at the position it entered the log (the offset tail cursors and
//! the caches' `covered` name), with its current copy, and skip replacement records: they
//! take the index's map of replaced records with the end they read to (usually empty: one
//! `is_empty` check a record), and read the current copy of a replaced one with one more
//! positional read. A replacement committed after a scan took its map is not seen by that
//! scan; the tree cache, whose hashes cover signatures, rebuilds on the replacement count
//! ([`StoreReader::replacement_count`]) instead.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use super::format::{self, ReadFault};
use super::index::Index;
use super::io::{read_exact_at, LogFile, LogIo, SystemIo};
use super::keys;
use super::open::{open_log, LOG_FILE};
use super::{FeedInfo, OpenReport, StoreError};
use crate::entry::{Entry, Seq};
use crate::hash::Hash;
use crate::idempotency::IdempotencyKey;
use crate::identity::Author;
use crate::validate::FeedHead;

/// Offsets copied out of the index per lock acquisition while iterating a feed.
const OFFSETS_PER_LOCK: usize = 4096;

/// The most bytes [`StoreReader::range_encoded`] reads at once: one read covers every record
/// of the feed that starts within it. A feed replicated or appended in batches lies in runs
/// of adjacent records, so this is one read per ~400 value-only entries instead of two per
/// entry; records of a feed scattered among others' cost one read of at most
/// [`MAX_RECORD`] bytes each.
const ENCODED_READ_WINDOW: u64 = 64 << 10;
/// The longest record, header included.
const MAX_RECORD: usize = format::MAX_RECORD_BYTES;

/// One entry record as [`StoreReader::for_each_entry_bytes_between`] yields it.
#[derive(Clone, Copy, Debug)]
pub struct EncodedRecord<'a> {
    /// Where the record starts in the log.
    pub offset: u64,
    /// Where the next record starts.
    pub next: u64,
    /// The entry's author, read from its bytes.
    pub author: Author,
    /// The entry's seq, read from its bytes.
    pub seq: Seq,
    /// The encoded entry (`body || signature`).
    pub bytes: &'a [u8],
}

/// A cheap-to-clone read-only view of a store.
#[derive(Clone, Debug)]
pub struct StoreReader {
    shared: Arc<ReaderShared>,
}

#[derive(Debug)]
struct ReaderShared {
    path: PathBuf,
    io: Arc<dyn LogIo>,
    file: LogFile,
    index: Arc<RwLock<Index>>,
}

impl StoreReader {
    pub(super) fn new(
        path: PathBuf,
        io: Arc<dyn LogIo>,
        file: LogFile,
        index: Arc<RwLock<Index>>,
    ) -> StoreReader {
        StoreReader {
            shared: Arc::new(ReaderShared {
                path,
                io,
                file,
                index,
            }),
        }
    }

    /// Opens the store in `dir` without taking the writer lock and without modifying the
    /// file: a torn tail (for instance a write in progress) is treated as the end of the log.
    pub fn open_read_only(dir: &Path) -> Result<(StoreReader, OpenReport), StoreError> {
        let opened = open_log(dir, false, &SystemIo)?;
        let reader = StoreReader::new(
            dir.join(LOG_FILE),
            Arc::new(SystemIo),
            opened.file,
            Arc::new(RwLock::new(opened.index)),
        );
        Ok((reader, opened.report))
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn index(&self) -> RwLockReadGuard<'_, Index> {
        // The index is updated in small steps that leave it consistent even if the writer
        // panicked mid-update, so a poisoned lock is still usable.
        self.shared
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Durable entries in the log, all feeds together.
    pub fn len(&self) -> u64 {
        self.index().entries
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds `f` over every feed's `(author, length)` in author order, without copying the
    /// feed list (the index's read lock is held meanwhile: keep `f` cheap).
    pub fn fold_feed_lengths<T>(&self, init: T, mut f: impl FnMut(T, &Author, Seq) -> T) -> T {
        self.index()
            .feeds
            .iter()
            .filter(|(_, feed)| feed.head.is_some())
            .fold(init, |acc, (author, feed)| f(acc, author, feed.length()))
    }

    /// How many feeds the store holds (O(1)).
    pub fn feed_count(&self) -> u64 {
        u64::try_from(self.index().feeds.len()).unwrap_or(u64::MAX)
    }

    /// Every feed, sorted by author.
    pub fn feeds(&self) -> Vec<FeedInfo> {
        self.index()
            .feeds
            .iter()
            .filter_map(|(author, feed)| {
                Some(FeedInfo {
                    author: *author,
                    length: feed.length(),
                    head: feed.head?,
                    first_timestamp: feed.first_timestamp,
                    last_timestamp: feed.last_timestamp,
                })
            })
            .collect()
    }

    /// `author`'s feed head (last seq and hash); `None` if nothing of it is held.
    pub fn head(&self, author: &Author) -> Option<FeedHead> {
        self.index().head(author)
    }

    fn read_at(&self, offset: u64, end: u64) -> Result<(Entry, Hash), StoreError> {
        format::read_record_at(&*self.shared.io, &self.shared.file, offset, end)
            .map(|record| (record.entry, record.hash))
            .map_err(|fault| self.read_error(offset, fault))
    }

    fn read_error(&self, offset: u64, fault: ReadFault) -> StoreError {
        match fault {
            ReadFault::Io(source) => StoreError::io(
                format!("read offset {offset} of {}", self.shared.path.display()),
                source,
            ),
            ReadFault::Bad(reason) => StoreError::Corrupt {
                path: self.shared.path.clone(),
                offset,
                reason,
            },
        }
    }

    /// Whether the key table has a candidate for `key` (memory only; [`Self::find_key`]
    /// confirms it on disk).
    pub fn may_remember_key(&self, key: &IdempotencyKey) -> bool {
        self.index().keys.candidate(key).is_some()
    }

    /// The entry appended under idempotency key `key`, if the store still remembers it (the
    /// most recent [`super::keys::MAX_REMEMBERED_KEYS`] keyed appends; a read-only open
    /// remembers none). Reads one record.
    pub fn find_key(&self, key: &IdempotencyKey) -> Result<Option<(Entry, Hash)>, StoreError> {
        let found = keys::find(&*self.shared.io, &self.shared.file, &self.shared.index, key)
            .map_err(|e| self.read_error(e.offset, e.fault))?;
        Ok(found.map(|record| (record.entry, record.hash)))
    }

    /// `author`'s entry at `seq` with its hash, read from the file; `None` if not held.
    pub fn get(&self, author: &Author, seq: Seq) -> Result<Option<(Entry, Hash)>, StoreError> {
        let (offset, end) = {
            let index = self.index();
            (
                index
                    .feeds
                    .get(author)
                    .and_then(|f| f.offset_of(seq))
                    .map(|o| index.current(o)),
                index.end,
            )
        };
        offset.map(|offset| self.read_at(offset, end)).transpose()
    }

    /// Where the record of the feed's entry at `seq` starts in the log, if held (from the
    /// in-memory index: no read): the record it entered the log in, its position in log
    /// order (a tail cursor), even when a replacement record holds its current copy.
    pub fn offset_of(&self, author: &Author, seq: Seq) -> Option<u64> {
        self.index()
            .feeds
            .get(author)
            .and_then(|f| f.offset_of(seq))
    }

    /// The entry with this hash, if held, read from the file.
    pub fn get_by_hash(&self, hash: &Hash) -> Result<Option<(Entry, Hash)>, StoreError> {
        let ((exact, candidate), end) = {
            let index = self.index();
            let (exact, candidate) = index.candidates(hash);
            (
                (
                    exact.map(|o| index.current(o)),
                    candidate.map(|o| index.current(o)),
                ),
                index.end,
            )
        };
        for offset in [exact, candidate].into_iter().flatten() {
            let found = self.read_at(offset, end)?;
            if found.1 == *hash {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Up to `limit` entries of a feed from seq `from` on.
    pub fn range(
        &self,
        author: &Author,
        from: Seq,
        limit: usize,
    ) -> Result<Vec<(Entry, Hash)>, StoreError> {
        let mut out = Vec::new();
        // The callback never breaks, so the flow is always Continue.
        let _flow = self.for_each_in_feed(author, from.max(1), None, limit, |e, h| {
            out.push((e.clone(), *h));
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Up to `limit` encoded entries (`body || signature`, as [`Entry::encode`] writes them)
    /// of a feed from seq `from` on, in seq order, read as they lie in the file: each
    /// record's checksum is checked, but the entries are neither decoded nor hashed, and
    /// records close together in the file come in one positional read (see
    /// [`ENCODED_READ_WINDOW`]). For sync, which sends the bytes on and whose receiver decodes,
    /// hashes and verifies every entry itself; a sender decoding them too spent a tenth of
    /// replication's CPU on it. Each entry's author and seq bytes are checked against the
    /// index position it was read for, so an index that disagreed with the file would fail
    /// here as [`StoreError::Corrupt`] instead of sending another feed's entry.
    pub fn range_encoded(
        &self,
        author: &Author,
        from: Seq,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        self.for_each_encoded(author, from, limit, |bytes| out.push(bytes.to_vec()))?;
        Ok(out)
    }

    /// [`StoreReader::range_encoded`] without a copy: `f` sees each encoded entry, in seq
    /// order, borrowed from the read buffer; how many it saw is returned. For readers that
    /// only hash the bytes (a level-0 hash tile hashes 256 entries per request and needs
    /// neither 256 allocations nor 256 copies for it).
    pub fn for_each_encoded(
        &self,
        author: &Author,
        from: Seq,
        limit: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, StoreError> {
        let mut seen = 0;
        let mut next = from.max(1);
        let mut buf = Vec::new();
        while seen < limit {
            let Some((offsets, end)) = self.feed_offsets(author, next, None, limit - seen) else {
                break;
            };
            let mut i = 0;
            while i < offsets.len() {
                // Every record starting within the window, each at most MAX_RECORD_BYTES.
                let start = offsets[i];
                let covered = offsets[i..]
                    .iter()
                    .take_while(|&&o| {
                        o.checked_sub(start)
                            .is_some_and(|d| d + MAX_RECORD as u64 <= ENCODED_READ_WINDOW)
                    })
                    .count()
                    .max(1);
                // The furthest, not the last: a replaced seq's copy lies after later seqs.
                let last = offsets[i..i + covered]
                    .iter()
                    .copied()
                    .max()
                    .unwrap_or(start);
                let stop = last.saturating_add(MAX_RECORD as u64).min(end);
                let len = usize::try_from(stop.saturating_sub(start)).unwrap_or(0);
                buf.resize(len, 0);
                read_exact_at(&*self.shared.io, &self.shared.file, &mut buf, start)
                    .map_err(|source| self.read_error(start, ReadFault::Io(source)))?;
                for (k, &offset) in offsets[i..i + covered].iter().enumerate() {
                    let seq = next + (i + k) as Seq;
                    let at = usize::try_from(offset - start).unwrap_or(usize::MAX);
                    let bytes = format::entry_bytes_at(&buf, at)
                        .map_err(|reason| self.read_error(offset, ReadFault::Bad(reason)))?;
                    if Entry::author_and_seq(bytes) != Some((*author, seq)) {
                        return Err(self.read_error(
                            offset,
                            ReadFault::Bad(format!(
                                "the index places seq {seq} of {author} here, the record is another entry"
                            )),
                        ));
                    }
                    f(bytes);
                    seen += 1;
                }
                i += covered;
            }
            next += offsets.len() as Seq;
        }
        Ok(seen)
    }

    /// Up to `left` (and at most [`OFFSETS_PER_LOCK`]) record offsets of a feed's seqs
    /// `next..` (not past seq `until`), each its current copy's, copied out under one short
    /// hold of the index lock, with the committed end they are valid under; `None` when there
    /// are none. A replaced seq's offset lies after its neighbours' (readers of runs cope).
    fn feed_offsets(
        &self,
        author: &Author,
        next: Seq,
        until: Option<Seq>,
        left: usize,
    ) -> Option<(Vec<u64>, u64)> {
        let index = self.index();
        let feed = index.feeds.get(author)?;
        let start = usize::try_from(next - 1).unwrap_or(usize::MAX);
        let mut stop = feed.offsets.len();
        if let Some(until) = until {
            stop = stop.min(usize::try_from(until).unwrap_or(usize::MAX));
        }
        let stop = stop.min(start.saturating_add(left.min(OFFSETS_PER_LOCK)));
        if start >= stop {
            return None;
        }
        let offsets = feed.offsets[start..stop]
            .iter()
            .map(|&o| index.current(o))
            .collect();
        Some((offsets, index.end))
    }

    /// Calls `f` on entries `from..` of a feed (at most `limit`, and not past seq `until`),
    /// copying offsets out of the index a slice at a time.
    fn for_each_in_feed(
        &self,
        author: &Author,
        from: Seq,
        until: Option<Seq>,
        limit: usize,
        mut f: impl FnMut(&Entry, &Hash) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, StoreError> {
        let mut next = from;
        let mut left = limit;
        while left > 0 {
            let Some((offsets, end)) = self.feed_offsets(author, next, until, left) else {
                break;
            };
            for offset in &offsets {
                let (entry, hash) = self.read_at(*offset, end)?;
                if f(&entry, &hash).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            next += offsets.len() as Seq;
            left -= offsets.len();
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Every entry in file (commit) order, up to the committed end at call time. Streams the
    /// file a chunk at a time (decoding each chunk in parallel); memory stays bounded.
    pub fn for_each_in_log_order(
        &self,
        mut f: impl FnMut(&Entry, &Hash) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        let end = self.index().end;
        self.for_each_record_between(
            format::FILE_HEADER_BYTES,
            end,
            format::SCAN_CHUNK_BYTES,
            |_, entry, hash| f(entry, hash),
        )
    }

    /// Every entry starting in `[from, to)` in file order, with its offset, as its current
    /// copy (replacement records are not entries: skipped, see the module docs): `from`
    /// must be where a record starts (or `to`), and `to` at most [`Self::committed_end`]. Reads
    /// `chunk_bytes` of the file at a time, so memory is bounded by the chunk, not the range.
    pub fn for_each_record_between(
        &self,
        from: u64,
        to: u64,
        chunk_bytes: usize,
        mut f: impl FnMut(u64, &Entry, &Hash) -> ControlFlow<()> + Send,
    ) -> Result<(), StoreError> {
        let (end, replaced) = self.end_and_replaced();
        let end = to.min(end);
        if from >= end {
            return Ok(());
        }
        let path = &self.shared.path;
        let mut bad: Option<StoreError> = None;
        let stop = format::walk_from(
            &*self.shared.io,
            &self.shared.file,
            from,
            end,
            chunk_bytes,
            |records| {
                for record in records {
                    match record.decoded {
                        Ok(format::Record {
                            replacement: true, ..
                        }) => {}
                        Ok(format::Record { entry, hash, .. }) => {
                            let current = match replaced.get(&record.offset) {
                                None => (entry, hash),
                                Some(&at) => match self.read_at(at, end) {
                                    Ok(found) => found,
                                    Err(e) => {
                                        bad = Some(e);
                                        return Ok(ControlFlow::Break(()));
                                    }
                                },
                            };
                            if f(record.offset, &current.0, &current.1).is_break() {
                                return Ok(ControlFlow::Break(()));
                            }
                        }
                        Err(format::RecordFault::Note) => {}
                        Err(fault) => {
                            bad = Some(StoreError::Corrupt {
                                path: path.clone(),
                                offset: record.offset,
                                reason: format::fault_reason(&fault),
                            });
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                }
                Ok(ControlFlow::Continue(()))
            },
        )
        .map_err(|e| StoreError::io(format!("read {}", path.display()), e))?;
        if let Some(err) = bad {
            return Err(err);
        }
        match stop {
            format::ScanStop::Clean => Ok(()),
            format::ScanStop::Fault { offset, kind } => Err(StoreError::Corrupt {
                path: path.clone(),
                offset,
                reason: format!("{kind:?} inside the committed log"),
            }),
        }
    }

    /// Every entry record starting in `[from, to)` in file order, as its encoded entry bytes
    /// (`body || signature`, as [`Entry::encode`] writes them; a replaced entry's current
    /// copy, read where it lies, see the module docs) with its author, seq, offset and the
    /// offset just past it: each record's checksum is checked, the entry is neither decoded
    /// nor hashed (but a replaced one's copy is). For the tree cache ([`crate::tree`]), whose leaf hash is a hash
    /// of these bytes: decoding would hash every entry a second time for nothing. `from`
    /// must be where a record starts; markers and fork notes are skipped. Reads
    /// `chunk_bytes` (at least one record's worth) at a time.
    pub fn for_each_entry_bytes_between(
        &self,
        from: u64,
        to: u64,
        chunk_bytes: usize,
        mut f: impl FnMut(EncodedRecord<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let (end, replaced) = self.end_and_replaced();
        let stop = to.min(end);
        let chunk_bytes = chunk_bytes.max(MAX_RECORD);
        let mut buf = Vec::new();
        let mut pos = from;
        while pos < stop {
            let len = usize::try_from((end - pos).min(chunk_bytes as u64)).unwrap_or(chunk_bytes);
            buf.resize(len, 0);
            read_exact_at(&*self.shared.io, &self.shared.file, &mut buf, pos)
                .map_err(|source| self.read_error(pos, ReadFault::Io(source)))?;
            let mut at = 0usize;
            while let Some(header) = buf
                .get(at..at + format::RECORD_HEADER_BYTES)
                .and_then(|h| <&[u8; format::RECORD_HEADER_BYTES]>::try_from(h).ok())
            {
                let offset = pos + at as u64;
                if offset >= stop {
                    return Ok(());
                }
                let header = format::parse_record_header(header).map_err(|field| {
                    self.read_error(
                        offset,
                        ReadFault::Bad(format!("record length field {field:#x} out of range")),
                    )
                })?;
                let next = at + format::RECORD_HEADER_BYTES + header.len;
                if next > buf.len() {
                    break;
                }
                if !header.marker && !header.replacement {
                    let first = format::entry_bytes_at(&buf, at)
                        .map_err(|reason| self.read_error(offset, ReadFault::Bad(reason)))?;
                    let copy;
                    let bytes = match replaced.get(&offset) {
                        None => first,
                        Some(&current) => {
                            copy = self.read_at(current, end)?.0.encode();
                            &copy[..]
                        }
                    };
                    let Some((author, seq)) = Entry::author_and_seq(bytes) else {
                        return Err(self.read_error(
                            offset,
                            ReadFault::Bad("a record whose entry has no author and seq".into()),
                        ));
                    };
                    let record = EncodedRecord {
                        offset,
                        next: pos + next as u64,
                        author,
                        seq,
                        bytes,
                    };
                    if f(record).is_break() {
                        return Ok(());
                    }
                }
                at = next;
            }
            if at == 0 {
                // A chunk holds at least one whole record below the committed end.
                return Err(self.read_error(
                    pos,
                    ReadFault::Bad("a record runs past the committed end".into()),
                ));
            }
            pos += at as u64;
        }
        Ok(())
    }

    /// Every entry sorted by author then seq, over the feed lengths at call time.
    pub fn for_each_sorted(
        &self,
        mut f: impl FnMut(&Entry, &Hash) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let lengths: Vec<(Author, Seq)> = self
            .index()
            .feeds
            .iter()
            .map(|(a, feed)| (*a, feed.length()))
            .collect();
        for (author, length) in lengths {
            let flow = self.for_each_in_feed(&author, 1, Some(length), usize::MAX, &mut f)?;
            if flow.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// How many of `author`'s entries start before log offset `offset` (0 for a feed not
    /// held): a binary search in the index's offsets, which are sorted by log position.
    pub fn entries_before(&self, author: &Author, offset: u64) -> u64 {
        self.index()
            .feeds
            .get(author)
            .map_or(0, |f| f.offsets.partition_point(|&o| o < offset) as u64)
    }

    /// Where the durable log ends: the offset just past its last record, which no reader
    /// reads beyond.
    pub fn committed_end(&self) -> u64 {
        self.index().end
    }

    /// The committed end, with the record offset and hash of the last entry before it (read
    /// together, so nothing can be committed between them).
    pub fn end_and_last_entry(&self) -> (u64, Option<(u64, Hash)>) {
        let index = self.index();
        (index.end, index.last_entry)
    }

    /// The record starting at `offset` and the offset just past it, if an intact record
    /// starts there below the committed end. `None` for an offset past the end, inside a
    /// record or in the file header: something outside the node named the offset (a tail
    /// cursor), so a miss is an answer, not damage.
    ///
    /// A replacement record is not an entry's position: `None`. An entry whose current copy
    /// is a replacement comes as that copy (with the offset past the record at `offset`).
    pub fn record_at(&self, offset: u64) -> Result<Option<(Entry, Hash, u64)>, StoreError> {
        let (end, current) = {
            let index = self.index();
            (index.end, index.current(offset))
        };
        if offset < format::FILE_HEADER_BYTES || offset >= end {
            return Ok(None);
        }
        match format::read_record_span(&*self.shared.io, &self.shared.file, offset, end) {
            Ok((record, _)) if record.replacement => Ok(None),
            Ok((record, next)) if current == offset => Ok(Some((record.entry, record.hash, next))),
            Ok((_, next)) => {
                let (entry, hash) = self.read_at(current, end)?;
                Ok(Some((entry, hash, next)))
            }
            Err(ReadFault::Bad(_)) => Ok(None),
            Err(fault) => Err(self.read_error(offset, fault)),
        }
    }

    /// Replacement records in the committed log (docs/STORE.md): a count that changes each
    /// time an entry's current copy changes. The tree cache records the count its leaves were
    /// hashed under and rebuilds when it differs.
    pub fn replacement_count(&self) -> u64 {
        self.index().replacements
    }

    /// The committed end with the map of replaced records under it (first record's offset
    /// -> current copy's), read together; the map is usually empty, and cloned only if not.
    fn end_and_replaced(&self) -> (u64, HashMap<u64, u64>) {
        let index = self.index();
        (index.end, index.replaced.clone())
    }

    /// The reader's handle on the log and the seam its reads go through (verify walks it).
    pub(super) fn file(&self) -> (&dyn LogIo, &LogFile) {
        (&*self.shared.io, &self.shared.file)
    }
}
