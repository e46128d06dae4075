//! Sorting an import's entries into plan order in bounded memory: an external merge sort.
//!
//! Parsed entries are gathered into a chunk of at most [`SORT_BUDGET_BYTES`] (estimated), and
//! a full chunk is sorted and written out as a *run* to an unnamed temporary file in the
//! data directory (deleted by the OS when closed, even after a crash). At the end, the runs
//! are merged, [`MAX_MERGE_FAN_IN`] at a time, into one stream in plan order. An input that
//! fits in one chunk never touches the disk.
//!
//! Memory is the chunk plus one read buffer and one entry per run being merged, whatever the
//! input's size; disk is about the size of the entries of the input, once (twice while an
//! intermediate merge runs, for inputs of more than [`MAX_MERGE_FAN_IN`] runs).
//!
//! # Faults
//!
//! The runs are written and read back through a [`LogIo`] (the real system calls unless
//! [`SpillSorter::with_io`] gives another), the seam through which the store's writes go:
//! a test makes a run's write fail (a full disk while spilling, a write cut short) or its
//! read back fail or come back short, with the same fault injector it uses for the store,
//! and counts every call of an import, spill and store alike. Positional writes and reads
//! at an offset the run keeps itself are all a run needs, so it uses the seam as it is,
//! and a failure surfaces as the `io::Error` of the call that failed, never as a short run.
//!
//! # Run file layout
//!
//! Private to one import and never read by anything else: records back to back, each
//! `line: u64 LE || len: u32 LE || entry` where `entry` is the `len` bytes of
//! [`Entry::encode`] (the signed layout of `docs/FORMAT.md`). Decoding recomputes the hash.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::csv::{plan_order, ParsedEntry};
use crate::entry::{Entry, MAX_ENCODED_BYTES};
use crate::store::io::{LogFile, LogIo, SystemIo};

/// Estimated bytes of parsed entries held before a chunk is sorted and spilled.
pub const SORT_BUDGET_BYTES: usize = 32 << 20;
/// The most runs merged at once: bounds open files and read buffers.
pub const MAX_MERGE_FAN_IN: usize = 64;
/// Buffer of each run's reader and writer.
const RUN_BUFFER_BYTES: usize = 64 << 10;

/// Gathers entries, spilling sorted runs to `dir` as the budget fills.
pub struct SpillSorter {
    dir: PathBuf,
    io: Arc<dyn LogIo>,
    budget: usize,
    chunk: Vec<ParsedEntry>,
    chunk_bytes: usize,
    runs: Vec<LogFile>,
}

/// The memory an entry is counted for: its struct and its data's heap bytes.
fn footprint(parsed: &ParsedEntry) -> usize {
    std::mem::size_of::<ParsedEntry>() + parsed.entry.data.capacity()
}

impl SpillSorter {
    /// A sorter spilling its runs to `dir` (the data directory) every [`SORT_BUDGET_BYTES`].
    pub fn new(dir: &Path) -> SpillSorter {
        SpillSorter::with_budget(dir, SORT_BUDGET_BYTES)
    }

    /// A sorter that spills every `budget` bytes (small budgets exercise the merge in tests).
    pub fn with_budget(dir: &Path, budget: usize) -> SpillSorter {
        SpillSorter {
            dir: dir.to_owned(),
            io: Arc::new(SystemIo),
            budget: budget.max(1),
            chunk: Vec::new(),
            chunk_bytes: 0,
            runs: Vec::new(),
        }
    }

    /// The same sorter, writing and reading its runs through `io` (tests inject faults).
    pub fn with_io(mut self, io: Arc<dyn LogIo>) -> SpillSorter {
        self.io = io;
        self
    }

    /// Adds one entry; when the chunk reaches the budget it is sorted and written out as a
    /// run, and that write's error is returned.
    pub fn push(&mut self, parsed: ParsedEntry) -> io::Result<()> {
        self.chunk_bytes += footprint(&parsed);
        self.chunk.push(parsed);
        if self.chunk_bytes >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// How many runs were written to disk so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> io::Result<()> {
        let mut chunk = std::mem::take(&mut self.chunk);
        self.chunk_bytes = 0;
        chunk.sort_unstable_by(plan_order);
        let run = write_run(&self.dir, &self.io, chunk.into_iter().map(Ok))?;
        self.runs.push(run);
        Ok(())
    }

