//! The operator's sync policy, from flags (docs/PROTOCOL.md section 9): who is trusted, which
//! authors are kept, and the budgets strangers get. Pure: parsing an `--accept-authors`
//! file's text is here; [`read_author_list`] is its one read.

use std::collections::BTreeSet;
use std::path::Path;

use crate::identity::Author;

/// Default: new feeds strangers from one source (an IPv4 address, an IPv6 /64) may
/// introduce per hour.
pub const NEW_FEEDS_PER_HOUR: u64 = 10_000;
/// Default: new feeds all strangers together may introduce per hour: rotating keys or
/// addresses gains nothing beyond it.
pub const STRANGER_NEW_FEEDS_PER_HOUR: u64 = 50_000;
/// Default: the most feeds a node holds.
pub const MAX_FEEDS: u64 = 1_000_000;
/// Default: inbound connections (pending or in session) from one IP address.
pub const MAX_INBOUND_PER_ADDR: usize = 8;
/// Default: bytes per second the node sends to strangers of one source, after the burst
/// (each session and each store read of a range counted as bytes too, for the CPU they
/// cost: see `session::STRANGER_SESSION_COST_BYTES`, `outbound::STRANGER_RANGE_COST_BYTES`).
pub const STRANGER_SEND_RATE: u64 = 4 << 20;
/// Default: bytes the node sends to strangers of one source before the rate applies.
pub const STRANGER_SEND_BURST: u64 = 32 << 20;
/// Default: reconciliation items and ranges all stranger sessions together may make the node
/// hold (each ~100-150 bytes with the maps and frames around it: 262,144 of them are about
/// 30-40 MB). A stranger stating more feeds than this is refused with `Bye(Busy)`.
pub const STRANGER_RECONCILE_ITEMS: usize = 1 << 18;

/// The operator's policy, from flags.
#[derive(Clone, Debug)]
pub struct Policy {
    /// When non-empty, only these keys may hold a session, in either direction (and they
    /// are trusted).
    pub allow_peers: BTreeSet<Author>,
    /// Trusted without restricting anyone else (`--trust-peer`, and `kappalog cluster`'s
    /// nodes): fence power, no stranger slot, no budgets.
    pub trusted: BTreeSet<Author>,
    /// When set, only these authors' entries are stored and forwarded.
    pub accept_authors: Option<BTreeSet<Author>>,
    /// New feeds per hour per stranger source.
    pub new_feeds_per_hour: u64,
    /// New feeds per hour from all strangers together.
    pub stranger_new_feeds_per_hour: u64,
    /// The most feeds the node holds; a new feed past it is skipped, whoever offers it.
    pub max_feeds: u64,
    /// Inbound connections (pending or in session) accepted from one IP address.
    pub max_inbound_per_addr: usize,
    /// Bytes per second sent to the strangers of one source, after the burst.
    pub stranger_send_rate: u64,
    /// Bytes sent to the strangers of one source before `stranger_send_rate` applies.
    pub stranger_send_burst: u64,
    /// Reconciliation items and ranges held for all stranger sessions together.
    pub stranger_reconcile_items: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_peers: BTreeSet::new(),
            trusted: BTreeSet::new(),
            accept_authors: None,
            new_feeds_per_hour: NEW_FEEDS_PER_HOUR,
            stranger_new_feeds_per_hour: STRANGER_NEW_FEEDS_PER_HOUR,
            max_feeds: MAX_FEEDS,
            max_inbound_per_addr: MAX_INBOUND_PER_ADDR,
            stranger_send_rate: STRANGER_SEND_RATE,
            stranger_send_burst: STRANGER_SEND_BURST,
            stranger_reconcile_items: STRANGER_RECONCILE_ITEMS,
        }
    }
}

/// Why an `--accept-authors` file cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// Reading the file failed.
    #[error("reading {path}: {error}")]
    Read {
        /// The file, as the operator named it.
        path: String,
        /// The read's error.
        error: std::io::Error,
    },
    /// A line is not an author key.
    #[error("{path} line {line}: {error}")]
    BadAuthor {
        /// The file, as the operator named it.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the key.
        error: String,
    },
}

/// Parses an `--accept-authors` file: one author hex per line; blank lines and `#` comments
/// (whole-line or trailing) are ignored.
pub fn parse_author_list(text: &str, path: &str) -> Result<BTreeSet<Author>, PolicyFileError> {
    let mut authors = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let author = line
            .parse::<Author>()
            .map_err(|e| PolicyFileError::BadAuthor {
                path: path.to_owned(),
                line: i + 1,
                error: e.to_string(),
            })?;
        authors.insert(author);
    }
    Ok(authors)
}

/// Reads an `--accept-authors` file.
pub fn read_author_list(path: &Path) -> Result<BTreeSet<Author>, PolicyFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| PolicyFileError::Read {
        path: shown.clone(),
        error,
    })?;
    parse_author_list(&text, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> Author {
        Author([n; 32])
    }

    #[test]
    fn author_list_file() {
        let hex1 = "01".repeat(32);
        let hex2 = "02".repeat(32);
        let text = format!("# policy\n{hex1}\n\n  {hex2}  # second\n");
        assert_eq!(
            parse_author_list(&text, "f").unwrap(),
            BTreeSet::from([a(1), a(2)])
        );
        let err = parse_author_list("# x\nnot-hex\n", "f").unwrap_err();
        assert!(err.to_string().starts_with("f line 2:"), "{err}");
    }
}
