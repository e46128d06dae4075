//! C2SP tlog-policy files: which logs are trusted, which witnesses are known, and the quorum
//! of witnesses whose cosignatures make a checkpoint valid.
//!
//! # Syntax (one item per line; items separated by runs of spaces and tabs)
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> all|any|<k> <member>...
//! quorum <name>|none
//! # comment; blank lines are ignored too
//! ```
//!
//! Rules, each its own [`PolicyError`] variant:
//!
//! - The file is at most [`MAX_POLICY_BYTES`] and [`MAX_POLICY_LINES`]; its bytes are tab,
//!   newline, printable ASCII or any byte with the high bit set (names, URLs and comments may
//!   hold UTF-8, compared as opaque bytes). A last line without a newline is accepted:
//!   policies are written by hand, and the missing newline changes no meaning.
//! - Log keys are Ed25519 note keys (type `0x01`: a log signs its checkpoints with it),
//!   witness keys are cosigner keys (type `0x04`); other types are refused. No two logs and
//!   no two witnesses share a public key.
//! - Witnesses and groups share one namespace; a name is defined once; `none` is reserved.
//! - A group lists at least one member, each defined on an *earlier* line (so groups nest
//!   without cycles, and evaluation is one pass in file order) and listed at most once;
//!   `k` is decimal without leading zeros, `1 <= k <= n`; `any` is k = 1, `all` is k = n.
//! - Exactly one `quorum` line, naming a witness or group defined earlier, or `none`.
//! - At most [`MAX_LOGS`] logs, [`MAX_WITNESSES`] witnesses and [`MAX_GROUPS`] groups.
//!
//! [`Policy::quorum_met`] evaluates the quorum against the set of witnesses whose
//! cosignatures verified.

use std::collections::{BTreeMap, BTreeSet};

use crate::tlog::checkpoint::parse_size;
use crate::tlog::vkey::{KeyType, VerifierKey, VkeyError};

/// The largest policy file read: a policy at the recommended 32 logs, 32 witnesses and 32
/// groups with URLs is under 16 KiB; four times that leaves room for comments.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// The most lines a policy file may have, comments and blank lines included.
pub const MAX_POLICY_LINES: usize = 1024;
/// The most logs: twice the 32 the spec recommends supporting at least.
pub const MAX_LOGS: usize = 64;
/// The most witnesses: twice the 32 the spec recommends supporting at least.
pub const MAX_WITNESSES: usize = 64;
/// The most groups: twice the 32 the spec recommends supporting at least.
pub const MAX_GROUPS: usize = 64;

/// The reserved name of the empty quorum.
const NONE: &[u8] = b"none";

/// Why a policy file was refused; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Larger than [`MAX_POLICY_BYTES`].
    #[error("policy is {0} bytes, more than {MAX_POLICY_BYTES}")]
    TooLarge(usize),
    /// More than [`MAX_POLICY_LINES`] lines.
    #[error("policy has more than {MAX_POLICY_LINES} lines")]
    TooManyLines,
    /// A control character other than tab and newline, or DEL.
    #[error("line {line}: byte 0x{byte:02x} is not allowed")]
    Char {
        /// Where.
        line: usize,
        /// The byte.
        byte: u8,
    },
    /// A first item other than `log`, `witness`, `group`, `quorum`.
    #[error("line {line}: unknown keyword")]
    UnknownKeyword {
        /// Where.
        line: usize,
    },
    /// The wrong number of items for the keyword.
    #[error("line {line}: wrong number of items")]
    Arity {
        /// Where.
        line: usize,
    },
    /// A vkey that does not parse (or is not UTF-8).
    #[error("line {line}: {source}")]
    Vkey {
        /// Where.
        line: usize,
        /// Why.
        source: VkeyError,
    },
    /// A log key that is not type `0x01`, or a witness key that is not type `0x04`.
    #[error("line {line}: key of type {found:?} where {expected:?} is required")]
    KeyType {
        /// Where.
        line: usize,
        /// The key's type.
        found: KeyType,
        /// The type required.
        expected: KeyType,
    },
    /// A second log or witness with a public key already listed.
    #[error("line {line}: duplicate public key")]
    DuplicateKey {
        /// Where.
        line: usize,
    },
    /// A name defined twice, or `none` defined.
    #[error("line {line}: name already defined or reserved")]
    DuplicateName {
        /// Where.
        line: usize,
    },
    /// A member or quorum naming nothing defined on an earlier line (or `none` as a member).
    #[error("line {line}: name not defined on an earlier line")]
    UndefinedName {
        /// Where.
        line: usize,
    },
    /// A group listing one member twice.
    #[error("line {line}: group member listed twice")]
    DuplicateMember {
        /// Where.
        line: usize,
    },
    /// A threshold that is not `all`, `any` or decimal `1 <= k <= n`.
    #[error("line {line}: threshold must be all, any or 1..=n")]
    Threshold {
        /// Where.
        line: usize,
    },
    /// A second `quorum` line.
    #[error("line {line}: a second quorum line")]
    SecondQuorum {
        /// Where.
        line: usize,
    },
    /// No `quorum` line.
    #[error("policy has no quorum line")]
    NoQuorum,
    /// More than the limit of logs, witnesses or groups.
    #[error("line {line}: more than the limit of {what}")]
    TooMany {
        /// Where.
        line: usize,
        /// `logs`, `witnesses` or `groups`.
        what: &'static str,
    },
}

