//! The state file.

use super::*;

fn sample_state() -> BTreeMap<String, CosignedTree> {
    BTreeMap::from([
        (
            "example.com/log".to_owned(),
            CosignedTree {
                size: 20852163,
                root: [1; 32],
            },
        ),
        (
            format!("kappalog/feed/{}", "ab".repeat(32)),
            CosignedTree {
                size: 0,
                root: EMPTY_ROOT,
            },
        ),
        (
            "z.example/max".to_owned(),
            CosignedTree {
                size: MAX_TREE_SIZE,
                root: [0xff; 32],
            },
        ),
    ])
}

#[test]
fn a_snapshot_round_trips_and_is_pinned() {
    let text = encode_state(&sample_state());
    assert_eq!(
        text,
        format!(
            "kappalog witness state v1\n\
             example.com/log 20852163 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n\
             kappalog/feed/{} 0 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\
             z.example/max 4611686018427387904 //////////////////////////////////////////8=\n",
            "ab".repeat(32)
        )
    );
    let loaded = parse_state(text.as_bytes()).unwrap();
    assert_eq!(loaded.cosigned, sample_state());
    assert_eq!((loaded.valid_len, loaded.torn_tail_bytes), (text.len(), 0));
}

#[test]
fn a_journal_keeps_the_last_record_and_drops_a_torn_tail() {
    let tree = |size, byte| CosignedTree {
        size,
        root: [byte; 32],
    };
    let mut journal = String::from(STATE_HEADER);
    journal.push_str(&encode_record(ORIGIN, &tree(3, 1)));
    journal.push_str(&encode_record("other.example", &tree(1, 9)));
    journal.push_str(&encode_record(ORIGIN, &tree(3, 1)));
    journal.push_str(&encode_record(ORIGIN, &tree(7, 2)));
    let clean = journal.len();
    let torn = &encode_record(ORIGIN, &tree(9, 3))[..20];
    journal.push_str(torn);
    let loaded = parse_state(journal.as_bytes()).unwrap();
    assert_eq!(loaded.cosigned[ORIGIN], tree(7, 2));
    assert_eq!(loaded.cosigned["other.example"], tree(1, 9));
    assert_eq!((loaded.valid_len, loaded.torn_tail_bytes), (clean, 20));

    // An empty file, or a torn header: nothing was cosigned.
    for len in 0..STATE_HEADER.len() {
        let loaded = parse_state(&STATE_HEADER.as_bytes()[..len]).unwrap();
        assert!(loaded.cosigned.is_empty());
        assert_eq!((loaded.valid_len, loaded.torn_tail_bytes), (0, len));
    }
}

#[test]
fn hostile_state_files_are_refused_with_the_line() {
    let header = STATE_HEADER;
    let root = Base64::encode_string(&[1u8; 32]);
    let cases: Vec<(String, StateFileError)> = vec![
        ("garbage".into(), StateFileError::Header),
        ("kappalog witness state v2\n".into(), StateFileError::Header),
        (format!("\n{header}"), StateFileError::Header),
        (format!("{header}\n"), StateFileError::Record { line: 2 }),
        (format!("{header}a 1\n"), StateFileError::Record { line: 2 }),
        (
            format!("{header}a 01 {root}\n"),
            StateFileError::Record { line: 2 },
        ),
        (
            format!("{header}a 1 {root} x\n"),
            StateFileError::Record { line: 2 },
        ),
        (
            format!("{header}a  1 {root}\n"),
            StateFileError::Record { line: 2 },
        ),
        (
            format!("{header}a 1 {root}\r\n"),
            StateFileError::Record { line: 2 },
        ),
        (
            format!("{header}a+b 1 {root}\n"),
            StateFileError::Record { line: 2 },
        ),
        (
            format!("{header}a 1 AAAA\n"),
            StateFileError::Record { line: 2 },
        ),
        (
            format!("{header}a {} {root}\n", MAX_TREE_SIZE + 1),
            StateFileError::Record { line: 2 },
        ),
        (
            format!("{header}a 5 {root}\na 4 {root}\n"),
            StateFileError::Rollback {
                line: 3,
                origin: "a".into(),
            },
        ),
        (
            format!(
                "{header}a 5 {root}\na 5 {}\n",
                Base64::encode_string(&[2u8; 32])
            ),
            StateFileError::Rollback {
                line: 3,
                origin: "a".into(),
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_state(text.as_bytes()), Err(expected), "{text:?}");
    }
}
