//! `kappalog proof verify FILE [--policy FILE] [--json]`: checks a feed entry's
//! `c2sp.org/tlog-proof@v1` bundle offline, with [`kappalog::tlog::bundle`], and says so in
//! one line.
//!
//! Exit codes tell a script what happened without parsing text: 0 the bundle proves its
//! entry; 1 it does not (a `FAILED:` line gives the first rule it breaks); 2 nothing could
//! be checked (the bundle or policy file cannot be read, or the policy is invalid), the
//! `error:` line on stderr saying why, as for clap's usage errors.

use std::process::ExitCode;

use anyhow::Context;
use kappalog::cli::ProofVerifyArgs;
use kappalog::tlog::bundle::{verify_entry_proof, MAX_BUNDLE_BYTES};
use kappalog::tlog::policy::Policy;

use super::verdict::{self, read_bounded, read_policy};

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
    verdict::conclude(&verdict, args.json)
}

fn read_inputs(args: &ProofVerifyArgs) -> anyhow::Result<(Vec<u8>, Option<Policy>)> {
    let bundle = read_bounded(&args.file, MAX_BUNDLE_BYTES)
        .with_context(|| format!("reading the bundle {}", args.file.display()))?;
    let policy = args.policy.as_deref().map(read_policy).transpose()?;
    Ok((bundle, policy))
}
