//! An index database with exactly the schema of docs/QUERY.md, written by the tests
//! themselves (standing in for the indexer, which is built beside the query engine), and a
//! node served over real HTTP with a query engine the test holds.

use std::ops::ControlFlow;
use std::path::Path;

use kappalog::entry::Entry;
use kappalog::hash::Hash;
use kappalog::http::HttpConfig;
use kappalog::identity::Author;
use kappalog::node::Node;
use kappalog::query::{index_path, QueryConfig, QueryEngine};
use kappalog::store::format::{FILE_HEADER_BYTES, SCAN_CHUNK_BYTES};
use kappalog::store::StoreReader;
use rusqlite::{params, Connection};

use super::identity;
use super::serve::{serve, Server};

/// docs/QUERY.md's tables, layout version 1.
pub const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE entries (
        author TEXT NOT NULL, seq INTEGER NOT NULL, timestamp INTEGER NOT NULL,
        prev TEXT, value INTEGER NOT NULL, data TEXT NOT NULL, hash TEXT NOT NULL,
        PRIMARY KEY (author, seq)
    ) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    PRAGMA user_version = 1;
";

/// A writable connection to `DATA_DIR/index/index.sqlite`, as the indexer would hold.
pub struct IndexDb {
    pub conn: Connection,
}

impl IndexDb {
    /// Creates the index of the node `node` in `data_dir`, covering nothing yet.
    pub fn create(data_dir: &Path, node: &Author) -> IndexDb {
        let path = index_path(data_dir);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('node', ?1), ('covered', ?2), \
             ('last_offset', NULL), ('last_hash', NULL), ('clean', 0)",
            params![node.to_string(), i64::try_from(FILE_HEADER_BYTES).unwrap()],
        )
        .unwrap();
        IndexDb { conn }
    }

    /// Inserts `entry` as the indexer does (u64 above i64::MAX as 20-digit text).
    pub fn insert(&self, entry: &Entry, hash: &Hash) {
        insert(&self.conn, entry, hash);
    }

    /// Records how far the index covers.
    pub fn cover(&self, covered: u64, last: Option<(u64, &Hash)>) {
        cover(&self.conn, covered, last);
    }

    /// Indexes every record of `reader`'s log in log order, in one transaction, and covers
    /// up to its committed end.
    pub fn index_log(&mut self, reader: &StoreReader) {
        let end = reader.committed_end();
        let mut records = Vec::new();
        reader
            .for_each_record_between(FILE_HEADER_BYTES, end, SCAN_CHUNK_BYTES, |offset, e, h| {
                records.push((offset, e.clone(), *h));
                ControlFlow::Continue(())
            })
            .unwrap();
        let tx = self.conn.transaction().unwrap();
        for (_, entry, hash) in &records {
            insert(&tx, entry, hash);
        }
        cover(&tx, end, records.last().map(|(o, _, h)| (*o, h)));
        tx.commit().unwrap();
    }
}

fn insert(conn: &Connection, entry: &Entry, hash: &Hash) {
    conn.execute(
        "INSERT OR REPLACE INTO entries VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            entry.author.to_string(),
            u64_value(entry.seq),
            u64_value(entry.timestamp),
            entry.prev.map(|p| p.to_string()),
            entry.value,
            entry.data,
            hash.to_string(),
        ],
    )
    .unwrap();
}

fn cover(conn: &Connection, covered: u64, last: Option<(u64, &Hash)>) {
    use rusqlite::types::Value;
    let set = |key: &str, value: Value| {
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )
        .unwrap();
    };
    set("covered", Value::Integer(i64::try_from(covered).unwrap()));
    set(
        "last_offset",
        last.map_or(Value::Null, |(o, _)| {
            Value::Integer(i64::try_from(o).unwrap())
        }),
    );
    set(
        "last_hash",
        last.map_or(Value::Null, |(_, h)| Value::Text(h.to_string())),
    );
}

fn u64_value(n: u64) -> rusqlite::types::Value {
    match i64::try_from(n) {
        Ok(i) => rusqlite::types::Value::Integer(i),
        Err(_) => rusqlite::types::Value::Text(format!("{n:020}")),
    }
}

/// A node (identity 21) served over real HTTP with a query engine built from `config`,
/// its index created (covering nothing) and held by the test.
pub struct QueryNode {
    pub server: Server,
    pub engine: QueryEngine,
    pub index: IndexDb,
}

pub async fn start(config: QueryConfig) -> QueryNode {
    start_with(config, |_| {}).await
}

/// A node (identity 22) served over real HTTP with its real indexer running
/// (`kappalog::index::start`) and a query engine over that index, as `kappalog run` has.
pub async fn start_indexed(config: QueryConfig) -> (Server, kappalog::index::IndexHandle) {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), identity(22)).unwrap();
    let indexer = kappalog::index::start(
        &node,
        kappalog::views::Views::open(node.data_dir()).unwrap(),
    );
    let engine = QueryEngine::new(index_path(dir.path()), config);
    let http = HttpConfig {
        query: Some(engine),
        index: Some(indexer.clone()),
        ..HttpConfig::default()
    };
    (serve(node, dir, http).await, indexer)
}

/// [`start`], with `seed` run on the node before it serves (to append entries).
pub async fn start_with(config: QueryConfig, seed: impl FnOnce(&Node)) -> QueryNode {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = Node::open_with_identity(dir.path(), identity(21)).unwrap();
    seed(&node);
    let index = IndexDb::create(dir.path(), &node.author());
    let engine = QueryEngine::new(index_path(dir.path()), config);
    let http = HttpConfig {
        query: Some(engine.clone()),
        ..HttpConfig::default()
    };
    QueryNode {
        server: serve(node, dir, http).await,
        engine,
        index,
    }
}

/// `text` percent-encoded for a query string.
pub fn encode(text: &str) -> String {
    kappalog::query::client::percent_encode(text)
}
