//! Reading CSV into entries, record by record, with bounded memory.
//!
//! Records are split by `csv_core` (RFC 4180 quoting; `\n`, `\r` and `\r\n` all end a
//! record; a UTF-8 byte order mark at the very start is dropped). Its output buffer is
//! fixed at [`MAX_CSV_RECORD_BYTES`] + 1 bytes: when a record's content overflows it, the
//! rest of the record is read and thrown away as it streams by, and the record is rejected
//! with [`RejectReason::RecordTooLong`]. Field ends are counted the same way, so a line of ten
//! million commas costs no memory either.
//!
//! Line numbers are 1-based and count `\n` bytes; a record's line is the line of its first
//! byte (a record whose quoted `data` spans lines reports where it starts). Blank lines are
//! skipped before a record starts, so they never shift the line a record reports.
//!
//! A record is, in this order: skipped if it is exactly the header; rejected if it is too
//! long or has not 8 fields; parsed field by field in column order (the first bad field is
//! the reason); checked with [`validate::check_shape`] (data length, seq, prev shape) and
//! [`validate::check_claimed_hash`]. Signatures and chain links are the store's business.

use std::io::{self, BufRead, BufReader, Read};

use csv_core::{ReadRecordResult, Reader as CoreReader};
use serde::{Serialize, Serializer};

use crate::csv::{COLUMNS, MAX_CSV_RECORD_BYTES};
use crate::entry::Entry;
use crate::hash::{Hash, ParseBytesError};
use crate::identity::{Author, Signature};
use crate::validate::{self, ValidationError};

/// How many characters of a bad field a reason quotes.
const QUOTED_FIELD_CHARS: usize = 40;
/// Input buffer size: records are copied out of it, so it need not hold a whole record.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// One record of the input: an entry, or why it was not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedLine {
    /// The record is a well-shaped entry whose hash column matches its fields.
    Entry(ParsedEntry),
    /// The record is skipped; the import goes on with the next one.
    Rejected(Rejection),
}

/// An entry read from the input, with the line it came from and its (checked) hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedEntry {
    /// The 1-based line the record starts on.
    pub line: u64,
    /// The entry; its shape is checked, its signature and chain link are not.
    pub entry: Entry,
    /// The entry hash: the `hash` column, equal to the hash computed from the fields.
    pub hash: Hash,
}

/// A record that was skipped, where, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The 1-based line the record starts on.
    pub line: u64,
    /// Why it is not an entry (serialised as its message).
    pub reason: RejectReason,
}

/// Why a record is not an entry. The message names the field and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The record's content is over [`MAX_CSV_RECORD_BYTES`]; the rest was read and dropped.
    #[error("record is longer than {MAX_CSV_RECORD_BYTES} bytes")]
    RecordTooLong,
    /// The record has not the 8 columns of [`COLUMNS`].
    #[error("wrong field count: {found} != 8")]
    FieldCount {
        /// The fields the record has.
        found: u64,
    },
    /// A field's bytes are not UTF-8.
    #[error("invalid UTF-8 in `{field}`")]
    NotUtf8 {
        /// The column's name.
        field: &'static str,
    },
    /// A key, hash or signature column is not hex of the right length.
    #[error("bad hex in `{field}`: {error}")]
    BadHex {
        /// The column's name.
        field: &'static str,
        /// What is wrong with the hex.
        error: ParseBytesError,
    },
    /// A number column holds something other than digits (and, for `value`, a sign).
    #[error("`{field}` is not a decimal integer: {text:?}")]
    NotInteger {
        /// The column's name.
        field: &'static str,
        /// The field, quoting at most its first 40 characters.
        text: String,
    },
    /// An unsigned column (`seq`, `timestamp`) holds a negative number.
    #[error("`{field}` must not be negative: {text:?}")]
    Negative {
        /// The column's name.
        field: &'static str,
        /// The field, quoting at most its first 40 characters.
        text: String,
    },
    /// A number that does not fit its column's type (u64, or i64 for `value`).
    #[error("`{field}` is out of range: {text:?}")]
    OutOfRange {
        /// The column's name.
        field: &'static str,
        /// The field, quoting at most its first 40 characters.
        text: String,
    },
    /// A number in another form than the one export writes (which makes every entry one
    /// exact line of text): leading zeros, `-0`.
    #[error("`{field}` is not in canonical form: {text:?} ({rule})")]
    NotCanonical {
        /// The column's name.
        field: &'static str,
        /// The field, quoting at most its first 40 characters.
        text: String,
        /// The canonical-form rule it breaks, in words.
        rule: &'static str,
    },
    /// A field other than `data` in quotes: export never quotes them.
    #[error("`{field}` is quoted; only `data` may be")]
    Quoted {
        /// The column's name.
        field: &'static str,
    },
    /// A validation rule: data too long, seq 0, prev shape, hash mismatch — and, when the
    /// store reports back, chain links and signatures.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// The author is known to be forked (a proof is recorded): its entries are refused.
    #[error("author {author} is known forked: entry refused")]
    ForkedAuthor {
        /// The forked author.
        author: crate::identity::Author,
    },
}

