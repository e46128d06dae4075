//! Peer pins: which key a configured peer must authenticate with (docs/PROTOCOL.md section
//! 9). Trust follows keys, never addresses: whoever answers at a configured address is that
//! peer only if it proves the pinned key.
//!
//! - `--peer AUTHOR@HOST:PORT` (and `POST /peers` with that form) pins `AUTHOR` for the
//!   address: a **configured** pin, fixed for the life of the process.
//! - `--peer HOST:PORT` is pinned on first use: the key that completes the first session
//!   with the address is **learned**, kept in `DATA_DIR/peer-pins` across restarts
//!   ([`render_learned`], [`parse_learned`]) and logged. An operator whose peer rotated its
//!   key unpins it (`DELETE /peers/HOST:PORT`, `kappalog run --unpin HOST:PORT`); the next
//!   session learns the new key.
//! - A different key at a pinned address is a **stranger** there ([`DialCheck::Mismatch`]):
//!   no fence power, no budget exemption, a warning in the log and in `GET /peers`.
//!
//! Threat: anyone who can answer at a configured address (a hijacked DNS name, a reused IP,
//! a man in the middle with the network secret) can authenticate with a key of its own. It
//! could never sign as the pinned key, so it gains nothing a stranger does not have.
//! Learning on first use trusts whoever answers the very first session; `AUTHOR@HOST:PORT`
//! closes that window.
//!
//! Pure: the file's text in, the file's text out; [`super::pin_file`] reads and writes it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::identity::Author;

/// The first line of the pin file.
pub const PIN_FILE_HEADER: &str =
    "# kappalog peer pins: HOST:PORT AUTHOR, the key each configured peer first authenticated with";
/// The most learned pins the file holds: one per configured address, and configured
/// addresses come from the operator, so this only bounds a damaged or hand-edited file.
pub const MAX_PINS: usize = 4096;

/// A configured peer: an address to dial, with or without the key it must prove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// `HOST:PORT`, as given.
    pub addr: String,
    /// The pinned key, for `AUTHOR@HOST:PORT`.
    pub author: Option<Author>,
}

/// Why a `--peer` value or a `POST /peers` address is not a peer spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerSpecError {
    /// The address part (carried: the whole spec) is not `HOST:PORT` with a u16 port.
    #[error("peer {0:?} is not HOST:PORT or AUTHOR@HOST:PORT")]
    BadAddr(String),
    /// The part before `@` is not an author key.
    #[error("peer {spec:?}: the part before @ is not an author (64 hex digits): {error}")]
    BadAuthor {
        /// The whole spec as given (trimmed).
        spec: String,
        /// What is wrong with the key's hex.
        error: String,
    },
}

impl FromStr for PeerSpec {
    type Err = PeerSpecError;

    fn from_str(text: &str) -> Result<PeerSpec, PeerSpecError> {
        let text = text.trim();
        let (author, addr) = match text.split_once('@') {
            Some((author, addr)) => {
                let author = author
                    .parse::<Author>()
                    .map_err(|e| PeerSpecError::BadAuthor {
                        spec: text.to_owned(),
                        error: e.to_string(),
                    })?;
                (Some(author), addr)
            }
            None => (None, text),
        };
        match addr.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty() && !host.contains('@') && port.parse::<u16>().is_ok() =>
            {
                Ok(PeerSpec {
                    addr: addr.to_owned(),
                    author,
                })
            }
            _ => Err(PeerSpecError::BadAddr(text.to_owned())),
        }
    }
}

impl fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.author {
            Some(author) => write!(f, "{author}@{}", self.addr),
            None => f.write_str(&self.addr),
        }
    }
}

/// Where a pin came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinSource {
    /// `AUTHOR@HOST:PORT` from the operator.
    Configured,
    /// Learned on the first session, kept in the pin file.
    Learned,
}

/// What a dialed session's authenticated key means for the address it answered at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialCheck {
    /// The pinned key: the configured peer itself.
    Pinned,
    /// The address had no pin: this key is pinned now (persist the learned pins).
    Learned,
    /// Another key than the pinned one: a stranger at this address.
    Mismatch {
        /// The key the address is pinned to.
        pinned: Author,
    },
}

