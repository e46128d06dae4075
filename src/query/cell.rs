//! One value of a query's answer, as SQLite returned it, and how it is written in JSON and
//! CSV (docs/QUERY.md, "What a query answers").
//!
//! JSON: NULL is `null`, INTEGER a number (exact: every i64), a finite REAL a number with a
//! fraction or exponent (`2.0`, `-0.0`), TEXT a string. JSON has no bytes and no infinities,
//! so those are objects no other value writes: a BLOB is `{"blob": "HEX"}` (lowercase hex)
//! and a non-finite REAL `{"real": "Infinity" | "-Infinity" | "NaN"}`. TEXT that is not
//! UTF-8 (SQLite lets `CAST(x'ff' AS TEXT)` through) is written with U+FFFD for each bad
//! sequence; the digest covers its bytes as they are.
//!
//! CSV has no types: NULL is an empty field, numbers as in JSON, non-finite REALs as
//! `Infinity`, `-Infinity`, `NaN`, TEXT as is, BLOB as lowercase hex.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// One value of an answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// A 64-bit signed INTEGER.
    Integer(i64),
    /// A REAL (IEEE-754 binary64).
    Real(f64),
    /// TEXT, as the bytes SQLite returned (UTF-8 unless a statement made it otherwise).
    Text(Vec<u8>),
    /// A BLOB.
    Blob(Vec<u8>),
}

/// What one cell counts for in the cap on bytes returned, besides its payload: its tag and
/// framing, so a million NULLs are not free.
pub const CELL_OVERHEAD_BYTES: usize = 8;

impl Cell {
    /// The cell as rusqlite reads it from a row.
    pub fn from_sql(value: rusqlite::types::ValueRef<'_>) -> Cell {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(r) => Cell::Real(r),
            ValueRef::Text(t) => Cell::Text(t.to_vec()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }

    /// What the cell counts for in the cap on bytes returned.
    pub fn weight(&self) -> usize {
        CELL_OVERHEAD_BYTES
            + match self {
                Cell::Null | Cell::Integer(_) | Cell::Real(_) => 8,
                Cell::Text(bytes) | Cell::Blob(bytes) => bytes.len(),
            }
    }

    /// The CSV field.
    pub fn csv_field(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Integer(i) => i.to_string(),
            Cell::Real(r) => real_text(*r),
            Cell::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Cell::Blob(bytes) => hex::encode(bytes),
        }
    }
}

/// A REAL as text: JSON's form when finite (serde_json writes the shortest form that reads
/// back to the same bits, always with a fraction or exponent), else its name.
fn real_text(r: f64) -> String {
    if r.is_nan() {
        "NaN".into()
    } else if r == f64::INFINITY {
        "Infinity".into()
    } else if r == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        serde_json::to_string(&r).unwrap_or_default()
    }
}

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Null => s.serialize_none(),
            Cell::Integer(i) => s.serialize_i64(*i),
            Cell::Real(r) if r.is_finite() => s.serialize_f64(*r),
            Cell::Real(r) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("real", &real_text(*r))?;
                map.end()
            }
            Cell::Text(bytes) => s.serialize_str(&String::from_utf8_lossy(bytes)),
            Cell::Blob(bytes) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("blob", &hex::encode(bytes))?;
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_every_type_apart() {
        let cells = vec![
            Cell::Null,
            Cell::Integer(i64::MIN),
            Cell::Real(2.0),
            Cell::Real(-0.0),
            Cell::Real(f64::INFINITY),
            Cell::Real(f64::NAN),
            Cell::Text(b"NaN".to_vec()),
            Cell::Text(vec![b'a', 0xff]),
            Cell::Blob(vec![0x00, 0xff]),
        ];
        assert_eq!(
            serde_json::to_string(&cells).unwrap(),
            "[null,-9223372036854775808,2.0,-0.0,{\"real\":\"Infinity\"},{\"real\":\"NaN\"},\
             \"NaN\",\"a\u{fffd}\",{\"blob\":\"00ff\"}]"
        );
    }

    #[test]
    fn csv_fields() {
        let fields: Vec<String> = [
            Cell::Null,
            Cell::Integer(-3),
            Cell::Real(0.5),
            Cell::Real(f64::NEG_INFINITY),
            Cell::Text(b"x,y".to_vec()),
            Cell::Blob(vec![0xab]),
        ]
        .iter()
        .map(Cell::csv_field)
        .collect();
        assert_eq!(fields, ["", "-3", "0.5", "-Infinity", "x,y", "ab"]);
    }
}
