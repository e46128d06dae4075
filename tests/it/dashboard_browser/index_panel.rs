//! The dashboard's index panel in Chromium: on a node run with a short `--query-timeout`,
//! one statement the node refuses (400) and one it interrupts (504) show up as one refusal
//! and one timeout, beside the index's state and lag from `/health` and the statements
//! running and waiting from `/metrics`.

use std::time::Instant;

use serde_json::{json, Value};

use super::cdp::Browser;
use super::query::{finish, open_loaded, query};
use super::{keep_section_screenshot, wait};

/// A statement that never ends on its own: only the node's deadline stops it.
const ENDLESS: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

/// Waits until the panel shows `expected`: each of its figures by name (the text of the
/// element `index-state`, `index-lag`, `query-running` and so on), and whether the panel's
/// error line is hidden.
fn wait_for_panel(browser: &mut Browser, what: &str, expected: &Value, deadline: Instant) {
    let shown = "({state: document.getElementById('index-state').textContent, \
         lag: document.getElementById('index-lag').textContent, \
         running: document.getElementById('query-running').textContent, \
         waiting: document.getElementById('query-waiting').textContent, \
         timeouts: document.getElementById('query-timeouts').textContent, \
         refused: document.getElementById('query-refused').textContent, \
         busy: document.getElementById('query-busy').textContent, \
         error_hidden: document.getElementById('index-error').hidden})";
    let condition = format!(
        "(() => {{ const shown = {shown}; const expected = {expected}; \
           return Object.keys(shown).every(k => shown[k] === expected[k]); }})()"
    );
    wait(browser, what, &condition, deadline);
}

#[test]
fn the_index_panel_counts_refused_and_timed_out_queries() {
    // Half a second: the endless statement is interrupted quickly, well inside the HTTP
    // request timeout, so it is answered 504 by the query engine.
    let Some((mut dashboard, deadline)) = open_loaded(&["--query-timeout", "0.5"]) else {
        return;
    };
    let addr = dashboard.addr;

    wait_for_panel(
        &mut dashboard.browser,
        "the panel to show a ready index on the empty log and no query answers",
        &json!({"state": "ready", "lag": "0", "running": "0", "waiting": "0",
                "timeouts": "0", "refused": "0", "busy": "0", "error_hidden": true}),
        deadline,
    );

    let (status, answer) = query(addr, "DELETE FROM entries");
    assert_eq!(status, 400, "a write is refused: {answer}");
    let (status, answer) = query(addr, ENDLESS);
    assert_eq!(
        status, 504,
        "the endless statement is interrupted: {answer}"
    );

    wait_for_panel(
        &mut dashboard.browser,
        "the panel to count the refusal and the timeout, and nothing else",
        &json!({"state": "ready", "lag": "0", "running": "0", "waiting": "0",
                "timeouts": "1", "refused": "1", "busy": "0", "error_hidden": true}),
        deadline,
    );
    // The state is drawn as a good one, not a warning.
    let class = dashboard
        .browser
        .evaluate("document.getElementById('index-state').className", deadline);
    assert_eq!(class, json!("ok"));

    let (path, png, width, height) =
        keep_section_screenshot(&mut dashboard.browser, "index", "index.png", deadline);
    eprintln!(
        "screenshot: {} ({} bytes, {width}x{height} PNG): the index panel with the index \
         ready, one refusal and one timeout",
        path.display(),
        png.len()
    );

    // The test sent the failing statements itself: the page requested nothing that failed.
    finish(dashboard, &[], deadline);
}
