//! Command-line arguments: clap structs only. Turning them into work happens in
//! [`crate::app`]; nothing here touches the file system.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::identity::Author;

/// kappalog: a peer-to-peer, hash-linked log node.
///
/// Every node signs entries into its own feed with an ed25519 key and stores the feeds it
/// holds in one append-only log per data directory.
#[derive(Debug, Parser)]
#[command(name = "kappalog", version, about, long_about = None)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

// Docs on the `Args` structs and on `Command` below are for rustdoc: clap would take them as
// `about` text, but the subcommand's own doc (or `Cli`'s) is applied after and wins.

/// Where the node's data and key live, for every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The node's data directory (created if missing)
    #[arg(
        long,
        global = true,
        env = "KAPPALOG_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,
    /// The node's secret key (PKCS#8 PEM); created on first use if missing
    #[arg(
        long,
        global = true,
        env = "KAPPALOG_KEY",
        default_value = "keys/node.key"
    )]
    pub key: PathBuf,
}

/// The subcommands; each variant's doc is its one-line help.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new key pair: keys/NAME.key (secret, mode 0600) and keys/NAME.pub (hex)
    Keygen(KeygenArgs),
    /// Append an entry to the node's own feed and print it as JSON
    Append(AppendArgs),
    /// Write the whole log as CSV (ordered by author, then seq)
    Export(ExportArgs),
    /// Import CSV files (any concatenation of exports, in any order); `-` reads stdin
    Import(ImportArgs),
    /// Check every entry: record checksums, hash chains and signatures
    Verify,
    /// Print the summary view as JSON
    Summary,
    /// Run a node: open the store, serve the HTTP API until SIGINT/SIGTERM
    Run(RunArgs),
    /// Run several nodes in one process, each with its own key, data dir and HTTP port
    Cluster(ClusterArgs),
    /// Follow a running node's commits (GET /tail), one entry as JSON per line; resumes by
    /// itself from its last cursor after a dropped connection or a node restart
    Tail(TailArgs),
    /// Manage the SQL index of a stopped node's data directory
    #[command(subcommand)]
    Index(IndexCommand),
    /// Run one read-only SQL statement over the index (docs/QUERY.md): read --data-dir
    /// (also while a node writes it; `as_of` goes to stderr) or ask a running node (--url)
    Query(QueryArgs),
    /// Add, list or drop a running node's named views (docs/QUERY.md, "Named views")
    #[command(subcommand)]
    View(ViewCommand),
    /// Check a feed entry's transparency-log proof offline (c2sp.org/tlog-proof@v1)
    #[command(subcommand)]
    Proof(ProofCommand),
    /// Fetch one entry with its proof from a running node (GET /feeds/AUTHOR/proof) and
    /// verify it without trusting the node. Exit 0 verified, 1 refused (a FAILED line says
    /// why), 2 no answer to check (unreachable, timeout, an error status, too large)
    Get(GetArgs),
}

/// `kappalog proof ...`: proof bundles, checked without a node.
#[derive(Debug, Subcommand)]
pub enum ProofCommand {
    /// Verify one entry's bundle: the entry's signature, its author's signed checkpoint, its
    /// inclusion, and with --policy the witnesses' quorum. Exit 0 verified, 1 refused (a
    /// FAILED line says why), 2 could not check (unreadable file, invalid policy)
    Verify(ProofVerifyArgs),
}

/// `kappalog proof verify`.
#[derive(Debug, Args)]
pub struct ProofVerifyArgs {
    /// The bundle file; `-` reads stdin
    pub file: PathBuf,
    /// A C2SP tlog-policy file: its witnesses' cosignatures must meet its quorum, and if it
    /// has log lines the entry's feed must be one of them
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Print the verdict as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

/// `kappalog get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The node's HTTP address: plain http:// only (the answer proves itself), redirects
    /// are not followed
    #[arg(long, env = "KAPPALOG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: hyper::Uri,
    /// The feed (author hex); the checkpoint must be signed by this key under the origin
    /// derived from it
    #[arg(long, value_parser = parse_author)]
    pub author: Author,
    /// The entry's position in the feed, from 1
    #[arg(long)]
    pub seq: u64,
    /// Prove it in the tree of this many entries (default: the node's newest checkpoint);
    /// an answer of another size is refused
    #[arg(long)]
    pub size: Option<u64>,
    /// A C2SP tlog-policy file, as for `proof verify --policy`
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Write the verified bundle here, for `kappalog proof verify FILE` offline
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Remember the newest checkpoint verified per feed in this directory, and refuse an
    /// answer the node does not prove consistent with it (a split view); created if missing
    #[arg(long, env = "KAPPALOG_GET_STATE", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Print the verdict as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
    /// Connecting and the whole exchange must end within this many seconds (a node waits a
    /// bounded while for its tree to catch up before it answers 503 or 504)
    #[arg(long, env = "KAPPALOG_GET_TIMEOUT", default_value = "30", value_name = "SECS", value_parser = parse_secs)]
    pub timeout: std::time::Duration,
}

