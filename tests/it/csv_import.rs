//! CSV import: round trips, concatenations, and hostile input (each rejection with its line
//! and reason, never a panic).

use kappalog::csv::{
    CsvParser, CsvWriter, ImportReport, ParsedEntry, ParsedLine, RejectReason, Rejection,
    MAX_CSV_RECORD_BYTES,
};
use kappalog::entry::{Entry, UnsignedEntry, MAX_DATA_BYTES};
use kappalog::hash::{Hash, ParseBytesError};
use kappalog::identity::Identity;
use kappalog::import::import_csv;
use kappalog::store::{Store, StoreOwner};
use kappalog::validate::ValidationError;
use proptest::prelude::*;

const HEADER: &str = "author,seq,timestamp,prev,value,data,hash,signature\n";

/// Two signed feeds: 3 entries by seed 1, 2 by seed 2, with awkward data.
fn entries() -> Vec<(Entry, Hash)> {
    let data = ["", "a,b", "quote \" and\nnewline", "crlf\r\nend", "ünïcode"];
    let mut out = vec![];
    for (seed, len) in [(1u8, 3u64), (2, 2)] {
        let id = Identity::from_seed([seed; 32]);
        let mut prev = None;
        for seq in 1..=len {
            let (entry, hash) = UnsignedEntry {
                author: id.author(),
                seq,
                timestamp: 1_700_000_000_000 + seq,
                prev,
                value: if seq == 2 {
                    i64::MIN
                } else {
                    7 * i64::try_from(seq).unwrap()
                },
                data: data[usize::try_from(seq - 1).unwrap() + 3 * usize::from(seed - 1)].into(),
            }
            .sign(&id);
            prev = Some(hash);
            out.push((entry, hash));
        }
    }
    out.sort_by_key(|(e, _)| (e.author, e.seq));
    out
}

fn export(entries: &[(Entry, Hash)]) -> Vec<u8> {
    let mut w = CsvWriter::new(Vec::new()).unwrap();
    for (e, h) in entries {
        w.write_entry(e, h).unwrap();
    }
    w.finish().unwrap()
}

/// Imports `input` into `store` (sorting in memory); returns the report.
fn import_into(store: &Store, dir: &std::path::Path, input: &[u8]) -> ImportReport {
    import_csv(store, input, dir, |_| false, |_| Ok(())).unwrap()
}

/// Imports `input` into a fresh store; returns the report and the log in commit order.
fn import(input: &[u8]) -> (ImportReport, Vec<(Entry, Hash)>) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _owner, _) = Store::open(dir.path(), None, None).unwrap();
    let report = import_into(&store, dir.path(), input);
    let mut log = Vec::new();
    store
        .reader()
        .for_each_in_log_order(|e, h| {
            log.push((e.clone(), *h));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    (report, log)
}

/// One store for the never-panic properties (opening one per case would dominate). Its
/// owner lives in the static too: dropping it would shut the store down.
fn shared_store() -> &'static (Store, StoreOwner, tempfile::TempDir) {
    static STORE: std::sync::OnceLock<(Store, StoreOwner, tempfile::TempDir)> =
        std::sync::OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (store, owner, _) = Store::open(dir.path(), None, None).unwrap();
        (store, owner, dir)
    })
}

fn parse(bytes: &[u8]) -> Vec<ParsedLine> {
    CsvParser::new(bytes)
        .collect::<std::io::Result<_>>()
        .unwrap()
}

fn rejections(bytes: &[u8]) -> Vec<Rejection> {
    parse(bytes)
        .into_iter()
        .filter_map(|l| match l {
            ParsedLine::Rejected(r) => Some(r),
            ParsedLine::Entry(_) => None,
        })
        .collect()
}

/// Seed 1's first entry: empty data, so its exported line splits on commas.
fn plain_entry() -> (Entry, Hash) {
    let seed1 = Identity::from_seed([1; 32]).author();
    let found = entries()
        .into_iter()
        .find(|(e, _)| e.author == seed1 && e.seq == 1)
        .unwrap();
    assert!(found.0.data.is_empty());
    found
}

