//! Vetting a view before it is kept (docs/QUERY.md, "Named views"): what `PUT /views/NAME`
//! and `--views FILE` check that needs SQLite.
//!
//! The checks run on a scratch index in memory with the real tables, holding a sample of
//! the node's rows ([`SAMPLE_ROWS`], the first in hash order) plus a few made-up rows, and
//! a **twin** of each: the same author, timestamp, value and data at another seq, with
//! another hash. On it:
//!
//! 1. each index statement is created, and must be exactly one plain `CREATE INDEX` on
//!    `entries` (the authorizer says what it does; not UNIQUE: an entry that broke a
//!    uniqueness rule could not be indexed);
//! 2. the view's statement is prepared as a query is (read-only, the same authorizer), its
//!    parameters bound to the sample values given, or to `''`;
//! 3. it runs on two such scratch indexes holding the same rows inserted in opposite orders
//!    (a scratch `entries` is a rowid table, so a scan, and the tie order of an index or a
//!    sort, follows insertion), and on the first again with `PRAGMA
//!    reverse_unordered_selects` (scans of a statement with no `ORDER BY` run backwards,
//!    the primary key's too): a different set of indexes on another node could pick any
//!    of these plans.
//!    Twins tie on every column but the key, so if any two rows' order is decided by no
//!    `ORDER BY` (or an aggregate folds rows in an undecided order), the two answers differ
//!    and the view is refused: on two nodes it could answer the same rows in different
//!    orders.
//!
//! The check catches an undecided order wherever the sample has rows the view returns;
//! it cannot see an order the sample never exercises (a view filtered on a value no
//! sampled row has, with no sample parameter for it). docs/QUERY.md says so.

use rusqlite::types::Value;

use super::connection::ScratchError;
use super::{QueryConfig, QueryConnection, QueryError, Statement};
use crate::views::definition::{check_sizes, DefinitionError, ViewDef, ViewRequest};

/// Rows of the node's index the check samples.
pub const SAMPLE_ROWS: usize = 256;
/// How far past its original's seq a twin sits.
const TWIN_SEQ_OFFSET: i64 = 1 << 40;

/// Checks `request` as view `name` against `index` (a read-only connection to the node's
/// index; `None` when there is no index yet: the made-up rows alone are used). The view as
/// kept: its index statements as SQLite writes them.
pub fn vet(
    index: Option<&mut QueryConnection>,
    config: &QueryConfig,
    name: &str,
    request: &ViewRequest,
) -> Result<ViewDef, DefinitionError> {
    check_sizes(name, request)?;
    let invalid = |what: &str, e: QueryError| DefinitionError::Invalid(format!("{what}: {e}"));
    let mut rows = made_up_rows();
    if let Some(index) = index {
        match index.sample(SAMPLE_ROWS) {
            Ok(sample) => rows.extend(sample),
            Err(QueryError::NoIndex(_)) => {}
            Err(e) => return Err(invalid("sampling the index", e)),
        }
    }
    let twins: Vec<Vec<Value>> = rows.iter().filter_map(|row| twin(row)).collect();
    rows.extend(twins);
    let scratch_error = |e| match e {
        ScratchError::Index { number, reason } => {
            DefinitionError::Invalid(format!("index {number}: {reason}"))
        }
        ScratchError::Internal(reason) => DefinitionError::Invalid(reason),
    };
    let (mut forward, created) =
        QueryConnection::scratch(config, &rows, &request.indexes).map_err(scratch_error)?;
    rows.reverse();
    let (mut backward, _) =
        QueryConnection::scratch(config, &rows, &request.indexes).map_err(scratch_error)?;
    let names = forward
        .parameters(&request.sql)
        .map_err(|e| invalid("the view's sql", e))?;
    for given in request.params.keys() {
        if !names.contains(given) {
            return Err(DefinitionError::Invalid(format!(
                "sample parameter {given}: the view's sql has no :{given}"
            )));
        }
    }
    let statement = Statement {
        sql: request.sql.clone(),
        params: names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    request.params.get(n).cloned().unwrap_or_default(),
                )
            })
            .collect(),
    };
    let run = |scratch: &mut QueryConnection| {
        scratch
            .run(&statement)
            .map(|answer| answer.digest)
            .map_err(|e| invalid("the view's sql", e))
    };
    let one_way = run(&mut forward)?;
    let other_way = run(&mut backward)?;
    forward
        .reverse_unordered_selects(true)
        .map_err(|e| invalid("the order check", e))?;
    let reversed_scans = run(&mut forward)?;
    if one_way != other_way || one_way != reversed_scans {
        return Err(DefinitionError::Order(format!(
            "the view's result order is not total: rows that tie come out in a different order \
             when the table is read in another order, so two nodes could answer differently. {}",
            order_advice(&request.sql)
        )));
    }
    Ok(ViewDef {
        name: name.to_owned(),
        sql: request.sql.clone(),
        indexes: created.into_iter().map(|(_, kept)| kept).collect(),
        description: request.description.clone(),
    })
}

/// What to add, in words.
fn order_advice(sql: &str) -> &'static str {
    if sql.to_ascii_lowercase().contains("order by") {
        "End its ORDER BY (and the ORDER BY of any window or aggregate that depends on order, \
         such as group_concat) with a unique key: author, seq (or hash)."
    } else {
        "It has no ORDER BY: add one that ends with a unique key, e.g. ORDER BY ..., author, seq."
    }
}

