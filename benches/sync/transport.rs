//! The encrypted channel in isolation: a `transport::establish` pair over an in-memory
//! duplex pipe (no TCP, no framing, no store), one task writing 64 KiB plaintext writes
//! through `SecureWriter::write_all` while another reads, so the figure is ChaCha20-Poly1305
//! record sealing and opening plus a memory copy. And the wire bytes one replicated entry
//! costs, to put that throughput next to the replication rate.

use std::time::Instant;

use kappalog::entry::Entry;
use kappalog::sync::frame::encode_frame;
use kappalog::sync::message::entry_batches;
use kappalog::sync::transport::{establish, NetworkKey, Role, MAX_RECORD_PLAINTEXT, TAG_BYTES};
use tokio::io::{duplex, split};

use crate::common::cpu_seconds;

/// Plaintext per `write_all`: a full record (65,519 bytes) and a short one, as large frames
/// go out.
pub const WRITE_BYTES: usize = 64 * 1024;
/// The duplex pipe's buffer: large enough that the writer rarely waits on the reader.
const PIPE_BYTES: usize = 1 << 20;
/// What the sending half reads from the store per call when it sends a range
/// (`RANGE_READ_ENTRIES` in src/sync/outbound.rs); each read becomes its own batches.
const RANGE_READ_ENTRIES: usize = 1024;

/// Plaintext MB/s (10^6 bytes) through one direction of the channel, and the CPU seconds
/// (both ends and the copy, all threads) per MB.
pub async fn throughput(total_bytes: usize) -> (f64, f64) {
    let (a, b) = duplex(PIPE_BYTES);
    let (a_read, a_write) = split(a);
    let (b_read, b_write) = split(b);
    let network = NetworkKey::default();
    let (a, b) = tokio::join!(
        establish(a_read, a_write, Role::Initiator, &network),
        establish(b_read, b_write, Role::Responder, &network)
    );
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    let writes = total_bytes / WRITE_BYTES;
    let expected = writes * WRITE_BYTES;
    let cpu = cpu_seconds();
    let began = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![0xa5u8; WRITE_BYTES];
        for _ in 0..writes {
            a.writer.write_all(&chunk).await.unwrap();
        }
        a
    });
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; WRITE_BYTES];
        let mut got = 0;
        while got < expected {
            let n = b.reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "channel closed after {got} of {expected} bytes");
            got += n;
        }
        b
    });
    let (_a, _b) = (writer.await.unwrap(), reader.await.unwrap());
    let secs = began.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let mb = expected as f64 / 1e6;
    (mb / secs, cpu / mb)
}

/// Bytes on the wire (frames, record prefixes and tags) per entry when `entries` are sent as
/// the sending half sends a range: store reads of [`RANGE_READ_ENTRIES`], each cut into
/// `Entries` batches, each batch one frame written with one `write_all` (so one or more
/// records).
pub fn wire_bytes_per_entry(entries: &[Entry]) -> f64 {
    let mut wire = 0usize;
    for read in entries.chunks(RANGE_READ_ENTRIES) {
        for message in entry_batches(read) {
            let frame = encode_frame(&message).unwrap().len();
            let records = frame.div_ceil(MAX_RECORD_PLAINTEXT);
            wire += frame + records * (2 + TAG_BYTES);
        }
    }
    wire as f64 / entries.len() as f64
}
