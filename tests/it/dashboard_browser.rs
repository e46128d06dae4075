//! The dashboard in a real browser: the `kappalog` binary (behind `--token`) serves it,
//! headless Chromium loads it, the test appends entries over HTTP and through the page's
//! form, and the page must show them live from `/tail`, update its counts, render hostile
//! entry text as text, and log no error to its console. A screenshot is kept. The query
//! box and the views list have their own tests (`dashboard_browser/query.rs`), as has the
//! index panel (`dashboard_browser/index_panel.rs`), on the same setup ([`Dashboard`]).
//!
//! Needs Chromium: `KAPPALOG_CHROMIUM=/path/to/chromium`, or `chromium` (Debian's package)
//! or `chromium-browser` on `PATH`. Without one the test is skipped with a loud message,
//! unless `KAPPALOG_REQUIRE_CHROMIUM=1` (set by `.ci/run`): then it fails.

mod cdp;
mod index_panel;
mod query;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common;
use crate::common::{http, kappalog, printed_addr, Running};
use cdp::Browser;

const TOKEN: &str = "dashboard-test-token";
/// Everything in one test, browser start included, finishes within this.
const TEST_DEADLINE: Duration = Duration::from_secs(90);

/// Entry text written to break out of markup: it must show up as these very characters.
const HOSTILE_DATA: &str =
    "<img src=x onerror=\"document.title='owned'\"><script>alert(1)</script>";

