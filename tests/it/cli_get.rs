//! `kappalog get` as a user runs it: the real binary against a fake node on 127.0.0.1:0 that
//! answers the proof route with what a test chooses (the golden feed's bundles of
//! tests/it/cli_proof.rs, altered ones, errors, silence, floods). The fake node speaks raw
//! HTTP/1.1 from a thread, so it can also misbehave in ways no HTTP framework would: lie
//! about a body's length, stream without end, never answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use ed25519_dalek::SigningKey;
use kappalog::light::fetch::MAX_ANSWER_BYTES;
use kappalog::tlog::checkpoint::origin_for;

use crate::cli_proof::{audit_path, bundle, checkpoint_by, pinned, policy, VERIFIED_UNCHECKED};
use crate::common::kappalog;
use crate::tlog_golden::golden;

/// The golden feed's author, whose entry at seq 2 the pinned bundle proves.
const AUTHOR: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";

/// What the fake node does with each request.
#[derive(Clone)]
enum Answer {
    /// A complete response.
    Full {
        status: &'static str,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Reads the request and says nothing, holding the connection open.
    Silent,
    /// A 200 without a length whose body streams `bytes` bytes, then holds the connection.
    Stream { bytes: usize },
    /// A 200 announcing `Content-Length: length`, then nothing, holding the connection.
    Announce { length: u64 },
}

fn bundle_answer(body: Vec<u8>) -> Answer {
    Answer::Full {
        status: "200 OK",
        content_type: "text/plain; charset=utf-8",
        body,
    }
}

fn error_answer(status: &'static str, message: &str) -> Answer {
    Answer::Full {
        status,
        content_type: "application/json",
        body: serde_json::json!({ "error": message })
            .to_string()
            .into_bytes(),
    }
}

/// A fake node: its address and the request lines it received.
struct FakeNode {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeNode {
    /// Serves `answer` to every connection, each on its own thread. The threads end with the
    /// test process (they hold silent connections open on purpose).
    fn start(answer: Answer) -> FakeNode {
        FakeNode::routes(vec![("", answer)])
    }

    /// Serves, to each request, the answer of the first route whose key its request line
    /// contains (`""` matches any).
    fn routes(routes: Vec<(&'static str, Answer)>) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (routes, seen) = (routes.clone(), Arc::clone(&seen));
                std::thread::spawn(move || serve(stream, &routes, &seen));
            }
        });
        FakeNode { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn request_lines(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, routes: &[(&str, Answer)], seen: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let line = head.lines().next().unwrap_or_default().to_owned();
    let Some((_, answer)) = routes.iter().find(|(key, _)| line.contains(key)) else {
        return;
    };
    seen.lock().unwrap().push(line);
    let _ = match answer {
        Answer::Full {
            status,
            content_type,
            body,
        } => {
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(body))
        }
        Answer::Silent => Ok(()),
        Answer::Stream { bytes } => stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n")
            .and_then(|()| stream.write_all(&vec![b'x'; *bytes])),
        Answer::Announce { length } => stream.write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {length}\r\n\r\n"
            )
            .as_bytes(),
        ),
    };
    // Hold the connection until the client closes it: a client that waits for more of an
    // answer than was sent waits until its own timeout.
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// Exit code, stdout, stderr of `kappalog get --url URL ARGS`.
fn get(url: &str, args: &[&str]) -> (i32, String, String) {
    let out: Output = kappalog()
        .env_remove("KAPPALOG_URL")
        .env_remove("KAPPALOG_GET_TIMEOUT")
        .args(["get", "--url", url])
        .args(args)
        .output()
        .expect("run kappalog");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `get` of the golden entry (author, seq 2) from a node serving `answer`.
fn get_golden(answer: Answer, extra: &[&str]) -> (i32, String, String) {
    let node = FakeNode::start(answer);
    let mut args = vec!["--author", AUTHOR, "--seq", "2"];
    args.extend_from_slice(extra);
    get(&node.url(), &args)
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_valid_answer_verifies_and_its_saved_bundle_verifies_again_offline() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("entry.proof");
    let node = FakeNode::start(bundle_answer(pinned()));
    let args = ["--author", AUTHOR, "--seq", "2", "--save", path_str(&saved)];
    let (code, out, err) = get(&node.url(), &args);
    assert_eq!((code, out.as_str()), (0, VERIFIED_UNCHECKED), "{err}");
    assert_eq!(
        node.request_lines(),
        vec![format!("GET /feeds/{AUTHOR}/proof?seq=2 HTTP/1.1")]
    );
    assert_eq!(std::fs::read(&saved).unwrap(), pinned());

    let offline = kappalog()
        .args(["proof", "verify", path_str(&saved)])
        .output()
        .unwrap();
    assert_eq!(offline.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&offline.stdout), out);
}

#[test]
fn json_shows_the_entry_as_the_node_does_with_its_tree() {
    let g = golden();
    let (code, out, err) = get_golden(bundle_answer(pinned()), &["--json", "--size", "3"]);
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entry = &g.entries[1];
    let expected =
        serde_json::to_value(kappalog::entry::EntryJson::new(entry, &entry.hash())).unwrap();
    // Every field of the entry as `/entries` shows it, with the same values.
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&json[field], value, "{field}");
    }
    assert_eq!(json["verified"], true);
    assert_eq!(json["tree_size"], 3);
    assert_eq!(json["root"], hex::encode(g.checkpoint.checkpoint().root()));
    assert_eq!(json["cosigners"]["checked"], false);
}

