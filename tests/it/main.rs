//! The integration tests, one module per topic, built as one test binary.
//!
//! One binary, not one per file: every integration test binary links the whole `kappalog`
//! library and its dependencies, so 44 binaries meant 44 links of the same code, most of a
//! fresh `cargo test` build. A module's tests are selected by its name:
//!
//! ```sh
//! cargo test --test it                      # all of them
//! cargo test --test it sim::                # the seeded network simulation
//! cargo test --test it dashboard_browser::  # the dashboard in headless Chromium
//! cargo test --test it -- --skip sim::      # all but the simulation
//! ```
//!
//! A filter matches anywhere in a test's path: `keys::` selects `store_keys::` too.
//!
//! The tests share one process and run on its threads, so none may change what is
//! process-wide (environment variables, the current directory) or install a tracing
//! subscriber other than the simulation's, which enables only the refusal warnings it
//! reads, by its own threads' names (`common/sim_log.rs`). Children get their environment
//! through `Command`.
//!
//! proptest keeps a module's regressions in `tests/proptest-regressions/MODULE.txt`: its
//! default location for a source file beside a `main.rs`.

mod common;

mod checkpoint_book;
mod checkpoint_book_crash;
mod checkpoint_book_kill;
mod cli;
mod cli_get;
mod cli_proof;
mod cli_tail;
mod cli_verify;
mod copy_choice;
mod csv_import;
mod dashboard_browser;
mod dashboard_http;
mod disk_full;
mod feeds_tlog;
mod feeds_tlog_hostile;
mod fork_log_faults;
mod fork_notes;
mod fuzz_corpus;
mod golden_vectors;
mod http_api;
mod http_connections;
mod http_framing;
mod http_idempotency;
mod http_tail;
mod import_bounded;
mod import_faults;
mod index_cli;
mod index_faults;
mod index_follow;
mod index_order;
mod index_recovery;
mod keys;
mod node_binary;
mod node_shutdown;
mod query_cli;
mod query_hostile;
mod query_http;
mod sim;
mod store_append;
mod store_concurrency;
mod store_crash;
mod store_faults;
mod store_fence;
mod store_keys;
mod store_lifecycle;
mod store_lock;
mod store_model;
mod store_open_faults;
mod store_range_encoded;
mod store_recovery;
mod store_replace;
mod store_slow_sync;
mod store_verify;
mod summary_live_rebuilt;
mod summary_order;
mod sync_admission;
mod sync_binary;
mod sync_checkpoints;
mod sync_converge;
mod sync_fence_claims;
mod sync_forks;
mod sync_hostile;
mod sync_many_feeds;
mod sync_subtrees;
mod sync_transport;
mod sync_versions;
mod tlog_golden;
mod tlog_tree;
mod tlog_witness;
mod tree_checkpoint;
mod tree_faults;
mod tree_health;
mod tree_model;
mod tree_restart;
mod views_http;
mod witness_crash;
mod witness_foreign;
mod witness_gossip;
mod witness_http;
