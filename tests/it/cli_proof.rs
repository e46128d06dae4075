//! `kappalog proof verify` as a user runs it: the real binary on bundle files in a temp dir
//! (and on stdin). The bundles are the golden feed's (tests/it/tlog_golden.rs): the pinned
//! bundle of its second entry, and copies of it with one thing changed (tests/it/cli_get.rs
//! serves the same ones from a fake node).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use ed25519_dalek::SigningKey;
use kappalog::tlog::bundle::{make_entry_proof, MAX_BUNDLE_BYTES};
use kappalog::tlog::checkpoint::{origin_for, Checkpoint, SignedCheckpoint};

use crate::common::kappalog;
use crate::tlog_golden::{golden, leaf_hash, Golden, CHECKPOINT, PROOF_HEAD};

/// The success line of the pinned bundle without a policy, in full.
pub(crate) const VERIFIED_UNCHECKED: &str = "verified: author \
8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c seq 2 in a tree of 3 \
entries; cosignatures unchecked without --policy: \
kappalog/node/6e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80505bf1; value 20 \
data \"two\"\n";

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Exit code, stdout, stderr.
fn verdict(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kappalog proof verify` on `bundle` written to a file, with the policy text if any.
fn verify(dir: &Path, bundle: &[u8], policy: Option<&str>) -> (i32, String, String) {
    let file = write(dir, "bundle.proof", bundle);
    let mut args = vec!["proof", "verify", path_str(&file)];
    let policy_file;
    if let Some(text) = policy {
        policy_file = write(dir, "policy.txt", text.as_bytes());
        args.extend(["--policy", path_str(&policy_file)]);
    }
    verdict(&kappalog().args(&args).output().expect("run kappalog"))
}

pub(crate) fn pinned() -> Vec<u8> {
    format!("{PROOF_HEAD}{CHECKPOINT}").into_bytes()
}

/// The golden audit path of the second entry: leaf 0, then leaf 2.
pub(crate) fn audit_path(g: &Golden) -> Vec<[u8; 32]> {
    vec![
        leaf_hash(&g.entries[0].encode()),
        leaf_hash(&g.entries[2].encode()),
    ]
}

/// A bundle of `encoded` at `index` with `hashes` against `checkpoint`.
pub(crate) fn bundle(
    encoded: Vec<u8>,
    index: u64,
    hashes: Vec<[u8; 32]>,
    checkpoint: SignedCheckpoint,
) -> Vec<u8> {
    make_entry_proof(encoded, index, hashes, checkpoint)
        .unwrap()
        .to_bytes()
}

/// A checkpoint of the golden tree's size and root under `origin`, signed by `key`.
pub(crate) fn checkpoint_by(g: &Golden, origin: &str, key: &SigningKey) -> SignedCheckpoint {
    let body = g.checkpoint.checkpoint();
    let body = Checkpoint::new(origin, body.size(), *body.root()).unwrap();
    SignedCheckpoint::sign(body, key).unwrap()
}

/// A policy trusting the golden feed, knowing the golden witness as `node5` and a second
/// witness as `node6` (which never cosigned), with the given quorum.
pub(crate) fn policy(g: &Golden, quorum: &str) -> String {
    let other = SigningKey::from_bytes(&[6; 32]);
    let other_name = kappalog::tlog::cosignature::cosigner_name(other.verifying_key().as_bytes());
    let other = kappalog::tlog::vkey::VerifierKey::new(
        &other_name,
        kappalog::tlog::vkey::KeyType::CosignatureV1,
        other.verifying_key(),
    )
    .unwrap();
    format!(
        "log {}\nwitness node5 {}\nwitness node6 {other}\n{quorum}\n",
        g.author, g.witness
    )
}

#[test]
fn the_pinned_bundle_verifies_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = verify(dir.path(), &pinned(), None);
    assert_eq!((code, out.as_str()), (0, VERIFIED_UNCHECKED), "{err}");
}

#[test]
fn a_bundle_on_stdin_verifies_and_json_says_the_same() {
    let mut child = kappalog()
        .args(["proof", "verify", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&pinned()).unwrap();
    let (code, out, err) = verdict(&child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let g = golden();
    assert_eq!(json["verified"], true);
    assert_eq!(json["author"], hex::encode(g.author.key().as_bytes()));
    assert_eq!(json["seq"], 2);
    assert_eq!(json["tree_size"], 3);
    assert_eq!(json["value"], 20);
    assert_eq!(json["data"], "two");
    assert_eq!(json["hash"], g.entries[1].hash().to_hex());
    assert_eq!(json["cosigners"]["checked"], false);
    assert_eq!(json["cosigners"]["names"][0], g.witness.name());
}

#[test]
fn a_policy_whose_quorum_the_witness_meets_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden();
    for quorum in ["quorum node5", "group any1 any node5 node6\nquorum any1"] {
        let (code, out, err) = verify(dir.path(), &pinned(), Some(&policy(&g, quorum)));
        assert_eq!(code, 0, "{quorum}: {out}{err}");
        assert!(
            out.contains("; cosigned by node5 (policy quorum met);"),
            "{out}"
        );
    }
}

#[test]
fn a_policy_whose_quorum_is_not_met_fails_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden();
    for quorum in ["quorum node6", "group both all node5 node6\nquorum both"] {
        let (code, out, _) = verify(dir.path(), &pinned(), Some(&policy(&g, quorum)));
        assert_eq!(
            (code, out.as_str()),
            (
                1,
                "FAILED: the policy's witness quorum is not met (1 of its witnesses cosigned)\n"
            ),
            "{quorum}"
        );
    }
}

#[test]
fn each_broken_rule_fails_with_exit_1_and_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden();
    let encoded = g.entries[1].encode();
    let path = audit_path(&g);
    let origin = origin_for(g.author.key().as_bytes());
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let stranger_origin = origin_for(stranger.verifying_key().as_bytes());

    let mut tampered = encoded.clone();
    // The last byte of the data "two", just before the 64-byte signature.
    let at = tampered.len() - 65;
    tampered[at] ^= 1;
    let mut flipped = path.clone();
    flipped[0][0] ^= 1;

    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "tampered entry byte",
            bundle(tampered, 1, path.clone(), g.checkpoint.clone()),
            "FAILED: the entry's signature does not verify: ".into(),
        ),
        (
            "wrong index",
            bundle(encoded.clone(), 0, path.clone(), g.checkpoint.clone()),
            "FAILED: the bundle proves leaf 0, but the entry at seq 2 is leaf 1\n".into(),
        ),
        (
            "wrong origin",
            bundle(
                encoded.clone(),
                1,
                path.clone(),
                checkpoint_by(&g, &stranger_origin, &stranger),
            ),
            format!("FAILED: the checkpoint is for {stranger_origin}, not the entry's feed {origin}\n"),
        ),
        (
            "checkpoint signed by another key",
            bundle(
                encoded.clone(),
                1,
                path.clone(),
                checkpoint_by(&g, &origin, &stranger),
            ),
            "FAILED: the checkpoint is not signed by the entry's author: ".into(),
        ),
        (
            "proof hash flipped",
            bundle(encoded.clone(), 1, flipped, g.checkpoint.clone()),
            "FAILED: the entry is not in the checkpoint's tree: the inclusion proof does not lead to the root\n".into(),
        ),
        (
            "garbage",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "FAILED: not a proof bundle: ".into(),
        ),
        (
            "over-long",
            vec![b'x'; MAX_BUNDLE_BYTES + 1],
            format!("FAILED: the bundle is larger than {MAX_BUNDLE_BYTES} bytes\n"),
        ),
    ];
    for (what, bytes, expected) in cases {
        let (code, out, err) = verify(dir.path(), &bytes, None);
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert!(out.starts_with(&expected), "{what}: {out}");
        assert_eq!(out.lines().count(), 1, "{what}: {out}");
    }
}

#[test]
fn an_unreadable_bundle_or_an_invalid_policy_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.proof");
    let out = kappalog()
        .args(["proof", "verify", path_str(&missing)])
        .output()
        .unwrap();
    let (code, out, err) = verdict(&out);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.starts_with("error: reading the bundle "), "{err}");

    let (code, out, err) = verify(dir.path(), &pinned(), Some("witness\n"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.starts_with("error: the policy "), "{err}");
    assert!(out.is_empty(), "{out}");
}