#[test]
fn a_policy_met_names_its_witness_and_one_not_met_fails() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden();
    let met = dir.path().join("met.policy");
    std::fs::write(&met, policy(&g, "quorum node5")).unwrap();
    let (code, out, err) = get_golden(bundle_answer(pinned()), &["--policy", path_str(&met)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("; cosigned by node5 (policy quorum met);"),
        "{out}"
    );

    let unmet = dir.path().join("unmet.policy");
    std::fs::write(&unmet, policy(&g, "quorum node6")).unwrap();
    let (code, out, _) = get_golden(bundle_answer(pinned()), &["--policy", path_str(&unmet)]);
    assert_eq!(
        (code, out.as_str()),
        (
            1,
            "FAILED: the policy's witness quorum is not met (1 of its witnesses cosigned)\n"
        )
    );
}

#[test]
fn an_answer_that_does_not_prove_the_entry_asked_for_fails_with_its_reason() {
    let g = golden();
    let encoded = g.entries[1].encode();
    let origin = origin_for(g.author.key().as_bytes());
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let stranger_author = hex::encode(stranger.verifying_key().as_bytes());
    let mut flipped = audit_path(&g);
    flipped[0][0] ^= 1;
    let by_stranger = bundle(
        encoded.clone(),
        1,
        audit_path(&g),
        checkpoint_by(&g, &origin, &stranger),
    );
    let tampered = bundle(encoded, 1, flipped, g.checkpoint.clone());

    let cases: Vec<(&str, Answer, Vec<&str>, String)> = vec![
        (
            "another author's entry",
            bundle_answer(pinned()),
            vec!["--author", &stranger_author, "--seq", "2"],
            format!("FAILED: the node sent an entry of author {AUTHOR}, not of {stranger_author}\n"),
        ),
        (
            "another seq",
            bundle_answer(pinned()),
            vec!["--author", AUTHOR, "--seq", "3"],
            "FAILED: the node sent the entry at seq 2, not at seq 3\n".into(),
        ),
        (
            "another tree size",
            bundle_answer(pinned()),
            vec!["--author", AUTHOR, "--seq", "2", "--size", "2"],
            "FAILED: the node proved the entry in a tree of 3 entries, not of 2 as asked\n".into(),
        ),
        (
            "a tampered proof hash",
            bundle_answer(tampered),
            vec!["--author", AUTHOR, "--seq", "2"],
            "FAILED: the entry is not in the checkpoint's tree: the inclusion proof does not lead to the root\n".into(),
        ),
        (
            "a checkpoint signed by another key",
            bundle_answer(by_stranger),
            vec!["--author", AUTHOR, "--seq", "2"],
            "FAILED: the checkpoint is not signed by the entry's author: ".into(),
        ),
        (
            "not a bundle",
            bundle_answer(b"<html>hello</html>\n".to_vec()),
            vec!["--author", AUTHOR, "--seq", "2"],
            "FAILED: not a proof bundle: ".into(),
        ),
    ];
    for (what, answer, args, expected) in cases {
        let node = FakeNode::start(answer);
        let (code, out, err) = get(&node.url(), &args);
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert!(out.starts_with(&expected), "{what}: {out}");
        assert_eq!(out.lines().count(), 1, "{what}: {out}");
    }
}

