//! Signing and verification rates: prints figures, asserts nothing.
//! `cargo bench --bench signature` (`KAPPALOG_BENCH_SIGS` sets the count, default 100,000).
//! "sign" is ed25519-dalek's signer, one signature at a time; "batch sign" is
//! `Identity::sign_hashes`, which the store's writer uses (one field inversion per batch).

use std::time::Instant;

use kappalog::hash::Hash;
use kappalog::identity::Identity;
use kappalog::signature::{self, BatchItem};
use rayon::prelude::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(name: &str, runs: Vec<f64>) {
    let shown: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "{name}: median {:.0}/s (runs: {})",
        median(runs),
        shown.join(", ")
    );
}

fn main() {
    let n: usize = std::env::var("KAPPALOG_BENCH_SIGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let ids: Vec<Identity> = (0..100u8).map(|i| Identity::from_seed([i; 32])).collect();
    let hashes: Vec<Hash> = (0..n)
        .map(|i| Hash::digest_parts(&[&i.to_be_bytes()]))
        .collect();
    let mut sign_one = vec![];
    let mut sign_all = vec![];
    let mut batch_one = vec![];
    let mut batch_all = vec![];
    let mut verify_one = vec![];
    let mut verify_all = vec![];
    // One feed verified in calls of these sizes: 128 is one sync frame's batch.
    const PER_CALL: [usize; 3] = [128, 512, 2048];
    let mut verify_feed: Vec<Vec<f64>> = vec![vec![]; PER_CALL.len()];
    let mut sigs = vec![];
    for _ in 0..3 {
        let single = n.min(20_000);
        let start = Instant::now();
        for (i, h) in hashes.iter().take(single).enumerate() {
            std::hint::black_box(ids[i % ids.len()].sign_hash(h));
        }
        sign_one.push(single as f64 / start.elapsed().as_secs_f64());

        let start = Instant::now();
        sigs = hashes
            .par_iter()
            .enumerate()
            .map(|(i, h)| ids[i % ids.len()].sign_hash(h))
            .collect();
        sign_all.push(n as f64 / start.elapsed().as_secs_f64());
        // Batch signing as the store's writer does it: one key, chunks of 64.
        let id = &ids[0];
        let start = Instant::now();
        for chunk in hashes[..single].chunks(64) {
            std::hint::black_box(id.sign_hashes(chunk));
        }
        batch_one.push(single as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        let batched: Vec<_> = hashes
            .par_chunks(64)
            .flat_map_iter(|chunk| id.sign_hashes(chunk))
            .collect();
        batch_all.push(n as f64 / start.elapsed().as_secs_f64());

        let author = id.author();
        let feed: Vec<BatchItem<'_>> = (0..n)
            .map(|i| BatchItem {
                author: &author,
                hash: &hashes[i],
                signature: &batched[i],
            })
            .collect();
        for (rates, per_call) in verify_feed.iter_mut().zip(PER_CALL) {
            let start = Instant::now();
            for call in feed.chunks(per_call) {
                let verdicts = signature::verify_many(call);
                assert!(verdicts.iter().all(|v| v.is_ok()));
            }
            rates.push(n as f64 / start.elapsed().as_secs_f64());
        }

        let authors: Vec<_> = (0..n).map(|i| ids[i % ids.len()].author()).collect();
        let start = Instant::now();
        for i in 0..single {
            assert!(signature::verify(&authors[i], &hashes[i], &sigs[i]).is_ok());
        }
        verify_one.push(single as f64 / start.elapsed().as_secs_f64());

        let items: Vec<BatchItem<'_>> = (0..n)
            .map(|i| BatchItem {
                author: &authors[i],
                hash: &hashes[i],
                signature: &sigs[i],
            })
            .collect();
        let start = Instant::now();
        let verdicts = signature::verify_many(&items);
        verify_all.push(n as f64 / start.elapsed().as_secs_f64());
        assert!(verdicts.iter().all(|v| v.is_ok()));
    }
    println!(
        "signatures: {n} over 100 keys, {} threads",
        rayon::current_num_threads()
    );
    report("sign, one core", sign_one);
    report("sign, all cores", sign_all);
    report("batch sign (64 per batch), one core", batch_one);
    report("batch sign (64 per batch), all cores", batch_all);
    report("verify single, one core", verify_one);
    report("verify batch, all cores", verify_all);
    for (rates, per_call) in verify_feed.into_iter().zip(PER_CALL) {
        report(
            &format!("verify one feed, {per_call} per call, all cores"),
            rates,
        );
    }
}
