//! The dashboard's query box and views list in Chromium: a statement typed into the box and
//! run shows its rows (numbers exact, NULL set apart, long values clipped, markup as text)
//! with the same `as_of` and digest `POST /query` answers; a bad statement shows the node's
//! own message in the box; a view is listed with its state and runs with its parameters.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{json, Value};

use super::{
    append, assert_no_console_errors, chromium_or_skip, keep_section_screenshot, wait, Dashboard,
    HOSTILE_DATA, TEST_DEADLINE, TOKEN,
};
use crate::common::{http, wait_until};

/// Appends an entry over HTTP and waits until the index covers it (`after=` its cursor),
/// so a statement the page runs next sees it.
fn append_indexed(addr: SocketAddr, value: i64, data: &str) {
    let added = append(addr, value, data);
    let cursor = added["cursor"].as_str().unwrap().to_owned();
    wait_until("the index to cover the appended entry", || {
        http(
            addr,
            "GET",
            &format!("/query?sql=SELECT%201&after={cursor}"),
            b"",
            &[],
        )
        .status
            == 200
    });
}

/// `POST /query` by the test itself: what the page must show.
pub(super) fn query(addr: SocketAddr, sql: &str) -> (u16, Value) {
    let answer = http(addr, "POST", "/query", sql.as_bytes(), &[]);
    (answer.status, answer.json())
}

/// Puts `text` into the query box as typed text (focus, then the browser's own input).
fn type_statement(dashboard: &mut Dashboard, text: &str, deadline: Instant) {
    dashboard.browser.evaluate(
        "{ const box = document.getElementById('query-sql'); box.value = ''; box.focus(); true }",
        deadline,
    );
    dashboard
        .browser
        .call("Input.insertText", json!({"text": text}), deadline);
}

/// The dashboard of a fresh node (run with `run_args` added), loaded, and the deadline of
/// the test; `None` when there is no Chromium (the test is skipped).
pub(super) fn open_loaded(run_args: &[&str]) -> Option<(Dashboard, Instant)> {
    let chromium = chromium_or_skip()?;
    let deadline = Instant::now() + TEST_DEADLINE;
    let mut dashboard = Dashboard::open_with(&chromium, run_args, deadline);
    wait(
        &mut dashboard.browser,
        "the page to load",
        "document.readyState === 'complete' \
         && document.getElementById('summary-count').textContent !== '–'",
        deadline,
    );
    Some((dashboard, deadline))
}

/// No console error but the failed requests in `expected`; then the browser and the node
/// stop.
pub(super) fn finish(dashboard: Dashboard, expected: &[(&str, u16)], deadline: Instant) {
    assert_no_console_errors(&dashboard.browser, dashboard.addr, expected);
    dashboard.browser.close(deadline);
    assert!(dashboard.node.terminate().success());
}

/// The rows of the result table, each cell as `[text, class, title]`.
const RESULT_CELLS: &str = "[...document.querySelectorAll('#query-rows tr')].map(tr => \
     [...tr.children].map(td => [td.textContent, td.className, td.title]))";