impl Serialize for RejectReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Streams [`ParsedLine`]s out of CSV bytes. Only I/O errors of the underlying reader are
/// errors; everything wrong with the content is a [`Rejection`].
pub struct CsvParser<R: Read> {
    input: BufReader<R>,
    core: CoreReader,
    /// Field content of the current record; one byte over the cap so that "exactly at the
    /// cap" and "over the cap" are told apart.
    content: Vec<u8>,
    ends: [usize; COLUMNS.len() + 1],
    /// `\n` bytes consumed so far.
    lines_done: u64,
}

/// One record as split by `csv_core`, before its fields are interpreted.
struct RawRecord {
    line: u64,
    fields: u64,
    too_long: bool,
    /// Bit `i` set when field `i` (of the first 64) was quoted.
    quoted: u64,
}

/// Follows a record's raw bytes to learn which fields were quoted, which `csv_core` does not
/// say (it hands over the unquoted content).
#[derive(Default)]
struct QuoteScan {
    field: u32,
    at_field_start: bool,
    in_quotes: bool,
    /// A quote just closed the quoted part: another one right after is an escaped `"`.
    just_closed: bool,
    quoted: u64,
}

impl QuoteScan {
    fn new() -> QuoteScan {
        QuoteScan {
            at_field_start: true,
            ..QuoteScan::default()
        }
    }

    fn scan(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.in_quotes {
                if b == b'"' {
                    self.in_quotes = false;
                    self.just_closed = true;
                }
                continue;
            }
            match b {
                b'"' if self.just_closed => self.in_quotes = true,
                b'"' if self.at_field_start => {
                    self.in_quotes = true;
                    if self.field < 64 {
                        self.quoted |= 1 << self.field;
                    }
                }
                b',' => {
                    self.field = self.field.saturating_add(1);
                    self.at_field_start = true;
                    self.just_closed = false;
                    continue;
                }
                _ => {}
            }
            self.at_field_start = false;
            self.just_closed = false;
        }
    }
}

impl<R: Read> CsvParser<R> {
    /// A parser over `input`, buffered here (pass the raw reader). Memory is fixed: about
    /// [`MAX_CSV_RECORD_BYTES`] plus a 64 KiB read buffer, whatever the input holds.
    pub fn new(input: R) -> CsvParser<R> {
        CsvParser {
            input: BufReader::with_capacity(READ_BUFFER_BYTES, input),
            core: CoreReader::new(),
            content: vec![0; MAX_CSV_RECORD_BYTES + 1],
            ends: [0; COLUMNS.len() + 1],
            lines_done: 0,
        }
    }

