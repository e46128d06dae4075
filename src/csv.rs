//! CSV export and import. The format is specified for outside readers in `docs/CSV.md`; in
//! short:
//!
//! - header `author,seq,timestamp,prev,value,data,hash,signature` ([`COLUMNS`]), then one
//!   record per entry, ordered by author bytes then seq, `\n` after every record;
//! - `author`, `prev`, `hash`, `signature` are lowercase hex (`prev` empty for seq 1);
//!   `seq`, `timestamp`, `value` are decimal; `data` is the UTF-8 text, quoted only when CSV
//!   requires it (it holds `,`, `"`, `\r` or `\n`), with `"` doubled inside quotes;
//! - import reads any concatenation of exported files (header lines anywhere are skipped,
//!   blank lines are ignored, `\r\n` is accepted), rejects each bad record with its line and
//!   a precise reason and carries on, and never buffers more than
//!   [`MAX_CSV_RECORD_BYTES`] of one record.
//!
//! The pieces, all pure over values, `impl Write` and `impl Read`:
//!
//! - [`export`]: [`CsvWriter`] writes the header and one record per entry;
//! - [`parse`]: [`CsvParser`] turns bytes into [`ParsedLine`]s (an entry or a rejection);
//! - [`plan`]: the plan order of an import, and the streaming steps over it ([`Dedup`] drops
//!   repeats, [`ForkTracker`] finds forks inside the input and against the store);
//!   [`ImportReport`] is what the CLI prints and the HTTP API returns.
//!
//! This module shares its name with the `csv` crate it uses; inside the crate that crate is
//! always spelled `::csv`.

pub mod export;
pub mod parse;
pub mod plan;

pub use export::CsvWriter;
pub use parse::{CsvParser, ParsedEntry, ParsedLine, RejectReason, Rejection};
pub use plan::{
    plan_order, Dedup, ForkDetail, ForkSide, ForkTracker, Forks, ImportReport, Rejections,
    MAX_REPORTED_FORKS, MAX_REPORTED_REJECTIONS,
};

/// The header record, and the order of the fields in every record.
pub const COLUMNS: [&str; 8] = [
    "author",
    "seq",
    "timestamp",
    "prev",
    "value",
    "data",
    "hash",
    "signature",
];

/// The most bytes of field content (after removing CSV quoting, without separators) one
/// record may hold. The longest valid record holds 64 + 20 + 20 + 64 + 20 + 4096 + 64 + 128 =
/// 4476 bytes; the cap leaves room for that and bounds what a hostile file can make the
/// parser hold: a longer record is skipped as it streams by and rejected.
pub const MAX_CSV_RECORD_BYTES: usize = 16 * 1024;