/// A trusted log: its checkpoints verify under `vkey`, whose name is its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// The log's Ed25519 note key.
    pub vkey: VerifierKey,
    /// Where to reach it, opaque.
    pub url: Option<Vec<u8>>,
}

/// A known witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    /// Its name in this policy (opaque bytes, meaningless outside the file).
    pub name: Vec<u8>,
    /// Its cosigner key.
    pub vkey: VerifierKey,
    /// Where to reach it, opaque.
    pub url: Option<Vec<u8>>,
}

/// A node of the quorum: a witness or a k-of-n group of earlier nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group { k: usize, members: Vec<usize> },
}

/// A parsed, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    logs: Vec<Log>,
    witnesses: Vec<Witness>,
    /// Witnesses and groups in definition order; a group's members are earlier indexes.
    members: Vec<Member>,
    /// The quorum's index in `members`; None for `quorum none`.
    quorum: Option<usize>,
}

impl Policy {
    /// Parses a policy file under every rule of the module docs.
    pub fn parse(bytes: &[u8]) -> Result<Policy, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge(bytes.len()));
        }
        let mut builder = Builder::default();
        for (i, raw_line) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            if line > MAX_POLICY_LINES {
                return Err(PolicyError::TooManyLines);
            }
            if let Some(&byte) = raw_line
                .iter()
                .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
            {
                return Err(PolicyError::Char { line, byte });
            }
            let items: Vec<&[u8]> = raw_line
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|item| !item.is_empty())
                .collect();
            match items.first() {
                None => {}
                Some(first) if first.starts_with(b"#") => {}
                Some(_) => builder.line(line, &items)?,
            }
        }
        builder.finish()
    }

    /// The trusted logs.
    pub fn logs(&self) -> &[Log] {
        &self.logs
    }
    /// The known witnesses; [`Policy::quorum_met`] takes indexes into this slice.
    pub fn witnesses(&self) -> &[Witness] {
        &self.witnesses
    }

    /// Whether the witnesses at the indexes in `cosigned` (into [`Policy::witnesses`]) meet
    /// the quorum. One pass in definition order: a group's members are always earlier.
    pub fn quorum_met(&self, cosigned: &BTreeSet<usize>) -> bool {
        let Some(quorum) = self.quorum else {
            return true;
        };
        let mut met = Vec::with_capacity(self.members.len());
        for member in &self.members {
            met.push(match member {
                Member::Witness(w) => cosigned.contains(w),
                Member::Group { k, members } => members.iter().filter(|&&m| met[m]).count() >= *k,
            });
        }
        met[quorum]
    }
}

/// The policy under construction, line by line.
#[derive(Default)]
struct Builder {
    logs: Vec<Log>,
    witnesses: Vec<Witness>,
    members: Vec<Member>,
    names: BTreeMap<Vec<u8>, usize>,
    groups: usize,
    /// `Some(None)` once `quorum none` was read.
    quorum: Option<Option<usize>>,
}

impl Builder {
    fn line(&mut self, line: usize, items: &[&[u8]]) -> Result<(), PolicyError> {
        match items[0] {
            b"log" => self.log(line, &items[1..]),
            b"witness" => self.witness(line, &items[1..]),
            b"group" => self.group(line, &items[1..]),
            b"quorum" => self.quorum(line, &items[1..]),
            _ => Err(PolicyError::UnknownKeyword { line }),
        }
    }