/// Why an unpin was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnpinError {
    /// The pin was configured by the operator, not learned: only the configuration changes it.
    #[error("{addr} is pinned to {author} by the operator (AUTHOR@HOST:PORT); change the --peer flag or POST /peers with the new key")]
    Configured {
        /// The peer's address.
        addr: String,
        /// The configured key.
        author: Author,
    },
    /// The address (carried) has no pin to forget.
    #[error("{0} has no pinned key")]
    NotPinned(String),
}

/// The pins of one node's configured peers, by address.
#[derive(Clone, Debug, Default)]
pub struct Pins {
    by_addr: BTreeMap<String, (Author, PinSource)>,
}

impl Pins {
    /// Starts from the learned pins of the file.
    pub fn new(learned: BTreeMap<String, Author>) -> Pins {
        Pins {
            by_addr: learned
                .into_iter()
                .map(|(addr, author)| (addr, (author, PinSource::Learned)))
                .collect(),
        }
    }

    /// Pins `author` for `addr` by the operator's word (replacing a learned pin).
    pub fn configure(&mut self, addr: &str, author: Author) {
        self.by_addr
            .insert(addr.to_owned(), (author, PinSource::Configured));
    }

    /// The pin of `addr`, if any.
    pub fn get(&self, addr: &str) -> Option<(Author, PinSource)> {
        self.by_addr.get(addr).copied()
    }

    /// Whether `author` is the pinned key of some configured peer.
    pub fn is_pinned_key(&self, author: &Author) -> bool {
        self.by_addr.values().any(|(a, _)| a == author)
    }

    /// A dialed session to `addr` authenticated as `author`: see [`DialCheck`].
    pub fn check_dialed(&mut self, addr: &str, author: Author) -> DialCheck {
        match self.by_addr.get(addr) {
            Some((pinned, _)) if *pinned == author => DialCheck::Pinned,
            Some((pinned, _)) => DialCheck::Mismatch { pinned: *pinned },
            None => {
                self.by_addr
                    .insert(addr.to_owned(), (author, PinSource::Learned));
                DialCheck::Learned
            }
        }
    }

    /// Forgets the learned pin of `addr`; the next session learns again.
    pub fn unpin(&mut self, addr: &str) -> Result<Author, UnpinError> {
        match self.by_addr.get(addr) {
            None => Err(UnpinError::NotPinned(addr.to_owned())),
            Some((author, PinSource::Configured)) => Err(UnpinError::Configured {
                addr: addr.to_owned(),
                author: *author,
            }),
            Some((author, PinSource::Learned)) => {
                let author = *author;
                self.by_addr.remove(addr);
                Ok(author)
            }
        }
    }

    /// The learned pins, for the file.
    pub fn learned(&self) -> BTreeMap<String, Author> {
        self.by_addr
            .iter()
            .filter(|(_, (_, source))| *source == PinSource::Learned)
            .map(|(addr, (author, _))| (addr.clone(), *author))
            .collect()
    }
}

/// Why the text of a pin file does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinFileError {
    /// A line is not two space-separated fields, or the first is not an address.
    #[error("line {line}: expected HOST:PORT AUTHOR")]
    BadLine {
        /// The 1-based line number.
        line: usize,
    },
    /// A line's second field is not an author key.
    #[error("line {line}: {error}")]
    BadAuthor {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the key.
        error: String,
    },
    /// The file holds more than [`MAX_PINS`] pins.
    #[error("more than {MAX_PINS} pins")]
    TooMany,
}

/// Parses the pin file: [`PIN_FILE_HEADER`], then one `HOST:PORT AUTHOR` per line; blank
/// lines and `#` comments are ignored. A later line for the same address wins.
pub fn parse_learned(text: &str) -> Result<BTreeMap<String, Author>, PinFileError> {
    let mut pins = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(addr), Some(author), None) = (words.next(), words.next(), words.next()) else {
            return Err(PinFileError::BadLine { line: i + 1 });
        };
        let spec: PeerSpec = addr
            .parse()
            .map_err(|_| PinFileError::BadLine { line: i + 1 })?;
        if spec.author.is_some() {
            return Err(PinFileError::BadLine { line: i + 1 });
        }
        let author = author
            .parse::<Author>()
            .map_err(|e| PinFileError::BadAuthor {
                line: i + 1,
                error: e.to_string(),
            })?;
        pins.insert(spec.addr, author);
        if pins.len() > MAX_PINS {
            return Err(PinFileError::TooMany);
        }
    }
    Ok(pins)
}

