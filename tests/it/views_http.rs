//! Named views through the real binary: added with `PUT /views/NAME` while entries keep
//! arriving, their indexes built in the background, run, kept across a restart and an index
//! deleted, dropped; refused with the reason when they break a rule; declared with
//! `--views FILE`; and an entry that breaks a view's index expression fails the view, never
//! the index.

use std::net::SocketAddr;
use std::path::Path;

use crate::common::index::docs_views;
use crate::common::query_db::encode;
use crate::common::{http, kappalog, run_node, wait_until, HttpResponse};

const TOKEN: &str = "views-token";

fn auth() -> [(&'static str, &'static str); 1] {
    [("authorization", "Bearer views-token")]
}

fn add(addr: SocketAddr, sensor: usize, value: i64) -> HttpResponse {
    let body = format!(
        "{{\"value\":{value},\"data\":\"{{\\\"sensor\\\":\\\"s{sensor}\\\",\\\"temp\\\":{value}}}\"}}"
    );
    http(addr, "POST", "/add", body.as_bytes(), &auth())
}

fn put_view(addr: SocketAddr, name: &str, body: &serde_json::Value) -> HttpResponse {
    http(
        addr,
        "PUT",
        &format!("/views/{name}"),
        body.to_string().as_bytes(),
        &auth(),
    )
}

fn query(addr: SocketAddr, sql: &str) -> serde_json::Value {
    let answer = http(
        addr,
        "GET",
        &format!("/query?sql={}", encode(sql)),
        b"",
        &[],
    );
    assert_eq!(answer.status, 200, "{sql}: {}", answer.body);
    answer.json()
}

fn state_of(addr: SocketAddr, name: &str) -> Option<serde_json::Value> {
    let listed = http(addr, "GET", "/views", b"", &[]).json();
    listed["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
}

fn index_names(addr: SocketAddr) -> Vec<String> {
    query(
        addr,
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
    )["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect()
}

/// The view of docs/QUERY.md's first worked example: the latest reading per sensor.
fn latest_per_sensor() -> serde_json::Value {
    serde_json::json!({
        "sql": "SELECT sensor, value FROM (SELECT json_extract(data, '$.sensor') AS sensor, value, \
                row_number() OVER (PARTITION BY json_extract(data, '$.sensor') \
                ORDER BY timestamp DESC, author, seq DESC) AS n FROM entries WHERE json_valid(data)) \
                WHERE n = 1 ORDER BY sensor",
        "indexes": ["CREATE INDEX by_sensor ON entries(json_extract(data, '$.sensor'), timestamp) WHERE json_valid(data)"],
        "description": "the latest reading of each sensor"
    })
}

fn wait_ready(addr: SocketAddr, name: &str) {
    wait_until(&format!("view {name} ready"), || {
        state_of(addr, name).is_some_and(|v| v["state"] == "ready")
    });
}

#[test]
fn a_view_is_added_while_appending_built_run_kept_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (node, addr) = run_node(&data, &key, &["--token", TOKEN]);
    for i in 0..200 {
        assert_eq!(add(addr, i % 7, i as i64).status, 201);
    }

    // Added while another client keeps appending: every append is acknowledged.
    let appender = std::thread::spawn(move || {
        (200..600)
            .map(|i| add(addr, i % 7, i as i64).status)
            .filter(|s| *s != 201)
            .count()
    });
    let unauthorised = http(
        addr,
        "PUT",
        "/views/latest",
        latest_per_sensor().to_string().as_bytes(),
        &[],
    );
    assert_eq!(unauthorised.status, 401, "{}", unauthorised.body);
    let created = put_view(addr, "latest", &latest_per_sensor());
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["name"], "latest");
    assert_eq!(
        appender.join().unwrap(),
        0,
        "an append failed while the view was added"
    );
    wait_ready(addr, "latest");
    assert_eq!(index_names(addr), ["by_sensor"]);

    // Runs: the same rows as its SQL through /query, after the last append is covered.
    let last = add(addr, 3, 1000).json();
    let cursor = last["cursor"].as_str().unwrap().to_owned();
    let ran = http(
        addr,
        "GET",
        &format!("/views/latest?after={cursor}"),
        b"",
        &[],
    );
    assert_eq!(ran.status, 200, "{}", ran.body);
    let ran = ran.json();
    let sql = latest_per_sensor()["sql"].as_str().unwrap().to_owned();
    let direct = query(addr, &sql);
    assert_eq!(ran["rows"], direct["rows"]);
    assert_eq!(ran["digest"], direct["digest"]);
    assert_eq!(ran["rows"].as_array().unwrap().len(), 7);
    assert!(
        ran["rows"].to_string().contains("[\"s3\",1000]"),
        "{}",
        ran["rows"]
    );
    assert_eq!(put_view(addr, "latest", &latest_per_sensor()).status, 200);

    // Kept across a restart, and across the index being deleted: rebuilt, same answer.
    assert!(node.terminate().success());
    std::fs::remove_dir_all(data.join("index")).unwrap();
    let (node, addr) = run_node(&data, &key, &["--token", TOKEN]);
    wait_ready(addr, "latest");
    assert_eq!(index_names(addr), ["by_sensor"]);
    let again = http(
        addr,
        "GET",
        &format!("/views/latest?after={cursor}"),
        b"",
        &[],
    )
    .json();
    assert_eq!(again["digest"], ran["digest"]);

    // Dropped: its index goes, the log stays.
    let count_before = query(addr, "SELECT count(*) FROM entries")["rows"].clone();
    let deleted = http(addr, "DELETE", "/views/latest", b"", &auth());
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(http(addr, "GET", "/views/latest", b"", &[]).status, 404);
    assert_eq!(
        http(addr, "DELETE", "/views/latest", b"", &auth()).status,
        404
    );
    wait_until("the view's index dropped", || index_names(addr).is_empty());
    assert_eq!(
        query(addr, "SELECT count(*) FROM entries")["rows"],
        count_before
    );
    assert!(node.terminate().success());
}

