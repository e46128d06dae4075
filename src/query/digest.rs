//! The digest of a query's answer: SHA-256 over a canonical encoding of the columns and the
//! rows returned, so two nodes compare a result without shipping it.
//!
//! The encoding (docs/QUERY.md, "The digest", says the same in prose), all integers
//! big-endian:
//!
//! 1. the 4 ASCII bytes `KQD1` (the encoding's name and version);
//! 2. the number of columns (u64), then each column's name: its length in bytes (u64) and
//!    its UTF-8 bytes;
//! 3. each row returned, in order, each value in column order as a tag byte and a payload:
//!    - `0x00` NULL, no payload;
//!    - `0x01` INTEGER, the i64 (8 bytes, two's complement);
//!    - `0x02` REAL, the IEEE-754 binary64 bits (8 bytes); every NaN as `0x7ff8000000000000`,
//!      `-0.0` kept apart from `0.0`;
//!    - `0x03` TEXT, its length in bytes (u64) and its bytes as SQLite returned them;
//!    - `0x04` BLOB, its length (u64) and its bytes;
//! 4. the number of rows returned (u64) and one byte, `0x01` if the answer was truncated
//!    (a cap stopped it), else `0x00`: a truncated answer never digests like a complete one
//!    with the same rows.

use sha2::{Digest, Sha256};

use super::cell::Cell;

/// The encoding's name and version, the first bytes digested.
pub const DIGEST_MAGIC: &[u8; 4] = b"KQD1";
/// The one NaN every NaN is digested as (SQLite's own, the quiet NaN).
pub const CANONICAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0000;

/// The digest being computed while the rows are read, so the rows need not be walked twice.
pub struct Digester {
    sha: Sha256,
    rows: u64,
}

impl Digester {
    /// Starts a digest over an answer with these columns.
    pub fn new(columns: &[String]) -> Digester {
        let mut sha = Sha256::new();
        sha.update(DIGEST_MAGIC);
        sha.update(len_bytes(columns.len()));
        for name in columns {
            sha.update(len_bytes(name.len()));
            sha.update(name.as_bytes());
        }
        Digester { sha, rows: 0 }
    }

    /// Adds one returned row.
    pub fn row(&mut self, row: &[Cell]) {
        for cell in row {
            self.cell(cell);
        }
        self.rows += 1;
    }

    fn cell(&mut self, cell: &Cell) {
        match cell {
            Cell::Null => self.sha.update([0x00]),
            Cell::Integer(i) => {
                self.sha.update([0x01]);
                self.sha.update(i.to_be_bytes());
            }
            Cell::Real(r) => {
                let bits = if r.is_nan() {
                    CANONICAL_NAN_BITS
                } else {
                    r.to_bits()
                };
                self.sha.update([0x02]);
                self.sha.update(bits.to_be_bytes());
            }
            Cell::Text(bytes) => {
                self.sha.update([0x03]);
                self.sha.update(len_bytes(bytes.len()));
                self.sha.update(bytes);
            }
            Cell::Blob(bytes) => {
                self.sha.update([0x04]);
                self.sha.update(len_bytes(bytes.len()));
                self.sha.update(bytes);
            }
        }
    }

    /// The digest, lowercase hex, of the rows added and whether the answer was truncated.
    pub fn finish(mut self, truncated: bool) -> String {
        self.sha.update(self.rows.to_be_bytes());
        self.sha.update([u8::from(truncated)]);
        hex::encode(self.sha.finalize())
    }
}

/// The digest of a whole answer at once.
pub fn digest(columns: &[String], rows: &[Vec<Cell>], truncated: bool) -> String {
    let mut digester = Digester::new(columns);
    for row in rows {
        digester.row(row);
    }
    digester.finish(truncated)
}

/// A length as the encoding writes it. `usize` is at most 64 bits on every target Rust
/// supports, so the conversion never saturates in practice.
fn len_bytes(len: usize) -> [u8; 8] {
    u64::try_from(len).unwrap_or(u64::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/QUERY.md's worked example, byte for byte: if this test changes, so does the doc.
    pub(crate) fn worked_example() -> (Vec<String>, Vec<Vec<Cell>>) {
        (
            vec!["k".into(), "v".into()],
            vec![
                vec![Cell::Integer(1), Cell::Real(2.5)],
                vec![Cell::Null, Cell::Text(b"hi".to_vec())],
                vec![Cell::Blob(vec![0x00, 0xff]), Cell::Real(-0.0)],
            ],
        )
    }

    #[test]
    fn the_worked_example_encodes_as_documented() {
        let (columns, rows) = worked_example();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"KQD1");
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.push(b'k');
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.push(b'v');
        expected.push(0x01);
        expected.extend_from_slice(&1i64.to_be_bytes());
        expected.push(0x02);
        expected.extend_from_slice(&0x4004_0000_0000_0000u64.to_be_bytes());
        expected.push(0x00);
        expected.push(0x03);
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(b"hi");
        expected.push(0x04);
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&[0x00, 0xff]);
        expected.push(0x02);
        expected.extend_from_slice(&0x8000_0000_0000_0000u64.to_be_bytes());
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.push(0x00);
        assert_eq!(
            digest(&columns, &rows, false),
            hex::encode(Sha256::digest(&expected))
        );
        assert_eq!(digest(&columns, &rows, false), WORKED_EXAMPLE_DIGEST);
    }

    /// The hex printed in docs/QUERY.md.
    pub(crate) const WORKED_EXAMPLE_DIGEST: &str =
        "d6c8338625d0d9f3feb5e2e5f88d637d2aab16d7edb9ea3ebcc7163c03bb07e7";

    #[test]
    fn every_difference_the_encoding_keeps_apart_changes_the_digest() {
        let (columns, rows) = worked_example();
        let base = digest(&columns, &rows, false);
        assert_ne!(base, digest(&columns, &rows, true), "truncated");
        assert_ne!(base, digest(&columns, &rows[..2], false), "a row fewer");
        let renamed = vec!["k".to_string(), "w".to_string()];
        assert_ne!(base, digest(&renamed, &rows, false), "column names");
        let zero = |r: f64| digest(&columns[..1], &[vec![Cell::Real(r)]], false);
        assert_ne!(zero(0.0), zero(-0.0), "-0.0 is not 0.0");
        assert_eq!(zero(f64::NAN), zero(-f64::NAN), "one NaN");
        assert_ne!(zero(f64::INFINITY), zero(f64::NEG_INFINITY));
        let one = |c: Cell| digest(&columns[..1], &[vec![c]], false);
        assert_ne!(one(Cell::Text(b"1".to_vec())), one(Cell::Integer(1)));
        assert_ne!(one(Cell::Text(vec![1])), one(Cell::Blob(vec![1])));
        assert_ne!(one(Cell::Null), one(Cell::Text(Vec::new())));
        // Lengths keep cell boundaries: ("ab","") is not ("a","b").
        let two = |a: &[u8], b: &[u8]| {
            digest(
                &columns,
                &[vec![Cell::Text(a.to_vec()), Cell::Text(b.to_vec())]],
                false,
            )
        };
        assert_ne!(two(b"ab", b""), two(b"a", b"b"));
    }
}
