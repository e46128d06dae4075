//! Recovery on open: torn tails are cut and reported, damage before the tail refuses to open
//! naming the byte offset, and the file is left untouched when the open fails.

use std::fs::OpenOptions;
use std::path::Path;

use crate::common;
use crate::common::{entries, feed, identity};
use kappalog::entry::UnsignedEntry;
use kappalog::store::{Store, StoreError, StoreReader};

const HEADER: u64 = 12;

fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.join("entries.log")
}

/// Writes `n` entries of one feed, one write each; returns each entry record's start offset
/// and the file length. Every write begins with a commit marker, and the closing store
/// writes one after the last record.
fn build(dir: &Path, n: u64) -> (Vec<u64>, u64) {
    let (store, owner, _) = Store::open(dir, None, None).unwrap();
    for (entry, _) in feed(&identity(3), n) {
        store.append_entries(vec![entry]).wait().unwrap();
    }
    owner.shutdown_blocking().unwrap();
    let bytes = std::fs::read(log_path(dir)).unwrap();
    let records = common::log_records(&bytes);
    assert!(
        records.last().unwrap().2,
        "the log ends with a commit marker"
    );
    let offsets = records
        .iter()
        .filter(|&&(_, _, marker)| !marker)
        .map(|&(at, _, _)| at)
        .collect();
    (offsets, bytes.len() as u64)
}

/// The end of the record starting at `offset` in `dir`'s log.
fn record_end(dir: &Path, offset: u64) -> u64 {
    let bytes = std::fs::read(log_path(dir)).unwrap();
    common::log_records(&bytes)
        .into_iter()
        .find(|&(at, _, _)| at == offset)
        .unwrap()
        .1
}

fn corrupt_offset(err: StoreError) -> u64 {
    match err {
        StoreError::Corrupt { offset, .. } => offset,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record_is_truncated() {
    let src = tempfile::tempdir().unwrap();
    let (offsets, full) = build(src.path(), 3);
    let last = offsets[2];
    let last_end = record_end(src.path(), last);
    let bytes = std::fs::read(log_path(src.path())).unwrap();
    // A cut in the closing marker tears only the marker: every entry stays.
    for cut in last_end + 1..full {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(log_path(dir.path()), &bytes[..cut as usize]).unwrap();
        let (_store, owner, report) = Store::open(dir.path(), None, None).unwrap();
        assert_eq!(
            (report.entries, report.truncated_at),
            (3, Some(last_end)),
            "cut {cut}"
        );
        owner.shutdown_blocking().unwrap();
    }
    for cut in last + 1..last_end {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(log_path(dir.path()), &bytes[..cut as usize]).unwrap();
        let (reader, report) = StoreReader::open_read_only(dir.path()).unwrap();
        assert_eq!(
            (reader.len(), report.truncated_at),
            (2, Some(last)),
            "cut {cut}"
        );
        // The read-only open left the file alone.
        assert_eq!(std::fs::metadata(log_path(dir.path())).unwrap().len(), cut);
        let (store, owner, report) = Store::open(dir.path(), None, None).unwrap();
        assert_eq!(report.entries, 2, "cut {cut}");
        assert_eq!(report.truncated_at, Some(last));
        assert_eq!(report.truncated_bytes, cut - last);
        assert_eq!(store.reader().len(), 2);
        owner.shutdown_blocking().unwrap();
        assert_eq!(std::fs::metadata(log_path(dir.path())).unwrap().len(), last);
    }
}

/// A crash in the middle of the last write: its record's last byte never reached the disk,
/// and neither did a commit marker after it.
#[test]
fn torn_final_record_with_bad_checksum_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (offsets, _) = build(dir.path(), 3);
    let end = record_end(dir.path(), offsets[2]) as usize;
    let mut bytes = std::fs::read(log_path(dir.path())).unwrap();
    bytes.truncate(end);
    bytes[end - 1] ^= 0xff;
    std::fs::write(log_path(dir.path()), &bytes).unwrap();
    let (_, _owner, report) = Store::open(dir.path(), None, None).unwrap();
    assert_eq!((report.entries, report.truncated_at), (2, Some(offsets[2])));
}

/// The same damage to the last record with the commit marker after it intact: the record
/// was synced before the marker was written, so it was acknowledged, and a crash cannot tear
/// it. That is damage: the open refuses, naming the record's offset, and changes nothing.
#[test]
fn damage_to_the_last_acknowledged_record_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (offsets, _) = build(dir.path(), 3);
    let end = record_end(dir.path(), offsets[2]) as usize;
    let mut bytes = std::fs::read(log_path(dir.path())).unwrap();
    bytes[end - 1] ^= 0xff;
    std::fs::write(log_path(dir.path()), &bytes).unwrap();
    let err = Store::open(dir.path(), None, None).err().unwrap();
    assert_eq!(corrupt_offset(err), offsets[2]);
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), bytes);
    let err = StoreReader::open_read_only(dir.path()).err().unwrap();
    assert_eq!(corrupt_offset(err), offsets[2]);
}

/// The attack of issue 11: a length field overwritten so the record seems to run past the
/// end of the file (which alone reads as a torn tail) ten records before the end. The
/// records after it were acknowledged: the markers after them say so, and the open refuses.
#[test]
fn a_length_field_pointing_past_the_end_before_markers_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (offsets, _) = build(dir.path(), 12);
    let mut bytes = std::fs::read(log_path(dir.path())).unwrap();
    let at = offsets[2] as usize;
    bytes[at..at + 4].copy_from_slice(&0x109e_u32.to_le_bytes());
    std::fs::write(log_path(dir.path()), &bytes).unwrap();
    let err = Store::open(dir.path(), None, None).err().unwrap();
    assert!(err.to_string().contains("commit marker"), "{err}");
    assert_eq!(corrupt_offset(err), offsets[2]);
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), bytes);
}

