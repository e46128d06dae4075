//! `verify_all` re-checks signatures that open does not.

use std::io::Write;

use crate::common::{entries, feed, identity};
use kappalog::signature::SignatureError;
use kappalog::store::{format, Store, VerifyIssue};

#[test]
fn verify_all_catches_a_bad_signature_written_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = feed(&identity(2), 3);
    let (store, owner, _) = Store::open(dir.path(), None, None).unwrap();
    store.append_entries(entries(&theirs[..2])).wait().unwrap();
    owner.shutdown_blocking().unwrap();
    let path = dir.path().join("entries.log");
    let bad_at = std::fs::metadata(&path).unwrap().len();
    let mut bad = theirs[2].0.clone();
    bad.signature.0[40] ^= 1;
    let mut record = Vec::new();
    format::encode_keyed_record(&bad, None, &mut record);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&record)
        .unwrap();

    // Open checks checksums and chains only, so it opens.
    let (store, _owner, report) = Store::open(dir.path(), None, None).unwrap();
    assert_eq!(report.entries, 3);
    let verify = store.reader().verify_all().unwrap();
    assert_eq!(verify.entries, 3);
    assert_eq!(verify.problems.len(), 1);
    let problem = &verify.problems[0];
    assert_eq!(problem.offset, bad_at);
    assert_eq!(problem.seq, Some(3));
    assert_eq!(
        problem.issue,
        VerifyIssue::Signature(SignatureError::Mismatch)
    );
}
