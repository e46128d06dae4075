//! What a view is, as a user gives it and as the node keeps it (docs/QUERY.md, "Named
//! views"): a name, one `SELECT` over `entries`, the indexes on `entries` it needs, and a
//! description. Pure: the checks here need no database; [`crate::query::vet`] runs the ones
//! that need SQLite (the statement prepares and only reads, each index is one `CREATE INDEX`
//! on `entries`, the result order is total).

use serde::{Deserialize, Serialize};

/// Views one node keeps at most: each costs its indexes' writes on every entry indexed.
pub const MAX_VIEWS: usize = 64;
/// Indexes one view may ask for.
pub const MAX_INDEXES_PER_VIEW: usize = 8;
/// The longest view statement, in bytes: a query's limit (`query::MAX_STATEMENT_BYTES`,
/// which is defined as this), since a view runs as a query.
pub const MAX_SQL_BYTES: usize = 64 * 1024;
/// The longest index statement, in bytes.
pub const MAX_INDEX_STATEMENT_BYTES: usize = 4 * 1024;
/// The longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// The longest view name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Sample parameter values one definition may carry for its order check.
pub const MAX_CHECK_PARAMS: usize = 32;

/// A view as the node keeps it: in the definitions file and in `GET /views`. `indexes` hold
/// each statement as SQLite writes it in its schema (leading keywords normalised, `IF NOT
/// EXISTS` dropped), which is what the indexer compares with the index database's schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewDef {
    /// The view's name: see [`check_name`].
    pub name: String,
    /// One `SELECT` over `entries`; named parameters as `:name`.
    pub sql: String,
    /// `CREATE INDEX ... ON entries(...)` statements.
    #[serde(default)]
    pub indexes: Vec<String>,
    /// What the view is for, for people.
    #[serde(default)]
    pub description: String,
}

/// What a client sends to add or replace a view (`PUT /views/NAME`'s body, one table of a
/// `--views` file, `kappalog view add`'s flags). `params` are sample values for the order
/// check only (a parameter left out is bound to NULL there); they are not kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewRequest {
    /// The statement.
    pub sql: String,
    /// The index statements.
    #[serde(default)]
    pub indexes: Vec<String>,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// Sample parameter values for the order check, by name without the `:`.
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
}

/// Why a view definition is refused. The message is what the client reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// The name breaks [`check_name`]'s rule.
    #[error(
        "view name {0:?}: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
    )]
    Name(String),
    /// Something is longer or more numerous than its limit.
    #[error("{0}")]
    TooBig(String),
    /// The statement or an index statement is refused; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// Its result order is not total (see docs/QUERY.md, "Views answer the same everywhere").
    #[error("{0}")]
    Order(String),
    /// An index name is already another view's.
    #[error("the index {index} is already view {view}'s; give this view's index another name")]
    IndexTaken {
        /// The index's name.
        index: String,
        /// The view that has it.
        view: String,
    },
    /// The node keeps [`MAX_VIEWS`] views already.
    #[error("the node keeps {MAX_VIEWS} views already; delete one first")]
    TooMany,
}

/// A view's name: 1 to [`MAX_NAME_BYTES`] ASCII letters, digits, `_` or `-`, starting with a
/// letter or digit, so it is a path segment, a file-safe word and a TOML bare key as is.
pub fn check_name(name: &str) -> Result<(), DefinitionError> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let all_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if first_ok && all_ok && name.len() <= MAX_NAME_BYTES {
        Ok(())
    } else {
        Err(DefinitionError::Name(name.to_owned()))
    }
}

/// The checks that need no database: the name and every size.
pub fn check_sizes(name: &str, request: &ViewRequest) -> Result<(), DefinitionError> {
    check_name(name)?;
    let too_big = |what: String| Err(DefinitionError::TooBig(what));
    if request.sql.len() > MAX_SQL_BYTES {
        return too_big(format!(
            "the view's sql is {} bytes, the limit is {MAX_SQL_BYTES}",
            request.sql.len()
        ));
    }
    if request.indexes.len() > MAX_INDEXES_PER_VIEW {
        return too_big(format!(
            "the view asks for {} indexes, the limit is {MAX_INDEXES_PER_VIEW}",
            request.indexes.len()
        ));
    }
    if let Some(long) = request
        .indexes
        .iter()
        .find(|i| i.len() > MAX_INDEX_STATEMENT_BYTES)
    {
        return too_big(format!(
            "an index statement is {} bytes, the limit is {MAX_INDEX_STATEMENT_BYTES}",
            long.len()
        ));
    }
    if request.description.len() > MAX_DESCRIPTION_BYTES {
        return too_big(format!(
            "the description is {} bytes, the limit is {MAX_DESCRIPTION_BYTES}",
            request.description.len()
        ));
    }
    if request.params.len() > MAX_CHECK_PARAMS {
        return too_big(format!(
            "{} sample parameters, the limit is {MAX_CHECK_PARAMS}",
            request.params.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_path_segments() {
        for good in [
            "a",
            "latest_per_sensor",
            "per-author-hour",
            "7days",
            &"x".repeat(64),
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "a b",
            "a/b",
            "..",
            "é",
            &"x".repeat(65),
            "a.b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_are_bounded() {
        let request = |indexes: usize, description: usize| ViewRequest {
            sql: "SELECT 1".into(),
            indexes: vec!["CREATE INDEX i ON entries(value)".into(); indexes],
            description: "d".repeat(description),
            params: Default::default(),
        };
        assert_eq!(check_sizes("v", &request(8, 1024)), Ok(()));
        assert!(check_sizes("v", &request(9, 0)).is_err());
        assert!(check_sizes("v", &request(0, 1025)).is_err());
    }
}
