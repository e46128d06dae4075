//! Unit tests of `policy.rs`: the spec's example, quorum evaluation, and one hostile policy
//! per rule.

use super::*;
use ed25519_dalek::SigningKey;

fn vkey(name: &str, key_type: KeyType, seed: u8) -> String {
    let key = SigningKey::from_bytes(&[seed; 32]).verifying_key();
    VerifierKey::new(name, key_type, key).unwrap().to_string()
}
fn log_key(seed: u8) -> String {
    vkey("log.example/a", KeyType::Ed25519, seed)
}
fn witness_key(seed: u8) -> String {
    vkey(&format!("w{seed}.example"), KeyType::CosignatureV1, seed)
}

/// The spec's example, with real keys, comments, tabs and URLs.
fn spec_example() -> String {
    format!(
        "# the spec's example\n\
         log {} https://log.example/\n\
         \n\
         witness X1 {}\n\
         witness X2 {}\n\
         \twitness  X3 {} https://x3.example/\n\
         group X-witnesses 2 X1 X2 X3\n\
         \n\
         witness Y1 {}\n\
         witness Y2 {}\n\
         witness Y3 {}\n\
         group Y-witnesses any Y1 Y2 Y3\n\
         \x20 # indented comment\n\
         group X-and-Y all X-witnesses Y-witnesses\n\
         quorum X-and-Y\n",
        log_key(1),
        witness_key(11),
        witness_key(12),
        witness_key(13),
        witness_key(21),
        witness_key(22),
        witness_key(23),
    )
}

fn set(indexes: &[usize]) -> BTreeSet<usize> {
    indexes.iter().copied().collect()
}

#[test]
fn the_spec_example_needs_two_xs_and_one_y() {
    let policy = Policy::parse(spec_example().as_bytes()).unwrap();
    assert_eq!(policy.logs().len(), 1);
    assert_eq!(
        policy.logs()[0].url.as_deref(),
        Some(&b"https://log.example/"[..])
    );
    let names: Vec<&[u8]> = policy.witnesses().iter().map(|w| &w.name[..]).collect();
    assert_eq!(names, [&b"X1"[..], b"X2", b"X3", b"Y1", b"Y2", b"Y3"]);
    // Witness indexes: X1..X3 = 0..2, Y1..Y3 = 3..5.
    assert!(policy.quorum_met(&set(&[0, 1, 3])));
    assert!(policy.quorum_met(&set(&[0, 2, 5])));
    assert!(!policy.quorum_met(&set(&[0, 1, 2])), "no Y");
    assert!(!policy.quorum_met(&set(&[0, 3, 4, 5])), "one X");
    assert!(!policy.quorum_met(&set(&[])));
}

#[test]
fn quorum_none_and_a_single_witness() {
    let none = Policy::parse(b"quorum none\n").unwrap();
    assert!(none.quorum_met(&set(&[])));
    let single = format!("witness W {}\nquorum W", witness_key(3));
    let single = Policy::parse(single.as_bytes()).unwrap();
    assert!(single.quorum_met(&set(&[0])));
    assert!(!single.quorum_met(&set(&[])));
}

/// The first witness's vkey, and lines defining witnesses A and B.
fn two_witnesses() -> (String, String) {
    let w1 = witness_key(1);
    let head = format!("witness A {w1}\nwitness B {}\n", witness_key(2));
    (w1, head)
}

fn assert_refused(cases: &[(String, PolicyError)]) {
    for (text, expected) in cases {
        assert_eq!(
            Policy::parse(text.as_bytes()).as_ref(),
            Err(expected),
            "{text:?}"
        );
    }
}

#[test]
fn hostile_structures_are_refused_with_the_exact_reason() {
    let (w1, head) = two_witnesses();
    let cases = [
        (
            format!("{head}quorum A\nquorum B\n"),
            PolicyError::SecondQuorum { line: 4 },
        ),
        (head.clone(), PolicyError::NoQuorum),
        (
            format!("{head}frobnicate A\nquorum A\n"),
            PolicyError::UnknownKeyword { line: 3 },
        ),
        (format!("{head}quorum\n"), PolicyError::Arity { line: 3 }),
        (
            format!("{head}quorum A B\n"),
            PolicyError::Arity { line: 3 },
        ),
        (
            format!("{head}group G 1\nquorum A\n"),
            PolicyError::Arity { line: 3 },
        ),
        (
            format!("witness A {w1} u extra\nquorum A\n"),
            PolicyError::Arity { line: 1 },
        ),
        (
            format!("{head}quorum C\n"),
            PolicyError::UndefinedName { line: 3 },
        ),
        (
            // A forward reference: the only way to write a cycle, refused.
            format!("{head}group G any A H\ngroup H any G\nquorum G\n"),
            PolicyError::UndefinedName { line: 3 },
        ),
        (
            format!("{head}group G any A none\nquorum G\n"),
            PolicyError::UndefinedName { line: 3 },
        ),
        (
            format!("{head}group G any A A\nquorum G\n"),
            PolicyError::DuplicateMember { line: 3 },
        ),
        (
            format!("{head}group G 3 A B\nquorum G\n"),
            PolicyError::Threshold { line: 3 },
        ),
        (
            format!("{head}group G 0 A B\nquorum G\n"),
            PolicyError::Threshold { line: 3 },
        ),
        (
            format!("{head}group G 01 A B\nquorum G\n"),
            PolicyError::Threshold { line: 3 },
        ),
        (
            format!("{head}group G some A B\nquorum G\n"),
            PolicyError::Threshold { line: 3 },
        ),
        (
            format!("{head}group A any B\nquorum A\n"),
            PolicyError::DuplicateName { line: 3 },
        ),
        (
            format!("witness none {w1}\nquorum none\n"),
            PolicyError::DuplicateName { line: 1 },
        ),
    ];
    assert_refused(&cases);
}

