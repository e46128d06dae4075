//! The bytes of a tail stream, in its two formats.
//!
//! **SSE** (`text/event-stream`), one event per entry, then a blank line:
//!
//! ```text
//! event: entry
//! id: CURSOR
//! data: ENTRY_JSON
//! ```
//!
//! a heartbeat is the comment line `: heartbeat`, and a stream the node ends on purpose ends
//! with `event: end` and `data: {"reason":"..."}`. Every stream begins with its position,
//! an event with an `id` and no data (`event: position`, `id: CURSOR` or `id: start`):
//! a browser's `EventSource` records it as the last event ID without dispatching anything,
//! so a client that reconnects before any entry reached it resumes from where it began.
//!
//! **NDJSON** (`application/x-ndjson`), one JSON object per line: `{"cursor":"CURSOR",
//! "entry":ENTRY_JSON}`, heartbeats `{"heartbeat":true}`, and the end
//! `{"end":{"reason":"..."}}`; the position first, as `{"cursor":"CURSOR"}` (or
//! `"start"`) with no entry.
//!
//! `ENTRY_JSON` is [`EntryJson`], the same object `GET /entries` lists; compact JSON has no
//! raw newline, so an entry is always one `data:` line.
//!
//! A committed batch is rendered once per format and shared by every stream
//! ([`RenderCache`]): a stream that wants all of it sends the very same bytes (a reference
//! count, no copy); one that filters by author or skips what its replay already sent takes
//! slices of it.

use std::sync::OnceLock;

use axum::body::Bytes;

use super::cursor::Cursor;
use crate::entry::{Entry, EntryJson};
use crate::hash::Hash;
use crate::identity::Author;

/// The two shapes of a tail stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Server-sent events (`text/event-stream`), for browsers' `EventSource`.
    Sse,
    /// One JSON object per line (`application/x-ndjson`), for scripts and `kappalog tail`.
    Ndjson,
}

impl Format {
    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Sse => "text/event-stream",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    /// The heartbeat line(s).
    pub fn heartbeat(self) -> Bytes {
        Bytes::from_static(match self {
            Format::Sse => b": heartbeat\n\n",
            Format::Ndjson => b"{\"heartbeat\":true}\n",
        })
    }

    /// The last frame of a stream the node ends, saying why.
    pub fn end(self, reason: &str) -> Bytes {
        let reason = serde_json::json!({ "reason": reason });
        match self {
            Format::Sse => format!("event: end\ndata: {reason}\n\n").into(),
            Format::Ndjson => format!("{}\n", serde_json::json!({ "end": reason })).into(),
        }
    }

    /// The first frame of every stream: where it starts, as the `from` that resumes there
    /// (a cursor, or `start`).
    pub fn position(self, at: &super::Start) -> Bytes {
        match self {
            Format::Sse => format!("event: position\nid: {at}\n\n").into(),
            Format::Ndjson => format!("{{\"cursor\":\"{at}\"}}\n").into(),
        }
    }

    /// Appends the frame of one entry to `out`.
    pub fn write_entry(self, cursor: &Cursor, entry: &Entry, hash: &Hash, out: &mut Vec<u8>) {
        let cursor = cursor.to_hex();
        match self {
            Format::Sse => {
                out.extend_from_slice(b"event: entry\nid: ");
                out.extend_from_slice(&cursor);
                out.extend_from_slice(b"\ndata: ");
                write_json(entry, hash, out);
                out.extend_from_slice(b"\n\n");
            }
            Format::Ndjson => {
                out.extend_from_slice(b"{\"cursor\":\"");
                out.extend_from_slice(&cursor);
                out.extend_from_slice(b"\",\"entry\":");
                write_json(entry, hash, out);
                out.extend_from_slice(b"}\n");
            }
        }
    }
}

fn write_json(entry: &Entry, hash: &Hash, out: &mut Vec<u8>) {
    // Serialising a struct of numbers, hex and a String into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &EntryJson::new(entry, hash));
}

/// One committed batch rendered in one format: the frames back to back, and where each
/// entry's frame starts.
#[derive(Debug)]
pub struct Rendered {
    bytes: Bytes,
    /// Per entry: its record's log offset, its author, and where its frame starts in `bytes`.
    frames: Vec<(u64, Author, usize)>,
}

impl Rendered {
    /// Renders `entries`, whose records start at `offsets`, as the node `node` names them.
    pub fn new(format: Format, node: &Author, entries: &[(Entry, Hash)], offsets: &[u64]) -> Self {
        let mut out = Vec::with_capacity(entries.len() * 512);
        let mut frames = Vec::with_capacity(entries.len());
        for ((entry, hash), &offset) in entries.iter().zip(offsets) {
            frames.push((offset, entry.author, out.len()));
            format.write_entry(&Cursor::new(node, offset, hash), entry, hash, &mut out);
        }
        Rendered {
            bytes: out.into(),
            frames,
        }
    }

