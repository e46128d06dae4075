//! docs/STORE.md is the store format's specification; these tests hold the code to it. They
//! read the doc itself and check its constants table, its length-field bits and ranges, its
//! worked example (the exact bytes, built with the real encoders and opened with the real
//! scan) and its recovery examples (each change applied to the example and judged by a real
//! open). A change to the format that the doc does not follow, or to the doc that the code
//! does not, fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;
use crate::entry::UnsignedEntry;
use crate::identity::Identity;
use crate::store::io::SystemIo;
use crate::store::open::{open_log, LOG_FILE};
use crate::store::writer::IDLE_MARKER_DELAY;
use crate::store::{StoreError, StoreReader};

const DOC: &str = include_str!("../../docs/STORE.md");

/// The text under `heading` (a whole line of the doc), up to the next heading.
fn section(heading: &str) -> &'static str {
    let start = DOC
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/STORE.md has no heading {heading:?}"))
        + heading.len()
        + 2;
    let rest = &DOC[start..];
    let end = rest.find("\n#").map_or(rest.len(), |at| at + 1);
    &rest[..end]
}

/// The body rows of the first table in `text`, each as its trimmed cells.
fn table_rows(text: &str) -> Vec<Vec<&str>> {
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header row and the separator row
        .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert!(!rows.is_empty(), "no table rows in:\n{text}");
    rows
}

/// A number as the doc writes it: decimal, or hex with `0x` (with `_` separators allowed).
fn number(text: &str) -> u64 {
    let text = text.trim().replace('_', "");
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("{text:?} in docs/STORE.md is not a number: {e}"))
}

/// Every constant the doc's table states, with its value in the code, written as the table
/// writes it.
fn code_constants() -> BTreeMap<&'static str, String> {
    let hex = |v: u32| format!("0x{:04x}_{:04x}", v >> 16, v & 0xffff);
    BTreeMap::from([
        ("MAGIC", String::from_utf8_lossy(MAGIC).into_owned()),
        ("VERSION_OFFSET", VERSION_OFFSET.to_string()),
        ("FILE_HEADER_BYTES", FILE_HEADER_BYTES.to_string()),
        ("STORE_FORMAT_V1", STORE_FORMAT_V1.to_string()),
        ("STORE_FORMAT_V2", STORE_FORMAT_V2.to_string()),
        ("STORE_FORMAT_V3", STORE_FORMAT_V3.to_string()),
        ("STORE_FORMAT_V4", STORE_FORMAT_V4.to_string()),
        ("STORE_FORMAT_VERSION", STORE_FORMAT_VERSION.to_string()),
        ("RECORD_HEADER_BYTES", RECORD_HEADER_BYTES.to_string()),
        ("KEY_FLAG", hex(KEY_FLAG)),
        ("MARKER_FLAG", hex(MARKER_FLAG)),
        ("LENGTH_MASK", hex(LENGTH_MASK)),
        ("MIN_ENCODED_BYTES", MIN_ENCODED_BYTES.to_string()),
        ("MAX_ENCODED_BYTES", MAX_ENCODED_BYTES.to_string()),
        ("MAX_KEY_BYTES", MAX_KEY_BYTES.to_string()),
        (
            "MIN_KEYED_PAYLOAD_BYTES",
            MIN_KEYED_PAYLOAD_BYTES.to_string(),
        ),
        (
            "MAX_KEYED_PAYLOAD_BYTES",
            MAX_KEYED_PAYLOAD_BYTES.to_string(),
        ),
        ("MARKER_PAYLOAD_BYTES", MARKER_PAYLOAD_BYTES.to_string()),
        (
            "FORK_NOTE_PAYLOAD_BYTES",
            FORK_NOTE_PAYLOAD_BYTES.to_string(),
        ),
        ("MARKER_RECORD_BYTES", MARKER_RECORD_BYTES.to_string()),
        ("MAX_RECORD_BYTES", MAX_RECORD_BYTES.to_string()),
        (
            "IDLE_MARKER_DELAY",
            format!("{} ms", IDLE_MARKER_DELAY.as_millis()),
        ),
    ])
}

