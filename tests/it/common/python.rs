//! Running an independent cross-check written in Python (`tests/interop/*.py`) over vectors
//! the Rust code wrote or against a live node: one copy of "is python3 with `cryptography`
//! here, and what if not".

use std::path::Path;
use std::process::Command;

/// Runs `tests/interop/<script>` on `json` (written to `dir/vectors.json`): whether it
/// agrees (exit status 0) and what it printed. None, with a loud note, if python3 or its
/// `cryptography` module is missing; that is a failure instead when
/// `KAPPALOG_REQUIRE_PYTHON=1` (CI sets it, `.ci/run`).
pub fn python_verdict(script: &str, dir: &Path, json: &str) -> Option<(bool, String)> {
    let path = dir.join("vectors.json");
    std::fs::write(&path, json).unwrap();
    python_run(script, &[path.to_str().unwrap()])
}

/// Runs `tests/interop/<script> ARGS` (a live check): as [`python_verdict`].
pub fn python_run(script: &str, args: &[&str]) -> Option<(bool, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let required = std::env::var_os("KAPPALOG_REQUIRE_PYTHON").is_some_and(|v| v == "1");
    let probe = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => {
            assert!(
                !required,
                "KAPPALOG_REQUIRE_PYTHON=1 but python3 with the cryptography module cannot run: {other:?}"
            );
            eprintln!(
                "note: python3 or its cryptography module is missing: SKIPPING the Python \
                 cross-check {script:?} (set KAPPALOG_REQUIRE_PYTHON=1 to fail instead)"
            );
            return None;
        }
    }
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), printed))
}