    /// Every entry pushed, in plan order.
    pub fn finish(mut self) -> io::Result<Sorted> {
        if self.runs.is_empty() {
            let mut chunk = std::mem::take(&mut self.chunk);
            chunk.sort_unstable_by(plan_order);
            return Ok(Sorted::Memory(chunk.into_iter()));
        }
        if !self.chunk.is_empty() {
            self.spill()?;
        }
        let mut runs = std::mem::take(&mut self.runs);
        // Merge the oldest runs into one until few enough remain to merge at once.
        while runs.len() > MAX_MERGE_FAN_IN {
            let group: Vec<LogFile> = runs.drain(..MAX_MERGE_FAN_IN).collect();
            let merged = write_run(&self.dir, &self.io, Merge::new(group, &self.io)?)?;
            runs.push(merged);
        }
        Ok(Sorted::Merge(Merge::new(runs, &self.io)?))
    }
}

/// Writes entries (already in plan order) as a run; returns its file.
fn write_run(
    dir: &Path,
    io: &Arc<dyn LogIo>,
    entries: impl Iterator<Item = io::Result<ParsedEntry>>,
) -> io::Result<LogFile> {
    // An anonymous real file (gone when closed, or after a crash), under any backend: the
    // sort's files are not the store's, only their reads and writes are to fail on purpose.
    let file = RunFile {
        file: LogFile::from(tempfile::tempfile_in(dir)?),
        io: io.clone(),
        at: 0,
    };
    let mut out = BufWriter::with_capacity(RUN_BUFFER_BYTES, file);
    let mut bytes = Vec::with_capacity(MAX_ENCODED_BYTES);
    for parsed in entries {
        let parsed = parsed?;
        bytes.clear();
        parsed.entry.encode_to(&mut bytes);
        out.write_all(&parsed.line.to_le_bytes())?;
        out.write_all(&(bytes.len() as u32).to_le_bytes())?;
        out.write_all(&bytes)?;
    }
    let run = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(run.file)
}

/// A run file written or read sequentially, by positional calls through the [`LogIo`].
struct RunFile {
    file: LogFile,
    io: Arc<dyn LogIo>,
    /// Where the next write or read starts.
    at: u64,
}

impl Write for RunFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write_all_at(&self.file, buf, self.at)?;
        self.at += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Nothing buffered here, and a run is never synced: it is gone after a crash anyway.
        Ok(())
    }
}

impl Read for RunFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.io.read_at(&self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Reads a run back, entry by entry.
struct RunReader {
    input: BufReader<RunFile>,
    bytes: Vec<u8>,
}

impl RunReader {
    fn next_entry(&mut self) -> io::Result<Option<ParsedEntry>> {
        let mut header = [0u8; 12];
        match self.input.read_exact(&mut header[..1]) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        self.input.read_exact(&mut header[1..])?;
        let line = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(header[8..].try_into().expect("4 bytes")) as usize;
        if len > MAX_ENCODED_BYTES {
            return Err(corrupt(format!("record of {len} bytes")));
        }
        self.bytes.resize(len, 0);
        self.input.read_exact(&mut self.bytes)?;
        let (entry, hash) = Entry::decode(&self.bytes).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(ParsedEntry { line, entry, hash }))
    }
}

/// A run that does not read back as written: the temporary file was damaged under us.
fn corrupt(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("import sort file damaged: {what}"),
    )
}

/// The head entry of one run in the merge; ordered so the heap's top is the least.
struct Head {
    parsed: ParsedEntry,
    run: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Head) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap.
        plan_order(&other.parsed, &self.parsed).then(other.run.cmp(&self.run))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Head) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Head) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

/// A k-way merge of sorted runs.
pub struct Merge {
    runs: Vec<RunReader>,
    heap: BinaryHeap<Head>,
    error: Option<io::Error>,
    failed: bool,
}