/// `kappalog query`: the statement, where to run it and how to print the answer.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The statement: one SELECT over `entries` (named parameters as :name)
    pub sql: String,
    /// Ask the running node at this HTTP address instead of reading --data-dir
    #[arg(long, env = "KAPPALOG_URL")]
    pub url: Option<hyper::Uri>,
    /// How to print the answer: an aligned table, the JSON answer, or CSV with a header
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
    /// A named parameter's value, NAME=VALUE (bound as TEXT to :NAME); repeatable
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
}

/// How `kappalog query` prints an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    /// An aligned text table
    Table,
    /// The JSON answer, as `GET /query` sends it
    Json,
    /// CSV with a header row
    Csv,
}

/// The query engine's bounds a node is run with, shared by `run` and `cluster`.
#[derive(Debug, Args)]
pub struct QueryLimitArgs {
    /// Seconds one `/query` statement may run before it is interrupted (answered 504)
    #[arg(long = "query-timeout", env = "KAPPALOG_QUERY_TIMEOUT", default_value = "2", value_name = "SECS", value_parser = parse_secs)]
    pub timeout: std::time::Duration,
    /// Seconds `/query?after=CURSOR` waits for the index to cover the cursor (then 503)
    #[arg(long = "query-wait", env = "KAPPALOG_QUERY_WAIT", default_value = "2", value_name = "SECS", value_parser = parse_secs)]
    pub wait: std::time::Duration,
}

/// `kappalog view ...`: a running node's views, over its HTTP API.
#[derive(Debug, Subcommand)]
pub enum ViewCommand {
    /// Add a view, or replace the view of that name (PUT /views/NAME)
    Add(ViewAddArgs),
    /// List the views with their states (GET /views)
    List(ViewNodeArgs),
    /// Drop a view and its indexes, never the log (DELETE /views/NAME)
    Rm {
        /// The view's name
        name: String,
        /// The node
        #[command(flatten)]
        node: ViewNodeArgs,
    },
}

/// Which node `kappalog view` talks to.
#[derive(Debug, Args)]
pub struct ViewNodeArgs {
    /// The node's HTTP address
    #[arg(long, env = "KAPPALOG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: hyper::Uri,
    /// The node's --token, for add and rm
    #[arg(long, env = "KAPPALOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `kappalog view add`.
#[derive(Debug, Args)]
pub struct ViewAddArgs {
    /// The view's name: letters, digits, '_' or '-'
    pub name: String,
    /// Its statement: one SELECT over `entries` whose ORDER BY decides every row's place
    #[arg(long)]
    pub sql: String,
    /// An index it needs, `CREATE INDEX NAME ON entries(...)`; repeatable
    #[arg(long = "index", value_name = "SQL")]
    pub indexes: Vec<String>,
    /// What it is for
    #[arg(long, default_value = "")]
    pub description: String,
    /// A sample parameter value for the order check, NAME=VALUE; repeatable
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// The node
    #[command(flatten)]
    pub node: ViewNodeArgs,
}

/// `kappalog index ...`.
#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Delete DATA_DIR/index/ and build it again from the log (refused while a node runs on
    /// the directory); reads the node's author from --key
    Rebuild,
}

/// `kappalog tail`: which node to follow, which feed, and from where.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The node's HTTP address
    #[arg(long, env = "KAPPALOG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: hyper::Uri,
    /// Only this feed (author hex)
    #[arg(long, value_parser = parse_author)]
    pub author: Option<Author>,
    /// Where to start: `start` (the whole log), `now` (the next commit) or a cursor the
    /// node sent (the entry after it)
    #[arg(long, default_value = "now", value_parser = parse_start)]
    pub from: crate::tail::Start,
}