#[test]
fn all_zero_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (_, full) = build(dir.path(), 2);
    let file = OpenOptions::new()
        .write(true)
        .open(log_path(dir.path()))
        .unwrap();
    file.set_len(full + 4096).unwrap();
    drop(file);
    let (_store, owner, report) = Store::open(dir.path(), None, None).unwrap();
    assert_eq!(report.entries, 2);
    assert_eq!(
        (report.truncated_at, report.truncated_bytes),
        (Some(full), 4096)
    );
    owner.shutdown_blocking().unwrap();
    assert_eq!(std::fs::metadata(log_path(dir.path())).unwrap().len(), full);
}

#[test]
fn torn_header_of_a_new_file_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(log_path(dir.path()), b"kappa").unwrap();
    let (_store, owner, report) = Store::open(dir.path(), None, None).unwrap();
    assert_eq!((report.truncated_at, report.truncated_bytes), (Some(0), 5));
    owner.shutdown_blocking().unwrap();
    assert_eq!(
        std::fs::metadata(log_path(dir.path())).unwrap().len(),
        HEADER
    );
}

#[test]
fn foreign_file_is_a_bad_header() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(log_path(dir.path()), b"not a kappalog file at all").unwrap();
    assert!(matches!(
        Store::open(dir.path(), None, None),
        Err(StoreError::BadHeader { .. })
    ));
}

#[test]
fn flipped_byte_in_an_early_record_names_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (offsets, _) = build(dir.path(), 3);
    let mut bytes = std::fs::read(log_path(dir.path())).unwrap();
    bytes[offsets[1] as usize + 20] ^= 1;
    std::fs::write(log_path(dir.path()), &bytes).unwrap();
    let err = Store::open(dir.path(), None, None).err().unwrap();
    assert!(
        err.to_string().contains(&format!("offset {}", offsets[1])),
        "{err}"
    );
    assert_eq!(corrupt_offset(err), offsets[1]);
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), bytes);
    let err = StoreReader::open_read_only(dir.path()).err().unwrap();
    assert_eq!(corrupt_offset(err), offsets[1]);
}

#[test]
fn bad_length_before_the_tail_names_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (offsets, _) = build(dir.path(), 3);
    let mut bytes = std::fs::read(log_path(dir.path())).unwrap();
    let at = offsets[1] as usize;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(log_path(dir.path()), &bytes).unwrap();
    let err = Store::open(dir.path(), None, None).err().unwrap();
    assert_eq!(corrupt_offset(err), offsets[1]);
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), bytes);
}

#[test]
fn broken_chain_names_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(4);
    let good = feed(&id, 3);
    // Skip seq 2: seq 3 cannot follow seq 1. Write by hand since the store would refuse.
    let mut bytes = std::fs::read({
        let (store, owner, _) = Store::open(dir.path(), None, None).unwrap();
        store.append_entries(entries(&good[..1])).wait().unwrap();
        owner.shutdown_blocking().unwrap();
        log_path(dir.path())
    })
    .unwrap();
    let broken_at = bytes.len() as u64;
    kappalog::store::format::encode_keyed_record(&good[2].0, None, &mut bytes);
    // A valid record after it, so the damage is not at the tail.
    let (extra, _) = UnsignedEntry {
        author: identity(5).author(),
        seq: 1,
        timestamp: 1,
        prev: None,
        value: 0,
        data: String::new(),
    }
    .sign(&identity(5));
    kappalog::store::format::encode_keyed_record(&extra, None, &mut bytes);
    std::fs::write(log_path(dir.path()), &bytes).unwrap();
    let err = Store::open(dir.path(), None, None).err().unwrap();
    assert!(err.to_string().contains("broken hash chain"), "{err}");
    assert_eq!(corrupt_offset(err), broken_at);
    assert_eq!(std::fs::read(log_path(dir.path())).unwrap(), bytes);
}

/// A log several scan chunks long (the scan applies one chunk's records while it decodes the
/// next): damage in any chunk is reported at the offset of its record, and a torn tail after
/// many chunks keeps every earlier entry.
#[test]
fn damage_is_found_in_every_chunk_of_a_long_log() {
    use kappalog::store::format::SCAN_CHUNK_BYTES;
    let src = tempfile::tempdir().unwrap();
    let n = 40_000u64;
    let (store, owner, _) = Store::open(src.path(), None, None).unwrap();
    store
        .append_entries(entries(&feed(&identity(3), n)))
        .wait()
        .unwrap();
    owner.shutdown_blocking().unwrap();
    let bytes = std::fs::read(log_path(src.path())).unwrap();
    assert!(bytes.len() > 3 * SCAN_CHUNK_BYTES, "{} bytes", bytes.len());

    let dir = tempfile::tempdir().unwrap();
    let last_end = common::last_entry_end(&log_path(src.path())) as usize;
    std::fs::write(log_path(dir.path()), &bytes[..last_end - 10]).unwrap();
    let (reader, report) = StoreReader::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.len(), n - 1);
    assert!(report.truncated_at.is_some());

    for at in [
        SCAN_CHUNK_BYTES / 2,
        SCAN_CHUNK_BYTES * 3 / 2,
        SCAN_CHUNK_BYTES * 5 / 2,
    ] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        std::fs::write(log_path(dir.path()), &damaged).unwrap();
        let offset = corrupt_offset(StoreReader::open_read_only(dir.path()).err().unwrap());
        let at = at as u64;
        assert!(
            offset <= at && at - offset < 300,
            "damage at byte {at} reported at offset {offset}"
        );
    }
}