    /// The frames of the entries whose records start at or after `from` and, with `author`,
    /// are of that feed; `None` if there are none.
    pub fn select(&self, from: u64, author: Option<&Author>) -> Option<Bytes> {
        let ends = self
            .frames
            .iter()
            .skip(1)
            .map(|&(_, _, at)| at)
            .chain(std::iter::once(self.bytes.len()));
        let wanted = self
            .frames
            .iter()
            .zip(ends)
            .filter(|((offset, by, _), _)| *offset >= from && author.is_none_or(|a| a == by));
        let mut spans = wanted.map(|(&(_, _, start), end)| start..end).peekable();
        let first = spans.peek()?.start;
        // Contiguous frames (the common case: no author filter) are one slice, no copy.
        let mut contiguous = first..first;
        let mut copied: Option<Vec<u8>> = None;
        for span in spans {
            match &mut copied {
                None if span.start == contiguous.end => contiguous.end = span.end,
                None => {
                    let mut buf = self.bytes[contiguous.clone()].to_vec();
                    buf.extend_from_slice(&self.bytes[span]);
                    copied = Some(buf);
                }
                Some(buf) => buf.extend_from_slice(&self.bytes[span]),
            }
        }
        Some(match copied {
            Some(buf) => buf.into(),
            None => self.bytes.slice(contiguous),
        })
    }
}

/// A batch's renderings, made by the first stream that needs each format.
#[derive(Debug, Default)]
pub struct RenderCache {
    sse: OnceLock<Rendered>,
    ndjson: OnceLock<Rendered>,
}

impl RenderCache {
    /// The batch rendered in `format`, rendering it on the first call for that format
    /// (later calls, from any stream, get the same bytes). `offsets[i]` is where entry `i`'s
    /// record starts in `node`'s log, for its cursor.
    pub fn get(
        &self,
        format: Format,
        node: &Author,
        entries: &[(Entry, Hash)],
        offsets: &[u64],
    ) -> &Rendered {
        let cell = match format {
            Format::Sse => &self.sse,
            Format::Ndjson => &self.ndjson,
        };
        cell.get_or_init(|| Rendered::new(format, node, entries, offsets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::UnsignedEntry;
    use crate::identity::Identity;

    fn entries(seeds: &[u8]) -> Vec<(Entry, Hash)> {
        seeds
            .iter()
            .map(|&s| {
                let id = Identity::from_seed([s; 32]);
                UnsignedEntry {
                    author: id.author(),
                    seq: 1,
                    timestamp: 1_700_000_000_000,
                    prev: None,
                    value: i64::from(s),
                    data: "line\nbreak".into(),
                }
                .sign(&id)
            })
            .collect()
    }

    const NODE: Author = Author([9; 32]);

    #[test]
    fn an_sse_entry_is_event_id_and_one_data_line() {
        let batch = entries(&[1]);
        let (entry, hash) = &batch[0];
        let mut out = Vec::new();
        let cursor = Cursor::new(&NODE, 12, hash);
        Format::Sse.write_entry(&cursor, entry, hash, &mut out);
        let text = String::from_utf8(out).unwrap();
        let json = serde_json::to_string(&EntryJson::new(entry, hash)).unwrap();
        assert_eq!(
            text,
            format!("event: entry\nid: {cursor}\ndata: {json}\n\n")
        );
    }

    #[test]
    fn an_ndjson_entry_is_one_line_with_cursor_and_entry() {
        let batch = entries(&[1]);
        let (entry, hash) = &batch[0];
        let mut out = Vec::new();
        let cursor = Cursor::new(&NODE, 12, hash);
        Format::Ndjson.write_entry(&cursor, entry, hash, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(line["cursor"], cursor.to_string());
        assert_eq!(
            line["entry"],
            serde_json::to_value(EntryJson::new(entry, hash)).unwrap()
        );
    }

    #[test]
    fn end_frames_carry_the_reason_as_json() {
        assert_eq!(
            Format::Sse.end("a \"quoted\" reason"),
            "event: end\ndata: {\"reason\":\"a \\\"quoted\\\" reason\"}\n\n"
        );
        assert_eq!(
            Format::Ndjson.end("bye"),
            "{\"end\":{\"reason\":\"bye\"}}\n"
        );
    }

    #[test]
    fn select_skips_what_was_replayed_and_filters_by_author() {
        let batch = entries(&[1, 2, 1, 3]);
        let offsets = [100, 300, 500, 700];
        let all = Rendered::new(Format::Ndjson, &NODE, &batch, &offsets);
        let one = |i: usize| {
            let mut out = Vec::new();
            let (e, h) = &batch[i];
            Format::Ndjson.write_entry(&Cursor::new(&NODE, offsets[i], h), e, h, &mut out);
            out
        };
        assert_eq!(all.select(0, None).unwrap(), all.bytes);
        assert_eq!(
            all.select(300, None).unwrap(),
            [one(1), one(2), one(3)].concat()
        );
        assert_eq!(all.select(701, None), None);
        let author = batch[0].0.author;
        assert_eq!(
            all.select(0, Some(&author)).unwrap(),
            [one(0), one(2)].concat()
        );
        assert_eq!(all.select(200, Some(&author)).unwrap(), one(2));
        assert_eq!(all.select(0, Some(&Author([7; 32]))), None);
    }
}