#[test]
fn the_constants_table_states_the_code_constants() {
    let doc: BTreeMap<&str, String> = table_rows(section("### Constants"))
        .into_iter()
        .map(|cells| (cells[0].trim_matches('`'), cells[1].replace('`', "")))
        .collect();
    let code = code_constants();
    let names: BTreeSet<&str> = doc.keys().chain(code.keys()).copied().collect();
    let disagreements: Vec<String> = names
        .into_iter()
        .filter(|name| doc.get(name) != code.get(name))
        .map(|name| {
            format!(
                "{name}: docs/STORE.md says {:?}, the code {:?}",
                doc.get(name),
                code.get(name)
            )
        })
        .collect();
    assert!(
        disagreements.is_empty(),
        "docs/STORE.md's constants table disagrees with the code:\n{}",
        disagreements.join("\n")
    );
}

/// The issue this file was written for: "bits 0-30" beside a flag in bit 30, and ranges
/// that drifted from the limits. Every "bits 0-N" and every `A..=B` in the doc must be the
/// code's.
#[test]
fn the_length_bits_and_ranges_in_the_prose_are_the_code_s() {
    assert_eq!(
        LENGTH_MASK,
        !(KEY_FLAG | MARKER_FLAG),
        "the length is every bit below the two flags"
    );
    let top_length_bit = 31 - LENGTH_MASK.leading_zeros();
    let mut bits_seen = 0;
    for (at, _) in DOC.match_indices("bits 0-") {
        let digits: String = DOC[at + 7..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert_eq!(
            digits.parse::<u32>().ok(),
            Some(top_length_bit),
            "docs/STORE.md says \"bits 0-{digits}\" for the length: the code's length bits are 0-{top_length_bit}"
        );
        bits_seen += 1;
    }
    assert!(
        bits_seen > 0,
        "docs/STORE.md no longer states the length bits"
    );
    let ranges = [
        (MIN_ENCODED_BYTES, MAX_ENCODED_BYTES),
        (MIN_KEYED_PAYLOAD_BYTES, MAX_KEYED_PAYLOAD_BYTES),
    ];
    let mut ranges_seen = 0;
    for (at, _) in DOC.match_indices("..=") {
        let before: String = DOC[..at]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let after: String = DOC[at + 3..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if before.is_empty() || after.is_empty() {
            continue;
        }
        let range = (number(&before) as usize, number(&after) as usize);
        assert!(
            ranges.contains(&range),
            "docs/STORE.md states the range {before}..={after}; the code's are {ranges:?}"
        );
        ranges_seen += 1;
    }
    assert!(
        ranges_seen >= 2,
        "docs/STORE.md no longer states the length ranges"
    );
}

/// The worked example's inputs, as the doc describes them.
struct Example {
    first: Entry,
    second: Entry,
    key: IdempotencyKey,
    forked: Author,
    /// The first entry under a second signature (nonce prefix of 32 bytes 0x5a).
    first_again: Entry,
}

fn example() -> Example {
    let id = Identity::from_seed([0; 32]);
    let (first, first_hash) = UnsignedEntry {
        author: id.author(),
        seq: 1,
        timestamp: 0,
        prev: None,
        value: 0,
        data: String::new(),
    }
    .sign(&id);
    let (second, _) = UnsignedEntry {
        author: id.author(),
        seq: 2,
        timestamp: 1_700_000_000_000,
        prev: Some(first_hash),
        value: 7,
        data: String::new(),
    }
    .sign(&id);
    Example {
        first_again: crate::entry::testing::resign(&id, &first, 0x5a),
        first,
        second,
        key: "k1".parse().expect("a valid key"),
        forked: Identity::from_seed([1; 32]).author(),
    }
}

/// The example file as the writer lays it out: write 1 (marker, entry), write 2 (marker,
/// keyed entry, fork note), the idle marker, write 3 (marker, replacement of the first
/// entry), the idle marker.
fn example_log(e: &Example) -> Vec<u8> {
    let mut log = file_header().to_vec();
    encode_marker(log.len() as u64, &mut log);
    encode_keyed_record(&e.first, None, &mut log);
    encode_marker(log.len() as u64, &mut log);
    encode_keyed_record(&e.second, Some(&e.key), &mut log);
    encode_fork_note(log.len() as u64, &e.forked, &mut log);
    encode_marker(log.len() as u64, &mut log);
    encode_marker(log.len() as u64, &mut log);
    encode_replacement(&e.first_again, &mut log);
    encode_marker(log.len() as u64, &mut log);
    log
}

/// Prints the encoders' bytes of the example (for writing the doc's dump by hand).
#[test]
#[ignore]
fn print_example() {
    let bytes = example_log(&example());
    for (i, b) in bytes.iter().enumerate() {
        print!("{b:02x}{}", if i % 16 == 15 { "\n" } else { " " });
    }
}

/// The bytes of the doc's hex dump, each line's offset checked against the bytes before it.
fn documented_example() -> Vec<u8> {
    let text = section("### Worked example");
    let block = text
        .split("```text\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```text block in the worked example");
    let mut bytes = Vec::new();
    let mut lines = 0;
    for line in block.lines().skip(1) {
        let (dump, _what) = line
            .split_once('|')
            .unwrap_or_else(|| panic!("example line without '|': {line:?}"));
        let mut fields = dump.split_whitespace();
        let offset = number(fields.next().expect("an offset"));
        assert_eq!(
            offset,
            bytes.len() as u64,
            "example line {line:?}: the bytes before it end at {}",
            bytes.len()
        );
        for byte in fields {
            assert_eq!(
                byte.len(),
                2,
                "example line {line:?}: {byte:?} is not a hex byte"
            );
            bytes.push(u8::from_str_radix(byte, 16).expect("a hex byte"));
        }
        lines += 1;
    }
    assert!(lines > 10, "the worked example has too few lines");
    bytes
}

#[test]
fn the_worked_example_is_what_the_encoders_write() {
    let documented = documented_example();
    let encoded = example_log(&example());
    if let Some(at) =
        (0..documented.len().min(encoded.len())).find(|&at| documented[at] != encoded[at])
    {
        panic!(
            "docs/STORE.md's worked example differs from the encoders' bytes first at offset {at}: doc 0x{:02x}, code 0x{:02x}",
            documented[at], encoded[at]
        );
    }
    assert_eq!(
        documented.len(),
        encoded.len(),
        "docs/STORE.md's worked example has a different length than the encoders' bytes"
    );
}

fn write_log(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join(LOG_FILE), bytes).expect("write the example log");
}

#[test]
fn the_worked_example_opens_as_described() {
    let e = example();
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &documented_example());
    let opened = open_log(dir.path(), false, &SystemIo).expect("the example opens");
    assert_eq!(opened.version, STORE_FORMAT_V4);
    let report = &opened.report;
    assert_eq!((report.entries, report.feeds), (2, 1));
    assert_eq!(report.fork_notes, BTreeSet::from([e.forked]));
    assert_eq!(report.truncated_at, None);
    assert_eq!(opened.index.end, 577);
    assert_eq!(opened.index.replacements, 1);
    assert_eq!(opened.index.current(28), 427);
    let first = read_record_at(&SystemIo, &opened.file, 28, 577).expect("the entry record at 28");
    assert_eq!((&first.entry, &first.key), (&e.first, &None));
    let second =
        read_record_at(&SystemIo, &opened.file, 178, 577).expect("the keyed record at 178");
    assert_eq!((&second.entry, &second.key), (&e.second, &Some(e.key)));
    assert_eq!(second.entry.prev, Some(first.hash));
    let again = read_record_at(&SystemIo, &opened.file, 427, 577).expect("the replacement at 427");
    assert!(again.replacement);
    assert_eq!((&again.entry, again.hash), (&e.first_again, first.hash));
    assert_ne!(again.entry.signature, first.entry.signature);
    // Every read returns the current copy.
    let (reader, _) = StoreReader::open_read_only(dir.path()).expect("a reader");
    assert_eq!(
        reader.get(&e.first.author, 1).unwrap(),
        Some((e.first_again.clone(), first.hash))
    );
    assert!(reader.verify_all().unwrap().is_ok());
}