    /// The next entry or rejection, `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<ParsedLine>> {
        while let Some(raw) = self.read_record()? {
            if raw.too_long {
                return Ok(Some(reject(raw.line, RejectReason::RecordTooLong)));
            }
            if raw.fields != 8 {
                return Ok(Some(reject(
                    raw.line,
                    RejectReason::FieldCount { found: raw.fields },
                )));
            }
            let fields = self.fields();
            if is_header(&fields) {
                continue;
            }
            // Export quotes only `data` (field 5), and only when it must.
            if let Some(i) = (0..8).find(|&i| i != 5 && raw.quoted & (1 << i) != 0) {
                return Ok(Some(reject(
                    raw.line,
                    RejectReason::Quoted { field: COLUMNS[i] },
                )));
            }
            return Ok(Some(match parse_fields(&fields) {
                Ok((entry, hash)) => ParsedLine::Entry(ParsedEntry {
                    line: raw.line,
                    entry,
                    hash,
                }),
                Err(reason) => reject(raw.line, reason),
            }));
        }
        Ok(None)
    }

    /// The 8 fields of the record just read (only called when it has exactly 8).
    fn fields(&self) -> [&[u8]; 8] {
        let mut start = 0;
        std::array::from_fn(|i| {
            // `csv_core` writes ends within the content it wrote, and the record was not
            // too long, so every end is within `content`; `get` keeps that unchecked claim
            // from ever panicking.
            let end = self.ends[i];
            let field = self.content.get(start..end).unwrap_or_default();
            start = end;
            field
        })
    }

    /// Splits off the next record, `None` at the end of the input.
    fn read_record(&mut self) -> io::Result<Option<RawRecord>> {
        self.skip_blank_lines()?;
        let line = self.lines_done.saturating_add(1);
        let (mut out_at, mut ends_at) = (0usize, 0usize);
        let (mut fields, mut too_long) = (0u64, false);
        let mut quotes = QuoteScan::new();
        loop {
            let input = self.input.fill_buf()?;
            let (result, nin, nout, nend) = self.core.read_record(
                input,
                &mut self.content[out_at..],
                &mut self.ends[ends_at..],
            );
            quotes.scan(&input[..nin]);
            self.lines_done = self
                .lines_done
                .saturating_add(count_newlines(&input[..nin]));
            self.input.consume(nin);
            out_at += nout;
            ends_at += nend;
            fields = fields.saturating_add(u64::try_from(nend).unwrap_or(u64::MAX));
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    // Over the cap: keep splitting (to find the record's end) into the same
                    // buffer, discarding what was there.
                    too_long = true;
                    out_at = 0;
                }
                // More fields than a record may have: keep counting them for the reason.
                ReadRecordResult::OutputEndsFull => ends_at = 0,
                ReadRecordResult::Record => {
                    return Ok(Some(RawRecord {
                        line,
                        fields,
                        too_long,
                        quoted: quotes.quoted,
                    }))
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }

    /// Consumes `\r` and `\n` bytes between records (`csv_core` would skip them too, but
    /// then the next record could not tell which line it starts on).
    fn skip_blank_lines(&mut self) -> io::Result<()> {
        loop {
            let input = self.input.fill_buf()?;
            let blank = input
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            self.lines_done = self
                .lines_done
                .saturating_add(count_newlines(&input[..blank]));
            let more = blank == input.len() && blank > 0;
            self.input.consume(blank);
            if !more {
                return Ok(());
            }
        }
    }
}

impl<R: Read> Iterator for CsvParser<R> {
    type Item = io::Result<ParsedLine>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_line().transpose()
    }
}

fn reject(line: u64, reason: RejectReason) -> ParsedLine {
    ParsedLine::Rejected(Rejection { line, reason })
}

