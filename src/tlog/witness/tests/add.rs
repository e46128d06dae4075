//! Every answer of `add-checkpoint`.

use super::*;

#[test]
fn a_first_checkpoint_is_cosigned_and_the_cosignature_verifies() {
    let mut state = serving();
    let log = tree(5, 5, "a");
    let accepted = submit(&mut state, &honest(&log, 0, 5)).unwrap();
    assert_eq!(accepted.entry.origin(), ORIGIN);
    assert_eq!(accepted.entry.previous_size(), 0);
    assert_eq!(
        accepted.entry.tree(),
        &CosignedTree {
            size: 5,
            root: root(&log, 5)
        }
    );
    assert_eq!(state.cosigned_trees()[ORIGIN].size, 5);

    let verifier = CosignatureVerifier::new(cosigner().vkey()).unwrap();
    let body = Checkpoint::new(ORIGIN, 5, root(&log, 5)).unwrap();
    assert_eq!(
        verifier.verify_line(body.body(), &accepted.cosignature),
        Some(1_700_000_000)
    );
    // The 200 body is one signature line, which a client appends to the checkpoint.
    let answer = accepted.body();
    assert!(answer.starts_with("\u{2014} witness.example/w1 ") && answer.ends_with('\n'));
    let with_cosignature = format!("{}{answer}", signed(5, root(&log, 5)));
    let note = Note::parse(with_cosignature.as_bytes()).unwrap();
    assert_eq!(note.verify(&[&verifier]), Ok(vec![0]));
}

#[test]
fn a_larger_checkpoint_with_a_valid_proof_moves_the_record() {
    let mut state = serving();
    let log = tree(40, 40, "a");
    submit(&mut state, &honest(&log, 0, 3)).unwrap();
    submit(&mut state, &honest(&log, 3, 17)).unwrap();
    let accepted = submit(&mut state, &honest(&log, 17, 40)).unwrap();
    assert_eq!(accepted.entry.previous_size(), 17);
    assert_eq!(state.cosigned_trees()[ORIGIN].size, 40);
}

#[test]
fn the_same_checkpoint_is_cosigned_again() {
    let mut state = serving();
    let log = tree(8, 8, "a");
    submit(&mut state, &honest(&log, 0, 8)).unwrap();
    let again = submit(&mut state, &honest(&log, 8, 8)).unwrap();
    assert_eq!(again.entry.previous_size(), 8);
    assert!(again.entry.is_repeat());
    assert_eq!(state.cosigned_trees()[ORIGIN].size, 8);
}

#[test]
fn an_unknown_origin_is_404() {
    let state = serving();
    let other = SigningKey::from_bytes(&[2; 32]);
    let checkpoint = SignedCheckpoint::sign(
        Checkpoint::new("example.com/other", 0, EMPTY_ROOT).unwrap(),
        &other,
    )
    .unwrap();
    let refusal = add_checkpoint(&state, &request(0, vec![], checkpoint), 1, &cosigner());
    let refusal = refusal.unwrap_err();
    assert_eq!(
        refusal,
        Refusal::UnknownOrigin {
            origin: "example.com/other".into()
        }
    );
    assert_eq!(refusal.status(), Status::NotFound);
    assert_eq!(refusal.status().code(), 404);
}

#[test]
fn a_checkpoint_without_the_logs_signature_is_403_and_a_bad_one_too() {
    let state = serving();
    // Signed under the origin's name by another key: an unknown key, ignored.
    let impostor = SigningKey::from_bytes(&[3; 32]);
    let checkpoint =
        SignedCheckpoint::sign(Checkpoint::new(ORIGIN, 0, EMPTY_ROOT).unwrap(), &impostor).unwrap();
    let refusal = add_checkpoint(&state, &request(0, vec![], checkpoint), 1, &cosigner());
    assert_eq!(
        refusal,
        Err(Refusal::NotSigned(VerifyError::NoKnownSignature))
    );
    assert_eq!(refusal.unwrap_err().status().code(), 403);

    // The log's name and key ID with a wrong signature: the note is malformed, 403.
    let body = Checkpoint::new(ORIGIN, 0, EMPTY_ROOT).unwrap();
    let line = NoteSignature::new(ORIGIN, log_vkey().key_id(), vec![0x55; 64]).unwrap();
    let forged = SignedCheckpoint::parse(format!("{}\n{}", body.body(), line.to_line()).as_bytes());
    let refusal = add_checkpoint(&state, &request(0, vec![], forged.unwrap()), 1, &cosigner());
    assert_eq!(
        refusal,
        Err(Refusal::NotSigned(VerifyError::BadSignature {
            name: ORIGIN.into(),
            key_id: log_vkey().key_id()
        }))
    );
    assert_eq!(refusal.unwrap_err().status().code(), 403);

    // A valid signature beside an unknown key's line is enough.
    let mut checkpoint = signed(0, EMPTY_ROOT);
    checkpoint
        .add_signature(NoteSignature::new("someone.else", 7, vec![1; 64]).unwrap())
        .unwrap();
    assert!(add_checkpoint(&state, &request(0, vec![], checkpoint), 1, &cosigner()).is_ok());
}