#[test]
fn the_dashboard_shows_new_entries_live_with_no_console_errors() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let deadline = Instant::now() + TEST_DEADLINE;
    let Dashboard {
        dir: _dir,
        node,
        addr,
        mut browser,
    } = Dashboard::open(&chromium, deadline);

    // Loaded, the first summary shown, and the tail connected (it starts at "now", so an
    // entry appended before it opened would not be in the live list).
    wait(
        &mut browser,
        "the page to load its summary and open the tail",
        "document.readyState === 'complete' \
         && document.getElementById('summary-count').textContent === '0' \
         && document.getElementById('tail-status').textContent.startsWith('connected')",
        deadline,
    );

    // An entry appended over HTTP, by the test.
    let hash = append(addr, 42, HOSTILE_DATA)["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    wait(
        &mut browser,
        "the appended entry's hash in the live list and the count at 1",
        &format!(
            "[...document.querySelectorAll('#tail-list .hash')].some(e => e.textContent === '{hash}') \
             && document.getElementById('summary-count').textContent === '1' \
             && document.getElementById('own-feed-length').textContent === '1'"
        ),
        deadline,
    );
    // The hostile text is text: the same characters, and no element made from it.
    let shown = browser.evaluate(
        "({data: document.querySelector('#tail-list .data').textContent, \
           images: document.querySelectorAll('#tail-list img, #tail-list script').length, \
           title: document.title})",
        deadline,
    );
    assert_eq!(shown["data"], json!(HOSTILE_DATA));
    assert_eq!(shown["images"], json!(0));
    assert_ne!(shown["title"], json!("owned"));

    // An entry appended through the page's form, with the token typed into it.
    browser.evaluate(
        &format!(
            "document.getElementById('add-value').value = '-7'; \
             document.getElementById('add-data').value = 'from the form'; \
             const token = document.getElementById('add-token'); \
             token.value = '{TOKEN}'; \
             token.dispatchEvent(new Event('input')); \
             document.getElementById('add-form').requestSubmit(); true"
        ),
        deadline,
    );
    wait(
        &mut browser,
        "the form's entry to be appended and shown",
        "document.getElementById('add-result').textContent.startsWith('appended seq 2') \
         && document.querySelectorAll('#tail-list li').length === 2 \
         && document.getElementById('summary-count').textContent === '2' \
         && document.getElementById('summary-sum').textContent === '35' \
         && document.querySelectorAll('#feeds-body tr.own').length === 1",
        deadline,
    );
    // The token went nowhere but the request.
    let stored = browser.evaluate(
        "localStorage.length + sessionStorage.length + document.cookie.length",
        deadline,
    );
    assert_eq!(stored, json!(0), "the token must not be stored");
    let count = http(addr, "GET", "/summary", b"", &[]).json()["count"].clone();
    assert_eq!(count, json!(2));

    // A forked feed, imported: the summary counts it, the feeds table marks it, and the
    // proof is offered for download.
    let auth = format!("Bearer {TOKEN}");
    let import = http(
        addr,
        "POST",
        "/import",
        &forked_feed_csv(),
        &[("Authorization", &auth)],
    );
    assert_eq!(import.status, 200, "{}", import.body);
    assert_eq!(import.json()["forks"], json!(1), "{}", import.body);
    wait(
        &mut browser,
        "the fork to show in the summary, the feeds and the proofs",
        "document.getElementById('summary-forked').textContent === '1' \
         && [...document.querySelectorAll('#feeds-body td')].some(td => td.textContent === 'forked') \
         && [...document.querySelectorAll('#forks-body a[download]')] \
              .some(a => a.href.startsWith('blob:') && a.download.endsWith('-2.json'))",
        deadline,
    );

    // The chart has drawn bars for the seconds the entries arrived in.
    wait(
        &mut browser,
        "the rate chart to draw a bar",
        "document.querySelectorAll('#rate-chart rect.bar').length > 0",
        deadline,
    );

    let (path, png, width, height) = keep_screenshot(
        &mut browser,
        json!({"format": "png"}),
        "dashboard.png",
        deadline,
    );
    let facts = browser.evaluate(
        "({author: document.getElementById('node-author').textContent, \
           count: document.getElementById('summary-count').textContent, \
           sum: document.getElementById('summary-sum').textContent, \
           live: document.querySelectorAll('#tail-list li').length, \
           bars: document.querySelectorAll('#rate-chart rect.bar').length, \
           feeds: document.querySelectorAll('#feeds-body tr').length, \
           forks: document.querySelectorAll('#forks-body tr').length, \
           result: document.getElementById('add-result').textContent})",
        deadline,
    );
    eprintln!(
        "screenshot: {} ({} bytes, {width}x{height} PNG): the dashboard of node {} with \
         count {} and sum {}, {} entries in the live list, newest first (the forked feed's two \
         imported entries, then the form's, then the test's with the hostile text shown as \
         text), {} bar(s) in the rate chart, {} feed row(s) \
         (one forked), {} fork proof(s) with a download link, and the form's answer {:?}",
        path.display(),
        png.len(),
        facts["author"].as_str().unwrap_or("?"),
        facts["count"],
        facts["sum"],
        facts["live"],
        facts["bars"],
        facts["feeds"],
        facts["forks"],
        facts["result"].as_str().unwrap_or("?"),
    );

    // Nothing at error level in the console: console.error calls, uncaught exceptions, and
    // the browser's own log (failed loads, Content-Security-Policy violations).
    assert_no_console_errors(&browser, addr, &[]);

    browser.close(Instant::now() + Duration::from_secs(10));
    assert!(node.terminate().success());
}

/// Chromium's path, or `None` when there is none and the test is to be skipped (loudly);
/// under `KAPPALOG_REQUIRE_CHROMIUM=1` a missing Chromium fails instead.
fn chromium_or_skip() -> Option<PathBuf> {
    let chromium = cdp::find_chromium();
    if chromium.is_none() {
        let required = std::env::var_os("KAPPALOG_REQUIRE_CHROMIUM").is_some_and(|v| v == "1");
        assert!(
            !required,
            "KAPPALOG_REQUIRE_CHROMIUM=1 but no Chromium: install Debian's `chromium` or set \
             KAPPALOG_CHROMIUM"
        );
        // Straight to the process's stderr: `eprintln!` would be captured by the test
        // harness and shown only on failure.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!!\n!!! SKIPPED dashboard_browser: no Chromium found (set KAPPALOG_CHROMIUM \
             or put `chromium` on PATH; `apt-get install chromium`)\n!!!!!!!!\n"
        );
    }
    chromium
}

