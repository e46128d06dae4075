//! The `add-checkpoint` request body.

use super::*;

#[test]
fn the_specs_example_body_parses_and_writes_back_byte_for_byte() {
    let body = "old 20852014\n\
        PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
        jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
        5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
        /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
        \n\
        example.com/behind-the-sofa\n\
        20852163\n\
        CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
        \n\
        \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
        \u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";
    let parsed = AddCheckpointRequest::parse(body.as_bytes()).unwrap();
    assert_eq!(parsed.old_size(), 20852014);
    assert_eq!(parsed.proof().len(), 4);
    assert_eq!(
        Base64::encode_string(&parsed.proof()[3]),
        "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0="
    );
    let checkpoint = parsed.checkpoint().checkpoint();
    assert_eq!(checkpoint.origin(), "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size(), 20852163);
    assert_eq!(parsed.checkpoint().note().signatures().len(), 2);
    assert_eq!(parsed.to_bytes(), body.as_bytes());
}

#[test]
fn hostile_bodies_are_refused_with_the_exact_reason() {
    let checkpoint = signed(0, EMPTY_ROOT).to_bytes();
    let with = |head: &str| [head.as_bytes(), &checkpoint].concat();
    let hash_line = format!("{}\n", Base64::encode_string(&[7u8; 32]));
    let cases: Vec<(Vec<u8>, RequestError)> = vec![
        (Vec::new(), RequestError::OldLine),
        (b"old 0".to_vec(), RequestError::OldLine),
        (with("old 01\n\n"), RequestError::OldLine),
        (with("old -1\n\n"), RequestError::OldLine),
        (with("old  1\n\n"), RequestError::OldLine),
        (with("old 1 \n\n"), RequestError::OldLine),
        (with("old 0\r\n\n"), RequestError::OldLine),
        (with("Old 0\n\n"), RequestError::OldLine),
        (with("old 18446744073709551616\n\n"), RequestError::OldLine),
        (
            with("old 1\nnot base64!\n\n"),
            RequestError::ProofLine { line: 1 },
        ),
        (
            with(&format!("old 1\n{hash_line}{}\n\n", "A".repeat(43))),
            RequestError::ProofLine { line: 2 },
        ),
        (
            // 33 bytes of base64: a hash of the wrong length.
            with(&format!("old 1\n{}\n\n", Base64::encode_string(&[7u8; 33]))),
            RequestError::ProofLine { line: 1 },
        ),
        (
            with(&format!("old 1\n{}\n", hash_line.repeat(64))),
            RequestError::TooManyProofLines,
        ),
        (
            format!("old 1\n{hash_line}").into_bytes(),
            RequestError::NoBlankLine,
        ),
        // No empty line: the checkpoint's origin is read as a proof line.
        (with("old 0\n"), RequestError::ProofLine { line: 1 }),
        (
            with("old 0\n\n\n"),
            RequestError::Checkpoint(CheckpointError::EmptyOrigin),
        ),
        (
            // A checkpoint without its signatures.
            format!(
                "old 0\n\n{}",
                Checkpoint::new(ORIGIN, 0, EMPTY_ROOT).unwrap().body()
            )
            .into_bytes(),
            RequestError::Checkpoint(CheckpointError::Note(NoteError::NoSeparator)),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            AddCheckpointRequest::parse(&body),
            Err(expected),
            "{:?}",
            String::from_utf8_lossy(&body)
        );
    }

    let too_large = vec![b'\n'; MAX_REQUEST_BYTES + 1];
    assert_eq!(
        AddCheckpointRequest::parse(&too_large),
        Err(RequestError::TooLarge {
            len: MAX_REQUEST_BYTES + 1
        })
    );
    // 63 proof lines are fine (the hash values are not judged here).
    let body = with(&format!("old 1\n{}\n", hash_line.repeat(63)));
    assert_eq!(
        AddCheckpointRequest::parse(&body).unwrap().proof().len(),
        63
    );
    assert_eq!(
        AddCheckpointRequest::new(1, vec![[0; 32]; 64], signed(0, EMPTY_ROOT)),
        Err(RequestError::TooManyProofLines)
    );
}

#[test]
fn a_checkpoint_with_a_duplicate_signature_line_is_malformed() {
    let checkpoint = signed(0, EMPTY_ROOT).to_string();
    let line = checkpoint.lines().last().unwrap();
    let body = format!("old 0\n\n{checkpoint}{line}\n");
    let Err(error) = AddCheckpointRequest::parse(body.as_bytes()) else {
        panic!("a duplicate signature line was accepted");
    };
    assert!(matches!(
        error,
        RequestError::Checkpoint(CheckpointError::Note(NoteError::DuplicateSignature { .. }))
    ));
    assert_eq!(Refusal::from(error).status().code(), 400);
}

#[test]
fn the_largest_well_formed_request_fits_the_limit() {
    // A note at its own limit, 63 proof lines and the longest old line.
    let proof = vec![[0xff; 32]; 63];
    let request = request(u64::MAX, proof, signed(0, EMPTY_ROOT));
    let note_room = crate::tlog::note::MAX_NOTE_BYTES - request.checkpoint().to_bytes().len();
    assert!(request.to_bytes().len() + note_room <= MAX_REQUEST_BYTES);
}