/// `kappalog run`: the node's HTTP and sync addresses, its peers and its sync policy.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// HTTP listen address; port 0 picks a free port (the bound address is printed)
    #[arg(long, env = "KAPPALOG_HTTP", default_value = "127.0.0.1:8080", value_parser = parse_socket_addr)]
    pub http: SocketAddr,
    /// Require `Authorization: Bearer TOKEN` on write endpoints
    #[arg(long, env = "KAPPALOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Peer sync listen address, e.g. 127.0.0.1:9080 (port 0 picks a free port, printed);
    /// without it the node accepts no peers but still dials its --peer addresses
    #[arg(long, env = "KAPPALOG_LISTEN", value_parser = parse_socket_addr)]
    pub listen: Option<SocketAddr>,
    /// A peer to sync with: AUTHOR@HOST:PORT pins the key it must prove; HOST:PORT pins
    /// the key of its first session (kept in DATA_DIR/peer-pins). Repeatable (env:
    /// comma-separated)
    #[arg(long = "peer", env = "KAPPALOG_PEERS", value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<String>,
    /// Trust this key (author hex) like a pinned peer's, in either direction, without
    /// restricting anyone else: it may hold the own-feed fence and needs no stranger slot or
    /// budget; repeatable (env: comma-separated)
    #[arg(long = "trust-peer", env = "KAPPALOG_TRUST_PEERS", value_delimiter = ',', value_parser = parse_author)]
    pub trust_peers: Vec<Author>,
    /// Forget the learned key of this configured peer (HOST:PORT) before starting, after it
    /// rotated its key; repeatable
    #[arg(long = "unpin", value_name = "HOST:PORT")]
    pub unpin: Vec<String>,
    /// What a starting node with --peer waits for before it signs: `timeout` (every peer
    /// heard from or failed once, at most 10 s) or `pinned` (a pinned peer's exchange, with
    /// no timeout: for a node restored from a backup)
    #[arg(long, env = "KAPPALOG_STARTUP_FENCE", value_enum, default_value_t = crate::sync::config::StartupFence::Timeout)]
    pub startup_fence: crate::sync::config::StartupFence,
    /// Test-only: the highest sync protocol version to speak (2 or 3 runs a v2 or v3 node's
    /// code path, so tests can meet such a node from this build). Hidden: an operator has no
    /// reason to give up checkpoint gossip or copy searches
    #[arg(long = "sync-protocol-max", hide = true, default_value_t = crate::sync::message::PROTOCOL_VERSION,
          value_parser = clap::value_parser!(u16).range(i64::from(crate::sync::opening::MIN_PROTOCOL_VERSION)..=i64::from(crate::sync::message::PROTOCOL_VERSION)))]
    pub sync_protocol_max: u16,
    /// Stall, shutdown and connection limits of the HTTP server.
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    /// The sync network's secret.
    #[command(flatten)]
    pub network: NetworkArgs,
    /// The query engine's bounds.
    #[command(flatten)]
    pub query: QueryLimitArgs,
    /// Only this key (author hex) may hold a sync session, in either direction; repeatable
    /// (env: comma-separated). Without it any key of the network may
    #[arg(long = "allow-peer", env = "KAPPALOG_ALLOW_PEERS", value_delimiter = ',', value_parser = parse_author)]
    pub allow_peers: Vec<Author>,
    /// Store and forward only the authors listed in FILE (one author hex per line, `#`
    /// comments); entries of other authors are skipped
    #[arg(long, env = "KAPPALOG_ACCEPT_AUTHORS")]
    pub accept_authors: Option<PathBuf>,
    /// New feeds untrusted peers (keys neither pinned, trusted nor allow-listed) from one
    /// source (an IPv4 address, an IPv6 /64) may introduce per hour, fork proofs of authors
    /// not held included; beyond it they are skipped
    #[arg(long, env = "KAPPALOG_NEW_FEEDS_PER_HOUR", default_value_t = crate::sync::admission::NEW_FEEDS_PER_HOUR)]
    pub new_feeds_per_hour: u64,
    /// New feeds all untrusted peers together may introduce per hour
    #[arg(long, env = "KAPPALOG_STRANGER_NEW_FEEDS_PER_HOUR", default_value_t = crate::sync::admission::STRANGER_NEW_FEEDS_PER_HOUR)]
    pub stranger_new_feeds_per_hour: u64,
    /// Bytes per second the node sends to untrusted peers of one source, once its burst is
    /// spent
    #[arg(long, env = "KAPPALOG_STRANGER_SEND_RATE", default_value_t = crate::sync::admission::STRANGER_SEND_RATE, value_parser = clap::value_parser!(u64).range(1..))]
    pub stranger_send_rate: u64,
    /// Bytes the node sends to untrusted peers of one source before --stranger-send-rate
    /// applies
    #[arg(long, env = "KAPPALOG_STRANGER_SEND_BURST", default_value_t = crate::sync::admission::STRANGER_SEND_BURST)]
    pub stranger_send_burst: u64,
    /// Reconciliation items and ranges untrusted peers' sessions together may make the node
    /// hold (about 150 bytes each); a session past it is closed with Bye(Busy)
    #[arg(long, env = "KAPPALOG_STRANGER_RECONCILE_ITEMS", default_value_t = crate::sync::admission::STRANGER_RECONCILE_ITEMS)]
    pub stranger_reconcile_items: usize,
    /// The most feeds this node holds, forked authors counted; new feeds beyond it are
    /// skipped, whoever offers them
    #[arg(long, env = "KAPPALOG_MAX_FEEDS", default_value_t = crate::sync::admission::MAX_FEEDS)]
    pub max_feeds: u64,
    /// Inbound sync connections at once from one IP address
    #[arg(long, env = "KAPPALOG_MAX_INBOUND_PER_ADDRESS", default_value_t = crate::sync::admission::MAX_INBOUND_PER_ADDR)]
    pub max_inbound_per_address: usize,
    /// Run without the SQL index (DATA_DIR/index/): for benchmarks of the log alone
    #[arg(long, env = "KAPPALOG_NO_INDEX")]
    pub no_index: bool,
    /// Run without the Merkle tree cache (DATA_DIR/tree.sqlite): for benchmarks only (no
    /// proofs, tiles or own checkpoints)
    #[arg(long, env = "KAPPALOG_NO_TREE")]
    pub no_tree: bool,
    /// Views to add at start from a TOML file (docs/QUERY.md, "Named views"): each vetted
    /// like PUT /views/NAME and kept, replacing a view of the same name
    #[arg(long, value_name = "FILE", env = "KAPPALOG_VIEWS")]
    pub views: Option<PathBuf>,
    /// Witness the C2SP log whose checkpoints this Ed25519 note vkey (NAME+HASH+BASE64)
    /// signs: POST /witness/add-checkpoint cosigns them with the node's key; repeatable
    #[arg(long = "witness-for", value_name = "VKEY", value_parser = parse_log_vkey)]
    pub witness_for: Vec<crate::tlog::vkey::VerifierKey>,
    /// Keep, count in k, serve and gossip feeds' cosignatures by the C2SP witness of this
    /// cosignature/v1 note vkey (NAME+HASH+BASE64, type 0x04), ranked first like pinned
    /// peers'; repeatable (the variable: comma-separated)
    #[arg(long = "witness-key", value_name = "VKEY", env = "KAPPALOG_WITNESS_KEYS", value_delimiter = ',', value_parser = parse_cosigner_vkey)]
    pub witness_keys: Vec<crate::tlog::vkey::VerifierKey>,
}