#[test]
fn a_statement_run_in_the_query_box_shows_its_rows_as_text() {
    let Some((mut dashboard, deadline)) = open_loaded(&[]) else {
        return;
    };
    let addr = dashboard.addr;
    append_indexed(addr, 42, HOSTILE_DATA);
    append_indexed(addr, -7, "plain");

    // 2^53 + 1 is where JSON.parse would round; 2.0 a REAL it would write as 2.
    let sql = "SELECT seq, value, data, NULL AS missing, 9007199254740993 AS big, 2.0 AS two, \
               printf('%.300c', 'x') AS wide FROM entries ORDER BY seq";
    type_statement(&mut dashboard, sql, deadline);
    dashboard.browser.evaluate(
        "document.getElementById('query-run').click(); true",
        deadline,
    );
    wait(
        &mut dashboard.browser,
        "the statement's two rows in the result table",
        "document.querySelectorAll('#query-rows tr').length === 2 \
         && document.getElementById('query-status').textContent === 'answer of the statement'",
        deadline,
    );

    let columns = dashboard.browser.evaluate(
        "[...document.querySelectorAll('#query-columns th')].map(th => th.textContent)",
        deadline,
    );
    assert_eq!(
        columns,
        json!(["seq", "value", "data", "missing", "big", "two", "wide"])
    );
    let long = "x".repeat(300);
    let clipped = format!("{}…", "x".repeat(120));
    let cells = dashboard.browser.evaluate(RESULT_CELLS, deadline);
    for (row, (seq, value, data)) in [("1", "42", HOSTILE_DATA), ("2", "-7", "plain")]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            cells[row],
            json!([
                [seq, "num", ""],
                [value, "num", ""],
                [data, "text", data],
                ["NULL", "null", ""],
                ["9007199254740993", "num", ""],
                ["2.0", "num", ""],
                [clipped, "text", long],
            ]),
            "row {row}"
        );
    }
    // The markup in the data is text: no element was made from it, no script ran.
    let page = dashboard.browser.evaluate(
        "({elements: document.querySelectorAll('#query-result img, #query-result script').length, \
           title: document.title})",
        deadline,
    );
    assert_eq!(page["elements"], json!(0));
    assert_ne!(page["title"], json!("owned"));

    // Beneath the table: the same facts the node answers over HTTP.
    let (status, answer) = query(addr, sql);
    assert_eq!(status, 200, "{answer}");
    let facts = dashboard.browser.evaluate(
        "({count: document.getElementById('query-count').textContent, \
           as_of: document.getElementById('query-as-of').textContent, \
           truncated: document.getElementById('query-truncated').hidden, \
           digest: document.querySelector('#query-digest code').title, \
           short: document.querySelector('#query-digest code').textContent, \
           hidden: document.getElementById('query-facts').hidden})",
        deadline,
    );
    let digest = answer["digest"].as_str().unwrap();
    assert_eq!(
        facts,
        json!({
            "count": "2 rows",
            "as_of": answer["as_of"],
            "truncated": true,
            "digest": digest,
            "short": format!("{}…", &digest[..16]),
            "hidden": false,
        })
    );

    // A picture of the query box with its answer, for a person to look at.
    let (path, png, width, height) =
        keep_section_screenshot(&mut dashboard.browser, "query", "query.png", deadline);
    eprintln!(
        "screenshot: {} ({} bytes, {width}x{height} PNG): the query box with the answer of \
         {sql:?}: two rows, the hostile data shown as text",
        path.display(),
        png.len()
    );

    finish(dashboard, &[], deadline);
}

#[test]
fn a_bad_statement_shows_the_nodes_message_in_the_box() {
    let Some((mut dashboard, deadline)) = open_loaded(&[]) else {
        return;
    };
    let addr = dashboard.addr;

    let bad = "SELECT nope FROM entries";
    type_statement(&mut dashboard, bad, deadline);
    // Ctrl+Enter in the box, as the browser's own key events.
    for kind in ["keyDown", "keyUp"] {
        dashboard.browser.call(
            "Input.dispatchKeyEvent",
            json!({"type": kind, "modifiers": 2, "key": "Enter", "code": "Enter",
                   "windowsVirtualKeyCode": 13}),
            deadline,
        );
    }
    wait(
        &mut dashboard.browser,
        "the error shown in the query box",
        "!document.getElementById('query-error').hidden",
        deadline,
    );
    let (status, answer) = query(addr, bad);
    assert_eq!(status, 400, "{answer}");
    let shown = dashboard.browser.evaluate(
        "({error: document.getElementById('query-error').textContent, \
           status: document.getElementById('query-status').textContent, \
           table: document.getElementById('query-result').hidden})",
        deadline,
    );
    assert_eq!(
        shown,
        json!({"error": answer["error"], "status": "the statement failed", "table": true})
    );
    assert!(
        !dashboard
            .browser
            .events
            .iter()
            .any(|e| e["method"] == "Page.javascriptDialogOpening"),
        "an error is shown in the page, not in a dialog"
    );

    // A good statement next: its rows, and the error gone.
    type_statement(&mut dashboard, "SELECT 1 AS one", deadline);
    dashboard.browser.evaluate(
        "document.getElementById('query-run').click(); true",
        deadline,
    );
    wait(
        &mut dashboard.browser,
        "the next statement's row, and no error",
        "document.getElementById('query-error').hidden \
         && document.querySelector('#query-rows td')?.textContent === '1'",
        deadline,
    );

    finish(dashboard, &[("/query", 400)], deadline);
}

