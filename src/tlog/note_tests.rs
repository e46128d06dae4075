//! Unit tests of `note.rs`: the spec's example, signing, verification verdicts and one
//! hostile note per parsing rule, each built from one valid base.

use super::*;
use crate::tlog::ed25519::{sign_ed25519, Ed25519Verifier};
use crate::tlog::vkey::{KeyType, VerifierKey};
use ed25519_dalek::SigningKey;

/// signed-note's "Verifier keys" example: this vkey verifies this note.
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

fn spec_verifier() -> Ed25519Verifier {
    Ed25519Verifier::new(SPEC_VKEY.parse().unwrap()).unwrap()
}

/// A valid note with one signature line by a fixed-seed key named `a.example/k`.
fn signed(text: &str) -> (Note, Ed25519Verifier) {
    let key = SigningKey::from_bytes(&[9; 32]);
    let mut note = Note::unsigned(text).unwrap();
    sign_ed25519(&mut note, "a.example/k", &key).unwrap();
    let vkey = VerifierKey::new("a.example/k", KeyType::Ed25519, key.verifying_key()).unwrap();
    (note, Ed25519Verifier::new(vkey).unwrap())
}

fn line(name: &str, raw: &[u8]) -> String {
    format!("\u{2014} {name} {}\n", Base64::encode_string(raw))
}

#[test]
fn the_spec_example_verifies_and_serializes_back_byte_for_byte() {
    let note = Note::parse(SPEC_NOTE.as_bytes()).unwrap();
    assert_eq!(note.text(), "This is an example message.\n");
    assert_eq!(note.signatures()[0].key_id(), 0x530d903a);
    assert_eq!(note.to_bytes(), SPEC_NOTE.as_bytes());
    let verifier = spec_verifier();
    assert_eq!(note.verify(&[&verifier]), Ok(vec![0]));
}

#[test]
fn a_signed_note_verifies_and_a_changed_text_does_not() {
    let (note, verifier) = signed("hello\n\nworld\n");
    let parsed = Note::parse(&note.to_bytes()).unwrap();
    assert_eq!(parsed, note);
    assert_eq!(
        parsed.text(),
        "hello\n\nworld\n",
        "the last blank line separates"
    );
    assert_eq!(parsed.verify(&[&verifier]), Ok(vec![0]));

    let forged = note.to_string().replacen("world", "w0rld", 1);
    let forged = Note::parse(forged.as_bytes()).unwrap();
    assert_eq!(
        forged.verify(&[&verifier]),
        Err(VerifyError::BadSignature {
            name: "a.example/k".into(),
            key_id: verifier.key_id()
        })
    );
}

#[test]
fn unknown_lines_are_kept_but_never_count() {
    let (note, verifier) = signed("text\n");
    // The same name with another ID, and another name with the same ID: both unknown.
    let mut bytes = note.to_string();
    let mut other_id = verifier.key_id().wrapping_add(1).to_be_bytes().to_vec();
    other_id.extend_from_slice(&[7; 64]);
    bytes.push_str(&line("a.example/k", &other_id));
    let mut same_id = verifier.key_id().to_be_bytes().to_vec();
    same_id.extend_from_slice(&[7; 64]);
    bytes.push_str(&line("b.example/k", &same_id));
    let parsed = Note::parse(bytes.as_bytes()).unwrap();
    assert_eq!(
        parsed.to_string(),
        bytes,
        "unknown lines pass through verbatim"
    );
    assert_eq!(
        parsed.check(&[&verifier]),
        vec![
            SignatureCheck::Verified(0),
            SignatureCheck::Unknown,
            SignatureCheck::Unknown
        ]
    );
    assert_eq!(parsed.verify(&[&verifier]), Ok(vec![0]));
    // Without the signer's verifier, nothing is known: rejected.
    assert_eq!(
        parsed.verify(&[&spec_verifier()]),
        Err(VerifyError::NoKnownSignature)
    );
}

#[test]
fn a_second_line_for_one_key_is_refused_when_parsed_and_when_added() {
    let (note, verifier) = signed("text\n");
    let mut twice = note.to_string();
    let mut raw = verifier.key_id().to_be_bytes().to_vec();
    raw.extend_from_slice(&[0; 64]);
    twice.push_str(&line("a.example/k", &raw));
    let duplicate = NoteError::DuplicateSignature {
        name: "a.example/k".into(),
        key_id: verifier.key_id(),
    };
    assert_eq!(Note::parse(twice.as_bytes()), Err(duplicate.clone()));
    let mut again = note.clone();
    let copy = note.signatures()[0].clone();
    assert_eq!(again.add_signature(copy), Err(duplicate));
    assert_eq!(again, note, "a refused signature leaves the note unchanged");
}