/// One exported line of the first entry, split into its 8 fields.
fn fields() -> Vec<String> {
    let (e, h) = &plain_entry();
    let bytes = export(&[(e.clone(), *h)]);
    let text = String::from_utf8(bytes).unwrap();
    text.lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(String::from)
        .collect()
}

/// A file with the header and one record built from `fields` with field `i` replaced.
fn with_field(i: usize, value: &str) -> Vec<u8> {
    let mut f = fields();
    f[i] = value.into();
    format!("{HEADER}{}\n", f.join(",")).into_bytes()
}

fn one_rejection(bytes: &[u8]) -> Rejection {
    let lines = parse(bytes);
    assert_eq!(lines.len(), 1, "{lines:?}");
    match lines.into_iter().next().unwrap() {
        ParsedLine::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn round_trip() {
    let entries = entries();
    let parsed: Vec<(Entry, Hash, u64)> = parse(&export(&entries))
        .into_iter()
        .map(|l| match l {
            ParsedLine::Entry(p) => (p.entry, p.hash, p.line),
            other => panic!("{other:?}"),
        })
        .collect();
    let expected: Vec<(Entry, Hash)> = entries;
    assert_eq!(
        parsed
            .iter()
            .map(|(e, h, _)| (e.clone(), *h))
            .collect::<Vec<_>>(),
        expected
    );
    // Lines: header is 1; data with an embedded newline makes a record span two lines.
    let lines: Vec<u64> = parsed.iter().map(|p| p.2).collect();
    let mut expected_lines = vec![];
    let mut line = 2;
    for (e, _) in &expected {
        expected_lines.push(line);
        line += 1 + e.data.matches('\n').count() as u64;
    }
    assert_eq!(lines, expected_lines);
    assert!(
        lines.windows(2).any(|w| w[1] - w[0] > 1),
        "some data spans lines"
    );
}

#[test]
fn concatenated_shuffled_duplicated_input_imports_the_same() {
    let entries = entries();
    let (once, once_log) = import(&export(&entries));
    let mut reversed = entries.clone();
    reversed.reverse();
    let mut input = export(&entries[2..]);
    input.extend(export(&reversed));
    input.extend(b"\n\n");
    input.extend(export(&entries[..3]));
    let (messy, messy_log) = import(&input);
    assert_eq!(messy_log, once_log);
    assert_eq!((once.added, once.duplicates), (5, 0));
    assert_eq!((messy.added, messy.duplicates), (5, 6));
    assert!(messy.rejected.is_empty() && messy.forks.is_empty());
}

#[test]
fn fork_within_input_reports_both_lines() {
    let mut entries = entries();
    let id = Identity::from_seed([1; 32]);
    let mut other = entries
        .iter()
        .find(|(e, _)| e.author == id.author() && e.seq == 2)
        .unwrap()
        .0
        .unsigned();
    other.value = 99;
    entries.push(other.sign(&id));
    let (report, log) = import(&export(&entries));
    assert_eq!(report.forks.len(), 1);
    let fork = &report.forks.listed()[0];
    assert_eq!((fork.author, fork.seq), (id.author(), 2));
    let mut lines: Vec<Option<u64>> = fork.entries.iter().map(|s| s.line).collect();
    lines.sort();
    let expected: Vec<Option<u64>> = parse(&export(&entries))
        .into_iter()
        .filter_map(|l| match l {
            ParsedLine::Entry(p) if p.entry.author == id.author() && p.entry.seq == 2 => {
                Some(Some(p.line))
            }
            _ => None,
        })
        .collect();
    assert_eq!(expected.len(), 2);
    assert_eq!(lines, expected);
    // Both contenders were offered: the lower hash was stored, and seq 3 follows it only if
    // it links to that one.
    let stored = log
        .iter()
        .find(|(e, _)| e.author == id.author() && e.seq == 2)
        .unwrap();
    assert_eq!(stored.1, fork.entries[0].hash.min(fork.entries[1].hash));
}

/// A row whose hash is right but whose signature is not the author's, next to the genuine
/// entry at its position: a rejection, not a fork (nobody signed it).
#[test]
fn a_forged_row_beside_a_genuine_entry_is_not_a_fork() {
    let mut entries = entries();
    let mut forged = entries[1].0.clone();
    forged.value = 12_345;
    let hash = forged.unsigned().hash();
    entries.push((forged, hash));
    let (report, log) = import(&export(&entries));
    assert!(report.forks.is_empty(), "{report}");
    assert_eq!((report.added, report.rejected.total()), (5, 1), "{report}");
    assert_eq!(log.len(), 5);
}

#[test]
fn report_json_shape() {
    let mut input = export(&entries()[..1]);
    input.extend(b"x,y\n");
    let (report, _) = import(&input);
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(
        json,
        r#"{"added":1,"duplicates":0,"rejected":1,"rejections":[{"line":4,"reason":"wrong field count: 2 != 8"}],"forks":0,"fork_details":[]}"#
    );
    assert_eq!(
        report.to_string(),
        "added 1, duplicates 0, rejected 1, forks 0\nline 4: wrong field count: 2 != 8"
    );
    assert_eq!(
        ImportReport::default().to_string(),
        "added 0, duplicates 0, rejected 0, forks 0"
    );
}

#[test]
fn bad_hex_in_prev() {
    let mut f = fields();
    f[1] = "2".into();
    f[3] = "zz".repeat(32);
    let r = one_rejection(format!("{HEADER}{}\n", f.join(",")).as_bytes());
    assert_eq!(r.line, 2);
    assert!(
        matches!(
            r.reason,
            RejectReason::BadHex {
                field: "prev",
                error: ParseBytesError::BadHex(_)
            }
        ),
        "{r:?}"
    );
    assert!(r.reason.to_string().starts_with("bad hex in `prev`"));
}

#[test]
fn bad_author_length() {
    let r = one_rejection(&with_field(0, "abcd"));
    assert_eq!(
        r.reason,
        RejectReason::BadHex {
            field: "author",
            error: ParseBytesError::WrongHexLength {
                expected: 64,
                found: 4
            }
        }
    );
}

#[test]
fn bad_signature_length() {
    let r = one_rejection(&with_field(7, &"ab".repeat(63)));
    assert_eq!(
        r.reason,
        RejectReason::BadHex {
            field: "signature",
            error: ParseBytesError::WrongHexLength {
                expected: 128,
                found: 126
            }
        }
    );
}

#[test]
fn wrong_field_counts() {
    let f = fields();
    let input = format!("{HEADER}{}\n{},extra\n", f[..7].join(","), f.join(","));
    let r = rejections(input.as_bytes());
    assert_eq!(
        r[0],
        Rejection {
            line: 2,
            reason: RejectReason::FieldCount { found: 7 }
        }
    );
    assert_eq!(
        r[1],
        Rejection {
            line: 3,
            reason: RejectReason::FieldCount { found: 9 }
        }
    );
    assert_eq!(r[0].reason.to_string(), "wrong field count: 7 != 8");
    let commas = ",".repeat(100_000);
    let r = one_rejection(commas.as_bytes());
    assert_eq!(r.reason, RejectReason::FieldCount { found: 100_001 });
}

#[test]
fn non_numeric_and_negative_seq() {
    let r = one_rejection(&with_field(1, "one"));
    assert_eq!(
        r.reason,
        RejectReason::NotInteger {
            field: "seq",
            text: "one".into()
        }
    );
    let r = one_rejection(&with_field(1, "-1"));
    assert_eq!(
        r.reason,
        RejectReason::Negative {
            field: "seq",
            text: "-1".into()
        }
    );
    let r = one_rejection(&with_field(1, "+1"));
    assert_eq!(
        r.reason,
        RejectReason::NotInteger {
            field: "seq",
            text: "+1".into()
        }
    );
    let r = one_rejection(&with_field(1, "0"));
    assert_eq!(r.reason, RejectReason::Invalid(ValidationError::SeqZero));
}

#[test]
fn value_out_of_range() {
    let r = one_rejection(&with_field(4, "9223372036854775808"));
    assert_eq!(
        r.reason,
        RejectReason::OutOfRange {
            field: "value",
            text: "9223372036854775808".into()
        }
    );
    let r = one_rejection(&with_field(2, "18446744073709551616"));
    assert_eq!(
        r.reason,
        RejectReason::OutOfRange {
            field: "timestamp",
            text: "18446744073709551616".into()
        }
    );
}

#[test]
fn hash_mismatch() {
    let r = one_rejection(&with_field(6, &"00".repeat(32)));
    assert!(
        matches!(r.reason, RejectReason::Invalid(ValidationError::HashMismatch { claimed, .. }) if claimed == Hash([0; 32])),
        "{r:?}"
    );
    // Changing any field without the hash is caught the same way.
    let r = one_rejection(&with_field(4, "8"));
    assert!(matches!(
        r.reason,
        RejectReason::Invalid(ValidationError::HashMismatch { .. })
    ));
}

#[test]
fn data_over_the_limit() {
    let r = one_rejection(&with_field(5, &"x".repeat(MAX_DATA_BYTES + 1)));
    assert_eq!(
        r.reason,
        RejectReason::Invalid(ValidationError::DataTooLong {
            len: MAX_DATA_BYTES + 1
        })
    );
}

#[test]
fn invalid_utf8() {
    let mut input = with_field(5, "DATA");
    let at = input.windows(4).position(|w| w == b"DATA").unwrap();
    input.splice(at..at + 4, [0xff, 0xfe]);
    let r = one_rejection(&input);
    assert_eq!(
        r,
        Rejection {
            line: 2,
            reason: RejectReason::NotUtf8 { field: "data" }
        }
    );
}

#[test]
fn ten_megabyte_line_is_rejected_and_parsing_goes_on() {
    let f = fields();
    let mut input = HEADER.as_bytes().to_vec();
    input.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
    input.extend(b"\n");
    input.extend(format!("{}\n", f.join(",")).as_bytes());
    let lines = parse(&input);
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        ParsedLine::Rejected(Rejection {
            line: 2,
            reason: RejectReason::RecordTooLong
        })
    );
    assert!(matches!(
        &lines[1],
        ParsedLine::Entry(ParsedEntry { line: 3, .. })
    ));
    assert_eq!(
        RejectReason::RecordTooLong.to_string(),
        format!("record is longer than {MAX_CSV_RECORD_BYTES} bytes")
    );
}

#[test]
fn a_record_at_the_cap_is_not_too_long() {
    // 8 fields whose content totals exactly the cap: judged on its fields, not its size.
    let mut f = vec![String::new(); 8];
    f[5] = "x".repeat(MAX_CSV_RECORD_BYTES);
    let r = one_rejection(format!("{}\n", f.join(",")).as_bytes());
    assert_eq!(
        r.reason,
        RejectReason::BadHex {
            field: "author",
            error: ParseBytesError::WrongHexLength {
                expected: 64,
                found: 0
            }
        }
    );
}

#[test]
fn empty_and_header_only_files() {
    assert!(parse(b"").is_empty());
    assert!(parse(HEADER.as_bytes()).is_empty());
    assert!(parse(format!("{HEADER}{HEADER}\n\r\n{HEADER}").as_bytes()).is_empty());
    assert!(parse(b"\xef\xbb\xbfauthor,seq,timestamp,prev,value,data,hash,signature").is_empty());
}

#[test]
fn crlf_line_endings() {
    let entries = entries();
    let plain: Vec<(Entry, Hash)> = entries
        .into_iter()
        .filter(|(e, _)| !e.data.contains(['\r', '\n']))
        .collect();
    assert_eq!(plain.len(), 3);
    let text = String::from_utf8(export(&plain)).unwrap();
    let crlf = text.replace('\n', "\r\n");
    let lines = parse(crlf.as_bytes());
    let parsed: Vec<u64> = lines
        .iter()
        .map(|l| match l {
            ParsedLine::Entry(p) => p.line,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(parsed, vec![2, 3, 4]);
}

#[test]
fn a_bad_line_does_not_stop_the_next() {
    let plain = plain_entry();
    let mut input = export(std::slice::from_ref(&plain));
    input.extend(b"garbage\n\"unterminated,quote\n");
    input.extend(&export(&[plain])[HEADER.len()..]);
    let lines = parse(&input);
    assert!(matches!(lines[0], ParsedLine::Entry(_)));
    assert_eq!(
        lines[1],
        ParsedLine::Rejected(Rejection {
            line: 3,
            reason: RejectReason::FieldCount { found: 1 }
        })
    );
    // The unterminated quote swallows the rest of the file into one field: one rejection.
    assert_eq!(lines.len(), 3);
    assert!(matches!(
        lines[2],
        ParsedLine::Rejected(Rejection { line: 4, .. })
    ));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (store, _, dir) = shared_store();
        import_into(store, dir.path(), &bytes);
    }

    #[test]
    fn mangled_exports_never_panic(cut in 0usize..2000, byte in any::<u8>(), at in 0usize..2000) {
        let mut input = export(&entries());
        let at = at % input.len();
        input[at] = byte;
        input.truncate(cut.max(1) * 2 % (input.len() + 1));
        let (store, _, dir) = shared_store();
        import_into(store, dir.path(), &input);
    }
}

/// Import takes exactly what export writes: lowercase hex, numbers without leading zeros or
/// `-0`, and quotes only around `data` — so every entry has one text form, and a reader
/// written from docs/CSV.md agrees with this one.
#[test]
fn only_the_canonical_forms_export_writes_are_accepted() {
    let f = fields();
    let reason = |i: usize, text: &str| one_rejection(&with_field(i, text)).reason.to_string();
    assert_eq!(
        reason(0, &f[0].to_uppercase()),
        "bad hex in `author`: invalid hex: uppercase hex digits; CSV uses lowercase"
    );
    assert_eq!(
        reason(6, &f[6].to_uppercase()),
        "bad hex in `hash`: invalid hex: uppercase hex digits; CSV uses lowercase"
    );
    assert_eq!(
        reason(1, "01"),
        "`seq` is not in canonical form: \"01\" (no leading zeros)"
    );
    assert_eq!(
        reason(2, &format!("0{}", f[2])),
        format!(
            "`timestamp` is not in canonical form: \"0{}\" (no leading zeros)",
            f[2]
        )
    );
    assert_eq!(
        reason(4, "-07"),
        "`value` is not in canonical form: \"-07\" (no leading zeros)"
    );
    assert_eq!(
        reason(4, "-0"),
        "`value` is not in canonical form: \"-0\" (zero has no sign)"
    );
    for (i, name) in [(1, "seq"), (0, "author"), (7, "signature"), (4, "value")] {
        assert_eq!(
            reason(i, &format!("\"{}\"", f[i])),
            format!("`{name}` is quoted; only `data` may be")
        );
    }
    // `data` may be quoted, with or without need, and may hold quotes.
    let quoted_data = with_field(5, "\"\"");
    assert!(matches!(parse(&quoted_data)[..], [ParsedLine::Entry(_)]));
    // The export of awkward data (commas, quotes, newlines) still reads back whole.
    assert!(parse(&export(&entries()))
        .iter()
        .all(|l| matches!(l, ParsedLine::Entry(_))));
}

/// docs/FORMAT.md §7: the signature is checked before the entry's place in its feed, so an
/// out-of-order row nobody signed is a bad signature, not a gap.
#[test]
fn an_unsigned_row_is_a_bad_signature_wherever_it_claims_to_be() {
    let entries = entries();
    let last = entries.iter().max_by_key(|(e, _)| e.seq).unwrap();
    let mut forged = last.0.clone();
    forged.signature = kappalog::identity::Signature([3; 64]);
    let (report, log) = import(&export(&[(forged, last.1)]));
    assert!(log.is_empty());
    let reasons: Vec<String> = report
        .sorted_rejections()
        .iter()
        .map(|r| r.reason.to_string())
        .collect();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].starts_with("bad signature"), "{reasons:?}");
}
