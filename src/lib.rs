//! kappalog: a peer-to-peer, hash-linked log node.
//!
//! # Module map
//!
//! - [`hash`]: the sha256 [`hash::Hash`] newtype.
//! - [`identity`]: authors (public keys), signatures, and the secret [`identity::Identity`].
//! - [`entry`]: what an entry is, its fixed signed byte layout (format v1) and its hash.
//! - [`signature`]: the one acceptance rule for signatures, single and batch.
//! - [`validate`]: when an entry is valid (pure; one error variant per rule).
//! - [`store`]: the durable log file and fork proofs (format and recovery, specified in
//!   docs/STORE.md; the group-commit writer with its one owner and `shutdown().await`,
//!   readers, the table of recent idempotency keys, and the file-I/O seam tests perturb,
//!   with a backend in memory that can lose power).
//! - [`idempotency`]: what a valid `Idempotency-Key` is, and when a retry is the same request.
//! - [`view`]: the [`view::View`] trait: a deterministic fold over the log, rebuildable.
//! - [`summary`]: the summary view (count, sum, min, max, mean, feed counts, the digest over
//!   a fixed-shape hash tree of the feeds kept up to date incrementally; feeds by the page).
//! - [`index`]: the SQL index over the log (docs/QUERY.md): the `entries` table in
//!   `DATA_DIR/index/index.sqlite`, a cache of the log kept by a node's indexer thread,
//!   resumed after a crash and rebuilt when missing, stale or damaged.
//! - [`csv`]: CSV export over `impl Write`, streamed import parsing and import planning.
//! - [`keys`]: key files: load, create and check a node's PKCS#8 PEM secret key.
//! - [`node`]: owns the store's owner, the live views, the metrics and every task working
//!   for the node; one shutdown path, `Node::shutdown().await`.
//! - [`import`]: applies a CSV import to the store in bounded memory (sorted on disk) and
//!   reports every outcome.
//! - [`progress`]: how far a long one-shot job (import, verify, export) has come, reported
//!   to a sink the caller passes in ([`progress::NoProgress`] by default; the CLI draws a bar).
//! - [`query`]: read-only, bounded SQL queries over the index (docs/QUERY.md): the
//!   authorizer's rule, the limits and deadline, the answer, its digest and `as_of`, and the
//!   engine's bounded connections and queue; [`query::vet`] checks a view's definition.
//! - [`views`]: named views over the index: their definitions, kept in
//!   `DATA_DIR/views.json`, and their states ([`views::Views`]).
//! - [`metrics`]: Prometheus counters and histograms served at `GET /metrics`.
//! - [`http`]: the axum facade: adapters from routes to node methods, and the dashboard
//!   page at `GET /` ([`http::dashboard`]).
//! - [`tail`]: the live tail (`GET /tail`): cursors into the log, replay then live commits
//!   without gap or repeat, the stream formats (SSE, NDJSON) and the slow-consumer rule.
//! - [`server`]: binds, serves and stops one or several nodes: the HTTP connection cap (the
//!   quietest idle or stalled connection makes room), the header and stall deadlines, request
//!   heads screened before hyper reads them (malformed, oversized or ambiguously framed ones
//!   get a JSON error), and a shutdown bounded by `--shutdown-timeout`.
//! - [`cli`]: clap definitions (the binary's `app` module runs each subcommand; it is not
//!   part of the library).
//! - [`poison`]: the one poison-tolerant mutex lock, and why it is sound here; [`clock`]:
//!   the one wall clock (milliseconds since the Unix epoch); [`backoff`]: the one retry delay;
//!   [`determinism`]: the clock, random draws and blocking work a deterministic simulation
//!   takes over on its thread.
//! - [`fork`]: fork proofs (two conflicting signed entries), their encoding, the forked set.
//! - [`store::fork_log`]: the fork-proof file (`DATA_DIR/forks`), the store's second file:
//!   its format and recovery, appended by the store's writer, the forked set readers
//!   consult (and read, lock-free, by `kappalog summary`).
//! - [`fence`]: the own-feed fence, a pure state machine fed by events from sync and from
//!   fork proofs; the store's writer owns the live one and checks it where it orders own
//!   appends.
//! - [`sync`]: the peer protocol v2 (docs/PROTOCOL.md): pure core (messages, framing,
//!   handshake, reconciliation, plan, admission rules) and the tokio sessions over the
//!   encrypted transport, the listener and the dialers that replicate over TCP.
//! - [`tlog`]: each feed as a C2SP transparency log, pure: the RFC 6962 Merkle tree, its
//!   proofs and tlog-tiles; signed notes and vkeys, checkpoints, cosignatures,
//!   `tlog-proof@v1` bundles, `tlog-policy` files and the tlog-witness decision (the store
//!   and HTTP wire them in); [`tlog::bundle`] verifies one entry's bundle offline
//!   (`kappalog proof verify`).
//! - [`light`]: the light client (`kappalog get`): one entry fetched from a node with its
//!   proof bundle, believed only when it proves the entry asked for in its author's tree.
//! - [`tree`]: each feed's Merkle tree as a cache in `DATA_DIR/tree.sqlite`, kept by a
//!   follower thread off the commit path (like the SQL index), and [`tree::Trees`], the
//!   read side: roots, inclusion and consistency proofs, hash tiles, the own checkpoint.
//! - [`durable_file`]: replacing a journal by its snapshot crash-safely (tmp, fsync, rename,
//!   directory fsync), for the journals that compact themselves at open.
//! - [`checkpoint_book`]: per feed held, the newest author checkpoint and the cosignatures
//!   over it (kept, served, journalled in `DATA_DIR/checkpoints`), the node's own
//!   cosignatures made once a second in group-committed batches, and split views found.
//! - [`witness_state`]: the node as a witness of the logs its operator names
//!   (`--witness-for`): `DATA_DIR/witness`, a journal made durable before each cosignature
//!   is released, and the one lock serialising decide, record and flush.
//!
//! # Data flow
//!
//! HTTP request, peer frame or CSV line -> decode -> validate -> store append (the single
//! writer; fork proofs too) -> views updated (the SQL index and the tree cache after the
//! commit, off the commit path) -> readers (HTTP, sync sessions, CSV export) read through
//! the node.
//!
//! # Example
//!
//! Sign the first entry of a feed and check it under every validation rule:
//!
//! ```
//! use kappalog::entry::{Entry, UnsignedEntry};
//! use kappalog::identity::Identity;
//! use kappalog::validate;
//!
//! let identity = Identity::from_seed([7; 32]);
//! let (entry, hash) = UnsignedEntry {
//!     author: identity.author(),
//!     seq: 1,
//!     timestamp: 1_700_000_000_000,
//!     prev: None,
//!     value: 42,
//!     data: "hello".into(),
//! }
//! .sign(&identity);
//! assert_eq!(validate::validate(&entry, Some(&hash), None), Ok(hash));
//!
//! // The fixed encoding round-trips and yields the same hash.
//! let (decoded, decoded_hash) = Entry::decode(&entry.encode()).unwrap();
//! assert_eq!((decoded, decoded_hash), (entry, hash));
//! ```
#![forbid(unsafe_code)]
// A function longer than a screen (80 lines, `clippy.toml`) hides its steps: split it into
// named ones. CI's clippy runs with `-D warnings`, so this holds for the library's code.
#![warn(clippy::too_many_lines)]
// Every public item says what it is (the library is what tests, benches, fuzz targets and
// the binary build on), and nothing is `pub` that no one outside its module can reach.
#![warn(missing_docs, unreachable_pub)]

pub mod backoff;
pub mod checkpoint_book;
pub mod cli;
pub mod clock;
pub mod copy_search;
pub mod csv;
pub mod determinism;
pub mod durable_file;
pub mod entry;
pub mod fence;
pub mod fork;
pub mod hash;
pub mod http;
pub mod idempotency;
pub mod identity;
pub mod import;
pub mod index;
pub mod keys;
pub mod light;
pub mod metrics;
pub mod node;
pub mod poison;
pub mod priority;
pub mod progress;
pub mod query;
pub mod server;
pub mod signature;
pub mod store;
pub mod summary;
pub mod sync;
pub mod tail;
pub mod tlog;
pub mod tree;
pub mod validate;
pub mod view;
pub mod views;
pub mod witness_state;
