//! `kappalog get --url URL --author HEX --seq N [--size S] [--policy FILE] [--save FILE]
//! [--json]`: one entry fetched from a running node with its proof, checked by
//! [`kappalog::light`] without trusting the node, and the verdict said as `proof verify`
//! says it.
//!
//! Exit codes as `proof verify`'s: 0 the answer proves the entry asked for; 1 it does not
//! (a `FAILED:` line on stdout gives the first rule it breaks); 2 there is no answer to
//! check (bad arguments, an unreadable policy, connection refused, timeout, an error status
//! with the node's message quoted, an answer over the cap) or the bundle could not be saved,
//! an `error:` line on stderr saying why.

use std::process::ExitCode;

use anyhow::Context;
use kappalog::cli::GetArgs;
use kappalog::light::fetch::fetch_bundle;
use kappalog::light::{check_answer, EntryRequest};
use kappalog::tlog::policy::Policy;

use super::verdict::{self, read_policy};

/// Runs the fetch and the check; never an `Err`, so the exit code is this module's.
pub fn get(args: &GetArgs) -> ExitCode {
    let (request, policy, bundle) = match fetch(args) {
        Ok(fetched) => fetched,
        Err(error) => {
            eprintln!("error: {}", crate::one_line(&error));
            return ExitCode::from(2);
        }
    };
    let verdict = check_answer(&bundle, &request, policy.as_ref());
    if let (Ok(_), Some(path)) = (&verdict, &args.save) {
        // Only a verified bundle is saved: the file is evidence `proof verify` checks again.
        if let Err(error) = std::fs::write(path, &bundle) {
            eprintln!("error: writing the bundle to {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    verdict::conclude(&verdict, args.json)
}

/// The request, the policy and the node's answer, unchecked.
fn fetch(args: &GetArgs) -> anyhow::Result<(EntryRequest, Option<Policy>, Vec<u8>)> {
    let request = EntryRequest::new(args.author, args.seq, args.size)?;
    let policy = args.policy.as_deref().map(read_policy).transpose()?;
    let bundle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(fetch_bundle(&args.url, &request, args.timeout))?;
    Ok((request, policy, bundle.to_vec()))
}