/// The `kappalog` binary running behind `--token` in a temp dir, and headless Chromium
/// showing its dashboard (the page navigated to, not yet necessarily loaded).
struct Dashboard {
    dir: tempfile::TempDir,
    node: Running,
    addr: SocketAddr,
    browser: Browser,
}

impl Dashboard {
    fn open(chromium: &Path, deadline: Instant) -> Dashboard {
        Dashboard::open_with(chromium, &[], deadline)
    }

    /// As [`Dashboard::open`], with `run_args` added to `run`'s flags (`--query-timeout`).
    fn open_with(chromium: &Path, run_args: &[&str], deadline: Instant) -> Dashboard {
        let dir = tempfile::tempdir().unwrap();
        let mut command = kappalog();
        command
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--key")
            .arg(dir.path().join("node.key"))
            .args(["run", "--http", "127.0.0.1:0", "--token", TOKEN])
            .args(run_args);
        let node = Running::spawn(command);
        let line = node.wait_line("http://");
        let addr = printed_addr(&line);
        // `run` prints where the dashboard is; the browser goes there.
        let dashboard = line
            .split_once(" dashboard ")
            .map(|(_, url)| url.trim().to_owned())
            .unwrap_or_else(|| panic!("no dashboard URL in {line:?}"));
        assert_eq!(dashboard, format!("http://{addr}/"));

        let mut browser = Browser::launch(
            chromium,
            &dir.path().join("profile"),
            &dir.path().join("chromium.log"),
            deadline,
        );
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(domain, json!({}), deadline);
        }
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1500, "deviceScaleFactor": 1, "mobile": false}),
            deadline,
        );
        browser.call("Page.navigate", json!({"url": dashboard}), deadline);
        Dashboard {
            dir,
            node,
            addr,
            browser,
        }
    }
}

/// Appends an entry over HTTP with the node's token; the `POST /add` answer.
fn append(addr: SocketAddr, value: i64, data: &str) -> Value {
    let body = json!({"value": value, "data": data}).to_string();
    let auth = format!("Bearer {TOKEN}");
    let added = http(
        addr,
        "POST",
        "/add",
        body.as_bytes(),
        &[("Authorization", &auth)],
    );
    assert_eq!(added.status, 201, "{}", added.body);
    added.json()
}

/// Nothing at error level in the console: console.error calls, uncaught exceptions, and
/// the browser's own log (failed loads, Content-Security-Policy violations), except a
/// failed request the test caused on purpose: `(path, status)` in `expected`. The views
/// panel asks `GET /views` once at load; on a node without it (a 404) the browser logs
/// that, and the panel hides itself, so that one is expected too.
fn assert_no_console_errors(browser: &Browser, addr: SocketAddr, expected: &[(&str, u16)]) {
    let mut expected = expected.to_vec();
    if http(addr, "GET", "/views", b"", &[]).status == 404 {
        expected.push(("/views", 404));
    }
    let errors: Vec<&Value> = browser
        .events
        .iter()
        .filter(|e| is_error(e) && !is_expected_failure(e, addr, &expected))
        .collect();
    let console: Vec<String> = browser.events.iter().filter_map(console_line).collect();
    eprintln!(
        "console: {} message(s), {} unexpected at error level{}",
        console.len(),
        errors.len(),
        console
            .iter()
            .map(|line| format!("\n  {line}"))
            .collect::<String>()
    );
    assert!(
        errors.is_empty(),
        "errors in the page's console: {errors:#?}"
    );
}

