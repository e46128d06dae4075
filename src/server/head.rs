//! What an HTTP/1.1 request head says about the body after it, or why it is refused: the
//! rules [`super::screen`] applies to every head before hyper sees it.
//!
//! Threat: any client, or a proxy in front of the node that frames requests differently.
//! hyper answers a head it cannot take with an empty body (not the documented
//! `{"error": ...}`), and a head with both `Content-Length` and `Transfer-Encoding: chunked`
//! it silently frames by the chunked encoding: a front end that framed it by the length
//! would see a different next request than the node (request smuggling). Here such a head is
//! refused outright. The rules mirror hyper 1.x's server (`proto/h1/role.rs`), so a head
//! passed here is one hyper accepts, with the same body framing:
//!
//! - the head, leading blank lines included, is at most [`MAX_HEAD_BYTES`] (else 431);
//! - it has at most [`MAX_HEADERS`] header fields, hyper's default (else 431);
//! - the request target is at most [`MAX_URI_BYTES`] (else 414);
//! - the request line and fields parse with `httparse` in hyper's default configuration, and
//!   the method and target are ones hyper takes (else 400);
//! - `Content-Length` and `Transfer-Encoding` are not both present (else 400);
//! - every `Content-Length` is decimal digits and all of them agree (else 400);
//! - `Transfer-Encoding` appears only in HTTP/1.1 and its last coding is `chunked` (else 400).
//!
//! The body is then chunked (with `Transfer-Encoding`), `Content-Length` bytes, or absent: a
//! request body is never delimited by closing the connection.

use std::mem::MaybeUninit;

/// The longest request head taken, from its first byte to the blank line that ends it. Real
/// clients send a few hundred bytes; the bound caps what one connection makes us hold and
/// parse before a request exists. hyper is given the same bound (and applies it to chunked
/// trailers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The longest request target (path and query) taken. No route needs more than a hash and
/// a few query parameters.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Header fields in one head: hyper's default, so both parsers see the same fields.
pub(crate) const MAX_HEADERS: usize = 100;

/// How the body after a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    None,
    /// Exactly this many bytes (never zero: that is [`Body::None`]).
    Length(u64),
    Chunked,
}

/// Why a head is refused; the message is what the client reads in `{"error": ...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("request head is over {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("request head has over {limit} header fields")]
    TooManyHeaders { limit: usize },
    #[error("request target is over {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("malformed request head: {reason}")]
    Malformed { reason: &'static str },
    #[error("request has both content-length and transfer-encoding")]
    LengthAndTransferEncoding,
    #[error("request has content-length values that differ")]
    ConflictingLengths,
    #[error("content-length is not a number of bytes")]
    InvalidLength,
    #[error("transfer-encoding must end with chunked")]
    UnsupportedTransferEncoding,
    #[error("transfer-encoding is not allowed in HTTP/1.0")]
    TransferEncodingInHttp10,
}

/// What the bytes at the start of a request say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// No complete head yet, and still within the limit: wait for more bytes.
    Incomplete,
    /// A head of `len` bytes that hyper will take, followed by `body`.
    Complete {
        len: usize,
        body: Body,
    },
    Refused(Refusal),
}

/// Reads the head at the start of `bytes` (which may go on past it).
pub(crate) fn inspect(bytes: &[u8]) -> Head {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(bytes, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD_BYTES => {
            return Head::Refused(Refusal::HeadTooLarge {
                limit: MAX_HEAD_BYTES,
            })
        }
        Ok(httparse::Status::Partial) => return Head::Incomplete,
        Err(e) => return Head::Refused(parse_error(e, request.method.is_some())),
    };
    if len > MAX_HEAD_BYTES {
        return Head::Refused(Refusal::HeadTooLarge {
            limit: MAX_HEAD_BYTES,
        });
    }
    match judge(&request) {
        Ok(body) => Head::Complete { len, body },
        Err(refusal) => Head::Refused(refusal),
    }
}

/// Whether a head that was incomplete in its first `scanned` bytes may end within `bytes`:
/// only then is it worth parsing again. A head ends with an empty line (`\n\n` or
/// `\n\r\n`), so only the new bytes and the two before them need a look. Without this, a
/// head sent a byte at a time would be parsed from its start once per byte (quadratic);
/// hyper guards its own parser the same way.
pub(crate) fn may_end_in(bytes: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(2);
    let Some(tail) = bytes.get(from..) else {
        return true;
    };
    tail.windows(2)
        .enumerate()
        .any(|(i, w)| w[0] == b'\n' && (w[1] == b'\n' || tail.get(i + 1..i + 3) == Some(b"\r\n")))
}

