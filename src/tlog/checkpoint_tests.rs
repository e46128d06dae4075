//! Unit tests of `checkpoint.rs`: the spec's body, signing, the author check, and one
//! hostile body per rule.

use super::*;

/// tlog-checkpoint's example body.
const SPEC_BODY: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
const ROOT_B64: &str = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";

#[test]
fn the_spec_body_parses_field_by_field() {
    let checkpoint = Checkpoint::parse(SPEC_BODY).unwrap();
    assert_eq!(checkpoint.origin(), "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size(), 20852163);
    assert_eq!(Base64::encode_string(checkpoint.root()), ROOT_B64);
    assert!(checkpoint.extensions().is_empty());
    assert_eq!(checkpoint.body(), SPEC_BODY);
    let rebuilt = Checkpoint::new(checkpoint.origin(), 20852163, *checkpoint.root()).unwrap();
    assert_eq!(rebuilt, checkpoint);
}

#[test]
fn extension_lines_are_kept_in_the_body() {
    let body = format!("{SPEC_BODY}ext one\nx\n");
    let checkpoint = Checkpoint::parse(&body).unwrap();
    assert_eq!(checkpoint.extensions(), ["ext one", "x"]);
    assert_eq!(checkpoint.body(), body);
}

#[test]
fn hostile_bodies_are_refused_with_the_exact_reason() {
    let body = |origin: &str, size: &str, root: &str| format!("{origin}\n{size}\n{root}\n");
    let o = "example.com/log";
    let cases = [
        (format!("{o}\n1\n"), CheckpointError::TooFewLines),
        (format!("{o}\n1\n{ROOT_B64}"), CheckpointError::TooFewLines),
        (body("", "1", ROOT_B64), CheckpointError::EmptyOrigin),
        (body(o, "01", ROOT_B64), CheckpointError::Size("01".into())),
        (body(o, "00", ROOT_B64), CheckpointError::Size("00".into())),
        (body(o, "+1", ROOT_B64), CheckpointError::Size("+1".into())),
        (body(o, "-1", ROOT_B64), CheckpointError::Size("-1".into())),
        (body(o, " 1", ROOT_B64), CheckpointError::Size(" 1".into())),
        (body(o, "", ROOT_B64), CheckpointError::Size("".into())),
        (
            body(o, "18446744073709551616", ROOT_B64),
            CheckpointError::Size("18446744073709551616".into()),
        ),
        (body(o, "1", "AAAA"), CheckpointError::Root),
        (
            body(o, "1", &ROOT_B64.replace('=', "")),
            CheckpointError::Root,
        ),
        // 33 bytes of base64 is 44 characters too, without padding.
        (
            body(o, "1", &Base64::encode_string(&[1; 33])[..44]),
            CheckpointError::Root,
        ),
        // Non-canonical: the unused low bits of the last character are set ('2' -> '3').
        (
            body(o, "1", &ROOT_B64.replace("I=", "J=")),
            CheckpointError::Root,
        ),
        (
            format!("{}ext\n\n", body(o, "1", ROOT_B64)),
            CheckpointError::EmptyExtension(2),
        ),
        (
            format!(
                "{}{}",
                body(o, "1", ROOT_B64),
                "e\n".repeat(MAX_EXTENSION_LINES + 1)
            ),
            CheckpointError::TooManyExtensions,
        ),
        (
            body("example.com/\rlog", "1", ROOT_B64),
            CheckpointError::Note(NoteError::ControlChar {
                byte: b'\r',
                offset: 12,
            }),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(Checkpoint::parse(&text), Err(expected), "{text:?}");
    }
    assert_eq!(
        Checkpoint::parse(&body(o, "18446744073709551615", ROOT_B64))
            .unwrap()
            .size(),
        u64::MAX
    );
    assert_eq!(
        Checkpoint::parse(&body(o, "0", ROOT_B64)).unwrap().size(),
        0
    );
}

#[test]
fn a_feeds_checkpoint_is_signed_under_its_origin_and_verifies() {
    let key = SigningKey::from_bytes(&[1; 32]);
    let origin = origin_for(key.verifying_key().as_bytes());
    assert_eq!(
        origin,
        format!(
            "kappalog/feed/{}",
            hex::encode(key.verifying_key().as_bytes())
        )
    );
    let checkpoint = Checkpoint::new(&origin, 3, [7; 32]).unwrap();
    let signed = SignedCheckpoint::sign(checkpoint.clone(), &key).unwrap();
    let vkey = author_vkey(&key.verifying_key());
    assert_eq!(vkey.name(), origin);
    assert_eq!(signed.verify_author(&vkey), Ok(()));

    let parsed = SignedCheckpoint::parse(&signed.to_bytes()).unwrap();
    assert_eq!(parsed, signed);
    assert_eq!(parsed.checkpoint(), &checkpoint);

    // Another author's key, named after this origin, does not verify it.
    let other = SigningKey::from_bytes(&[2; 32]).verifying_key();
    let impostor = VerifierKey::new(&origin, KeyType::Ed25519, other).unwrap();
    assert_eq!(
        parsed.verify_author(&impostor),
        Err(CheckpointError::Signature(VerifyError::NoKnownSignature))
    );
    // The right key under another name is refused before any signature is checked.
    assert!(matches!(
        parsed.verify_author(&author_vkey(&other)),
        Err(CheckpointError::OriginMismatch { .. })
    ));
}

#[test]
fn a_signed_note_whose_text_is_not_a_checkpoint_is_refused() {
    let key = SigningKey::from_bytes(&[1; 32]);
    let mut note = Note::unsigned("just one line\n").unwrap();
    sign_ed25519(&mut note, "x.example", &key).unwrap();
    assert_eq!(
        SignedCheckpoint::parse(&note.to_bytes()),
        Err(CheckpointError::TooFewLines)
    );
}
