//! Fixtures of the SQL index tests: the table read back as typed values, the rows the log
//! says it should hold, and waiting (bounded, polling) for an indexer to cover the log.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use kappalog::csv::ImportReport;
use kappalog::entry::{Entry, UnsignedEntry};
use kappalog::hash::Hash;
use kappalog::identity::{Author, Identity};
use kappalog::index::row::Row;
use kappalog::index::{index_path, IndexHandle};
use kappalog::node::Node;
use kappalog::store::StoreReader;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::DEADLINE;

/// Every row of `entries` in `(author, seq)` order, each column as SQLite holds it (type
/// included), read through a read-only connection as the query side reads.
pub fn table(data_dir: &Path) -> Vec<Vec<Value>> {
    let conn = Connection::open_with_flags(
        index_path(data_dir),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the index read-only");
    let mut stmt = conn
        .prepare("SELECT * FROM entries ORDER BY author, seq")
        .unwrap();
    let columns = stmt.column_count();
    stmt.query_map([], |row| {
        (0..columns)
            .map(|i| row.get::<_, Value>(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Copies the files of data dir `from` (the log, the forks file; not the index) to `to`.
pub fn copy_store(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// One row as the projection writes it.
pub fn projected(entry: &Entry, hash: &Hash) -> Vec<Value> {
    Row::project(entry, hash)
        .params()
        .iter()
        .map(|column| match column.to_sql().unwrap() {
            ToSqlOutput::Borrowed(value) => match value {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(r) => Value::Real(r),
                ValueRef::Text(t) => Value::Text(String::from_utf8(t.to_vec()).unwrap()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            },
            ToSqlOutput::Owned(value) => value,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// The rows the table must hold for the log `reader` reads: every entry of an author not
/// in `forked`, in `(author, seq)` order.
pub fn expected(reader: &StoreReader, forked: &BTreeSet<Author>) -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    reader
        .for_each_sorted(|entry, hash| {
            if !forked.contains(&entry.author) {
                rows.push(projected(entry, hash));
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    rows
}

/// Rows of `author` in the table.
pub fn rows_of(data_dir: &Path, author: &Author) -> usize {
    let hex = author.to_hex();
    table(data_dir)
        .iter()
        .filter(|row| row[0] == Value::Text(hex.clone()))
        .count()
}

/// Waits (bounded) until `index` covers every entry the log holds now. (Not its committed
/// end: an idle commit marker written after the last append moves the end and wakes no
/// indexer, and holds nothing to index.)
pub async fn wait_covered(index: &IndexHandle, reader: &StoreReader) {
    let (end, last) = reader.end_and_last_entry();
    let mut coverage = index.coverage();
    let covers = move |c: &kappalog::index::Coverage| match last {
        Some((offset, _)) => c.covered > offset,
        None => true,
    };
    tokio::time::timeout(DEADLINE, coverage.wait_for(covers))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the index did not reach {end} (at {:?}, {:?})",
                index.covered_now(),
                index.state()
            )
        })
        .unwrap();
}

/// Imports `csv` into `node` off the async workers, as `POST /import` does.
pub async fn import(node: &Node, csv: Vec<u8>) -> ImportReport {
    let node = node.clone();
    tokio::task::spawn_blocking(move || node.import(csv.as_slice()))
        .await
        .unwrap()
        .unwrap()
}

/// Polls `condition` on a plain thread's terms inside a test runtime (bounded).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A feed of `n` entries by `id` whose data carries `tag` (two tags: two forks of one
/// key), JSON in `data`, and a timestamp above 2^63-1 every seventh entry.
pub fn feed(id: &Identity, n: u64, tag: &str) -> Vec<(Entry, Hash)> {
    let mut out: Vec<(Entry, Hash)> = Vec::new();
    for seq in 1..=n {
        let prev = out.last().map(|(_, h)| *h);
        let timestamp = if seq % 7 == 0 {
            u64::MAX - seq
        } else {
            1_700_000_000_000 + seq
        };
        out.push(
            UnsignedEntry {
                author: id.author(),
                seq,
                timestamp,
                prev,
                value: i64::try_from(seq).unwrap() * 3 - 10,
                data: format!(
                    "{{\"tag\":\"{tag}\",\"seq\":{seq},\"sensor\":\"s-{}\",\"temp\":{}}}",
                    seq % 5,
                    seq % 13
                ),
            }
            .sign(id),
        );
    }
    out
}

/// docs/QUERY.md's worked-example views: each `<!-- view: NAME -->` and the JSON body of
/// `PUT /views/NAME` in the block after it.
pub fn docs_views() -> Vec<(String, serde_json::Value)> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/QUERY.md")).unwrap();
    doc.split("<!-- view: ")
        .skip(1)
        .map(|part| {
            let name = part.split(" -->").next().unwrap().to_owned();
            let body = part
                .split("```json\n")
                .nth(1)
                .unwrap()
                .split("```")
                .next()
                .unwrap();
            (name, serde_json::from_str(body).unwrap())
        })
        .collect()
}