#[test]
fn a_node_error_is_quoted_and_a_redirect_is_not_followed() {
    let (code, out, err) = get_golden(
        error_answer("404 Not Found", "no checkpoint of this feed yet"),
        &[],
    );
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            2,
            "",
            "error: the node answered 404: \"no checkpoint of this feed yet\"\n"
        )
    );

    let redirect = Answer::Full {
        status: "302 Found",
        content_type: "text/plain",
        body: b"elsewhere".to_vec(),
    };
    let (code, _, err) = get_golden(redirect, &[]);
    assert_eq!(
        (code, err.as_str()),
        (2, "error: the node answered 302: \"elsewhere\"\n")
    );
}

#[test]
fn an_answer_over_the_cap_is_refused_without_reading_it_all() {
    let expected = format!(
        "error: the node's answer is larger than {MAX_ANSWER_BYTES} bytes, more than any valid one\n"
    );
    // Streamed past the cap, then held open: refused at the first byte over, not at the end
    // (which never comes; the default timeout is 30 s, far beyond any test's patience).
    let streamed = Answer::Stream {
        bytes: MAX_ANSWER_BYTES + 4096,
    };
    // Announced, nothing sent: refused on the header alone.
    let announced = Answer::Announce { length: 1 << 40 };
    for answer in [streamed, announced] {
        let (code, out, err) = get_golden(answer, &[]);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (2, "", expected.as_str())
        );
    }
}

#[test]
fn a_node_that_never_answers_times_out() {
    let node = FakeNode::start(Answer::Silent);
    let args = ["--author", AUTHOR, "--seq", "2", "--timeout", "0.3"];
    let (code, out, err) = get(&node.url(), &args);
    assert_eq!(
        (code, out.as_str(), err),
        (
            2,
            "",
            format!("error: no answer from {}/ within 0.3 s\n", node.url())
        )
    );
}

#[test]
fn a_refused_connection_says_so() {
    // A port just freed: nothing listens on it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out, err) = get(
        &format!("http://{addr}"),
        &["--author", AUTHOR, "--seq", "2"],
    );
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(
        err.starts_with(&format!("error: connecting to {addr}: Connection refused")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn arguments_that_cannot_be_asked_are_refused_before_connecting() {
    let node = FakeNode::start(bundle_answer(pinned()));
    for (args, expected) in [
        (
            vec!["--author", AUTHOR, "--seq", "0"],
            "error: --seq must be at least 1\n",
        ),
        (
            vec!["--author", AUTHOR, "--seq", "3", "--size", "2"],
            "error: the entry at seq 3 is not in a tree of 2 entries: --size must be at least --seq\n",
        ),
    ] {
        let (code, _, err) = get(&node.url(), &args);
        assert_eq!((code, err.as_str()), (2, expected));
    }
    let (code, _, err) = get("https://127.0.0.1:1", &["--author", AUTHOR, "--seq", "2"]);
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            "error: --url must be http://HOST[:PORT] (only plain http is spoken), not https://127.0.0.1:1/\n"
        )
    );
    assert!(node.request_lines().is_empty());
}

