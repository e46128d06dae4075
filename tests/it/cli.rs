//! The CLI as a user runs it: the real binary, real files in temp dirs.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use crate::common;
use crate::common::kappalog;

fn run(dir: &Path, args: &[&str]) -> Output {
    kappalog()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run kappalog")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    stdout(&o)
}

/// The last line of stderr: the one-line reason a failing command gives.
fn reason(o: &Output) -> String {
    assert!(!o.status.success());
    stderr(o).lines().last().unwrap_or_default().to_owned()
}

#[test]
fn append_creates_the_key_then_extends_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["append", "--value", "5", "--data", "first"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("created a new node key"),
        "{}",
        stderr(&o)
    );
    let first: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["value"], 5);
    assert_eq!(first["data"], "first");
    assert!(dir.path().join("keys/node.key").exists());
    let second: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["append", "--value", "-6"])).unwrap();
    assert_eq!(second["seq"], 2);
    assert_eq!(second["prev"], first["hash"]);

    let summary: serde_json::Value = serde_json::from_str(&ok(dir.path(), &["summary"])).unwrap();
    assert_eq!(summary["count"], 2);
    assert_eq!(summary["sum"], -1);
    assert_eq!(summary["min"], -6);
    assert_eq!(summary["max"], 5);
    assert!(ok(dir.path(), &["verify"]).contains("ok"));
}

#[test]
fn keygen_writes_a_pair_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["keygen", "--name", "alice"]);
    assert!(out.contains("keys/alice.key"));
    let public = std::fs::read_to_string(dir.path().join("keys/alice.pub")).unwrap();
    assert_eq!(public.trim().len(), 64);
    let again = run(dir.path(), &["keygen", "--name", "alice"]);
    assert!(reason(&again).contains("alice.key"), "{}", reason(&again));
    let bad = run(dir.path(), &["keygen", "--name", "../x"]);
    assert!(reason(&bad).contains("key name"), "{}", reason(&bad));
    // The new key works as a node key.
    let entry = ok(
        dir.path(),
        &["--key", "keys/alice.key", "append", "--value", "1"],
    );
    assert!(entry.contains(public.trim()));
}

#[test]
fn malformed_key_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.key"), "not a key").unwrap();
    let o = run(dir.path(), &["--key", "bad.key", "append", "--value", "1"]);
    let line = reason(&o);
    assert!(line.contains("bad.key"), "{line}");
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn export_import_round_trip_is_byte_identical_and_cat_is_a_sync() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for v in 0..5 {
        ok(
            a.path(),
            &["append", "--value", &v.to_string(), "--data", "x,\"y\""],
        );
    }
    for v in 0..3 {
        ok(b.path(), &["append", "--value", &(100 + v).to_string()]);
    }
    let a_csv = ok(a.path(), &["export"]);
    ok(b.path(), &["export", "--out", "b.csv"]);
    let b_csv = std::fs::read_to_string(b.path().join("b.csv")).unwrap();

    // Import both into a fresh node through stdin, duplicated: the concatenation is a sync.
    let c = tempfile::tempdir().unwrap();
    let mut child = kappalog()
        .current_dir(c.path())
        .args(["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!("{b_csv}{a_csv}{a_csv}");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let report = stdout(&o);
    assert!(report.contains("added 8"), "{report}");
    assert!(report.contains("duplicates 5"), "{report}");
    assert!(report.contains("rejected 0"), "{report}");

    // Export -> import into an empty dir -> export gives identical bytes.
    let c_csv = ok(c.path(), &["export"]);
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c.csv"), &c_csv).unwrap();
    ok(d.path(), &["import", "c.csv"]);
    assert_eq!(ok(d.path(), &["export"]), c_csv);
    assert_eq!(ok(d.path(), &["summary"]), ok(c.path(), &["summary"]));
}

#[test]
fn import_reports_rejections_with_line_numbers() {
    let a = tempfile::tempdir().unwrap();
    ok(a.path(), &["append", "--value", "1"]);
    let csv = ok(a.path(), &["export"]);
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    // A copy of the entry with its value changed: the hash no longer matches.
    let tampered = lines[1].replacen(",1,,", ",2,,", 1);
    lines.push(tampered);
    lines.push("not,enough,fields".into());
    let path = a.path().join("in.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let b = tempfile::tempdir().unwrap();
    let report = ok(b.path(), &["import", path.to_str().unwrap()]);
    assert!(report.contains("added 1"), "{report}");
    assert!(report.contains("rejected 2"), "{report}");
    assert!(report.contains("line 3:"), "{report}");
    assert!(report.contains("line 4:"), "{report}");
}

#[test]
fn a_second_writer_gets_a_clear_error_and_readers_still_work() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["append", "--value", "1"]);
    let data = dir.path().join("data");
    let key = dir.path().join("keys/node.key");
    let (node, _addr) = common::run_node(&data, &key, &[]);
    let o = run(dir.path(), &["append", "--value", "2"]);
    let line = reason(&o);
    assert!(line.contains("data"), "{line}");
    assert!(line.to_lowercase().contains("lock"), "{line}");
    // Read-only commands work while the node writes.
    assert!(ok(dir.path(), &["summary"]).contains("\"count\":1"));
    assert!(ok(dir.path(), &["export"]).lines().count() == 2);
    ok(dir.path(), &["verify"]);
    assert!(node.terminate().success());
}

