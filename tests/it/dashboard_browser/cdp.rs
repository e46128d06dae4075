//! Headless Chromium driven over the Chrome DevTools Protocol on a pipe
//! (`--remote-debugging-pipe`): the browser reads commands on its fd 3 and writes answers and
//! events on its fd 4, each a JSON text ended by a NUL byte. No websocket and no driver
//! binary: a `sh` wrapper maps the child's stdin and stdout onto fds 3 and 4.
//!
//! Every wait is bounded by the caller's deadline; the browser is killed when [`Browser`]
//! is dropped, whatever path the test leaves by.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where the browser is: `KAPPALOG_CHROMIUM` (a path), else `chromium` or
/// `chromium-browser` on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KAPPALOG_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A running headless browser with one page attached.
pub struct Browser {
    child: Child,
    commands: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    /// Every event received so far, in order (console calls, exceptions, log entries...).
    pub events: Vec<Value>,
}

impl Browser {
    /// Starts `chromium` headless with a fresh profile in `profile_dir` (its stderr goes to
    /// `log_path`) and attaches to a new blank page.
    pub fn launch(
        chromium: &Path,
        profile_dir: &Path,
        log_path: &Path,
        deadline: Instant,
    ) -> Browser {
        let log = std::fs::File::create(log_path).expect("create the browser log");
        let child = Command::new("sh")
            .arg("-c")
            // fd 3 <- our commands (the child's stdin), fd 4 -> our reader (its stdout).
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(chromium)
            .args([
                "--headless",
                "--remote-debugging-pipe",
                // The sandbox needs user namespaces, which containers (and root) often lack;
                // this browser loads only the node's own page from loopback.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                // No traffic to anything but the node under test.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-features=Translate,MediaRouter,OptimizationHints",
                "--hide-scrollbars",
                "--mute-audio",
            ])
            .arg(format!("--user-data-dir={}", profile_dir.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            // Its own process group, so the renderer and helper processes it starts die
            // with it (see `Drop`).
            .process_group(0)
            .spawn()
            .expect("spawn chromium through sh");
        let mut child = child;
        let commands = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut message = Vec::new();
            // Ends when the browser exits (EOF) or the test is gone (send fails).
            while matches!(reader.read_until(0, &mut message), Ok(n) if n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                let Ok(value) = serde_json::from_slice::<Value>(&message) else {
                    break;
                };
                if tx.send(value).is_err() {
                    break;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands,
            messages,
            next_id: 0,
            session: None,
            events: Vec::new(),
        };
        let target = browser.call(
            "Target.createTarget",
            json!({"url": "about:blank"}),
            deadline,
        );
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
            deadline,
        );
        browser.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        );
        browser
    }

    /// Sends one command (to the attached page once there is one) and waits, bounded by
    /// `deadline`, for its answer; events that arrive meanwhile are kept in `events`.
    pub fn call(&mut self, method: &str, params: Value, deadline: Instant) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&command).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush())
            .unwrap_or_else(|e| panic!("send {method} to the browser: {e}"));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) if message["id"] == json!(id) => {
                    if let Some(error) = message.get("error") {
                        panic!("{method} failed: {error}");
                    }
                    return message["result"].clone();
                }
                Ok(message) => {
                    if message.get("method").is_some() {
                        self.events.push(message);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no answer to {method} before the deadline")
                }
                Err(RecvTimeoutError::Disconnected) => panic!("the browser exited during {method}"),
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value (by value: JSON-able).
    pub fn evaluate(&mut self, expression: &str, deadline: Instant) -> Value {
        let answer = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            deadline,
        );
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("evaluating {expression:?} threw: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Re-evaluates `expression` until it is `true` (returns true) or `deadline` passes
    /// (returns false).
    pub fn wait_for(&mut self, expression: &str, deadline: Instant) -> bool {
        // Room for the last evaluation to answer after the deadline has been checked.
        let answer_by = deadline + Duration::from_secs(5);
        loop {
            if self.evaluate(expression, answer_by) == json!(true) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            // Not a synchronisation sleep: the pause between polls of the condition.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the browser to close, then waits (bounded) for it to exit; killed otherwise.
    pub fn close(mut self, deadline: Instant) {
        // Not `call`: the browser may exit before it answers. The id must be a fresh one
        // that fits Chromium's 32-bit integer ids: it ignores a message whose id does not
        // (u64::MAX once made every close wait out its deadline, then get killed).
        self.next_id += 1;
        let command = json!({"id": self.next_id, "method": "Browser.close", "params": {}});
        let mut bytes = serde_json::to_vec(&command).unwrap();
        bytes.push(0);
        let _ = self
            .commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush());
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills it.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group this browser leads (it is our child, so the id is ours to use):
        // renderers and helpers too, even if the browser itself already exited.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