/// A few rows with ties of every kind, so a view is checked even on an empty node.
fn made_up_rows() -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    for (a, author) in ["a", "b"].iter().enumerate() {
        for seq in 1..=4i64 {
            let hash = format!("{:064x}", (a as i64 + 1) * 100 + seq);
            let prev = (seq > 1).then(|| format!("{:064x}", (a as i64 + 1) * 100 + seq - 1));
            rows.push(vec![
                Value::Text(author.repeat(64)),
                Value::Integer(seq),
                Value::Integer(1_700_000_000_000 + (seq / 2) * 3_600_000),
                prev.map(Value::Text).unwrap_or(Value::Null),
                // Negative, small and large: filters on value select some of them.
                Value::Integer(seq * 10 - 15),
                Value::Text(format!(
                    "{{\"key\":\"k{}\",\"n\":{},\"text\":\"sample {}\"}}",
                    seq % 2,
                    seq,
                    author
                )),
                Value::Text(hash),
            ]);
        }
    }
    rows
}

/// `row`'s twin: another seq and hash (and prev), every other column the same.
fn twin(row: &[Value]) -> Option<Vec<Value>> {
    let mut twin = row.to_vec();
    let Value::Integer(seq) = row.get(1)? else {
        return None;
    };
    twin[1] = Value::Integer(seq.checked_add(TWIN_SEQ_OFFSET)?);
    let flip = |v: &Value| match v {
        Value::Text(hex) => Value::Text(hex.chars().rev().collect()),
        other => other.clone(),
    };
    twin[3] = flip(row.get(3)?);
    twin[6] = flip(row.get(6)?);
    Some(twin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sql: &str, indexes: &[&str]) -> ViewRequest {
        ViewRequest {
            sql: sql.into(),
            indexes: indexes.iter().map(|s| s.to_string()).collect(),
            ..ViewRequest::default()
        }
    }

    fn check(sql: &str, indexes: &[&str]) -> Result<ViewDef, DefinitionError> {
        vet(None, &QueryConfig::default(), "v", &request(sql, indexes))
    }

    #[test]
    fn a_total_order_passes_and_keeps_sqlites_form_of_the_index() {
        let kept = check(
            "SELECT author, seq, value FROM entries ORDER BY timestamp, author, seq",
            &["create index if not exists  by_ts ON entries(timestamp)"],
        )
        .unwrap();
        assert_eq!(kept.indexes, ["CREATE INDEX by_ts ON entries(timestamp)"]);
        check("SELECT count(*), sum(value) FROM entries", &[]).unwrap();
        check(
            "SELECT author, count(*) FROM entries GROUP BY author ORDER BY author",
            &[],
        )
        .unwrap();
    }

    #[test]
    fn an_order_left_to_the_engine_is_refused_by_name() {
        for sql in [
            "SELECT author, seq FROM entries WHERE value = 5",
            "SELECT author, seq FROM entries ORDER BY timestamp",
            "SELECT group_concat(seq) FROM entries",
        ] {
            let refused = check(sql, &["CREATE INDEX by_value ON entries(value)"]).unwrap_err();
            assert!(
                matches!(refused, DefinitionError::Order(_)),
                "{sql}: {refused}"
            );
        }
        let refused = check("SELECT seq FROM entries WHERE value = 5", &[]).unwrap_err();
        assert!(refused.to_string().contains("no ORDER BY"), "{refused}");
    }

    #[test]
    fn index_statements_are_one_plain_create_index_on_entries() {
        for (statement, expect) in [
            ("CREATE UNIQUE INDEX u ON entries(hash)", "UNIQUE"),
            ("CREATE INDEX m ON meta(value)", "views index entries only"),
            ("CREATE TABLE t(x)", "CREATE TABLE"),
            ("DROP TABLE entries", "a schema change"),
            (
                "CREATE INDEX a ON entries(value); CREATE INDEX b ON entries(seq)",
                "more than one",
            ),
            ("CREATE INDEX r ON entries(random())", "non-deterministic"),
            ("SELECT 1", "not a CREATE INDEX"),
        ] {
            let refused = check("SELECT count(*) FROM entries", &[statement]).unwrap_err();
            assert!(
                refused.to_string().contains(expect),
                "{statement}: {refused}"
            );
        }
    }

    #[test]
    fn the_views_statement_is_checked_like_a_query() {
        let refused = check("DELETE FROM entries", &[]).unwrap_err();
        assert!(refused.to_string().contains("refused"), "{refused}");
        let refused = check("SELECT nosuch FROM entries", &[]).unwrap_err();
        assert!(refused.to_string().contains("no such column"), "{refused}");
        let mut with_params = request(
            "SELECT seq FROM entries WHERE author = :author ORDER BY seq",
            &[],
        );
        with_params.params.insert("author".into(), "a".repeat(64));
        vet(None, &QueryConfig::default(), "v", &with_params).unwrap();
        with_params.params.insert("other".into(), "x".into());
        assert!(vet(None, &QueryConfig::default(), "v", &with_params).is_err());
    }

    #[test]
    fn an_index_whose_tables_are_not_created_yet_is_vetted_on_made_up_rows() {
        // The file exists (the indexer opened it) but its first transaction has not run:
        // sampling it is "no index", not a refusal of the view.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 0; PRAGMA journal_mode = WAL;")
            .unwrap();
        let config = QueryConfig::default();
        let mut index = QueryConnection::open(&path, &config).unwrap();
        assert!(matches!(index.sample(8), Err(QueryError::NoIndex(_))));
        vet(
            Some(&mut index),
            &config,
            "v",
            &request("SELECT count(*) FROM entries", &[]),
        )
        .unwrap();
    }
}