/// Applies one change of the recovery examples' table to `bytes`.
fn apply_change(bytes: &mut Vec<u8>, change: &str) {
    let at = |text: &str| usize::try_from(number(text)).expect("an offset");
    if let Some(n) = change
        .strip_prefix("cut to ")
        .and_then(|rest| rest.strip_suffix(" bytes"))
    {
        bytes.truncate(at(n));
    } else if let Some(from) = change
        .strip_prefix("bytes ")
        .and_then(|rest| rest.strip_suffix(" to the end zeroed"))
    {
        bytes[at(from)..].fill(0);
    } else if let Some(byte) = change
        .strip_prefix("byte ")
        .and_then(|rest| rest.strip_suffix(" flipped"))
    {
        bytes[at(byte)] ^= 0x01;
    } else if let Some((offset, value)) = change
        .strip_prefix("u32 at ")
        .and_then(|rest| rest.split_once(" set to "))
    {
        let value = u32::try_from(number(value)).expect("a u32");
        bytes[at(offset)..at(offset) + 4].copy_from_slice(&value.to_le_bytes());
    } else if let Some(record) = change
        .strip_prefix("checksum at ")
        .and_then(|rest| rest.strip_suffix(" recomputed"))
    {
        let record = at(record);
        let mut field = [0u8; 4];
        field.copy_from_slice(&bytes[record..record + 4]);
        let n = usize::try_from(u32::from_le_bytes(field) & LENGTH_MASK).expect("a length");
        let payload = record + RECORD_HEADER_BYTES;
        let crc = crc32c::crc32c(&bytes[payload..payload + n]);
        bytes[record + 4..record + 8].copy_from_slice(&crc.to_le_bytes());
    } else {
        panic!("recovery example: unknown change {change:?}");
    }
}

