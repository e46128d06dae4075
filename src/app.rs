//! Runs a parsed command line: each subcommand is one function here. Errors carry context
//! for the one-line message `main` prints.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use bar::StderrBar;
use kappalog::cli::{
    AppendArgs, Cli, ClusterArgs, Command, ExportArgs, ImportArgs, IndexCommand, KeygenArgs,
    NetworkArgs, ProofCommand, QueryLimitArgs, RunArgs, ShutdownArgs, TailArgs, Topology,
};
use kappalog::http::HttpConfig;
use kappalog::keys;
use kappalog::node::{self, Node, NodeConfig};
use kappalog::server;
use kappalog::store::{OpenReport, StoreError, StoreReader};
use kappalog::sync::admission::{self, Policy};
use kappalog::sync::config::StartupFence;
use kappalog::sync::transport::NetworkKey;
use kappalog::sync::SyncConfig;
use kappalog::tlog::witness::Cosigner;
use kappalog::witness_state::DurableWitness;

mod bar;
mod get;
mod proof;
mod query;
mod verdict;
mod view;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = NodeConfig {
        data_dir: cli.global.data_dir.clone(),
        key_path: cli.global.key.clone(),
    };
    match cli.command {
        Command::Keygen(args) => keygen(&args),
        Command::Append(args) => append(&config, args),
        Command::Export(args) => export(&config, &args),
        Command::Import(args) => import(&config, &args),
        Command::Verify => verify(&config),
        Command::Summary => summary(&config),
        Command::Run(args) => run_node(&config, args),
        Command::Cluster(args) => run_cluster(args),
        Command::Tail(args) => tail(args),
        Command::Index(IndexCommand::Rebuild) => rebuild_index(&config),
        Command::Query(args) => query::query(&config, args),
        Command::View(command) => view::view(command),
        Command::Proof(ProofCommand::Verify(args)) => Ok(proof::verify(&args)),
        Command::Get(args) => Ok(get::get(&args)),
    }
}

/// Follows a node's tail until a final refusal; a dropped connection is resumed inside.
fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let follow = kappalog::tail::client::Follow {
        url: args.url,
        author: args.author,
        from: args.from,
    };
    let mut out = io::stdout().lock();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(kappalog::tail::client::follow(follow, &mut out))?;
    Ok(ExitCode::SUCCESS)
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let path = keys::key_path(&args.dir, &args.name)?;
    let identity = keys::generate_key_files(&path)?;
    println!(
        "wrote {} (secret, mode 0600) and {}",
        path.display(),
        path.with_extension("pub").display()
    );
    println!("author {}", identity.author());
    Ok(ExitCode::SUCCESS)
}

fn open_node(config: &NodeConfig) -> anyhow::Result<Node> {
    // A newly created key is announced by the node's log (info level, on by default).
    let (node, _opened) = Node::open(config)
        .with_context(|| format!("opening node in {}", config.data_dir.display()))?;
    Ok(node)
}

fn append(config: &NodeConfig, args: AppendArgs) -> anyhow::Result<ExitCode> {
    let node = open_node(config)?;
    let entry = node.append_blocking(args.value, args.data)?;
    node.shutdown_blocking()?;
    println!("{}", serde_json::to_string(&entry)?);
    Ok(ExitCode::SUCCESS)
}

fn open_read_only(config: &NodeConfig) -> anyhow::Result<StoreReader> {
    open_read_only_with_report(config).map(|(reader, _)| reader)
}

fn open_read_only_with_report(config: &NodeConfig) -> anyhow::Result<(StoreReader, OpenReport)> {
    if !config.data_dir.exists() {
        bail!(
            "data directory {} does not exist",
            config.data_dir.display()
        );
    }
    StoreReader::open_read_only(&config.data_dir)
        .with_context(|| format!("opening {}", config.data_dir.display()))
}