/// Whether `event` is the browser's log of a request to one of `expected`'s paths failing
/// with its status.
fn is_expected_failure(event: &Value, addr: SocketAddr, expected: &[(&str, u16)]) -> bool {
    let entry = &event["params"]["entry"];
    event["method"] == "Log.entryAdded"
        && entry["source"] == "network"
        && expected.iter().any(|(path, status)| {
            entry["url"] == json!(format!("http://{addr}{path}"))
                && entry["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(&format!("status of {status} ")))
        })
}

/// Waits for `expression` to hold in the page; on timeout fails with what the page shows
/// and what its console said.
fn wait(browser: &mut Browser, what: &str, expression: &str, deadline: Instant) {
    let deadline = deadline.min(Instant::now() + common::DEADLINE);
    if browser.wait_for(expression, deadline) {
        return;
    }
    let text = browser.evaluate(
        "document.body.innerText",
        Instant::now() + Duration::from_secs(10),
    );
    let console: Vec<String> = browser.events.iter().filter_map(console_line).collect();
    panic!(
        "timed out waiting for {what}\n--- the page shows:\n{}\n--- console:\n{}",
        text.as_str().unwrap_or_default(),
        console.join("\n")
    );
}

fn is_error(event: &Value) -> bool {
    let params = &event["params"];
    match event["method"].as_str() {
        Some("Runtime.exceptionThrown") => true,
        Some("Runtime.consoleAPICalled") => {
            matches!(params["type"].as_str(), Some("error" | "assert"))
        }
        Some("Log.entryAdded") => params["entry"]["level"] == "error",
        _ => false,
    }
}

/// A console message or browser log entry as one line, or `None` for other events.
fn console_line(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.consoleAPICalled" => {
            Some(format!("console.{}: {}", params["type"], params["args"]))
        }
        "Runtime.exceptionThrown" => Some(format!("exception: {}", params["exceptionDetails"])),
        "Log.entryAdded" => Some(format!(
            "log {} ({}): {}",
            params["entry"]["level"], params["entry"]["source"], params["entry"]["text"]
        )),
        _ => None,
    }
}

/// A CSV import holding a feed of two entries and a second, conflicting entry at seq 2
/// (signed by the same key): a fork, with both entries as its proof.
fn forked_feed_csv() -> Vec<u8> {
    let id = common::identity(9);
    let mut entries = common::feed(&id, 2);
    let mut other = entries[1].0.unsigned();
    other.value = 99;
    entries.push(other.sign(&id));
    let mut csv = kappalog::csv::CsvWriter::new(Vec::new()).unwrap();
    for (entry, hash) in &entries {
        csv.write_entry(entry, hash).unwrap();
    }
    csv.finish().unwrap()
}

/// Takes a screenshot (`Page.captureScreenshot` with `params`) and keeps it as `name` in
/// `target/tmp/dashboard_browser/`: its path, its bytes, width and height.
fn keep_screenshot(
    browser: &mut Browser,
    params: Value,
    name: &str,
    deadline: Instant,
) -> (PathBuf, Vec<u8>, u32, u32) {
    let screenshot = browser.call("Page.captureScreenshot", params, deadline);
    let png = base64_decode(screenshot["data"].as_str().expect("base64 PNG data"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let (width, height) = png_size(&png);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard_browser");
    std::fs::create_dir_all(&shots).unwrap();
    let path = shots.join(name);
    std::fs::write(&path, &png).unwrap();
    (path, png, width, height)
}

/// As [`keep_screenshot`], of the page's element `id` only (a section), wherever it is
/// scrolled to.
fn keep_section_screenshot(
    browser: &mut Browser,
    id: &str,
    name: &str,
    deadline: Instant,
) -> (PathBuf, Vec<u8>, u32, u32) {
    let clip = browser.evaluate(
        &format!(
            "(() => {{ const r = document.getElementById('{id}').getBoundingClientRect(); \
               return {{x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height, \
                        scale: 1}}; }})()"
        ),
        deadline,
    );
    keep_screenshot(
        browser,
        json!({"format": "png", "clip": clip, "captureBeyondViewport": true}),
        name,
        deadline,
    )
}

/// Standard base64 (the screenshot's encoding).
fn base64_decode(text: &str) -> Vec<u8> {
    use base64ct::Encoding;
    base64ct::Base64::decode_vec(text).expect("valid base64")
}

/// Width and height from a PNG's IHDR chunk (bytes 16..24, big-endian).
fn png_size(png: &[u8]) -> (u32, u32) {
    let field = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (field(16), field(20))
}
