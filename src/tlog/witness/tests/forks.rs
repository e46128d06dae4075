//! Never two inconsistent cosignatures of one origin.

use super::*;

/// Which of two trees a tree of `size` with `root` is a prefix of.
fn belongs(a: &MemoryTree, b: &MemoryTree, size: u64, root_hash: &Hash) -> (bool, bool) {
    (root(a, size) == *root_hash, root(b, size) == *root_hash)
}

#[test]
fn random_checkpoints_of_two_diverging_trees_never_get_two_inconsistent_cosignatures() {
    const LEAVES: u64 = 48;
    // Across all runs: cosignatures past the fork point, and forks refused, or the test
    // would prove little.
    let (mut past_fork, mut forks_refused) = (0, 0);
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let common = rng.gen_range(0..12);
        let trees = [tree(LEAVES, common, "a"), tree(LEAVES, common, "b")];
        let mut state = serving();
        let mut cosigned: Vec<CosignedTree> = Vec::new();
        let mut stored = String::from(STATE_HEADER);
        for _ in 0..60 {
            let from = &trees[rng.gen_range(0..2)];
            let new = rng.gen_range(0..=LEAVES);
            let latest = state.cosigned(ORIGIN).map_or(0, |t| t.size);
            // Mostly the right old size; sometimes a wrong one, or a proof from the other tree.
            let old = match rng.gen_range(0..10) {
                0 => rng.gen_range(0..=new),
                _ => latest.min(new),
            };
            let proof_tree = match rng.gen_range(0..10) {
                0 => &trees[rng.gen_range(0..2)],
                _ => from,
            };
            let proof = prove_consistency(old, new, proof_tree).unwrap();
            let request = request(old, proof, signed(new, root(from, new)));
            match add_checkpoint(&state, &request, 1_700_000_000, &cosigner()) {
                Ok(accepted) => {
                    state.record(&accepted.entry).unwrap();
                    stored.push_str(&encode_record(ORIGIN, accepted.entry.tree()));
                    cosigned.push(*accepted.entry.tree());
                }
                Err(Refusal::Inconsistent(_) | Refusal::RootMismatch) => forks_refused += 1,
                Err(_) => {}
            }
            // Now and then a restart, from the journal.
            if rng.gen_range(0..15) == 0 {
                let loaded = parse_state(stored.as_bytes()).unwrap();
                state = serving();
                state.restore(loaded.cosigned).unwrap();
            }
        }
        // Every cosigned tree is a prefix of one tree, the same one for all of them.
        let (mut in_a, mut in_b) = (true, true);
        for tree in &cosigned {
            let (a, b) = belongs(&trees[0], &trees[1], tree.size, &tree.root);
            in_a &= a;
            in_b &= b;
        }
        assert!(
            in_a || in_b,
            "seed {seed}: cosigned checkpoints of both forks"
        );
        past_fork += cosigned.iter().filter(|t| t.size > common).count();
    }
    assert!(
        past_fork > 100 && forks_refused > 100,
        "{past_fork} {forks_refused}"
    );
}