fn parse_error(error: httparse::Error, saw_method: bool) -> Refusal {
    let reason = match error {
        httparse::Error::TooManyHeaders => {
            return Refusal::TooManyHeaders { limit: MAX_HEADERS };
        }
        httparse::Error::Token if saw_method => "invalid request target",
        httparse::Error::Token => "invalid method",
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Version => "invalid HTTP version",
        // A response error; a request never yields it.
        httparse::Error::Status => "invalid request line",
    };
    Refusal::Malformed { reason }
}

/// The rules on a parsed head (see the module docs), in hyper's terms.
fn judge(request: &httparse::Request<'_, '_>) -> Result<Body, Refusal> {
    // `httparse` fills in the method, target and version of a complete head.
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(Refusal::Malformed {
            reason: "incomplete request line",
        });
    };
    if target.len() > MAX_URI_BYTES {
        return Err(Refusal::UriTooLong {
            limit: MAX_URI_BYTES,
        });
    }
    if axum::http::Method::from_bytes(method.as_bytes()).is_err() {
        return Err(Refusal::Malformed {
            reason: "invalid method",
        });
    }
    if !target_is_valid(target.as_bytes()) {
        return Err(Refusal::Malformed {
            reason: "invalid request target",
        });
    }
    let mut length: Option<u64> = None;
    let (mut invalid_length, mut conflicting_lengths) = (false, false);
    // hyper lets the last `Transfer-Encoding` field decide whether the body is chunked.
    let mut transfer_encoding: Option<bool> = None;
    for field in request.headers.iter() {
        if field.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = Some(ends_with_chunked(field.value));
        } else if field.name.eq_ignore_ascii_case("content-length") {
            match (decimal(field.value), length) {
                (None, _) => invalid_length = true,
                (Some(n), Some(first)) if n != first => conflicting_lengths = true,
                (Some(n), _) => length = Some(n),
            }
        }
    }
    let any_length = length.is_some() || invalid_length;
    match transfer_encoding {
        Some(_) if any_length => Err(Refusal::LengthAndTransferEncoding),
        Some(_) if version == 0 => Err(Refusal::TransferEncodingInHttp10),
        Some(false) => Err(Refusal::UnsupportedTransferEncoding),
        Some(true) => Ok(Body::Chunked),
        None if invalid_length => Err(Refusal::InvalidLength),
        None if conflicting_lengths => Err(Refusal::ConflictingLengths),
        None => match length {
            None | Some(0) => Ok(Body::None),
            Some(n) => Ok(Body::Length(n)),
        },
    }
}

/// hyper's `Content-Length` rule: ASCII digits only (no sign, no list), within its largest
/// length (`u64::MAX - 2`; the two values above mean "chunked" and "until close" to it).
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    let mut n = 0u64;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (n <= u64::MAX - 2).then_some(n)
}