/// The pin file's text for `learned`: deterministic (ascending by address).
pub fn render_learned(learned: &BTreeMap<String, Author>) -> String {
    let mut out = String::from(PIN_FILE_HEADER);
    out.push('\n');
    for (addr, author) in learned {
        out.push_str(&format!("{addr} {author}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> Author {
        Author([n; 32])
    }

    #[test]
    fn peer_specs_with_and_without_a_key() {
        let hex = "01".repeat(32);
        assert_eq!(
            "127.0.0.1:9080".parse::<PeerSpec>(),
            Ok(PeerSpec {
                addr: "127.0.0.1:9080".into(),
                author: None
            })
        );
        let pinned: PeerSpec = format!("{hex}@node-b:9081").parse().unwrap();
        assert_eq!(pinned.author, Some(a(1)));
        assert_eq!(pinned.addr, "node-b:9081");
        assert_eq!(pinned.to_string(), format!("{hex}@node-b:9081"));
        assert_eq!("[::1]:9080".parse::<PeerSpec>().unwrap().addr, "[::1]:9080");
        for bad in ["node-b", ":9080", "node-b:x", "node-b:70000", "a@b@c:1"] {
            assert!(bad.parse::<PeerSpec>().is_err(), "{bad}");
        }
        assert!(matches!(
            "zz@node-b:1".parse::<PeerSpec>(),
            Err(PeerSpecError::BadAuthor { .. })
        ));
    }

    #[test]
    fn the_first_key_is_learned_and_another_is_a_mismatch() {
        let mut pins = Pins::default();
        assert_eq!(pins.check_dialed("h:1", a(1)), DialCheck::Learned);
        assert_eq!(pins.check_dialed("h:1", a(1)), DialCheck::Pinned);
        assert_eq!(
            pins.check_dialed("h:1", a(2)),
            DialCheck::Mismatch { pinned: a(1) }
        );
        assert!(pins.is_pinned_key(&a(1)));
        assert!(!pins.is_pinned_key(&a(2)));
        // Unpinned, the next key is learned.
        assert_eq!(pins.unpin("h:1"), Ok(a(1)));
        assert_eq!(pins.check_dialed("h:1", a(2)), DialCheck::Learned);
        assert_eq!(pins.learned(), BTreeMap::from([("h:1".to_owned(), a(2))]));
    }

    #[test]
    fn a_configured_pin_is_not_learned_over_nor_unpinned() {
        let mut pins = Pins::new(BTreeMap::from([("h:1".to_owned(), a(9))]));
        pins.configure("h:1", a(1));
        assert_eq!(
            pins.check_dialed("h:1", a(9)),
            DialCheck::Mismatch { pinned: a(1) }
        );
        assert!(matches!(
            pins.unpin("h:1"),
            Err(UnpinError::Configured { .. })
        ));
        assert!(pins.learned().is_empty());
        assert_eq!(
            pins.unpin("other:2"),
            Err(UnpinError::NotPinned("other:2".into()))
        );
    }

    #[test]
    fn the_file_round_trips_and_rejects_damage() {
        let learned = BTreeMap::from([("b:2".to_owned(), a(2)), ("a:1".to_owned(), a(1))]);
        let text = render_learned(&learned);
        assert!(text.starts_with(PIN_FILE_HEADER));
        assert!(text.find("a:1").unwrap() < text.find("b:2").unwrap());
        assert_eq!(parse_learned(&text), Ok(learned));
        assert_eq!(
            parse_learned("a:1\n"),
            Err(PinFileError::BadLine { line: 1 })
        );
        assert!(matches!(
            parse_learned("# x\na:1 nothex\n"),
            Err(PinFileError::BadAuthor { line: 2, .. })
        ));
        assert_eq!(
            parse_learned(&format!("{}@a:1 {}\n", "01".repeat(32), "01".repeat(32))),
            Err(PinFileError::BadLine { line: 1 })
        );
    }
}