fn count_newlines(bytes: &[u8]) -> u64 {
    let n = bytes.iter().filter(|&&b| b == b'\n').count();
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Whether a record is the header line (a byte order mark in front of it is tolerated, as
/// files are concatenated and only the first one's is stripped by the splitter).
fn is_header(fields: &[&[u8]; 8]) -> bool {
    let first = fields[0].strip_prefix(b"\xef\xbb\xbf").unwrap_or(fields[0]);
    first == COLUMNS[0].as_bytes()
        && fields[1..]
            .iter()
            .zip(&COLUMNS[1..])
            .all(|(field, name)| *field == name.as_bytes())
}

/// Interprets the 8 fields of a record as an entry and checks its shape and claimed hash.
fn parse_fields(fields: &[&[u8]; 8]) -> Result<(Entry, Hash), RejectReason> {
    let [author, seq, timestamp, prev, value, data, hash, signature] = *fields;
    let author: Author = hex_field("author", author)?;
    let seq = unsigned_field("seq", seq)?;
    let timestamp = unsigned_field("timestamp", timestamp)?;
    let prev: Option<Hash> = if prev.is_empty() {
        None
    } else {
        Some(hex_field("prev", prev)?)
    };
    let value = signed_field("value", value)?;
    let data = text_field("data", data)?.to_owned();
    let claimed: Hash = hex_field("hash", hash)?;
    let signature: Signature = hex_field("signature", signature)?;
    let entry = Entry {
        author,
        seq,
        timestamp,
        prev,
        value,
        data,
        signature,
    };
    validate::check_shape(&entry)?;
    let computed = entry.hash();
    validate::check_claimed_hash(&claimed, &computed)?;
    Ok((entry, computed))
}

fn text_field<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str, RejectReason> {
    std::str::from_utf8(bytes).map_err(|_| RejectReason::NotUtf8 { field })
}

/// Lowercase hex of the field's exact length (export never writes uppercase).
fn hex_field<T>(field: &'static str, bytes: &[u8]) -> Result<T, RejectReason>
where
    T: std::str::FromStr<Err = ParseBytesError>,
{
    let text = text_field(field, bytes)?;
    let parsed: T = text
        .parse()
        .map_err(|error| RejectReason::BadHex { field, error })?;
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(RejectReason::BadHex {
            field,
            error: ParseBytesError::BadHex("uppercase hex digits; CSV uses lowercase".into()),
        });
    }
    Ok(parsed)
}

/// Decimal digits only: no sign, no spaces, no `+` (Rust's parser would take a `+`).
fn unsigned_field(field: &'static str, bytes: &[u8]) -> Result<u64, RejectReason> {
    let text = text_field(field, bytes)?;
    if let Some(rest) = text.strip_prefix('-') {
        if is_digits(rest) {
            return Err(RejectReason::Negative {
                field,
                text: quote(text),
            });
        }
    }
    integer(field, text, text)
}

/// An optional `-` then decimal digits.
fn signed_field(field: &'static str, bytes: &[u8]) -> Result<i64, RejectReason> {
    let text = text_field(field, bytes)?;
    integer(field, text, text.strip_prefix('-').unwrap_or(text))
}

fn integer<T: std::str::FromStr>(
    field: &'static str,
    text: &str,
    digits: &str,
) -> Result<T, RejectReason> {
    if !is_digits(digits) {
        return Err(RejectReason::NotInteger {
            field,
            text: quote(text),
        });
    }
    let rule = if digits.len() > 1 && digits.starts_with('0') {
        Some("no leading zeros")
    } else if text == "-0" {
        Some("zero has no sign")
    } else {
        None
    };
    if let Some(rule) = rule {
        return Err(RejectReason::NotCanonical {
            field,
            text: quote(text),
            rule,
        });
    }
    // Only digits (and a sign) remain, so the one way to fail is the range.
    text.parse().map_err(|_| RejectReason::OutOfRange {
        field,
        text: quote(text),
    })
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// The start of a bad field, enough to recognise it without echoing a huge one.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED_FIELD_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}