/// `--state`: the node's checkpoint of 3 entries must be proved consistent with the golden
/// feed's checkpoint of 2 remembered. A true proof passes and the larger checkpoint is
/// remembered; a node that answers the consistency request with a wrong hash, garbage, too
/// many lines, an endless body, an error or silence fails (exit 1) or gives no answer (exit
/// 2), and what is remembered stays.
#[test]
fn with_state_the_node_must_prove_consistency_and_its_lies_are_caught() {
    use base64ct::{Base64, Encoding};
    use kappalog::tlog::checkpoint::{Checkpoint, SignedCheckpoint};
    use kappalog::tlog::merkle::{leaf_hash, node_hash};

    let g = golden();
    let leaves: Vec<[u8; 32]> = g.entries.iter().map(|e| leaf_hash(&e.encode())).collect();
    let author = kappalog::identity::Identity::from_seed([1; 32]);
    let two = Checkpoint::new(
        &origin_for(&author.author().0),
        2,
        node_hash(&leaves[0], &leaves[1]),
    );
    let two = SignedCheckpoint::sign(two.unwrap(), author.signing_key())
        .unwrap()
        .note()
        .to_bytes();
    let line = |hash: &[u8; 32]| format!("{}\n", Base64::encode_string(hash)).into_bytes();
    let proof_answer = |body: Vec<u8>| Answer::Full {
        status: "200 OK",
        content_type: "text/plain; charset=utf-8",
        body,
    };
    let run = |consistency: Answer, extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let remembered = dir.path().join(format!("{AUTHOR}.checkpoint"));
        std::fs::write(&remembered, &two).unwrap();
        let node = FakeNode::routes(vec![
            ("/proof?", bundle_answer(pinned())),
            ("/consistency?", consistency),
        ]);
        let mut args = vec![
            "--author",
            AUTHOR,
            "--seq",
            "2",
            "--state",
            path_str(dir.path()),
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = get(&node.url(), &args);
        let asked = node.request_lines();
        let now = std::fs::read(&remembered).unwrap();
        (code, out, err, asked, now == two, dir)
    };

    let (code, out, err, asked, unchanged, dir) = run(proof_answer(line(&leaves[2])), &[]);
    assert_eq!((code, out.as_str()), (0, VERIFIED_UNCHECKED), "{err}");
    assert_eq!(
        asked,
        vec![
            format!("GET /feeds/{AUTHOR}/proof?seq=2 HTTP/1.1"),
            format!("GET /feeds/{AUTHOR}/consistency?from=2&to=3 HTTP/1.1"),
        ]
    );
    assert!(!unchanged, "the larger checkpoint is remembered");
    let now = std::fs::read(dir.path().join(format!("{AUTHOR}.checkpoint"))).unwrap();
    assert_eq!(
        now,
        g.checkpoint.note().to_bytes(),
        "the node's note, as sent"
    );

    let mut bent = leaves[2];
    bent[0] ^= 1;
    let failures: Vec<(Answer, &str)> = vec![
        (proof_answer(line(&bent)), "FAILED: the node's checkpoint of 3 entries is not proved consistent with the one of 2 entries remembered: "),
        (proof_answer(b"hello\n".to_vec()), "FAILED: the node's checkpoint of 3 entries is not proved consistent with the one of 2 entries remembered: consistency proof line 1 is not base64 of a 32-byte hash"),
        (proof_answer(line(&leaves[2]).repeat(64)), "FAILED: the node's checkpoint of 3 entries is not proved consistent with the one of 2 entries remembered: the consistency proof has more than 63 lines"),
    ];
    for (answer, expected) in failures {
        let (code, out, err, _, unchanged, dir) = run(answer, &[]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.starts_with(expected), "{out}");
        assert!(unchanged, "a failed answer is never remembered");
        let kept = std::fs::read(dir.path().join(format!("{AUTHOR}.conflict"))).unwrap();
        assert_eq!(
            kept,
            g.checkpoint.note().to_bytes(),
            "the node's note kept as evidence"
        );
    }
    let errors: Vec<(Answer, &[&str], &str)> = vec![
        (
            Answer::Stream { bytes: 100_000 },
            &[],
            "bytes, more than any valid one",
        ),
        (
            error_answer("409 Conflict", "to 3 is past the feed's 2 entries"),
            &[],
            "the node answered 409",
        ),
        (Answer::Silent, &["--timeout", "1"], "within 1 s"),
    ];
    for (answer, extra, expected) in errors {
        let (code, out, err, _, unchanged, _) = run(answer, extra);
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.starts_with("error: asking the node to prove its checkpoint of 3 entries consistent with the one of 2 remembered: "), "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(unchanged);
    }
}