/// How long HTTP streams may stall and a stopping node lets requests finish, shared by `run`
/// and `cluster`.
#[derive(Debug, Args)]
pub struct ShutdownArgs {
    /// Seconds an HTTP upload may send no bytes, or a client take none of a response,
    /// before its connection is closed (a stalled `POST /import` imports nothing)
    #[arg(long = "stream-idle-timeout", env = "KAPPALOG_STREAM_IDLE_TIMEOUT", default_value_t = crate::http::STREAM_IDLE_TIMEOUT_MS / 1000, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub stream_idle_secs: u64,
    /// Seconds in-flight HTTP requests get to finish after SIGINT/SIGTERM; what is still
    /// open then (a stalled upload, a reader that stopped reading) is aborted
    #[arg(long = "shutdown-timeout", env = "KAPPALOG_SHUTDOWN_TIMEOUT", default_value_t = crate::server::SHUTDOWN_TIMEOUT_MS / 1000, value_name = "SECS")]
    pub secs: u64,
    /// HTTP connections open at once per node (each `GET /tail` stream holds one); at the
    /// cap the quietest idle or stalled connection is closed to make room
    #[arg(long = "max-connections", env = "KAPPALOG_MAX_CONNECTIONS", default_value_t = crate::server::MAX_HTTP_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
}

