//! `kappalog proof verify FILE [--policy FILE] [--json]`: checks a feed entry's
//! `c2sp.org/tlog-proof@v1` bundle offline, with [`kappalog::tlog::bundle`], and says so in
//! one line.
//!
//! Exit codes tell a script what happened without parsing text: 0 the bundle proves its
//! entry; 1 it does not (a `FAILED:` line gives the first rule it breaks); 2 nothing could
//! be checked (the bundle or policy file cannot be read, or the policy is invalid), the
//! `error:` line on stderr saying why, as for clap's usage errors.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use kappalog::cli::ProofVerifyArgs;
use kappalog::tlog::bundle::{verify_entry_proof, Cosigners, VerifiedEntry, MAX_BUNDLE_BYTES};
use kappalog::tlog::policy::{Policy, MAX_POLICY_BYTES};

/// The longest `data` printed in full on the success line, in characters; longer data is
/// summarised by its size, so the verdict stays one readable line.
const MAX_DATA_SHOWN_CHARS: usize = 60;

/// Runs the check; never an `Err`, so the exit code is this module's, not `main`'s.
pub fn verify(args: &ProofVerifyArgs) -> ExitCode {
    let (bundle, policy) = match read_inputs(args) {
        Ok(inputs) => inputs,
        Err(error) => {
            eprintln!("error: {}", crate::one_line(&error));
            return ExitCode::from(2);
        }
    };
    let verdict = verify_entry_proof(&bundle, policy.as_ref());
    let printed = if args.json {
        print_json(&verdict)
    } else {
        print_line(&verdict)
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

fn read_inputs(args: &ProofVerifyArgs) -> anyhow::Result<(Vec<u8>, Option<Policy>)> {
    let bundle = read_bounded(&args.file, MAX_BUNDLE_BYTES)
        .with_context(|| format!("reading the bundle {}", args.file.display()))?;
    let policy = match &args.policy {
        None => None,
        Some(path) => {
            let text = read_bounded(path, MAX_POLICY_BYTES)
                .with_context(|| format!("reading the policy {}", path.display()))?;
            let policy = Policy::parse(&text)
                .with_context(|| format!("the policy {} is invalid", path.display()))?;
            Some(policy)
        }
    };
    Ok((bundle, policy))
}

/// At most `limit + 1` bytes of `path` (`-`: stdin): one byte over is enough for the
/// parser to refuse the input as too large, and a hostile file or endless pipe costs no
/// more memory than that.
fn read_bounded(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
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
                v.entry.author, v.entry.seq, v.tree_size, v.entry.value
            )?;
        }
    }
    out.flush()
}

fn print_json(verdict: &Result<VerifiedEntry, impl std::fmt::Display>) -> io::Result<()> {
    let json = match verdict {
        Err(reason) => serde_json::json!({ "verified": false, "reason": reason.to_string() }),
        Ok(v) => {
            let (checked, names) = match &v.cosigners {
                Cosigners::Verified(names) => (true, names),
                Cosigners::Unchecked(names) => (false, names),
            };
            serde_json::json!({
                "verified": true,
                "author": v.entry.author.to_hex(),
                "seq": v.entry.seq,
                "hash": v.hash.to_hex(),
                "tree_size": v.tree_size,
                "root": hex::encode(v.root),
                "value": v.entry.value,
                "data": v.entry.data,
                "cosigners": { "checked": checked, "names": names },
            })
        }
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{json}")?;
    out.flush()
}
