//! `kappalog get --url URL --author HEX --seq N [--size S] [--policy FILE] [--save FILE]
//! [--state DIR] [--json]`: one entry fetched from a running node with its proof, checked by
//! [`kappalog::light`] without trusting the node, and the verdict said as `proof verify`
//! says it. With `--state`, the answer's checkpoint must also be proved consistent with the
//! newest one verified before for the feed ([`kappalog::light::remembered`]), which it then
//! replaces when larger.
//!
//! Exit codes as `proof verify`'s: 0 the answer proves the entry asked for; 1 it does not
//! (a `FAILED:` line on stdout gives the first rule it breaks: a split view or an
//! unproved consistency with the remembered checkpoint is one); 2 there is no answer to
//! check (bad arguments, an unreadable policy or state, connection refused, timeout, an error
//! status with the node's message quoted, an answer over the cap, a node that cannot prove
//! consistency with the remembered checkpoint) or the bundle or state could not be saved, an
//! `error:` line on stderr saying why.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use kappalog::cli::GetArgs;
use kappalog::light::fetch::{fetch_bundle, fetch_consistency};
use kappalog::light::remembered::{check_proof, parse_proof_lines, relate, Relation};
use kappalog::light::{check_answer, state, AnswerError, EntryRequest};
use kappalog::tlog::bundle::VerifiedEntry;
use kappalog::tlog::checkpoint::SignedCheckpoint;
use tokio::runtime::Runtime;

use super::verdict::{self, read_policy};

/// Runs the fetch and the checks; never an `Err`, so the exit code is this module's.
pub fn get(args: &GetArgs) -> ExitCode {
    match run(args) {
        Ok(verdict) => verdict::conclude(&verdict, args.json),
        Err(error) => {
            eprintln!("error: {}", crate::one_line(&error));
            ExitCode::from(2)
        }
    }
}

/// The verdict on the node's answer, or why there is none (exit 2).
fn run(args: &GetArgs) -> anyhow::Result<Result<VerifiedEntry, AnswerError>> {
    let request = EntryRequest::new(args.author, args.seq, args.size)?;
    let policy = args.policy.as_deref().map(read_policy).transpose()?;
    // Read before asking: a damaged state file is an error whatever the node says.
    let remembered = match &args.state {
        Some(dir) => state::load(dir, &args.author)?,
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let bundle = rt.block_on(fetch_bundle(&args.url, &request, args.timeout))?;
    let verified = match check_answer(&bundle, &request, policy.as_ref()) {
        Ok(verified) => verified,
        Err(failed) => return Ok(Err(failed)),
    };
    if let Some(dir) = &args.state {
        if let Err(failed) = remember(&rt, args, dir, remembered, &verified.checkpoint)? {
            return Ok(Err(failed));
        }
    }
    if let Some(path) = &args.save {
        // Only a verified bundle is saved: the file is evidence `proof verify` checks again.
        std::fs::write(path, &bundle)
            .with_context(|| format!("writing the bundle to {}", path.display()))?;
    }
    Ok(Ok(verified))
}

/// Checks the verified answer's checkpoint `answer` against `remembered` (module docs of
/// [`kappalog::light::remembered`]) and remembers it in `dir` when it is the newer.
fn remember(
    rt: &Runtime,
    args: &GetArgs,
    dir: &Path,
    remembered: Option<SignedCheckpoint>,
    answer: &SignedCheckpoint,
) -> anyhow::Result<Result<(), AnswerError>> {
    let note = answer.note().to_bytes();
    let keep = |note: &[u8]| -> anyhow::Result<String> {
        let path = state::keep_conflict(dir, &args.author, note)
            .with_context(|| format!("keeping the node's checkpoint in {}", dir.display()))?;
        Ok(path.display().to_string())
    };
    let store = || {
        state::store(dir, &args.author, &note).with_context(|| {
            let path = state::checkpoint_path(dir, &args.author);
            format!("remembering the checkpoint in {}", path.display())
        })
    };
    let checkpoint = answer.checkpoint();
    match relate(remembered.as_ref().map(|r| r.checkpoint()), checkpoint) {
        Relation::First => store()?,
        Relation::Same => {}
        Relation::SplitView => {
            return Ok(Err(AnswerError::SplitView {
                size: checkpoint.size(),
                conflict: keep(&note)?,
            }))
        }
        Relation::NeedsProof { from, to, grows } => {
            let remembered = remembered
                .as_ref()
                .context("a proof is needed only against a remembered checkpoint")?
                .checkpoint();
            let bytes = rt
                .block_on(fetch_consistency(
                    &args.url,
                    &args.author,
                    from,
                    to,
                    args.timeout,
                ))
                .with_context(|| {
                    format!(
                        "asking the node to prove its checkpoint of {} entries consistent with the one of {} remembered",
                        checkpoint.size(),
                        remembered.size()
                    )
                })?;
            let checked = parse_proof_lines(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|proof| {
                    check_proof(remembered, checkpoint, &proof).map_err(|e| e.to_string())
                });
            if let Err(reason) = checked {
                return Ok(Err(AnswerError::NotConsistent {
                    answer: checkpoint.size(),
                    remembered: remembered.size(),
                    reason,
                    conflict: keep(&note)?,
                }));
            }
            if grows {
                store()?;
            }
        }
    }
    Ok(Ok(()))
}