#[test]
fn hostile_notes_are_refused_with_the_exact_reason() {
    let (note, _) = signed("text\n");
    let good = note.to_string();
    let sig_line = good.split_once("\n\n").unwrap().1.to_owned();
    let b64 = sig_line.trim_end().rsplit_once(' ').unwrap().1.to_owned();
    let mut short = vec![0u8; 4];
    short.truncate(4);
    let cases: Vec<(String, NoteError)> = vec![
        (
            good.replace("text\n", "te\rxt\n"),
            NoteError::ControlChar {
                byte: b'\r',
                offset: 2,
            },
        ),
        (
            good.replace("text\n", "te\txt\n"),
            NoteError::ControlChar {
                byte: b'\t',
                offset: 2,
            },
        ),
        (good.trim_end().to_owned(), NoteError::NoFinalNewline),
        (format!("text\n{sig_line}"), NoteError::NoSeparator),
        ("text\n\n".to_owned(), NoteError::NoSignatures),
        (
            format!("text\n\n- a.example/k {b64}\n"),
            NoteError::MalformedSignatureLine { line: 1 },
        ),
        (
            format!("text\n\n\u{2014} a.example/k{b64}\n"),
            NoteError::MalformedSignatureLine { line: 1 },
        ),
        (
            format!("text\n\n\u{2014} a+b {b64}\n"),
            NoteError::KeyName {
                line: 1,
                source: KeyNameError::ForbiddenChar,
            },
        ),
        (
            format!("text\n\n\u{2014}  {b64}\n"),
            NoteError::KeyName {
                line: 1,
                source: KeyNameError::Empty,
            },
        ),
        (
            format!(
                "text\n\n\u{2014} a.example/k {}\n",
                b64.trim_end_matches('=')
            ),
            NoteError::Base64 { line: 1 },
        ),
        (
            format!("text\n\n\u{2014} a.example/k {b64} x\n"),
            NoteError::Base64 { line: 1 },
        ),
        (
            // Non-canonical: [1, 2, 3, 4, 5] is "AQIDBAU="; 'V' sets an unused low bit.
            "text\n\n\u{2014} a.example/k AQIDBAV=\n".to_owned(),
            NoteError::Base64 { line: 1 },
        ),
        (
            format!("text\n\n{}", line("a.example/k", &short)),
            NoteError::SignatureLength { line: 1, len: 4 },
        ),
        (
            format!(
                "text\n\n{}",
                line("a.example/k", &vec![1; MAX_SIGNATURE_BYTES + 1])
            ),
            NoteError::SignatureLength {
                line: 1,
                len: MAX_SIGNATURE_BYTES + 1,
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(Note::parse(text.as_bytes()), Err(expected), "{text:?}");
    }
    assert_eq!(Note::parse(b"text\n\n\xff\n"), Err(NoteError::NotUtf8));
}

#[test]
fn notes_are_bounded_in_size_and_signature_count() {
    let mut many = String::from("text\n\n");
    for i in 0..=MAX_SIGNATURES {
        many.push_str(&line(&format!("k{i}.example"), &[1; 68]));
    }
    assert_eq!(
        Note::parse(many.as_bytes()),
        Err(NoteError::TooManySignatures)
    );

    let huge = format!("{}\n\n{}", "a".repeat(MAX_NOTE_BYTES), line("k", &[1; 68]));
    assert_eq!(
        Note::parse(huge.as_bytes()),
        Err(NoteError::TooLarge { len: huge.len() })
    );

    let mut note = Note::unsigned("text\n").unwrap();
    for i in 0..MAX_SIGNATURES {
        let signature = NoteSignature::new(&format!("k{i}.example"), 1, vec![1; 64]).unwrap();
        note.add_signature(signature).unwrap();
    }
    let one_more = NoteSignature::new("late.example", 1, vec![1; 64]).unwrap();
    assert_eq!(
        note.add_signature(one_more),
        Err(NoteError::TooManySignatures)
    );
}

#[test]
fn texts_to_sign_follow_the_same_rules() {
    assert_eq!(Note::unsigned(""), Err(NoteError::EmptyText));
    assert_eq!(Note::unsigned("no newline"), Err(NoteError::NoFinalNewline));
    assert_eq!(
        Note::unsigned("a\r\n"),
        Err(NoteError::ControlChar {
            byte: b'\r',
            offset: 1
        })
    );
    let cosigner_key = VerifierKey::new(
        "c.example",
        KeyType::CosignatureV1,
        SigningKey::from_bytes(&[1; 32]).verifying_key(),
    )
    .unwrap();
    assert!(
        Ed25519Verifier::new(cosigner_key).is_err(),
        "a cosigner key checks no note signature"
    );
}
