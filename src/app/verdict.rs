//! How `kappalog proof verify` and `kappalog get` read their inputs and say their verdict on
//! one entry's bundle: the same line and the same JSON object for the same bundle, whether
//! it came from a file or from a node.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use kappalog::entry::EntryJson;
use kappalog::tlog::bundle::{Cosigners, VerifiedEntry};
use kappalog::tlog::policy::{Policy, MAX_POLICY_BYTES};

/// The longest `data` printed in full on the success line, in characters; longer data is
/// summarised by its size, so the verdict stays one readable line.
const MAX_DATA_SHOWN_CHARS: usize = 60;

/// The C2SP tlog-policy file at `path`, read bounded and parsed.
pub fn read_policy(path: &Path) -> anyhow::Result<Policy> {
    let text = read_bounded(path, MAX_POLICY_BYTES)
        .with_context(|| format!("reading the policy {}", path.display()))?;
    Policy::parse(&text).with_context(|| format!("the policy {} is invalid", path.display()))
}

/// At most `limit + 1` bytes of `path` (`-`: stdin): one byte over is enough for the
/// parser to refuse the input as too large, and a hostile file or endless pipe costs no
/// more memory than that.
pub fn read_bounded(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path)?)
    };
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::new();
    reader.take(cap).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Says the verdict on stdout, one JSON object with `json`, else one line (`verified: ...`
/// or `FAILED: reason`), and gives its exit code: 0 verified, 1 refused, 2 when it could
/// not be written.
pub fn conclude(verdict: &Result<VerifiedEntry, impl std::fmt::Display>, json: bool) -> ExitCode {
    let printed = if json {
        print_json(verdict)
    } else {
        print_line(verdict)
    };
    if let Err(error) = printed {
        eprintln!("error: writing the verdict: {error}");
        return ExitCode::from(2);
    }
    match verdict {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn print_line(verdict: &Result<VerifiedEntry, impl std::fmt::Display>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match verdict {
        Err(reason) => writeln!(out, "FAILED: {reason}")?,
        Ok(v) => {
            let cosigners = match &v.cosigners {
                Cosigners::Verified(names) if names.is_empty() => {
                    "policy met without cosignatures".to_owned()
                }
                Cosigners::Verified(names) => {
                    format!("cosigned by {} (policy quorum met)", names.join(", "))
                }
                Cosigners::Unchecked(names) if names.is_empty() => "no cosignatures".to_owned(),
                Cosigners::Unchecked(names) => format!(
                    "cosignatures unchecked without --policy: {}",
                    names.join(", ")
                ),
            };
            let data = if v.entry.data.chars().count() <= MAX_DATA_SHOWN_CHARS {
                // Debug quotes and escapes it, so control characters cannot break the line.
                format!("data {:?}", v.entry.data)
            } else {
                format!("data of {} bytes", v.entry.data.len())
            };
            writeln!(
                out,
                "verified: author {} seq {} in a tree of {} entries; {cosigners}; value {} {data}",
                v.entry.author,
                v.entry.seq,
                v.tree_size(),
                v.entry.value
            )?;
        }
    }
    out.flush()
}

/// The entry as the node's `/entries` shows it ([`EntryJson`]), with the tree it was proved
/// in and the cosigners.
fn print_json(verdict: &Result<VerifiedEntry, impl std::fmt::Display>) -> io::Result<()> {
    let json = match verdict {
        Err(reason) => serde_json::json!({ "verified": false, "reason": reason.to_string() }),
        Ok(v) => {
            let (checked, names) = match &v.cosigners {
                Cosigners::Verified(names) => (true, names),
                Cosigners::Unchecked(names) => (false, names),
            };
            let mut json = serde_json::to_value(EntryJson::new(&v.entry, &v.hash))
                .map_err(io::Error::other)?;
            if let Some(fields) = json.as_object_mut() {
                fields.insert("verified".into(), true.into());
                fields.insert("tree_size".into(), v.tree_size().into());
                fields.insert("root".into(), hex::encode(v.root()).into());
                fields.insert(
                    "cosigners".into(),
                    serde_json::json!({ "checked": checked, "names": names }),
                );
            }
            json
        }
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{json}")?;
    out.flush()
}