/// The sync network's secret, shared by `run` and `cluster`.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// The network secret: only nodes given the same secret complete a sync session. Prefer
    /// the environment variable (a flag shows in `ps`). Default: a built-in public secret
    #[arg(long = "network", env = "KAPPALOG_NETWORK", hide_env_values = true)]
    pub secret: Option<String>,
}

/// How `kappalog cluster` wires its nodes as sync peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Topology {
    /// Every node with every other
    Mesh,
    /// Node i with node i+1, and the last with the first
    Ring,
    /// Node i with node i+1
    Line,
}

/// `kappalog cluster`: how many nodes, where they listen and keep their data, how they peer.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Run the nodes without the SQL index (each DATA_DIR/index/): for benchmarks
    #[arg(long, env = "KAPPALOG_NO_INDEX")]
    pub no_index: bool,
    /// Run without the Merkle tree cache (DATA_DIR/tree.sqlite): for benchmarks only (no
    /// proofs, tiles or own checkpoints)
    #[arg(long, env = "KAPPALOG_NO_TREE")]
    pub no_tree: bool,
    /// Views every node adds at start from a TOML file (as `run --views`)
    #[arg(long, value_name = "FILE", env = "KAPPALOG_VIEWS")]
    pub views: Option<PathBuf>,
    /// Number of nodes
    #[arg(long, env = "KAPPALOG_NODES", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// HTTP port of node 1; node i listens on base-port + i - 1 (0: free ports)
    #[arg(long, env = "KAPPALOG_BASE_PORT", default_value_t = 8080)]
    pub base_port: u16,
    /// IP address the nodes listen on
    #[arg(long, env = "KAPPALOG_CLUSTER_HOST", default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Directory holding one data directory per node (node-1, node-2, ...)
    #[arg(long, env = "KAPPALOG_CLUSTER_DIR", default_value = "./cluster")]
    pub cluster_dir: PathBuf,
    /// Directory holding the nodes' keys (node-1.key, node-2.key, ...)
    #[arg(long, env = "KAPPALOG_KEYS_DIR", default_value = "keys")]
    pub keys_dir: PathBuf,
    /// Require `Authorization: Bearer TOKEN` on write endpoints of every node
    #[arg(long, env = "KAPPALOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How the nodes sync with each other
    #[arg(long, env = "KAPPALOG_TOPOLOGY", value_enum, default_value_t = Topology::Mesh)]
    pub topology: Topology,
    /// Sync port of node 1; node i listens on base-sync-port + i - 1 (0: free ports).
    /// Default: 0 when --base-port is 0, else base-port + 1000
    #[arg(long, env = "KAPPALOG_BASE_SYNC_PORT")]
    pub base_sync_port: Option<u16>,
    /// Stall, shutdown and connection limits of the HTTP server.
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    /// The sync network's secret.
    #[command(flatten)]
    pub network: NetworkArgs,
    /// The query engine's bounds.
    #[command(flatten)]
    pub query: QueryLimitArgs,
}

/// `kappalog keygen`: the new key's name and directory.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Name of the key: writes DIR/NAME.key and DIR/NAME.pub
    #[arg(long)]
    pub name: String,
    /// Directory for the key files
    #[arg(long, default_value = "keys")]
    pub dir: PathBuf,
}

/// `kappalog append`: the new entry's value and text.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The entry's integer value
    #[arg(long, allow_negative_numbers = true)]
    pub value: i64,
    /// Optional UTF-8 text carried by the entry (at most 4096 bytes)
    #[arg(long, default_value = "")]
    pub data: String,
}

