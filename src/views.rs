//! Named views (docs/QUERY.md, "Named views"): a stored, named `SELECT` over the SQL index
//! plus the indexes on `entries` it needs. Nothing is materialised beyond those indexes, so
//! a view is a migration that costs an index build, and drops with no trace in the log.
//!
//! - [`definition`]: what a view is and the rules on its name and sizes (pure).
//! - [`index_name`](mod@index_name): an index statement's name (pure).
//! - [`file`]: the durable definitions file, `DATA_DIR/views.json`.
//! - [`declared`]: `--views FILE`, views declared in TOML.
//! - [`registry`]: [`Views`], the one owner of the definitions and their states.
//!
//! The checks that need SQLite (the statement only reads, each index is one `CREATE INDEX`
//! on `entries`, the order is total) are [`crate::query::vet`]'s; building and dropping
//! the indexes is the indexer's ([`crate::index::indexes`]).

pub mod declared;
pub mod definition;
pub mod file;
pub mod index_name;
pub mod registry;

pub use definition::{DefinitionError, ViewDef, ViewRequest};
pub use registry::{Builds, Put, PutError, ViewState, Views};