fn export(config: &NodeConfig, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let reader = open_read_only(config)?;
    // No bar over CSV going to the same terminal: only when the rows go elsewhere.
    let bar = StderrBar::new(args.out.is_some() || !io::stdout().is_terminal(), None);
    match &args.out {
        None => {
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            node::export_with_progress(&reader, &mut out, &bar)?;
            out.flush()?;
            bar.clear();
        }
        Some(path) => {
            // Write beside the target and rename, so a failed export never leaves a
            // half-written file under the requested name.
            let tmp = tmp_path(path);
            let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut out = BufWriter::new(file);
            let result = node::export_with_progress(&reader, &mut out, &bar)
                .map_err(anyhow::Error::from)
                .and_then(|()| out.flush().map_err(anyhow::Error::from))
                .and_then(|()| {
                    out.get_ref().sync_all()?;
                    std::fs::rename(&tmp, path)
                        .with_context(|| format!("renaming to {}", path.display()))
                });
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            bar.clear();
            result?;
            eprintln!("exported {} entries to {}", reader.len(), path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

fn import(config: &NodeConfig, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    // Open every input before touching the store, so a typo in the third file name does not
    // leave the first two imported.
    let mut inputs: Vec<Box<dyn Read>> = Vec::with_capacity(args.files.len());
    for file in &args.files {
        if file.as_os_str() == "-" {
            inputs.push(Box::new(io::stdin().lock()));
        } else {
            let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
            inputs.push(Box::new(BufReader::new(f)));
        }
    }
    let node = open_node(config)?;
    // The inputs are one concatenated stream: that is exactly what import accepts.
    let chained = inputs
        .into_iter()
        .fold(Box::new(io::empty()) as Box<dyn Read>, |acc, next| {
            Box::new(acc.chain(next))
        });
    let bar = StderrBar::new(true, input_bytes(&args.files));
    let report = node.import_with_progress(chained, &bar)?;
    bar.clear();
    node.shutdown_blocking()?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// The inputs' total size, when every one is a regular file (stdin, a pipe or a device has
/// no size to go by).
fn input_bytes(files: &[PathBuf]) -> Option<u64> {
    files.iter().try_fold(0u64, |total, file| {
        if file.as_os_str() == "-" {
            return None;
        }
        let meta = std::fs::metadata(file).ok()?;
        meta.is_file().then(|| total.saturating_add(meta.len()))
    })
}

/// `kappalog verify`: the log (every record, chain and signature) and the fork proofs. Exit
/// 0 when everything acknowledged is sound (a torn tail, never acknowledged, is reported but
/// is not a failure); 1 when anything is damaged, with a `FAILED` line saying where.
fn verify(config: &NodeConfig) -> anyhow::Result<ExitCode> {
    if !config.data_dir.exists() {
        bail!(
            "data directory {} does not exist",
            config.data_dir.display()
        );
    }
    let mut sound = true;
    let mut notes = std::collections::BTreeSet::new();
    match StoreReader::open_read_only(&config.data_dir) {
        Err(e @ StoreError::Corrupt { .. }) => {
            println!("FAILED: {e} (acknowledged data is damaged; the node refuses to open it)");
            sound = false;
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", config.data_dir.display())),
        Ok((reader, opened)) => {
            notes = opened.fork_notes;
            let bar = StderrBar::new(true, None);
            let report = reader.verify_all_with_progress(&bar)?;
            bar.clear();
            println!("{report}");
            sound &= report.is_ok();
            if let (Some(at), bytes) = (opened.truncated_at, opened.truncated_bytes) {
                println!(
                    "torn tail: {bytes} bytes at offset {at} of the log: a write cut short by a crash, never acknowledged; the node cuts it when it next opens the log"
                );
            }
        }
    }
    match kappalog::store::fork_log::check_file(&config.data_dir) {
        Ok(check) => {
            println!(
                "ok: {} fork proofs checked (both sides signed by the author, same position)",
                check.set.len()
            );
            if let Some((at, bytes)) = check.torn_tail {
                println!(
                    "torn tail: {bytes} bytes at offset {at} of the forks file: a proof cut short by a crash, never acknowledged; the node cuts it when it next opens"
                );
            }
            for author in notes.iter().filter(|a| !check.set.contains(a)) {
                println!(
                    "FAILED: the log notes a fork proof of author {author}, but the forks file does not hold it (lost); the node keeps the feed excluded until a peer sends the proof again"
                );
                sound = false;
            }
        }
        Err(e) => {
            println!("FAILED: {e}");
            sound = false;
        }
    }
    Ok(if sound {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `kappalog index rebuild`: refused while a node holds the directory (its lock); else the
/// index deleted and built again from the log, with a bar on a terminal and a one-line
/// summary.
fn rebuild_index(config: &NodeConfig) -> anyhow::Result<ExitCode> {
    let dir = &config.data_dir;
    if !dir.exists() {
        bail!("data directory {} does not exist", dir.display());
    }
    let _lock = match kappalog::store::lock::DirLock::acquire(dir) {
        Err(StoreError::Locked { .. }) => bail!(
            "a node is running on {}: stop it first (a running node keeps its index up to date itself)",
            dir.display()
        ),
        other => other.with_context(|| format!("locking {}", dir.display()))?,
    };
    let (identity, _warnings) = keys::load_key(&config.key_path)
        .with_context(|| format!("reading the node's key {}", config.key_path.display()))?;
    let (reader, opened) = open_read_only_with_report(config)?;
    // Forked feeds are excluded as the running node excludes them (see `summary`).
    let forked = kappalog::store::fork_log::read_set(dir)?;
    let forked = forked
        .authors()
        .chain(&opened.fork_notes)
        .copied()
        .collect();
    let started = std::time::Instant::now();
    let bar = StderrBar::new(true, None);
    let rebuilt = kappalog::index::rebuild(dir, &identity.author(), &reader, &forked, &bar)?;
    bar.clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "indexed {} entries ({} read, {} of forked feeds left out) in {secs:.2} s, {:.0} entries/s",
        rebuilt.indexed,
        rebuilt.read,
        rebuilt.read - rebuilt.indexed,
        rebuilt.read as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

fn summary(config: &NodeConfig) -> anyhow::Result<ExitCode> {
    let (reader, opened) = open_read_only_with_report(config)?;
    // Forked feeds are excluded exactly as the running node excludes them: those with a
    // proof, and those the log notes as forked.
    let forked = kappalog::store::fork_log::read_set(&config.data_dir)?;
    let mut view = node::rebuild_summary(&reader, forked.authors().chain(&opened.fork_notes))?;
    println!("{}", serde_json::to_string(&view.summary())?);
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The HTTP server's limits, with `--shutdown-timeout` and `--stream-idle-timeout`.
fn serve_limits(args: &ShutdownArgs) -> server::ServeLimits {
    server::ServeLimits {
        shutdown_timeout: std::time::Duration::from_secs(args.secs),
        stream_idle_timeout: std::time::Duration::from_secs(args.stream_idle_secs),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        ..server::ServeLimits::default()
    }
}

/// The network key of `--network` (the built-in public secret without it).
fn network_key(args: &NetworkArgs) -> NetworkKey {
    args.secret
        .as_deref()
        .map_or_else(NetworkKey::default, NetworkKey::from_secret)
}

/// The sync configuration `run`'s flags ask for (reads the `--accept-authors` file).
fn sync_config(args: &RunArgs) -> anyhow::Result<SyncConfig> {
    let accept_authors = match &args.accept_authors {
        Some(path) => Some(admission::read_author_list(path)?),
        None => None,
    };
    if args.max_inbound_per_address == 0 {
        anyhow::bail!("--max-inbound-per-address must be at least 1");
    }
    if args.startup_fence == StartupFence::Pinned && args.peers.is_empty() {
        anyhow::bail!("--startup-fence pinned waits for a --peer, and none is given");
    }
    Ok(SyncConfig {
        network: network_key(&args.network),
        policy: Policy {
            allow_peers: args.allow_peers.iter().copied().collect(),
            trusted: args.trust_peers.iter().copied().collect(),
            accept_authors,
            new_feeds_per_hour: args.new_feeds_per_hour,
            stranger_new_feeds_per_hour: args.stranger_new_feeds_per_hour,
            max_feeds: args.max_feeds,
            max_inbound_per_addr: args.max_inbound_per_address,
            stranger_send_rate: args.stranger_send_rate,
            stranger_send_burst: args.stranger_send_burst,
            stranger_reconcile_items: args.stranger_reconcile_items,
        },
        startup_fence: args.startup_fence,
        unpin: args.unpin.clone(),
        max_protocol_version: args.sync_protocol_max,
        ..SyncConfig::default()
    })
}

/// The engine `/query` runs on, over the node's index, with the flags' bounds.
fn query_engine(node: &Node, args: &QueryLimitArgs) -> kappalog::query::QueryEngine {
    let config = kappalog::query::QueryConfig {
        timeout: args.timeout,
        wait: args.wait,
        ..kappalog::query::QueryConfig::default()
    };
    kappalog::query::QueryEngine::new(kappalog::query::index_path(node.data_dir()), config)
}

/// The views a `--views` file declares (none without one).
fn declared_views(
    file: Option<&std::path::Path>,
    no_index: bool,
) -> anyhow::Result<std::collections::BTreeMap<String, kappalog::views::ViewRequest>> {
    match file {
        None => Ok(Default::default()),
        Some(_) if no_index => anyhow::bail!("--views needs the SQL index: drop --no-index"),
        Some(path) => kappalog::views::declared::load(path).map_err(anyhow::Error::msg),
    }
}

fn run_node(config: &NodeConfig, args: RunArgs) -> anyhow::Result<ExitCode> {
    let sync_config = sync_config(&args)?;
    let declared = declared_views(args.views.as_deref(), args.no_index)?;
    let node = open_node(config)?;
    let witness = open_witness(&node, &args.witness_for)?;
    let http = HttpConfig {
        token: args.token,
        witness,
        stream_idle_timeout: std::time::Duration::from_secs(args.shutdown.stream_idle_secs),
        query: Some(query_engine(&node, &args.query)),
        ..HttpConfig::default()
    };
    let sync = (args.listen.is_some() || !args.peers.is_empty()).then(|| server::SyncSpec {
        listen: args.listen,
        peers: args.peers,
        config: sync_config,
        ..Default::default()
    });
    runtime()?.block_on(async move {
        let nodes = vec![server::NodeSpec {
            name: "node".into(),
            node,
            http_addr: args.http,
            http,
            limits: serve_limits(&args.shutdown),
            sync,
            index: !args.no_index,
            tree: !args.no_tree,
            views: declared,
            witness_keys: args.witness_keys.clone(),
        }];
        server::serve_until_signal(nodes, |bound| {
            for b in bound {
                match b.sync_addr {
                    Some(sync) => println!(
                        "kappalog node {} http://{} sync {} dashboard {}",
                        b.author,
                        b.http_addr,
                        sync,
                        dashboard_url(b.http_addr)
                    ),
                    None => println!(
                        "kappalog node {} http://{} dashboard {}",
                        b.author,
                        b.http_addr,
                        dashboard_url(b.http_addr)
                    ),
                }
            }
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The node's witness over `DATA_DIR/witness`: of the `--witness-for` logs (without the
/// flag `POST /witness/add-checkpoint` answers 404 to every origin), and of the feeds the
/// node holds, which its checkpoint book cosigns through it. Always opened: the journal is
/// what keeps the node from cosigning two inconsistent checkpoints of one feed.
fn open_witness(
    node: &Node,
    logs: &[kappalog::tlog::vkey::VerifierKey],
) -> anyhow::Result<Option<DurableWitness>> {
    let cosigner = Cosigner::for_node(node.identity().signing_key().clone());
    let (witness, report) = DurableWitness::open(node.data_dir(), logs, cosigner)
        .context("opening the witness state")?;
    tracing::info!(
        logs = logs.len(),
        origins = report.origins,
        compacted = report.compacted,
        cosigner = %witness.cosigner_vkey(),
        "witnessing"
    );
    Ok(Some(witness))
}

/// Where a node's dashboard is (`GET /` on its HTTP address). A node bound to the
/// unspecified address (`0.0.0.0`, `::`) is reached on loopback from this machine.
pub fn dashboard_url(http_addr: SocketAddr) -> String {
    let mut addr = http_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/")
}

/// Which nodes (0-based) node `i` of `n` dials. Each pair is dialled from one side only.
pub fn cluster_peers(topology: Topology, i: usize, n: usize) -> Vec<usize> {
    match topology {
        Topology::Mesh => (i + 1..n).collect(),
        Topology::Line => (i + 1..n).take(1).collect(),
        // With two nodes the ring is a line; with one there is nobody to dial.
        Topology::Ring if n > 2 => vec![(i + 1) % n],
        Topology::Ring => (i + 1..n).take(1).collect(),
    }
}

fn run_cluster(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let declared = declared_views(args.views.as_deref(), args.no_index)?;
    let mut nodes = Vec::with_capacity(usize::from(args.nodes));
    let n = usize::from(args.nodes);
    let base_sync_port = match args.base_sync_port {
        Some(port) => port,
        None if args.base_port == 0 => 0,
        None => args.base_port.checked_add(1000).with_context(|| {
            format!(
                "--base-port {} + 1000 exceeds 65535: give --base-sync-port",
                args.base_port
            )
        })?,
    };
    for i in 1..=args.nodes {
        let name = format!("node-{i}");
        let config = NodeConfig {
            data_dir: args.cluster_dir.join(&name),
            key_path: args.keys_dir.join(format!("{name}.key")),
        };
        let node = open_node(&config)?;
        let port = if args.base_port == 0 {
            0
        } else {
            args.base_port.checked_add(i - 1).with_context(|| {
                format!(
                    "--base-port {} + {} nodes exceeds 65535",
                    args.base_port, args.nodes
                )
            })?
        };
        let sync_port = if base_sync_port == 0 {
            0
        } else {
            base_sync_port.checked_add(i - 1).with_context(|| {
                format!(
                    "--base-sync-port {} + {} nodes exceeds 65535",
                    base_sync_port, args.nodes
                )
            })?
        };
        let query = query_engine(&node, &args.query);
        nodes.push(server::NodeSpec {
            name,
            node,
            http_addr: SocketAddr::new(args.host, port),
            http: HttpConfig {
                token: args.token.clone(),
                stream_idle_timeout: std::time::Duration::from_secs(args.shutdown.stream_idle_secs),
                query: Some(query),
                ..HttpConfig::default()
            },
            limits: serve_limits(&args.shutdown),
            index: !args.no_index,
            tree: !args.no_tree,
            views: declared.clone(),
            witness_keys: Vec::new(),
            sync: Some(server::SyncSpec {
                listen: Some(SocketAddr::new(args.host, sync_port)),
                peer_nodes: cluster_peers(args.topology, usize::from(i - 1), n),
                // Every node trusts every other: a node dialed by another knows its key.
                trust_nodes: (0..n).filter(|&j| j != usize::from(i - 1)).collect(),
                config: SyncConfig {
                    network: network_key(&args.network),
                    ..SyncConfig::default()
                },
                ..Default::default()
            }),
        });
    }
    runtime()?.block_on(server::serve_until_signal(nodes, |bound| {
        println!(
            "{:<8} {:<28} {:<22} {:<66} {:<30} data",
            "node", "http", "sync", "author", "dashboard"
        );
        for b in bound {
            println!(
                "{:<8} {:<28} {:<22} {:<66} {:<30} {}",
                b.name,
                format!("http://{}", b.http_addr),
                b.sync_addr.map(|a| a.to_string()).unwrap_or_default(),
                b.author.to_string(),
                dashboard_url(b.http_addr),
                b.data_dir.display()
            );
        }
    }))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_url_of_an_unspecified_address_is_on_loopback() {
        let url = |addr: &str| dashboard_url(addr.parse().unwrap());
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/");
        assert_eq!(url("192.0.2.7:80"), "http://192.0.2.7:80/");
    }
}
