//! Following HTTP/1.1 request framing over a connection's bytes as they arrive (pure, no
//! I/O), so [`super::screen`] knows where each request head starts and can judge it
//! ([`super::head`]) before hyper sees it.
//!
//! A connection carries requests back to back: a head, then a body framed as the head says
//! (RFC 9112 §6). [`Framing::scan`] is given the bytes not yet passed on and answers with
//! one [`Scan`]: how many of them may go on unchanged, that they start a head not complete
//! yet (hold them and ask again with more), or that the head they start is refused. Bodies
//! are skipped by count, never held or copied: a 1 GiB upload costs one subtraction a read.
//!
//! Chunked bodies (§7.1) are followed the way hyper's decoder reads them: a hex size,
//! optional blanks and `;` extensions, CRLF, the data, CRLF; size zero ends the chunks, then
//! trailer lines up to an empty line. Bytes that break that syntax make hyper fail the
//! body and close the connection after its response, so nothing after them is ever read as
//! a request. The follower then stops judging ("blind") and passes everything on: whatever
//! it cannot follow, hyper still guards, only with its own (empty) error bodies. Limits
//! hyper enforces inside a body (extension and trailer sizes) end the connection the same
//! way and need no copy here.

use super::head::{self, Body, Head, Refusal};

/// Where the follower is in the connection's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a request head whose first `scanned` bytes were seen and do not complete it.
    Head {
        scanned: usize,
    },
    /// Inside a body of known length, with `left` bytes to go (never zero).
    Sized {
        left: u64,
    },
    Chunked(Chunk),
    /// A head was refused: nothing after it is passed on.
    Refused(Refusal),
    /// Lost track: everything is passed on unjudged.
    Blind,
}

/// Where a chunked body is, byte by byte, as in hyper's `ChunkedState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Before the first hex digit of a chunk size.
    Start,
    Size {
        size: u64,
    },
    /// Blanks after the size.
    SizeBlank {
        size: u64,
    },
    /// A `;` extension, ignored up to the CR.
    Extension {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// After the last chunk: a trailer line or the final CRLF starts here.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
}

/// What happens after one byte of chunked framing.
enum Next {
    Chunk(Chunk),
    /// The body ended with this byte.
    End,
    /// Not chunked framing: hyper fails the body here.
    Broken,
}

impl Chunk {
    fn after(self, byte: u8) -> Next {
        let hex = char::from(byte).to_digit(16).map(u64::from);
        let grow = |size: u64, digit: u64| {
            size.checked_mul(16)
                .and_then(|s| s.checked_add(digit))
                .map_or(Next::Broken, |size| Next::Chunk(Chunk::Size { size }))
        };
        match (self, byte, hex) {
            (Chunk::Start, _, Some(digit)) => grow(0, digit),
            (Chunk::Size { size }, _, Some(digit)) => grow(size, digit),
            (Chunk::Size { size } | Chunk::SizeBlank { size }, b' ' | b'\t', _) => {
                Next::Chunk(Chunk::SizeBlank { size })
            }
            (
                Chunk::Size { size } | Chunk::SizeBlank { size } | Chunk::Extension { size },
                b'\r',
                _,
            ) => Next::Chunk(Chunk::SizeLf { size }),
            (Chunk::Size { size } | Chunk::SizeBlank { size }, b';', _) => {
                Next::Chunk(Chunk::Extension { size })
            }
            // hyper refuses a bare LF in an extension (a parser that ends lines at LF would
            // read the rest differently).
            (Chunk::Extension { .. }, b'\n', _) => Next::Broken,
            (Chunk::Extension { size }, _, _) => Next::Chunk(Chunk::Extension { size }),
            (Chunk::SizeLf { size: 0 }, b'\n', _) => Next::Chunk(Chunk::TrailerStart),
            (Chunk::SizeLf { size }, b'\n', _) => Next::Chunk(Chunk::Data { left: size }),
            (Chunk::DataCr, b'\r', _) => Next::Chunk(Chunk::DataLf),
            (Chunk::DataLf, b'\n', _) => Next::Chunk(Chunk::Start),
            (Chunk::TrailerStart, b'\r', _) => Next::Chunk(Chunk::EndLf),
            (Chunk::Trailer, b'\r', _) => Next::Chunk(Chunk::TrailerLf),
            (Chunk::TrailerStart | Chunk::Trailer, _, _) => Next::Chunk(Chunk::Trailer),
            (Chunk::TrailerLf, b'\n', _) => Next::Chunk(Chunk::TrailerStart),
            (Chunk::EndLf, b'\n', _) => Next::End,
            _ => Next::Broken,
        }
    }
}