#[test]
fn a_view_that_breaks_a_rule_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (node, addr) = run_node(&data, &key, &["--token", TOKEN]);
    let mut cursor = String::new();
    for i in 0..20 {
        let added = add(addr, i % 3, i as i64);
        assert_eq!(added.status, 201);
        cursor = added.json()["cursor"].as_str().unwrap().to_owned();
    }
    // The order check samples what the index holds: let it hold the entries.
    let covered = http(
        addr,
        "GET",
        &format!("/query?after={cursor}&sql=SELECT%201"),
        b"",
        &[],
    );
    assert_eq!(covered.status, 200, "{}", covered.body);
    let view = |sql: &str, indexes: &[&str]| serde_json::json!({"sql": sql, "indexes": indexes});
    let ok = "SELECT author, seq FROM entries ORDER BY author, seq";
    for (name, body, status, says) in [
        (
            "unordered",
            view("SELECT author, seq FROM entries WHERE value > 3", &[]),
            400,
            "no ORDER BY",
        ),
        (
            "ties",
            view("SELECT author, seq, value FROM entries ORDER BY value", &[]),
            400,
            "not total",
        ),
        ("writes", view("DELETE FROM entries", &[]), 400, "refused"),
        (
            "unique",
            view(ok, &["CREATE UNIQUE INDEX u ON entries(value)"]),
            400,
            "UNIQUE",
        ),
        (
            "meta",
            view(ok, &["CREATE INDEX m ON meta(value)"]),
            400,
            "entries only",
        ),
        (
            "two",
            view(
                ok,
                &["CREATE INDEX a ON entries(value); DROP TABLE entries"],
            ),
            400,
            "refused",
        ),
        (
            "twice",
            view(
                ok,
                &["CREATE INDEX a ON entries(value); CREATE INDEX b ON entries(seq)"],
            ),
            400,
            "more than one",
        ),
        ("bad%20name", view(ok, &[]), 400, "view name"),
        (
            "big",
            serde_json::json!({"sql": ok, "description": "d".repeat(2000)}),
            413,
            "description",
        ),
        (
            "unknown",
            serde_json::json!({"sql": ok, "materialise": true}),
            400,
            "unknown field",
        ),
    ] {
        let answer = put_view(addr, name, &body);
        assert_eq!(answer.status, status, "{name}: {}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "{name}: {error}");
    }
    let garbage = http(addr, "PUT", "/views/g", b"{not json", &auth());
    assert_eq!(garbage.status, 400, "{}", garbage.body);

    // An index name is one view's.
    assert_eq!(
        put_view(
            addr,
            "first",
            &view(ok, &["CREATE INDEX by_value ON entries(value)"])
        )
        .status,
        201
    );
    let taken = put_view(
        addr,
        "second",
        &view(ok, &["CREATE INDEX by_value ON entries(seq)"]),
    );
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert!(taken.body.contains("view first's"), "{}", taken.body);

    // Nothing refused was kept.
    let listed = http(addr, "GET", "/views", b"", &[]).json();
    let names: Vec<&str> = listed["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first"]);
    assert_eq!(
        http(addr, "GET", "/views/nothing-here", b"", &[]).status,
        404
    );

    // An index whose values are huge on every row passes the check on a few sample rows but
    // not the writer's limit: that view fails, the index and the other views do not.
    let huge = view(ok, &["CREATE INDEX huge ON entries(zeroblob(2000000))"]);
    assert_eq!(put_view(addr, "huge", &huge).status, 201);
    wait_until("the huge view failed", || {
        state_of(addr, "huge").is_some_and(|v| v["state"] == "failed")
    });
    let reason = state_of(addr, "huge").unwrap()["reason"].to_string();
    assert!(reason.contains("too big"), "{reason}");
    wait_ready(addr, "first");
    assert_eq!(add(addr, 1, 1).status, 201);
    assert_eq!(
        http(addr, "GET", "/health", b"", &[]).json()["index"]["state"],
        "ready"
    );
    assert!(node.terminate().success());
}