/// `kappalog export`: where the CSV goes.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to FILE instead of standard output
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `kappalog import`: the CSV inputs.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// CSV files to import; `-` for standard input
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Parses an author (64 hex digits) for `--allow-peer`.
fn parse_author(text: &str) -> Result<Author, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("expected an author: 64 hex digits ({e}), got {text:?}"))
}

/// Reads a `--witness-for`: a note vkey of type Ed25519 (0x01), the only kind a C2SP log
/// signs its checkpoints with that the witness verifies.
fn parse_log_vkey(text: &str) -> Result<crate::tlog::vkey::VerifierKey, String> {
    parse_vkey(
        text,
        crate::tlog::vkey::KeyType::Ed25519,
        "a log's",
        "Ed25519 note",
    )
}

/// Reads a `--witness-key`: a note vkey of type cosignature/v1 (0x04), the only kind a
/// C2SP witness cosigns checkpoints with.
fn parse_cosigner_vkey(text: &str) -> Result<crate::tlog::vkey::VerifierKey, String> {
    use crate::tlog::vkey::KeyType;
    parse_vkey(
        text,
        KeyType::CosignatureV1,
        "a witness's",
        "cosignature/v1",
    )
}

/// A note vkey of `key_type`, with messages that say whose key (`whose`) and of what kind
/// was expected.
fn parse_vkey(
    text: &str,
    key_type: crate::tlog::vkey::KeyType,
    whose: &str,
    kind: &str,
) -> Result<crate::tlog::vkey::VerifierKey, String> {
    let vkey: crate::tlog::vkey::VerifierKey = text
        .trim()
        .parse()
        .map_err(|e| format!("expected {whose} note vkey NAME+HASH+BASE64: {e}"))?;
    vkey.require(key_type)
        .map_err(|e| format!("not {whose} {kind} key: {e}"))
}

/// Checks a `--peer`: `HOST:PORT` or `AUTHOR@HOST:PORT`.
fn parse_peer(text: &str) -> Result<String, String> {
    text.parse::<crate::sync::pins::PeerSpec>()
        .map(|spec| spec.to_string())
        .map_err(|e| e.to_string())
}

/// Parses `host:port` for flags that take a socket address, with a message that says what
/// was expected.
fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("expected HOST:PORT with an IP address, e.g. 127.0.0.1:8080, got {text:?}")
    })
}

/// A `--param NAME=VALUE` (a leading `:` on the name is accepted).
fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))?;
    let name = name.strip_prefix(':').unwrap_or(name);
    if name.is_empty() {
        return Err(format!("expected NAME=VALUE with a name, got {text:?}"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Seconds, whole or not (`2`, `0.5`), more than zero.
fn parse_secs(text: &str) -> Result<std::time::Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| format!("expected seconds above 0 (e.g. 2 or 0.5), got {text:?}"))
}

/// A tail's start: `start`, `now` or a cursor.
fn parse_start(text: &str) -> Result<crate::tail::Start, String> {
    text.trim().parse().map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// clap takes the doc of an `Args` struct (or of `Command`) as the `about` of the command
    /// it lands in; the help must still show each subcommand's own line, never those docs.
    #[test]
    fn struct_docs_never_become_help_text() {
        let struct_docs = [
            "Where the node's data",
            "The subcommands",
            "`kappalog ",
            "How long HTTP streams",
            "The sync network's secret",
            "The query engine's bounds",
        ];
        let leaked = |text: Option<String>| {
            text.is_some_and(|text| struct_docs.iter().any(|doc| text.starts_with(doc)))
        };
        let cli = Cli::command();
        for command in std::iter::once(&cli).chain(cli.get_subcommands()) {
            let about = command.get_about().map(|s| s.to_string());
            let long_about = command.get_long_about().map(|s| s.to_string());
            assert!(about.is_some(), "{} has no about", command.get_name());
            assert!(!leaked(about), "{}", command.get_name());
            assert!(!leaked(long_about), "{}", command.get_name());
        }
    }

    #[test]
    fn negative_values_parse() {
        let cli = Cli::try_parse_from(["kappalog", "append", "--value", "-5"]).unwrap();
        match cli.command {
            Command::Append(a) => assert_eq!(a.value, -5),
            other => panic!("unexpected {other:?}"),
        }
    }
}
