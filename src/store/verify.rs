//! `verify_all`: re-checks every record of the committed log — checksum, decoding, shape,
//! hash chain and signature (batched over all cores with [`signature::verify_many`]) — and
//! reports each problem with its byte offset instead of stopping at the first. A keyed
//! record's key is checked as part of decoding it (its length and bytes); the key is not
//! part of the entry, so nothing else about it is verified.

use std::collections::HashMap;
use std::ops::ControlFlow;

use super::format;
use super::reader::StoreReader;
use super::StoreError;
use crate::entry::Seq;
use crate::identity::Author;
use crate::progress::{NoProgress, Progress, Stage};
use crate::signature::{self, BatchItem, SignatureError};
use crate::validate::{self, FeedHead, ValidationError};

/// What `verify_all` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub entries: u64,
    /// Distinct authors among the records checked.
    pub feeds: usize,
    /// Problems in file order. Empty means the log is sound.
    pub problems: Vec<VerifyProblem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What `kappalog verify` prints: a verdict line with the counts, then one line per problem.
impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.is_ok() { "ok" } else { "FAILED" };
        write!(
            f,
            "{verdict}: {} entries in {} feeds checked (records, hash chains, signatures), {} problems",
            self.entries,
            self.feeds,
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\noffset {}: ", p.offset)?;
            if let (Some(author), Some(seq)) = (p.author, p.seq) {
                write!(f, "author {author} seq {seq}: ")?;
            }
            write!(f, "{}", p.issue)?;
        }
        Ok(())
    }
}

/// One problem `verify_all` found, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProblem {
    /// Byte offset of the record in the log file.
    pub offset: u64,
    /// The entry's author and seq, when the record decoded.
    pub author: Option<Author>,
    /// See `author`.
    pub seq: Option<Seq>,
    /// What is wrong.
    pub issue: VerifyIssue,
}

/// What is wrong with one record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyIssue {
    /// The entry's signature does not verify under its author's key.
    #[error("bad signature: {0}")]
    Signature(SignatureError),
    /// The entry does not follow its feed's previous entry (seq or backlink).
    #[error("broken chain: {0}")]
    Chain(ValidationError),
    /// The record is not an intact entry record: why.
    #[error("bad record: {0}")]
    Record(String),
}

impl StoreReader {
    /// Re-verifies every signature and chain of the committed log.
    pub fn verify_all(&self) -> Result<VerifyReport, StoreError> {
        self.verify_all_with_progress(&NoProgress)
    }

    /// [`Self::verify_all`], reporting [`Stage::Verify`] to `progress`: the entries the log
    /// holds as the total, then the records of each chunk of the file as it is checked.
    pub fn verify_all_with_progress(
        &self,
        progress: &dyn Progress,
    ) -> Result<VerifyReport, StoreError> {
        let end = self.committed_end();
        progress.begin(Stage::Verify, Some(self.len()));
        let mut report = VerifyReport::default();
        let mut heads: HashMap<Author, FeedHead> = HashMap::new();
        let (io, file) = self.file();
        let stop = format::walk(io, file, end, |records| {
            let checked = report.entries;
            let items: Vec<BatchItem<'_>> = records
                .iter()
                .filter_map(|r| r.decoded.as_ref().ok())
                .map(|r| BatchItem {
                    author: &r.entry.author,
                    hash: &r.hash,
                    signature: &r.entry.signature,
                })
                .collect();
            let mut verdicts = signature::verify_many(&items).into_iter();
            for record in &records {
                if let Err(format::RecordFault::Note) = record.decoded {
                    continue;
                }
                let replacement = matches!(&record.decoded, Ok(r) if r.replacement);
                report.entries += u64::from(!replacement);
                let (entry, hash) = match &record.decoded {
                    Ok(decoded) => (&decoded.entry, &decoded.hash),
                    Err(fault) => {
                        report.problems.push(VerifyProblem {
                            offset: record.offset,
                            author: None,
                            seq: None,
                            issue: VerifyIssue::Record(format::fault_reason(fault)),
                        });
                        continue;
                    }
                };
                let problem = |issue| VerifyProblem {
                    offset: record.offset,
                    author: Some(entry.author),
                    seq: Some(entry.seq),
                    issue,
                };
                // One verdict per decoded record, in order: the iterator cannot run short.
                if let Some(Err(e)) = verdicts.next() {
                    report.problems.push(problem(VerifyIssue::Signature(e)));
                }
                if replacement {
                    // Another copy of an entry before it, its signature checked above with
                    // the others: it must name an entry held earlier, with its hash.
                    let issue = self.check_replacement(&heads, entry, hash, record.offset);
                    report.problems.extend(issue.map(problem));
                    continue;
                }
                let head = heads.get(&entry.author);
                match validate::check_shape(entry).and_then(|()| validate::check_link(entry, head))
                {
                    Ok(()) => {
                        heads.insert(
                            entry.author,
                            FeedHead {
                                seq: entry.seq,
                                hash: *hash,
                            },
                        );
                    }
                    Err(e) => report.problems.push(problem(VerifyIssue::Chain(e))),
                }
            }
            progress.advance(report.entries - checked);
            Ok(ControlFlow::Continue(()))
        })
        .map_err(|e| StoreError::io(format!("read {}", self.path().display()), e))?;
        if let format::ScanStop::Fault { offset, kind } = stop {
            report.problems.push(VerifyProblem {
                offset,
                author: None,
                seq: None,
                issue: VerifyIssue::Record(format!("{kind:?}")),
            });
        }
        report.feeds = heads.len();
        Ok(report)
    }

    /// What is wrong with a replacement record at `offset` of `entry`, if anything: its
    /// feed must have reached its seq earlier in the log, and the entry held there (read
    /// through the index) must have its hash. Only the recovery rule's checks, in the
    /// report's words; the signature is verified with every other record's.
    fn check_replacement(
        &self,
        heads: &HashMap<Author, FeedHead>,
        entry: &crate::entry::Entry,
        hash: &crate::hash::Hash,
        offset: u64,
    ) -> Option<VerifyIssue> {
        if heads.get(&entry.author).is_none_or(|h| h.seq < entry.seq) {
            return Some(VerifyIssue::Record(
                "a replacement record of an entry not held before it".into(),
            ));
        }
        match self.get(&entry.author, entry.seq) {
            Ok(Some((_, held))) if held == *hash => None,
            Ok(_) => Some(VerifyIssue::Record(format!(
                "a replacement record at {offset} whose entry hash is not the held entry's"
            ))),
            Err(e) => Some(VerifyIssue::Record(e.to_string())),
        }
    }
}