#[test]
fn an_entry_that_breaks_an_index_expression_fails_the_view_not_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (node, addr) = run_node(&data, &key, &["--token", TOKEN]);
    for i in 0..10 {
        assert_eq!(add(addr, i, i as i64).status, 201);
    }
    // No json_valid guard: json_extract fails on data that is not JSON.
    let fragile = serde_json::json!({
        "sql": "SELECT count(*) FROM entries WHERE json_extract(data, '$.sensor') = 's1'",
        "indexes": ["CREATE INDEX fragile ON entries(json_extract(data, '$.sensor'))"],
    });
    assert_eq!(put_view(addr, "fragile", &fragile).status, 201);
    wait_ready(addr, "fragile");

    let plain = http(
        addr,
        "POST",
        "/add",
        br#"{"value":1,"data":"not json"}"#,
        &auth(),
    );
    assert_eq!(plain.status, 201, "{}", plain.body);
    let cursor = plain.json()["cursor"].as_str().unwrap().to_owned();
    let covered = http(
        addr,
        "GET",
        &format!(
            "/query?after={cursor}&sql={}",
            encode("SELECT count(*) FROM entries")
        ),
        b"",
        &[],
    );
    assert_eq!(covered.status, 200, "{}", covered.body);
    assert_eq!(covered.json()["rows"], serde_json::json!([[11]]));
    wait_until("the view failed", || {
        state_of(addr, "fragile").is_some_and(|v| v["state"] == "failed")
    });
    let reason = state_of(addr, "fragile").unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("fragile") && reason.contains("/11"),
        "{reason}"
    );
    assert!(index_names(addr).is_empty());
    // Later entries are indexed as ever.
    assert_eq!(add(addr, 1, 5).status, 201);
    let health = http(addr, "GET", "/health", b"", &[]).json();
    assert_eq!(health["index"]["state"], "ready", "{health}");
    assert!(node.terminate().success());
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn views_declared_in_a_file_come_up_with_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let file = write(
        dir.path(),
        "views.toml",
        r#"
[views.per_author]
description = "entries and total value per author"
sql = "SELECT author, count(*) AS entries, sum(value) AS total FROM entries GROUP BY author ORDER BY author"

[views.by_value]
sql = "SELECT author, seq FROM entries WHERE value = CAST(:value AS INTEGER) ORDER BY author, seq"
indexes = ["CREATE INDEX by_value ON entries(value)"]
"#,
    );
    let (node, addr) = run_node(&data, &key, &["--views", file.to_str().unwrap()]);
    wait_ready(addr, "by_value");
    assert_eq!(
        state_of(addr, "per_author").unwrap()["description"],
        "entries and total value per author"
    );
    assert_eq!(
        http(addr, "POST", "/add", br#"{"value":7}"#, &[]).status,
        201
    );
    wait_until("the entry in the view", || {
        let ran = http(addr, "GET", "/views/by_value?:value=7", b"", &[]).json();
        ran["rows"].as_array().is_some_and(|r| r.len() == 1)
    });
    assert!(node.terminate().success());

    // A view the file declares that breaks a rule stops the node with the reason.
    let bad = write(
        dir.path(),
        "bad.toml",
        "[views.bad]\nsql = \"SELECT seq FROM entries\"\n",
    );
    // It exits before serving: `output` waits for it.
    let start_with = |file: &Path| {
        kappalog()
            .arg("--data-dir")
            .arg(&data)
            .arg("--key")
            .arg(&key)
            .args(["run", "--http", "127.0.0.1:0", "--views"])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = start_with(&bad);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("view bad") && stderr.contains("ORDER BY"),
        "{stderr}"
    );
    let garbled = write(dir.path(), "garbled.toml", "[views.x\n");
    let out = start_with(&garbled);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("garbled.toml"));
}

