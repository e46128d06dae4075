//! The light client's costs (issue 22): what verifying one entry of a 1,000,000-entry feed
//! takes from a cold start, and how many bytes its proof and checkpoint are. Prints figures,
//! asserts nothing. `cargo bench --bench light`.
//!
//! The bundle is the one `GET /feeds/AUTHOR/proof` serves: the entry at seq 1,000,000 (the
//! longest audit path of the tree, 20 hashes) against an author checkpoint of size
//! 1,000,000 carrying two cosignatures, checked against a tlog-policy naming both witnesses
//! with a quorum of two. The other leaves of the tree are hashes of random bytes: the
//! client checks only the path, so its cost and size do not depend on them.
//!
//! - **in-process**: `tlog::bundle::verify_entry_proof` on the bundle's bytes and the parsed
//!   policy, its first call in the process (cold: nothing cached) and the median of the
//!   next 1,000 (four Ed25519 verifications: the entry, the checkpoint, two cosignatures);
//! - **the whole command**: `kappalog proof verify FILE --policy FILE` run as a process
//!   (the release binary, built first), its user + system CPU as the kernel counts it for
//!   the child, median of `KAPPALOG_BENCH_RUNS` (default 20): process start, reading both
//!   files, parsing and verifying;
//! - **sizes**: the bundle, its entry line, and the rest (the proof lines and the checkpoint
//!   with its three signature lines), target under 2 KiB.

use std::time::Instant;

use ed25519_dalek::SigningKey;
use kappalog::entry::UnsignedEntry;
use kappalog::identity::Identity;
use kappalog::tlog::bundle::{make_entry_proof, verify_entry_proof};
use kappalog::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};
use kappalog::tlog::cosignature::{cosign, cosigner_name};
use kappalog::tlog::merkle::{leaf_hash, prove_inclusion, MemoryTree};
use kappalog::tlog::policy::Policy;
use kappalog::tlog::vkey::{KeyType, VerifierKey};

mod common;
use common::{env_usize, report};

const SIZE: u64 = 1_000_000;

/// The witness keys' seeds, and when they cosigned (seconds since the epoch).
const WITNESS_SEEDS: [u8; 2] = [61, 62];
const COSIGNED_AT: u64 = 1_765_000_000;

/// The bundle of the entry at seq [`SIZE`] in a tree of [`SIZE`] leaves, with two
/// cosignatures, and the policy naming both witnesses with a quorum of two.
fn bundle_and_policy() -> (Vec<u8>, String, usize) {
    let author = Identity::from_seed([60; 32]);
    // A typical entry: a sensor reading of ~60 bytes of data (docs/QUERY.md's examples).
    let (entry, _) = UnsignedEntry {
        author: author.author(),
        seq: SIZE,
        timestamp: 1_765_000_000_000,
        prev: Some(kappalog::hash::Hash([7; 32])),
        value: 21,
        data: r#"{"sensor":"greenhouse-3","t":21.4,"rh":0.61,"battery":0.93}"#.to_owned(),
    }
    .sign(&author);
    let encoded = entry.encode();
    let mut tree = MemoryTree::new();
    for i in 0..SIZE - 1 {
        tree.append(leaf_hash(&i.to_le_bytes())).unwrap();
    }
    tree.append(leaf_hash(&encoded)).unwrap();
    let root = tree.root().unwrap();
    let path = prove_inclusion(SIZE, SIZE - 1, &tree).unwrap();
    let body = Checkpoint::new(&origin_for(&author.author().0), SIZE, root).unwrap();
    let mut checkpoint = SignedCheckpoint::sign(body, author.signing_key()).unwrap();
    let mut policy = format!(
        "log {}\n",
        kappalog::tlog::checkpoint::author_vkey(&author.signing_key().verifying_key())
    );
    for (i, seed) in WITNESS_SEEDS.into_iter().enumerate() {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let name = cosigner_name(key.verifying_key().as_bytes());
        let line = cosign(&name, &key, checkpoint.checkpoint().body(), COSIGNED_AT).unwrap();
        checkpoint.add_signature(line).unwrap();
        let vkey = VerifierKey::new(&name, KeyType::CosignatureV1, key.verifying_key()).unwrap();
        policy.push_str(&format!("witness w{i} {vkey}\n"));
    }
    policy.push_str("group both 2 w0 w1\nquorum both\n");
    let bundle = make_entry_proof(encoded.clone(), SIZE - 1, path, checkpoint)
        .unwrap()
        .to_bytes();
    (bundle, policy, encoded.len())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The release binary, built if needed (benches build the library, not the binary).
fn release_binary() -> std::path::PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "kappalog"])
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --release failed");
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/kappalog")
}

/// The user + system CPU of the children waited for so far, in seconds.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn main() {
    let runs = env_usize("KAPPALOG_BENCH_RUNS", 20).max(1);
    let (bundle, policy_text, entry_bytes) = bundle_and_policy();

    // Sizes. The entry line is base64 of the encoding plus its newline.
    let text = std::str::from_utf8(&bundle).unwrap();
    let entry_line = text
        .lines()
        .find(|line| line.starts_with("extra "))
        .map_or(0, |line| line.len() + 1);
    println!(
        "bundle of the entry at seq {SIZE} of a {SIZE}-entry feed, two cosignatures: {} bytes; the entry's line {entry_line} bytes ({entry_bytes} bytes encoded); the rest (proof lines and checkpoint) {} bytes (target < 2,048)",
        bundle.len(),
        bundle.len() - entry_line
    );

    // In-process: the first call is the cold one.
    let policy = Policy::parse(policy_text.as_bytes()).unwrap();
    let started = Instant::now();
    verify_entry_proof(&bundle, Some(&policy)).unwrap();
    let cold = started.elapsed().as_secs_f64() * 1e3;
    let warm: Vec<f64> = (0..1_000)
        .map(|_| {
            let started = Instant::now();
            verify_entry_proof(&bundle, Some(&policy)).unwrap();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "verify_entry_proof in-process: first call {cold:.3} ms, then median {:.3} ms",
        median(warm)
    );

    // The whole command, as a light client runs it.
    let binary = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let (bundle_path, policy_path) = (dir.path().join("proof"), dir.path().join("policy"));
    std::fs::write(&bundle_path, &bundle).unwrap();
    std::fs::write(&policy_path, &policy_text).unwrap();
    let mut cpu = Vec::new();
    for _ in 0..runs {
        let before = children_cpu_seconds();
        let out = std::process::Command::new(&binary)
            .arg("proof")
            .arg("verify")
            .arg(&bundle_path)
            .arg("--policy")
            .arg(&policy_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        cpu.push((children_cpu_seconds() - before) * 1e3);
    }
    report(
        "kappalog proof verify FILE --policy FILE, process CPU (user + system), cold start (target < 10)",
        "ms",
        cpu,
    );
}