#[test]
fn verify_fails_on_a_corrupted_log_and_names_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    for v in 0..3 {
        ok(dir.path(), &["append", "--value", &v.to_string()]);
    }
    let log = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let o = run(dir.path(), &["verify"]);
    assert!(!o.status.success());
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("offset"), "{all}");
}

#[test]
fn export_of_a_missing_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--data-dir", "nope", "export"]);
    assert!(reason(&o).contains("nope"));
}

#[test]
fn help_exists_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        "keygen", "append", "export", "import", "verify", "summary", "run", "cluster",
    ] {
        let o = run(dir.path(), &[cmd, "--help"]);
        assert!(o.status.success(), "{cmd}");
        assert!(!stdout(&o).is_empty());
    }
}

#[test]
fn summary_excludes_a_feed_the_node_recorded_as_forked() {
    use kappalog::csv::CsvWriter;
    use kappalog::entry::UnsignedEntry;
    use kappalog::node::Node;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // One key signing two different first entries: a fork, arriving by import.
    let forker = common::identity(9);
    let mut csv = Vec::new();
    let mut writer = CsvWriter::new(&mut csv).unwrap();
    for value in [1, 2] {
        let (entry, hash) = UnsignedEntry {
            author: forker.author(),
            seq: 1,
            timestamp: 1_700_000_000_000,
            prev: None,
            value,
            data: String::new(),
        }
        .sign(&forker);
        writer.write_entry(&entry, &hash).unwrap();
    }
    writer.finish().unwrap();
    let (node, _) = Node::open_with_identity(&data, common::identity(1)).unwrap();
    node.append_blocking(5, String::new()).unwrap();
    node.import(&csv[..]).unwrap();
    let live: serde_json::Value = serde_json::from_str(&node.summary_json()).unwrap();
    let forked = node
        .feeds_page(None, 10)
        .feeds
        .into_iter()
        .find(|f| f.author == forker.author())
        .unwrap();
    assert_eq!(forked.status, kappalog::summary::FeedStatus::Forked);
    node.shutdown_blocking().unwrap();
    assert_eq!(live["count"], 1, "{live}");

    let printed: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["--data-dir", "data", "summary"])).unwrap();
    assert_eq!(printed, live);
    assert_eq!(
        (&printed["feed_count"], &printed["forked_feed_count"]),
        (&serde_json::json!(2), &serde_json::json!(1))
    );
}

