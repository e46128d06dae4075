//! The row of `entries` an entry projects to (docs/QUERY.md, "The table `entries`"): pure,
//! a function of the entry and its hash only, so two nodes holding the same entries write
//! the same rows whatever order they arrived in.

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};

use crate::entry::Entry;
use crate::hash::Hash;

/// How many characters a u64 above `i64::MAX` is padded to: `u64::MAX` has 20 digits.
pub const U64_TEXT_DIGITS: usize = 20;

/// A u64 as SQLite keeps it in `entries`: an INTEGER up to 2^63-1, above it TEXT of its
/// decimal digits zero-padded to [`U64_TEXT_DIGITS`]. SQLite sorts every INTEGER before
/// every TEXT and equal-length digit strings in numeric order, so `ORDER BY` keeps the u64
/// order, and no value is rounded (a REAL would round above 2^53).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlU64 {
    /// The value fits an i64.
    Integer(i64),
    /// The value is above `i64::MAX`: its 20 digits.
    Text(String),
}

impl SqlU64 {
    /// The SQL form of `value`.
    pub fn new(value: u64) -> SqlU64 {
        match i64::try_from(value) {
            Ok(small) => SqlU64::Integer(small),
            Err(_) => SqlU64::Text(format!("{value:0width$}", width = U64_TEXT_DIGITS)),
        }
    }
}

impl ToSql for SqlU64 {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlU64::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            SqlU64::Text(digits) => ToSqlOutput::Borrowed(ValueRef::Text(digits.as_bytes())),
        })
    }
}

/// One row of `entries`, borrowing the entry's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    /// The author, 64 lowercase hex.
    pub author: String,
    /// The seq (see [`SqlU64`]).
    pub seq: SqlU64,
    /// The author's claimed timestamp in ms (see [`SqlU64`]).
    pub timestamp: SqlU64,
    /// The previous entry's hash in hex; `None` (NULL) at seq 1.
    pub prev: Option<String>,
    /// The signed value.
    pub value: i64,
    /// The data, as signed.
    pub data: &'a str,
    /// The entry's hash, 64 lowercase hex.
    pub hash: String,
}

impl<'a> Row<'a> {
    /// The row `entry` (whose hash is `hash`) projects to.
    pub fn project(entry: &'a Entry, hash: &Hash) -> Row<'a> {
        Row {
            author: entry.author.to_hex(),
            seq: SqlU64::new(entry.seq),
            timestamp: SqlU64::new(entry.timestamp),
            prev: entry.prev.map(|prev| prev.to_hex()),
            value: entry.value,
            data: &entry.data,
            hash: hash.to_hex(),
        }
    }

    /// The row's columns in the order of `entries` (and of [`super::schema::INSERT_ROW`]).
    pub fn params(&self) -> [&dyn ToSql; 7] {
        [
            &self.author,
            &self.seq,
            &self.timestamp,
            &self.prev,
            &self.value,
            &self.data,
            &self.hash,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::UnsignedEntry;
    use crate::identity::Identity;
    use rusqlite::Connection;

    #[test]
    fn u64_fields_are_integers_up_to_i64_max_then_padded_text() {
        assert_eq!(SqlU64::new(0), SqlU64::Integer(0));
        assert_eq!(SqlU64::new(i64::MAX as u64), SqlU64::Integer(i64::MAX));
        assert_eq!(
            SqlU64::new(i64::MAX as u64 + 1),
            SqlU64::Text("09223372036854775808".into())
        );
        assert_eq!(
            SqlU64::new(u64::MAX),
            SqlU64::Text("18446744073709551615".into())
        );
    }

    /// The order the spec promises, checked on SQLite itself: values around 2^63 and the
    /// extremes, inserted shuffled, come back from `ORDER BY` in u64 order.
    #[test]
    fn order_by_keeps_the_u64_order_around_2_pow_63() {
        let edge = i64::MAX as u64;
        let mut values = vec![
            0,
            1,
            9,
            10,
            1_700_000_000_000,
            edge - 1,
            edge,
            edge + 1,
            edge + 2,
            edge + 10,
            10_000_000_000_000_000_000,
            u64::MAX - 1,
            u64::MAX,
        ];
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(v)").unwrap();
        let mut shuffled = values.clone();
        shuffled.reverse();
        shuffled.swap(0, 5);
        for v in &shuffled {
            conn.execute("INSERT INTO t(v) VALUES (?1)", [SqlU64::new(*v)])
                .unwrap();
        }
        let mut stmt = conn
            .prepare("SELECT CAST(v AS TEXT) FROM t ORDER BY v")
            .unwrap();
        let back: Vec<u64> = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .unwrap()
            .map(|text| text.unwrap().parse().unwrap())
            .collect();
        values.sort_unstable();
        assert_eq!(back, values);
    }

    #[test]
    fn a_first_entry_has_no_prev_and_hex_fields() {
        let identity = Identity::from_seed([3; 32]);
        let (first, first_hash) = UnsignedEntry {
            author: identity.author(),
            seq: 1,
            timestamp: u64::MAX,
            prev: None,
            value: -5,
            data: "{\"k\":1}".into(),
        }
        .sign(&identity);
        let row = Row::project(&first, &first_hash);
        assert_eq!(row.author, identity.author().to_hex());
        assert_eq!(row.author.len(), 64);
        assert_eq!(row.seq, SqlU64::Integer(1));
        assert_eq!(row.timestamp, SqlU64::Text("18446744073709551615".into()));
        assert_eq!(row.prev, None);
        assert_eq!((row.value, row.data), (-5, "{\"k\":1}"));
        assert_eq!(row.hash, first_hash.to_hex());

        let (second, second_hash) = UnsignedEntry {
            author: identity.author(),
            seq: 2,
            timestamp: 7,
            prev: Some(first_hash),
            value: 0,
            data: String::new(),
        }
        .sign(&identity);
        let row = Row::project(&second, &second_hash);
        assert_eq!(row.prev, Some(first_hash.to_hex()));
        assert!(row.hash.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    }
}