#[test]
fn an_old_size_above_the_checkpoints_is_400() {
    let state = serving();
    let log = tree(4, 4, "a");
    let refusal = add_checkpoint(
        &state,
        &request(5, vec![], signed(4, root(&log, 4))),
        1,
        &cosigner(),
    )
    .unwrap_err();
    assert_eq!(refusal, Refusal::OldSizeAboveSize { old: 5, size: 4 });
    assert_eq!(refusal.status().code(), 400);
}

#[test]
fn a_checkpoint_smaller_than_the_latest_cosigned_is_400_or_409() {
    let mut state = serving();
    let log = tree(10, 10, "a");
    assert!(!submit(&mut state, &honest(&log, 0, 10))
        .unwrap()
        .entry
        .is_repeat());
    let smaller = signed(5, root(&log, 5));
    let refusal = add_checkpoint(
        &state,
        &request(10, vec![], smaller.clone()),
        1,
        &cosigner(),
    );
    assert_eq!(refusal, Err(Refusal::OldSizeAboveSize { old: 10, size: 5 }));
    let refusal = add_checkpoint(&state, &request(5, vec![], smaller), 1, &cosigner());
    assert_eq!(
        refusal,
        Err(Refusal::OldSizeMismatch { old: 5, latest: 10 })
    );
}

#[test]
fn an_origin_that_cannot_be_a_key_name_is_unknown() {
    // A witnessed-logs view that claims to serve every origin, under the log's key.
    struct Everything;
    impl WitnessedLogs for Everything {
        fn log_keys(&self, _: &str) -> Option<Vec<VerifierKey>> {
            Some(vec![log_vkey()])
        }
        fn cosigned(&self, _: &str) -> Option<CosignedTree> {
            None
        }
    }
    for origin in ["has space", "has+plus"] {
        let checkpoint = Checkpoint::new(origin, 0, EMPTY_ROOT).unwrap();
        // Signed by hand: the origin is not a key name, so sign() would refuse it.
        let note = format!(
            "{}\n{}",
            checkpoint.body(),
            NoteSignature::new(ORIGIN, log_vkey().key_id(), vec![0; 64])
                .unwrap()
                .to_line()
        );
        let checkpoint = SignedCheckpoint::parse(note.as_bytes()).unwrap();
        let refusal = add_checkpoint(&Everything, &request(0, vec![], checkpoint), 1, &cosigner());
        assert_eq!(
            refusal,
            Err(Refusal::UnknownOrigin {
                origin: origin.into()
            })
        );
    }
}

#[test]
fn an_old_size_other_than_the_latest_cosigned_is_409_with_that_size() {
    let mut state = serving();
    let log = tree(20, 20, "a");
    // Never cosigned: the latest size is 0.
    let refusal = add_checkpoint(&state, &honest(&log, 3, 10), 1, &cosigner()).unwrap_err();
    assert_eq!(refusal, Refusal::OldSizeMismatch { old: 3, latest: 0 });
    assert_eq!(refusal.body(), "0\n");

    submit(&mut state, &honest(&log, 0, 10)).unwrap();
    for old in [0, 9, 11] {
        let refusal = add_checkpoint(&state, &honest(&log, old, 20), 1, &cosigner()).unwrap_err();
        assert_eq!(refusal, Refusal::OldSizeMismatch { old, latest: 10 });
        assert_eq!(refusal.status().code(), 409);
        assert_eq!(refusal.body(), "10\n");
        assert_eq!(refusal.content_type(), "text/x.tlog.size");
    }
    assert_eq!(state.cosigned_trees()[ORIGIN].size, 10);
}