#[test]
fn bad_sync_policy_flags_are_one_line_errors_before_anything_opens() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &["run", "--http", "127.0.0.1:0", "--allow-peer", "abc"],
    );
    assert!(!o.status.success());
    // clap's own error: its first line names the flag and what was expected.
    let first = stderr(&o).lines().next().unwrap_or_default().to_owned();
    assert!(first.contains("--allow-peer"), "{first}");
    assert!(first.contains("64 hex digits"), "{first}");

    let run_accepting = |list: &std::path::Path| {
        run(
            dir.path(),
            &[
                "run",
                "--http",
                "127.0.0.1:0",
                "--accept-authors",
                list.to_str().unwrap(),
            ],
        )
    };
    let missing = dir.path().join("no-such-list");
    let o = run_accepting(&missing);
    assert!(!o.status.success());
    assert!(reason(&o).starts_with("error: reading "), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));

    let list = dir.path().join("authors");
    std::fs::write(&list, "# ours\nnot-an-author\n").unwrap();
    let o = run_accepting(&list);
    assert!(!o.status.success());
    assert!(reason(&o).contains("line 2"), "{}", stderr(&o));
    // Nothing was opened: no data directory, no key.
    assert!(!dir.path().join("data").exists());
}

/// The long commands as a script or a pipe runs them: stderr is not a terminal, so it carries
/// no progress, exactly what each command said before it had a bar.
#[test]
fn long_commands_print_no_progress_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    for v in 0..3 {
        ok(dir.path(), &["append", "--value", &v.to_string()]);
    }
    let said = |args: &[&str]| {
        let o = run(dir.path(), args);
        assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
        stderr(&o)
    };
    assert_eq!(said(&["verify"]), "");
    assert_eq!(said(&["export"]), "");
    assert_eq!(
        said(&["export", "--out", "a.csv"]),
        "exported 3 entries to a.csv\n"
    );
    assert_eq!(said(&["import", "a.csv"]), "");
    assert_eq!(said(&["import", "-"]), "");
}

/// Runs the binary with `args` in `dir` at a terminal: a pseudo-terminal from util-linux
/// `script` (a `TERM` that can move the cursor). Returns all the terminal received, stdout and
/// stderr together.
fn on_terminal(dir: &Path, args: &str) -> String {
    let command = format!("'{}' {args}", env!("CARGO_BIN_EXE_kappalog"));
    let o = std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .current_dir(dir)
        .env("TERM", "xterm")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run kappalog under util-linux `script`");
    let screen = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{args} failed: {screen}");
    screen
}

/// The same commands at a terminal: a bar on stderr with the stage, the count against the
/// total, the rate and the time left, and the report after it as before. Not over CSV rows
/// going to the same terminal.
#[test]
fn long_commands_draw_a_progress_bar_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    for v in 0..3 {
        ok(dir.path(), &["append", "--value", &v.to_string()]);
    }
    // Explicit paths: the environment's KAPPALOG_* variables do not reach past `script`.
    let node = "--data-dir data --key keys/node.key";
    let bar = |screen: &str, stage: &str, count: &str| {
        assert!(screen.contains(stage), "no {stage:?} bar: {screen:?}");
        assert!(screen.contains(count), "no {count:?}: {screen:?}");
        assert!(screen.contains("/s, "), "no rate: {screen:?}");
        assert!(screen.contains(" left"), "no time left: {screen:?}");
    };

    let screen = on_terminal(dir.path(), &format!("{node} verify"));
    bar(&screen, "verifying", "/3 entries");
    assert!(screen.contains("ok: 3 entries in 1 feeds"), "{screen:?}");

    let screen = on_terminal(dir.path(), &format!("{node} export --out a.csv"));
    bar(&screen, "exporting", "/3 entries");
    assert!(screen.contains("exported 3 entries to a.csv"), "{screen:?}");

    let size = std::fs::metadata(dir.path().join("a.csv")).unwrap().len();
    let screen = on_terminal(dir.path(), &format!("{node} import a.csv"));
    // The total is the file's size, in the bar's units.
    bar(
        &screen,
        "reading",
        &format!("/{}", indicatif::HumanBytes(size)),
    );
    bar(&screen, "storing", "/3 entries");
    assert!(screen.contains("added 0, duplicates 3"), "{screen:?}");

    let screen = on_terminal(dir.path(), &format!("{node} export"));
    assert!(
        !screen.contains("exporting"),
        "a bar over the rows: {screen:?}"
    );
    assert!(screen.contains("author,seq,"), "{screen:?}");
}