#[test]
fn the_views_list_shows_each_view_and_runs_it_with_its_parameters() {
    let Some((mut dashboard, deadline)) = open_loaded(&[]) else {
        return;
    };
    let addr = dashboard.addr;
    append_indexed(addr, 5, "a");
    append_indexed(addr, 6, "b");
    let author = http(addr, "GET", "/health", b"", &[]).json()["author"]
        .as_str()
        .unwrap()
        .to_owned();

    let auth = format!("Bearer {TOKEN}");
    for (name, view) in [
        (
            "feed",
            json!({"sql": "SELECT seq, value FROM entries WHERE author = :author AND seq >= :from \
                           ORDER BY seq",
                   "indexes": [],
                   "description": "one feed from a seq"}),
        ),
        (
            "per_author",
            json!({"sql": "SELECT author, count(*) AS n FROM entries GROUP BY author ORDER BY author",
                   "indexes": ["CREATE INDEX by_value ON entries(value)"],
                   "description": "entries per author"}),
        ),
    ] {
        let put = http(
            addr,
            "PUT",
            &format!("/views/{name}"),
            view.to_string().as_bytes(),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
        );
        assert!((200..300).contains(&put.status), "{name}: {}", put.body);
    }

    wait(
        &mut dashboard.browser,
        "both views listed, ready, with their descriptions and the feed's two parameters",
        "!document.getElementById('views').hidden \
         && JSON.stringify([...document.querySelectorAll('#views-list li')].map(li => \
              [li.dataset.view, li.querySelector('.view-state')?.textContent, \
               li.querySelector('.view-description')?.textContent, \
               [...li.querySelectorAll('input')].map(i => i.name)])) \
            === JSON.stringify([['feed', 'ready', 'one feed from a seq', ['author', 'from']], \
                                ['per_author', 'ready', 'entries per author', []]])",
        deadline,
    );

    // The parameterised view, with its values typed in: sent as ?:author=...&:from=2.
    dashboard.browser.evaluate(
        &format!(
            "{{ const item = document.querySelector('#views-list li[data-view=\"feed\"]'); \
             item.querySelector('input[name=\"author\"]').value = '{author}'; \
             item.querySelector('input[name=\"from\"]').value = '2'; \
             item.querySelector('button').click(); true }}"
        ),
        deadline,
    );
    wait(
        &mut dashboard.browser,
        "the feed view's answer in the result table",
        "document.getElementById('query-status').textContent === 'answer of view feed'",
        deadline,
    );
    let cells = dashboard.browser.evaluate(RESULT_CELLS, deadline);
    assert_eq!(cells, json!([[["2", "num", ""], ["6", "num", ""]]]));
    let direct = http(
        addr,
        "GET",
        &format!("/views/feed?:author={author}&:from=2"),
        b"",
        &[],
    );
    assert_eq!(direct.status, 200, "{}", direct.body);
    let digest = dashboard.browser.evaluate(
        "document.querySelector('#query-digest code').title",
        deadline,
    );
    assert_eq!(digest, direct.json()["digest"]);

    // The other one, into the same table.
    dashboard.browser.evaluate(
        "document.querySelector('#views-list li[data-view=\"per_author\"] button').click(); true",
        deadline,
    );
    wait(
        &mut dashboard.browser,
        "the per_author view's answer",
        "document.getElementById('query-status').textContent === 'answer of view per_author'",
        deadline,
    );
    let cells = dashboard.browser.evaluate(RESULT_CELLS, deadline);
    assert_eq!(cells[0][1], json!(["2", "num", ""]));
    assert_eq!(cells[0][0][0], json!(author));

    finish(dashboard, &[], deadline);
}