/// hyper's chunked test: the field is visible ASCII and its last comma-separated coding is
/// `chunked`, in any case.
fn ends_with_chunked(value: &[u8]) -> bool {
    if !value
        .iter()
        .all(|&b| b == b'\t' || (b' '..0x7f).contains(&b))
    {
        return false;
    }
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether hyper can turn `target` into a URI. A plain path and query (the only kind a
/// route here matches) is checked without allocating; anything else goes through the same
/// parser hyper uses.
fn target_is_valid(target: &[u8]) -> bool {
    const PLAIN: &[u8] = b"-._~!$&'()*+,;=:@/?%";
    let plain = target.first() == Some(&b'/')
        && target
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || PLAIN.contains(b));
    plain || axum::http::Uri::try_from(target).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "POST /add HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n";

    /// `GOOD` with the content-length field replaced by `fields`.
    fn with_fields(fields: &str) -> Vec<u8> {
        format!("POST /add HTTP/1.1\r\nHost: t\r\n{fields}\r\n").into_bytes()
    }

    fn refusal(bytes: &[u8]) -> Refusal {
        match inspect(bytes) {
            Head::Refused(r) => r,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_good_head_is_complete_and_its_length_frames_the_body() {
        let bytes = format!("{GOOD}hello");
        assert_eq!(
            inspect(bytes.as_bytes()),
            Head::Complete {
                len: GOOD.len(),
                body: Body::Length(5)
            }
        );
    }

    #[test]
    fn framing_follows_the_headers() {
        let body = |fields: &str| match inspect(&with_fields(fields)) {
            Head::Complete { body, .. } => body,
            other => panic!("{other:?}"),
        };
        assert_eq!(body(""), Body::None);
        assert_eq!(body("Content-Length: 0\r\n"), Body::None);
        assert_eq!(
            body("content-length: 7\r\nContent-Length: 7\r\n"),
            Body::Length(7)
        );
        assert_eq!(body("Transfer-Encoding: chunked\r\n"), Body::Chunked);
        assert_eq!(body("transfer-encoding: gzip, CHUNKED\r\n"), Body::Chunked);
    }

    #[test]
    fn every_prefix_of_a_head_is_incomplete() {
        for end in 0..GOOD.len() {
            assert_eq!(inspect(&GOOD.as_bytes()[..end]), Head::Incomplete, "{end}");
        }
    }

    #[test]
    fn length_and_transfer_encoding_together_are_refused_in_either_order() {
        for fields in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Transfer-Encoding: gzip\r\nContent-Length: x\r\n",
        ] {
            assert_eq!(
                refusal(&with_fields(fields)),
                Refusal::LengthAndTransferEncoding
            );
        }
    }

    #[test]
    fn lengths_that_differ_are_refused() {
        let head = with_fields("Content-Length: 5\r\nContent-Length: 6\r\n");
        assert_eq!(refusal(&head), Refusal::ConflictingLengths);
    }

    #[test]
    fn a_length_that_is_not_plain_digits_is_refused() {
        for value in ["-1", "+5", "5, 5", "0x10", "", "18446744073709551615"] {
            let head = with_fields(&format!("Content-Length: {value}\r\n"));
            assert_eq!(refusal(&head), Refusal::InvalidLength, "{value:?}");
        }
    }

    #[test]
    fn a_transfer_encoding_not_ending_in_chunked_is_refused() {
        for value in ["gzip", "chunked, gzip", "chunkedx"] {
            let head = with_fields(&format!("Transfer-Encoding: {value}\r\n"));
            assert_eq!(
                refusal(&head),
                Refusal::UnsupportedTransferEncoding,
                "{value:?}"
            );
        }
        // The last field decides, as in hyper.
        let head = with_fields("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n");
        assert_eq!(refusal(&head), Refusal::UnsupportedTransferEncoding);
    }

    #[test]
    fn transfer_encoding_in_http_1_0_is_refused() {
        let head = b"POST /add HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(refusal(head), Refusal::TransferEncodingInHttp10);
    }

    #[test]
    fn a_head_over_the_limit_is_refused_complete_or_not() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        let limit = MAX_HEAD_BYTES;
        assert_eq!(refusal(big.as_bytes()), Refusal::HeadTooLarge { limit });
        let complete = format!("{big}\r\n");
        assert_eq!(
            refusal(complete.as_bytes()),
            Refusal::HeadTooLarge { limit }
        );
        // Just under the limit is fine.
        let fits = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(limit - 100));
        assert!(matches!(inspect(fits.as_bytes()), Head::Complete { .. }));
    }

    #[test]
    fn too_many_fields_are_refused() {
        let fields = "X: y\r\n".repeat(MAX_HEADERS + 1);
        assert_eq!(
            refusal(&with_fields(&fields)),
            Refusal::TooManyHeaders { limit: MAX_HEADERS }
        );
    }

    #[test]
    fn a_target_over_the_limit_is_refused() {
        let head = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_BYTES));
        assert_eq!(
            refusal(head.as_bytes()),
            Refusal::UriTooLong {
                limit: MAX_URI_BYTES
            }
        );
    }

    #[test]
    fn garbage_is_malformed() {
        for bytes in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET http://[::1 HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(refusal(bytes), Refusal::Malformed { .. }),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn plain_targets_are_ones_hyper_parses() {
        let every_plain = "/azAZ09-._~!$&'()*+,;=:@/?%/?";
        assert!(target_is_valid(every_plain.as_bytes()));
        assert!(axum::http::Uri::try_from(every_plain).is_ok());
        assert!(target_is_valid(b"http://example.com/add"));
        assert!(target_is_valid(b"*"));
    }

    #[test]
    fn the_end_of_a_head_is_found_only_near_new_bytes() {
        let head = GOOD.as_bytes();
        assert!(may_end_in(head, 0));
        assert!(may_end_in(head, head.len() - 1));
        assert!(!may_end_in(&head[..head.len() - 2], 0));
        assert!(may_end_in(b"GET / HTTP/1.1\n\n", 15));
        // The end was before the bytes not yet scanned: no need to look again.
        assert!(!may_end_in(b"\r\n\r\nGET / HTTP/1.1", 10));
    }
}