#[test]
fn each_recovery_example_opens_as_the_doc_says() {
    let rows = table_rows(section("### Recovery examples"));
    for cells in &rows {
        let (changes, finds) = (cells[0], cells[1]);
        let mut bytes = documented_example();
        for change in changes.split(", ") {
            apply_change(&mut bytes, change);
        }
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), &bytes);
        let row = format!("recovery example {changes:?} -> {finds:?}");
        let opened = open_log(dir.path(), true, &SystemIo);
        let on_disk = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        if let Some(offset) = finds.strip_prefix("torn tail at ") {
            let offset = number(offset);
            let report = opened.map(|o| o.report);
            let report = report.unwrap_or_else(|e| panic!("{row}: the open failed: {e}"));
            assert_eq!(report.truncated_at, Some(offset), "{row}");
            assert_eq!(on_disk.len() as u64, offset, "{row}: the tail is cut");
        } else if let Some(damage) = finds.strip_prefix("damage at ") {
            let (offset, marker) = match damage.split_once(", commit marker at ") {
                Some((offset, marker)) => (number(offset), Some(number(marker))),
                None => (number(damage), None),
            };
            match opened.map(|o| o.report) {
                Err(StoreError::Corrupt {
                    offset: found,
                    reason,
                    ..
                }) => {
                    assert_eq!(found, offset, "{row}: {reason}");
                    if let Some(marker) = marker {
                        let named = format!("commit marker at offset {marker}");
                        assert!(reason.contains(&named), "{row}: {reason}");
                    }
                }
                other => panic!("{row}: the open gave {other:?}"),
            }
            assert_eq!(on_disk, bytes, "{row}: a damaged file is left alone");
        } else if let Some(verify) = finds.strip_prefix("intact") {
            let report = opened.map(|o| o.report);
            let report = report.unwrap_or_else(|e| panic!("{row}: the open failed: {e}"));
            assert_eq!((report.entries, report.truncated_at), (2, None), "{row}");
            let expected: Vec<u64> = match verify.strip_prefix(", `verify_all` fails at ") {
                Some(offset) => vec![number(offset)],
                None if verify.is_empty() => Vec::new(),
                None => panic!("{row}: unknown result"),
            };
            let (reader, _) = StoreReader::open_read_only(dir.path()).expect("a reader");
            let verified = reader.verify_all().expect("verify_all runs");
            let failed: Vec<u64> = verified.problems.iter().map(|p| p.offset).collect();
            assert_eq!(failed, expected, "{row}: {verified}");
        } else {
            panic!("{row}: unknown result");
        }
    }
    assert!(rows.len() >= 8, "the recovery examples lost rows");
}