/// What to do with the bytes given to [`Framing::scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The first `n` bytes (at least one) may go on unchanged; scan the rest next.
    Pass(usize),
    /// The bytes are the start of a head that is not complete: hold them, and scan them
    /// again, with whatever arrives next appended.
    Incomplete,
    /// The head the bytes start is refused. It is the connection's request number
    /// `request` (counting from 1); nothing from it on may go on.
    Refuse { request: u64, refusal: Refusal },
}

/// The framing follower of one connection.
#[derive(Debug)]
pub(crate) struct Framing {
    state: State,
    /// Heads passed on so far.
    heads: u64,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            state: State::Head { scanned: 0 },
            heads: 0,
        }
    }
}

impl Framing {
    /// Judges `bytes`, the connection's bytes from the first one not yet passed on (so
    /// after [`Scan::Incomplete`], the same bytes again plus more). `bytes` must not be
    /// empty.
    pub(crate) fn scan(&mut self, bytes: &[u8]) -> Scan {
        match self.state {
            State::Head { scanned } => self.scan_head(bytes, scanned),
            State::Sized { left } => {
                let n = left.min(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
                self.state = match left - n {
                    0 => State::Head { scanned: 0 },
                    left => State::Sized { left },
                };
                // `n` is at most `bytes.len()`, a usize.
                Scan::Pass(usize::try_from(n).unwrap_or(bytes.len()))
            }
            State::Chunked(chunk) => self.scan_chunks(bytes, chunk),
            State::Refused(refusal) => Scan::Refuse {
                request: self.heads.saturating_add(1),
                refusal,
            },
            State::Blind => Scan::Pass(bytes.len()),
        }
    }

    /// Stops judging: every byte from now on is passed on. For a caller that finds its own
    /// bookkeeping inconsistent, so it fails open to hyper rather than refusing wrongly.
    pub(crate) fn lose_track(&mut self) {
        self.state = State::Blind;
    }

    fn scan_head(&mut self, bytes: &[u8], scanned: usize) -> Scan {
        let fresh = scanned == 0 || scanned >= bytes.len();
        if !fresh && bytes.len() < head::MAX_HEAD_BYTES && !head::may_end_in(bytes, scanned) {
            self.state = State::Head {
                scanned: bytes.len(),
            };
            return Scan::Incomplete;
        }
        match head::inspect(bytes) {
            Head::Incomplete => {
                self.state = State::Head {
                    scanned: bytes.len(),
                };
                Scan::Incomplete
            }
            Head::Complete { len, body } => {
                self.heads = self.heads.saturating_add(1);
                self.state = match body {
                    Body::None => State::Head { scanned: 0 },
                    Body::Length(left) => State::Sized { left },
                    Body::Chunked => State::Chunked(Chunk::Start),
                };
                Scan::Pass(len)
            }
            Head::Refused(refusal) => {
                self.state = State::Refused(refusal);
                Scan::Refuse {
                    request: self.heads.saturating_add(1),
                    refusal,
                }
            }
        }
    }

    fn scan_chunks(&mut self, bytes: &[u8], mut chunk: Chunk) -> Scan {
        let mut at = 0;
        while let Some(rest) = bytes.get(at..).filter(|rest| !rest.is_empty()) {
            if let Chunk::Data { left } = chunk {
                let n = left.min(u64::try_from(rest.len()).unwrap_or(u64::MAX));
                // `n` is at most `rest.len()`, a usize.
                at += usize::try_from(n).unwrap_or(rest.len());
                chunk = match left - n {
                    0 => Chunk::DataCr,
                    left => Chunk::Data { left },
                };
                continue;
            }
            at += 1;
            match chunk.after(rest[0]) {
                Next::Chunk(next) => chunk = next,
                Next::End => {
                    self.state = State::Head { scanned: 0 };
                    return Scan::Pass(at);
                }
                Next::Broken => {
                    self.state = State::Blind;
                    return Scan::Pass(bytes.len());
                }
            }
        }
        self.state = State::Chunked(chunk);
        Scan::Pass(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::head::{MAX_HEAD_BYTES, MAX_URI_BYTES};

    /// Feeds `reads` to a follower the way `screen` does; returns the bytes passed on and
    /// the refusal, if any.
    fn feed(reads: &[&[u8]]) -> (Vec<u8>, Option<(u64, Refusal)>) {
        let mut framing = Framing::default();
        let (mut held, mut passed) = (Vec::new(), Vec::new());
        for read in reads {
            held.extend_from_slice(read);
            while !held.is_empty() {
                match framing.scan(&held) {
                    Scan::Pass(n) => {
                        assert!(n > 0 && n <= held.len(), "pass {n} of {}", held.len());
                        passed.extend(held.drain(..n));
                    }
                    Scan::Incomplete => break,
                    Scan::Refuse { request, refusal } => return (passed, Some((request, refusal))),
                }
            }
        }
        (passed, None)
    }

    /// Every way of cutting `bytes` in two reads, and one byte a read, gives `expected`.
    fn at_every_split(bytes: &[u8], expected: (&[u8], Option<(u64, Refusal)>)) {
        for cut in 0..=bytes.len() {
            let (passed, refused) = feed(&[&bytes[..cut], &bytes[cut..]]);
            assert_eq!((&passed[..], refused), expected, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        let (passed, refused) = feed(&bytewise);
        assert_eq!((&passed[..], refused), expected, "a byte a read");
    }

    const GET: &[u8] = b"GET /summary HTTP/1.1\r\nHost: t\r\n\r\n";
    const POST: &[u8] = b"POST /add HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"value\": 42}";
    const CHUNKED: &[u8] = b"POST /add HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value;x\r\n{\"val\r\n8 \t\r\nue\": 42}\r\n0\r\nX-Trailer: a\r\nY: b\r\n\r\n";
    const SMUGGLE: &[u8] =
        b"POST /add HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn pipelined_requests_pass_whole_however_they_are_cut() {
        let all = [GET, POST, CHUNKED, GET].concat();
        at_every_split(&all, (&all, None));
    }

    #[test]
    fn a_bad_head_after_good_requests_is_refused_with_its_number() {
        let two = [GET, POST].concat();
        for (good, n) in [(&b""[..], 1), (GET, 2), (&two[..], 3)] {
            let all = [good, SMUGGLE, GET].concat();
            let expected = Some((n, Refusal::LengthAndTransferEncoding));
            at_every_split(&all, (good, expected));
        }
    }

    #[test]
    fn a_refused_head_after_a_chunked_body_with_trailers_is_found() {
        let all = [
            CHUNKED,
            &b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
        ]
        .concat();
        at_every_split(&all, (CHUNKED, Some((2, Refusal::ConflictingLengths))));
    }

    #[test]
    fn bodies_are_skipped_not_judged_as_heads() {
        let n = SMUGGLE.len();
        let sized = [
            format!("POST /import HTTP/1.1\r\nContent-Length: {n}\r\n\r\n").as_bytes(),
            SMUGGLE,
        ]
        .concat();
        let chunked = [
            format!("POST /import HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n")
                .as_bytes(),
            SMUGGLE,
            b"\r\n0\r\n\r\n",
        ]
        .concat();
        for all in [[&sized[..], GET].concat(), [&chunked[..], GET].concat()] {
            at_every_split(&all, (&all, None));
        }
    }

    #[test]
    fn each_refusal_is_reported() {
        let cases: Vec<(Vec<u8>, Refusal)> = vec![
            (
                format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_BYTES)).into_bytes(),
                Refusal::UriTooLong {
                    limit: MAX_URI_BYTES,
                },
            ),
            (
                format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES)).into_bytes(),
                Refusal::HeadTooLarge {
                    limit: MAX_HEAD_BYTES,
                },
            ),
            (
                b"BAD REQUEST LINE\r\n\r\n".to_vec(),
                Refusal::Malformed {
                    reason: "invalid HTTP version",
                },
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
                Refusal::UnsupportedTransferEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: five\r\n\r\n".to_vec(),
                Refusal::InvalidLength,
            ),
        ];
        for (bad, refusal) in cases {
            let all = [GET, &bad].concat();
            let (passed, refused) = feed(&[&all]);
            assert_eq!((&passed[..], refused), (GET, Some((2, refusal))));
        }
    }