#[test]
fn the_cli_adds_lists_and_drops_a_running_nodes_views() {
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (node, addr) = run_node(&data, &key, &["--token", TOKEN]);
    let url = format!("http://{addr}");
    let view = |args: &[&str]| {
        kappalog()
            .arg("view")
            .args(args)
            .args(["--url", &url])
            .env_remove("KAPPALOG_TOKEN")
            .output()
            .unwrap()
    };
    let add = [
        "add",
        "per_author",
        "--sql",
        "SELECT author, count(*) FROM entries GROUP BY author ORDER BY author",
        "--index",
        "CREATE INDEX by_author_value ON entries(author, value)",
        "--description",
        "entries per author",
    ];
    let refused = view(&add);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let added = view(&[&add[..], &["--token", TOKEN]].concat());
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(printed["name"], "per_author");
    wait_ready(addr, "per_author");
    let listed = view(&["list"]);
    assert!(listed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "per_author\tready\tentries per author\n"
    );
    let unordered = view(&[
        "add",
        "u",
        "--sql",
        "SELECT seq FROM entries",
        "--token",
        TOKEN,
    ]);
    assert!(!unordered.status.success());
    assert!(String::from_utf8_lossy(&unordered.stderr).contains("ORDER BY"));

    let dropped = view(&["rm", "per_author", "--token", TOKEN]);
    assert!(dropped.status.success());
    assert_eq!(
        String::from_utf8_lossy(&dropped.stdout),
        "dropped view per_author\n"
    );
    let again = view(&["rm", "per_author", "--token", TOKEN]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("404"));
    assert!(node.terminate().success());
}

#[test]
fn the_docs_worked_example_views_run() {
    let views = docs_views();
    let names: Vec<&str> = views.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "latest_per_sensor",
            "per_author_hour",
            "mentions",
            "readings_of"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let (data, key) = (dir.path().join("data"), dir.path().join("node.key"));
    let (node, addr) = run_node(&data, &key, &["--token", TOKEN]);
    let reading = |i: i64| {
        format!(
            "{{\"value\":{i},\"data\":\"{{\\\"sensor\\\":\\\"s-{}\\\",\\\"temp\\\":{}}}\"}}",
            i % 5,
            20 + i
        )
    };
    let mut cursor = String::new();
    for i in 0..50 {
        let added = http(addr, "POST", "/add", reading(i).as_bytes(), &auth());
        assert_eq!(added.status, 201);
        cursor = added.json()["cursor"].as_str().unwrap().to_owned();
    }
    let not_json = http(
        addr,
        "POST",
        "/add",
        br#"{"value":0,"data":"plain text"}"#,
        &auth(),
    );
    assert_eq!(not_json.status, 201);
    for (name, body) in &views {
        let put = put_view(addr, name, body);
        assert_eq!(put.status, 201, "{name}: {}", put.body);
    }
    for (name, _) in &views {
        wait_ready(addr, name);
    }
    let run = |path: String| {
        let answer = http(addr, "GET", &format!("{path}&after={cursor}"), b"", &[]);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        answer.json()["rows"].clone()
    };
    let latest = run("/views/latest_per_sensor?".into());
    let temps: Vec<(String, i64)> = latest
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
        .collect();
    let expected: Vec<(String, i64)> = (45..50).map(|i| (format!("s-{}", i % 5), 20 + i)).collect();
    assert_eq!(temps, expected);
    let hours = run("/views/per_author_hour?".into());
    let (entries, total) = hours.as_array().unwrap().iter().fold((0, 0), |(e, t), r| {
        (e + r[2].as_i64().unwrap(), t + r[3].as_i64().unwrap())
    });
    assert_eq!((entries, total), (51, (0..50).sum::<i64>()));
    assert_eq!(
        run("/views/mentions?:word=S-1".into())
            .as_array()
            .unwrap()
            .len(),
        10
    );
    let of_three = run("/views/readings_of?:sensor=s-3".into());
    assert_eq!(of_three.as_array().unwrap().len(), 10);
    // The point lookup uses the view's expression index.
    let readings_sql = views[3].1["sql"].as_str().unwrap();
    let plan = query(
        addr,
        &format!(
            "EXPLAIN QUERY PLAN {}",
            readings_sql.replace(":sensor", "'s-3'")
        ),
    );
    assert!(
        plan["rows"].to_string().contains("by_sensor"),
        "{}",
        plan["rows"]
    );
    assert!(node.terminate().success());
}