    fn log(&mut self, line: usize, args: &[&[u8]]) -> Result<(), PolicyError> {
        let (vkey, url) = match args {
            [vkey] => (vkey, None),
            [vkey, url] => (vkey, Some(url.to_vec())),
            _ => return Err(PolicyError::Arity { line }),
        };
        if self.logs.len() == MAX_LOGS {
            return Err(PolicyError::TooMany { line, what: "logs" });
        }
        let vkey = parse_vkey(line, vkey, KeyType::Ed25519)?;
        if self.logs.iter().any(|l| l.vkey.key() == vkey.key()) {
            return Err(PolicyError::DuplicateKey { line });
        }
        self.logs.push(Log { vkey, url });
        Ok(())
    }

    fn witness(&mut self, line: usize, args: &[&[u8]]) -> Result<(), PolicyError> {
        let (name, vkey, url) = match args {
            [name, vkey] => (name, vkey, None),
            [name, vkey, url] => (name, vkey, Some(url.to_vec())),
            _ => return Err(PolicyError::Arity { line }),
        };
        if self.witnesses.len() == MAX_WITNESSES {
            return Err(PolicyError::TooMany {
                line,
                what: "witnesses",
            });
        }
        let vkey = parse_vkey(line, vkey, KeyType::CosignatureV1)?;
        if self.witnesses.iter().any(|w| w.vkey.key() == vkey.key()) {
            return Err(PolicyError::DuplicateKey { line });
        }
        self.define(line, name)?;
        self.members.push(Member::Witness(self.witnesses.len()));
        self.witnesses.push(Witness {
            name: name.to_vec(),
            vkey,
            url,
        });
        Ok(())
    }

    fn group(&mut self, line: usize, args: &[&[u8]]) -> Result<(), PolicyError> {
        let [name, threshold, listed @ ..] = args else {
            return Err(PolicyError::Arity { line });
        };
        if listed.is_empty() {
            return Err(PolicyError::Arity { line });
        }
        if self.groups == MAX_GROUPS {
            return Err(PolicyError::TooMany {
                line,
                what: "groups",
            });
        }
        let mut members = Vec::with_capacity(listed.len());
        for member in listed {
            let index = self.lookup(line, member)?;
            if members.contains(&index) {
                return Err(PolicyError::DuplicateMember { line });
            }
            members.push(index);
        }
        let k = match *threshold {
            b"all" => members.len(),
            b"any" => 1,
            digits => std::str::from_utf8(digits)
                .ok()
                .and_then(parse_size)
                .and_then(|k| usize::try_from(k).ok())
                .filter(|&k| k >= 1 && k <= members.len())
                .ok_or(PolicyError::Threshold { line })?,
        };
        self.define(line, name)?;
        self.groups += 1;
        self.members.push(Member::Group { k, members });
        Ok(())
    }

    fn quorum(&mut self, line: usize, args: &[&[u8]]) -> Result<(), PolicyError> {
        let [name] = args else {
            return Err(PolicyError::Arity { line });
        };
        if self.quorum.is_some() {
            return Err(PolicyError::SecondQuorum { line });
        }
        let quorum = if *name == NONE {
            None
        } else {
            Some(self.lookup(line, name)?)
        };
        self.quorum = Some(quorum);
        Ok(())
    }

    /// Claims `name` for the member about to be pushed.
    fn define(&mut self, line: usize, name: &[u8]) -> Result<(), PolicyError> {
        if name == NONE || self.names.contains_key(name) {
            return Err(PolicyError::DuplicateName { line });
        }
        self.names.insert(name.to_vec(), self.members.len());
        Ok(())
    }

    fn lookup(&self, line: usize, name: &[u8]) -> Result<usize, PolicyError> {
        self.names
            .get(name)
            .copied()
            .ok_or(PolicyError::UndefinedName { line })
    }

    fn finish(self) -> Result<Policy, PolicyError> {
        let quorum = self.quorum.ok_or(PolicyError::NoQuorum)?;
        Ok(Policy {
            logs: self.logs,
            witnesses: self.witnesses,
            members: self.members,
            quorum,
        })
    }
}

fn parse_vkey(line: usize, text: &[u8], expected: KeyType) -> Result<VerifierKey, PolicyError> {
    let vkey: VerifierKey = std::str::from_utf8(text)
        .map_err(|_| VkeyError::Shape)
        .and_then(str::parse)
        .map_err(|source| PolicyError::Vkey { line, source })?;
    if vkey.key_type() != expected {
        return Err(PolicyError::KeyType {
            line,
            found: vkey.key_type(),
            expected,
        });
    }
    Ok(vkey)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