impl Merge {
    fn new(files: Vec<LogFile>, io: &Arc<dyn LogIo>) -> io::Result<Merge> {
        let mut merge = Merge {
            runs: files
                .into_iter()
                .map(|file| RunReader {
                    input: BufReader::with_capacity(
                        RUN_BUFFER_BYTES,
                        RunFile {
                            file,
                            io: io.clone(),
                            at: 0,
                        },
                    ),
                    bytes: Vec::new(),
                })
                .collect(),
            heap: BinaryHeap::new(),
            error: None,
            failed: false,
        };
        for run in 0..merge.runs.len() {
            merge.refill(run)?;
        }
        Ok(merge)
    }

    fn refill(&mut self, run: usize) -> io::Result<()> {
        if let Some(parsed) = self.runs[run].next_entry()? {
            self.heap.push(Head { parsed, run });
        }
        Ok(())
    }
}

impl Iterator for Merge {
    type Item = io::Result<ParsedEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            self.failed = true;
            return Some(Err(e));
        }
        if self.failed {
            return None;
        }
        let head = self.heap.pop()?;
        // A run that fails to read stops the merge: entries of the other runs that sort
        // after its next one must not come out before it. The head in hand is still good.
        if let Err(e) = self.refill(head.run) {
            self.error = Some(e);
        }
        Some(Ok(head.parsed))
    }
}

/// The sorted entries: from memory when they fit in one chunk, else merged from disk.
pub enum Sorted {
    Memory(std::vec::IntoIter<ParsedEntry>),
    Merge(Merge),
}

impl Iterator for Sorted {
    type Item = io::Result<ParsedEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Sorted::Memory(entries) => entries.next().map(Ok),
            Sorted::Merge(merge) => merge.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn parsed(seed: u8, seq: u64, value: i64, line: u64) -> ParsedEntry {
        let id = Identity::from_seed([seed; 32]);
        let unsigned = crate::entry::UnsignedEntry {
            author: id.author(),
            seq,
            timestamp: 1,
            prev: (seq > 1).then_some(crate::hash::Hash([seq as u8; 32])),
            value,
            data: "x".repeat(line as usize % 7),
        };
        let (entry, hash) = unsigned.sign(&id);
        ParsedEntry { line, entry, hash }
    }

    fn sorted(budget: usize, input: &[ParsedEntry]) -> (Vec<ParsedEntry>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = SpillSorter::with_budget(dir.path(), budget);
        for p in input {
            sorter.push(p.clone()).unwrap();
        }
        let runs = sorter.runs();
        let out = sorter.finish().unwrap().map(Result::unwrap).collect();
        (out, runs)
    }

    #[test]
    fn spilled_merge_equals_the_in_memory_sort() {
        let mut input = Vec::new();
        for line in 0..400u64 {
            let seed = (line * 7 % 5) as u8;
            input.push(parsed(seed, line * 13 % 31 + 1, (line % 3) as i64, line));
        }
        let (memory, runs) = sorted(usize::MAX, &input);
        assert_eq!(runs, 0);
        let mut expected = input.clone();
        expected.sort_by(plan_order);
        assert_eq!(memory, expected);
        // A budget of about three entries: >100 runs, so intermediate merges run too.
        let (spilled, runs) = sorted(3 * footprint(&input[0]), &input);
        assert!(runs > MAX_MERGE_FAN_IN, "{runs} runs");
        assert_eq!(spilled, expected);
    }

    #[test]
    fn a_damaged_run_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let io: Arc<dyn LogIo> = Arc::new(SystemIo);
        let file = write_run(dir.path(), &io, [Ok(parsed(1, 1, 1, 1))].into_iter()).unwrap();
        let end = file.len().unwrap();
        file.write_all_at(&[0xff; 13], end).unwrap();
        let mut merge = Merge::new(vec![file], &io).unwrap();
        assert!(merge.next().unwrap().is_ok());
        assert!(merge.next().unwrap().is_err());
        assert!(merge.next().is_none());
    }
}