    #[test]
    fn a_head_sent_a_byte_at_a_time_is_refused_at_the_limit() {
        // Over the limit without an end: refused once the held bytes reach the limit.
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        let bytewise: Vec<&[u8]> = long.as_bytes().chunks(1).collect();
        let (passed, refused) = feed(&bytewise);
        let limit = MAX_HEAD_BYTES;
        assert_eq!(
            (passed.len(), refused),
            (0, Some((1, Refusal::HeadTooLarge { limit })))
        );
    }

    #[test]
    fn broken_chunk_framing_turns_the_follower_blind() {
        let broken = b"POST /add HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        // hyper fails this body and closes; whatever follows goes to it unjudged.
        let all = [&broken[..], SMUGGLE].concat();
        at_every_split(&all, (&all, None));
    }

    #[test]
    fn after_a_refusal_nothing_more_passes() {
        let mut framing = Framing::default();
        assert!(matches!(
            framing.scan(SMUGGLE),
            Scan::Refuse { request: 1, .. }
        ));
        assert!(matches!(framing.scan(GET), Scan::Refuse { request: 1, .. }));
    }

    #[test]
    fn a_follower_that_lost_track_passes_everything() {
        let mut framing = Framing::default();
        framing.lose_track();
        assert_eq!(framing.scan(SMUGGLE), Scan::Pass(SMUGGLE.len()));
    }
}