#[test]
fn every_inconsistency_is_422() {
    let mut state = serving();
    let log = tree(20, 20, "a");
    let fork = tree(20, 6, "b");

    // Size 0 with another root than the empty tree's.
    let refusal = add_checkpoint(
        &state,
        &request(0, vec![], signed(0, [1; 32])),
        1,
        &cosigner(),
    );
    assert_eq!(refusal, Err(Refusal::EmptyTreeRoot));
    // A proof from size 0.
    let refusal = add_checkpoint(
        &state,
        &request(0, vec![[1; 32]], signed(5, root(&log, 5))),
        1,
        &cosigner(),
    );
    assert_eq!(refusal, Err(Refusal::ProofFromZero));
    // A size past 2^62, whatever the root.
    let refusal = add_checkpoint(
        &state,
        &request(0, vec![], signed(MAX_TREE_SIZE + 1, [1; 32])),
        1,
        &cosigner(),
    );
    assert_eq!(
        refusal,
        Err(Refusal::SizeTooLarge {
            size: MAX_TREE_SIZE + 1
        })
    );
    let refusal = add_checkpoint(
        &state,
        &request(0, vec![], signed(u64::MAX, [1; 32])),
        1,
        &cosigner(),
    );
    assert_eq!(refusal.unwrap_err().status().code(), 422);

    submit(&mut state, &honest(&log, 0, 10)).unwrap();
    // The same size with another root: a fork of what was cosigned.
    let refusal = add_checkpoint(&state, &honest(&fork, 10, 10), 1, &cosigner()).unwrap_err();
    assert_eq!(refusal, Refusal::RootMismatch);
    assert_eq!(refusal.status().code(), 422);
    // A larger tree of the fork, with the fork's own (valid for it) proof.
    let refusal = add_checkpoint(&state, &honest(&fork, 10, 15), 1, &cosigner()).unwrap_err();
    assert!(matches!(refusal, Refusal::Inconsistent(_)), "{refusal:?}");
    assert_eq!(refusal.status().code(), 422);
    // A proof for other sizes (from 9 to 15, sent as if from 10).
    let proof = prove_consistency(9, 15, &log).unwrap();
    let refusal = add_checkpoint(
        &state,
        &request(10, proof, signed(15, root(&log, 15))),
        1,
        &cosigner(),
    )
    .unwrap_err();
    assert!(matches!(refusal, Refusal::Inconsistent(_)), "{refusal:?}");
    // Equal sizes and roots, but a proof where none is due.
    let refusal = add_checkpoint(
        &state,
        &request(10, vec![[0; 32]], signed(10, root(&log, 10))),
        1,
        &cosigner(),
    )
    .unwrap_err();
    assert!(matches!(refusal, Refusal::Inconsistent(_)), "{refusal:?}");
    // Nothing moved.
    assert_eq!(state.cosigned_trees()[ORIGIN].root, root(&log, 10));
}

#[test]
fn a_clock_at_zero_or_past_2_63_cannot_cosign() {
    let state = serving();
    let request = request(0, vec![], signed(0, EMPTY_ROOT));
    for now in [0, 1 << 63, u64::MAX] {
        let refusal = add_checkpoint(&state, &request, now, &cosigner()).unwrap_err();
        assert_eq!(refusal, Refusal::Clock { now });
        assert_eq!(refusal.status().code(), 500);
    }
}

#[test]
fn a_stale_update_is_refused_rather_than_rolling_the_record_back() {
    // tlog-witness's race: A (to 10) and B (to 20) both checked against size 5.
    let mut state = serving();
    let log = tree(20, 20, "a");
    submit(&mut state, &honest(&log, 0, 5)).unwrap();
    let a = add_checkpoint(&state, &honest(&log, 5, 10), 1, &cosigner()).unwrap();
    let b = add_checkpoint(&state, &honest(&log, 5, 20), 1, &cosigner()).unwrap();
    state.record(&b.entry).unwrap();
    assert_eq!(
        state.record(&a.entry),
        Err(StateError::Stale {
            origin: ORIGIN.into(),
            checked: 5,
            current: 20
        })
    );
    assert_eq!(state.cosigned_trees()[ORIGIN].size, 20);
}

#[test]
fn served_logs_are_bounded_and_note_keys_only() {
    let mut state = WitnessState::new();
    let key = log_key().verifying_key();
    let cosigning = VerifierKey::new(ORIGIN, KeyType::CosignatureV1, key).unwrap();
    assert_eq!(
        state.serve(cosigning),
        Err(StateError::NotANoteKey {
            name: ORIGIN.into()
        })
    );
    state.serve(log_vkey()).unwrap();
    state.serve(log_vkey()).unwrap();
    for i in 1..MAX_KEYS_PER_LOG {
        let key = SigningKey::from_bytes(&[u8::try_from(i).unwrap() + 10; 32]);
        state
            .serve(VerifierKey::new(ORIGIN, KeyType::Ed25519, key.verifying_key()).unwrap())
            .unwrap();
    }
    let one_more = SigningKey::from_bytes(&[99; 32]).verifying_key();
    assert_eq!(
        state.serve(VerifierKey::new(ORIGIN, KeyType::Ed25519, one_more).unwrap()),
        Err(StateError::TooManyKeys {
            origin: ORIGIN.into()
        })
    );
    // A rotated-in key signs for the log as well as the first.
    let rotated = SigningKey::from_bytes(&[11; 32]);
    let checkpoint =
        SignedCheckpoint::sign(Checkpoint::new(ORIGIN, 0, EMPTY_ROOT).unwrap(), &rotated).unwrap();
    assert!(add_checkpoint(&state, &request(0, vec![], checkpoint), 1, &cosigner()).is_ok());
}

#[test]
fn the_node_cosigner_is_named_after_its_key() {
    let key = SigningKey::from_bytes(&[5; 32]);
    let cosigner = Cosigner::for_node(key.clone());
    assert_eq!(
        cosigner.name(),
        format!(
            "kappalog/node/{}",
            hex::encode(key.verifying_key().as_bytes())
        )
    );
    assert!(Cosigner::new("has space", key).is_err());
    // Debug shows the name, never the secret key.
    assert!(!format!("{cosigner:?}").contains(&hex::encode([5u8; 32])));
}