#[test]
fn hostile_keys_and_bytes_are_refused_with_the_exact_reason() {
    let (w1, head) = two_witnesses();
    let cases = [
        (
            // The same public key under another name is still the same witness.
            format!(
                "{head}witness C {}\nquorum A\n",
                vkey("other.example", KeyType::CosignatureV1, 1)
            ),
            PolicyError::DuplicateKey { line: 3 },
        ),
        (
            format!(
                "log {}\nlog {}\nquorum none\n",
                log_key(1),
                vkey("b.example", KeyType::Ed25519, 1)
            ),
            PolicyError::DuplicateKey { line: 2 },
        ),
        (
            format!("log {w1}\nquorum none\n"),
            PolicyError::KeyType {
                line: 1,
                found: KeyType::CosignatureV1,
                expected: KeyType::Ed25519,
            },
        ),
        (
            format!("witness A {}\nquorum A\n", log_key(1)),
            PolicyError::KeyType {
                line: 1,
                found: KeyType::Ed25519,
                expected: KeyType::CosignatureV1,
            },
        ),
        (
            "witness A a+00000000+AQID\nquorum A\n".to_owned(),
            PolicyError::Vkey {
                line: 1,
                source: VkeyError::KeyLength { len: 2 },
            },
        ),
        (
            format!("{head}quorum A\r\n"),
            PolicyError::Char {
                line: 3,
                byte: b'\r',
            },
        ),
        (
            format!("{head}quorum A\x7f\n"),
            PolicyError::Char {
                line: 3,
                byte: 0x7f,
            },
        ),
    ];
    assert_refused(&cases);
}

#[test]
fn non_ascii_names_are_opaque_bytes() {
    let text = format!(
        "witness K {}\nwitness \u{212a} {}\nquorum \u{212a}\n",
        witness_key(1),
        witness_key(2)
    );
    let policy = Policy::parse(text.as_bytes()).unwrap();
    assert!(policy.quorum_met(&set(&[1])));
    assert!(
        !policy.quorum_met(&set(&[0])),
        "K and the Kelvin sign are different names"
    );
}

#[test]
fn policies_are_bounded() {
    let big = vec![b'#'; MAX_POLICY_BYTES + 1];
    assert_eq!(
        Policy::parse(&big),
        Err(PolicyError::TooLarge(MAX_POLICY_BYTES + 1))
    );
    let lines = "\n".repeat(MAX_POLICY_LINES + 1);
    assert_eq!(
        Policy::parse(lines.as_bytes()),
        Err(PolicyError::TooManyLines)
    );

    let mut witnesses = String::new();
    for seed in 0..=MAX_WITNESSES {
        let seed = u8::try_from(seed).unwrap();
        witnesses.push_str(&format!("witness W{seed} {}\n", witness_key(seed)));
    }
    assert_eq!(
        Policy::parse(witnesses.as_bytes()),
        Err(PolicyError::TooMany {
            line: MAX_WITNESSES + 1,
            what: "witnesses"
        })
    );

    let mut groups = format!("witness A {}\n", witness_key(1));
    for g in 0..=MAX_GROUPS {
        groups.push_str(&format!("group G{g} any A\n"));
    }
    assert_eq!(
        Policy::parse(groups.as_bytes()),
        Err(PolicyError::TooMany {
            line: MAX_GROUPS + 2,
            what: "groups"
        })
    );
}

#[test]
fn deeply_nested_groups_evaluate_in_one_pass() {
    // A chain of MAX_GROUPS groups, each the only member of the next: no recursion to blow.
    let mut text = format!("witness A {}\ngroup G0 any A\n", witness_key(1));
    for g in 1..MAX_GROUPS {
        text.push_str(&format!("group G{g} all G{}\n", g - 1));
    }
    text.push_str(&format!("quorum G{}\n", MAX_GROUPS - 1));
    let policy = Policy::parse(text.as_bytes()).unwrap();
    assert!(policy.quorum_met(&set(&[0])));
    assert!(!policy.quorum_met(&set(&[])));
}
