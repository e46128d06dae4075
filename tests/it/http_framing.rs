//! Hostile request heads over real TCP on 127.0.0.1: every error the server sends is
//! `{"error": "..."}`, even for heads hyper would have answered itself; a request with both
//! `Content-Length` and `Transfer-Encoding` is refused and closes its connection; valid
//! pipelined, chunked and `Expect: 100-continue` requests are served as before.

use crate::common;
use crate::common::serve::{exchange, read_to_close, responses, start, Server};
use crate::common::HttpResponse;
use kappalog::server::{ServeLimits, MAX_HEAD_BYTES, MAX_URI_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Asserts `response` is the documented error: `status`, JSON `{"error": "..."}` with a
/// message containing `needle`, and the connection closing.
fn assert_refused(response: &HttpResponse, status: u16, needle: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    assert_eq!(response.header("connection"), Some("close"), "{response:?}");
    let message = response.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error string: {response:?}"))
        .to_owned();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

/// Sends `bytes` on a fresh connection; expects exactly one response, the refusal.
async fn refused(server: &Server, bytes: &[u8], status: u16, needle: &str) {
    let got = exchange(server.addr, bytes).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_refused(&got[0], status, needle);
    still_serves(server).await;
}

/// `parts` as a chunked body, each chunk with an extension, ended by `trailers`.
fn chunked(parts: &[&str], trailers: &str) -> String {
    let mut body: String = parts
        .iter()
        .map(|p| format!("{:x};ext=1\r\n{p}\r\n", p.len()))
        .collect();
    body.push_str(&format!("0\r\n{trailers}\r\n"));
    body
}

/// A fresh connection is served as usual.
async fn still_serves(server: &Server) {
    let got = exchange(
        server.addr,
        b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].status, 200, "{got:?}");
}

#[tokio::test]
async fn length_with_transfer_encoding_is_400_json_closes_and_appends_nothing() {
    let server = start(ServeLimits::default()).await;
    // Framed by the chunks the body is one entry; framed by the length, another request
    // follows it. Neither may be appended.
    let chunked_body = chunked(&["{\"value\": 1}"], "");
    let smuggled = "POST /add HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\n{\"value\": 2}";
    for (first, second) in [
        ("Content-Length", "Transfer-Encoding"),
        ("Transfer-Encoding", "Content-Length"),
    ] {
        let value = |name: &str| match name {
            "Content-Length" => chunked_body.len().to_string(),
            _ => "chunked".to_owned(),
        };
        let request = format!(
            "POST /add HTTP/1.1\r\nHost: t\r\n{first}: {}\r\n{second}: {}\r\n\r\n{chunked_body}{smuggled}",
            value(first),
            value(second),
        );
        refused(
            &server,
            request.as_bytes(),
            400,
            "both content-length and transfer-encoding",
        )
        .await;
    }
    assert_eq!(server.count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn other_ambiguous_lengths_are_400_json() {
    let server = start(ServeLimits::default()).await;
    for (fields, needle) in [
        ("Content-Length: 3\r\nContent-Length: 4\r\n", "differ"),
        ("Content-Length: -3\r\n", "content-length"),
        ("Transfer-Encoding: gzip\r\n", "transfer-encoding"),
    ] {
        let request = format!("POST /add HTTP/1.1\r\nHost: t\r\n{fields}\r\n1234");
        refused(&server, request.as_bytes(), 400, needle).await;
    }
    assert_eq!(server.count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_head_over_the_limit_is_431_json() {
    let server = start(ServeLimits::default()).await;
    let big = "a".repeat(MAX_HEAD_BYTES);
    // Whole, and without its end (refused once the limit is reached).
    let complete = format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n");
    let endless = format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {big}");
    for request in [complete, endless] {
        refused(&server, request.as_bytes(), 431, "request head is over").await;
    }
    let many = "X: y\r\n".repeat(200);
    let request = format!("GET /health HTTP/1.1\r\n{many}\r\n");
    refused(&server, request.as_bytes(), 431, "header fields").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_target_over_the_limit_is_414_json() {
    let server = start(ServeLimits::default()).await;
    let request = format!(
        "GET /entries?author={} HTTP/1.1\r\nHost: t\r\n\r\n",
        "a".repeat(MAX_URI_BYTES)
    );
    refused(&server, request.as_bytes(), 414, "request target is over").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_garbage_head_is_400_json() {
    let server = start(ServeLimits::default()).await;
    for garbage in [
        &b"HELLO\r\n\r\n"[..],
        b"GET /health HTTP/7.0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nNo Colon Here\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
    ] {
        refused(&server, garbage, 400, "malformed request head").await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_a_bad_one_last() {
    let server = start(ServeLimits::default()).await;
    let add = |v: i64| {
        let body = format!("{{\"value\": {v}}}");
        format!(
            "POST /add HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let chunked_add = format!(
        "POST /add HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        chunked(&["{\"va", "lue\": 3}"], "")
    );
    let summary = "GET /summary HTTP/1.1\r\nHost: t\r\n\r\n";
    let summary_last = "GET /summary HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let bad = "GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    let good = format!("{}{}{chunked_add}{summary}", add(1), add(2));

    let got = exchange(server.addr, format!("{good}{summary_last}").as_bytes()).await;
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 201, 201, 200, 200]);
    let seqs: Vec<u64> = got[..3]
        .iter()
        .map(|r| r.json()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(got[3].json()["count"], 3);

    let got = exchange(server.addr, format!("{good}{bad}{summary}").as_bytes()).await;
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 201, 201, 200, 400], "{got:?}");
    assert_eq!(got[3].json()["count"], 6);
    assert_refused(&got[4], 400, "differ");
    assert_eq!(server.count(), 6);
    still_serves(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_chunked_add_with_extensions_and_trailers_is_appended() {
    let server = start(ServeLimits::default()).await;
    let request = format!(
        "POST /add HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}",
        chunked(&["{\"val", "ue\": 42}"], "X-Trailer: t\r\n")
    );
    let got = exchange(server.addr, request.as_bytes()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 201, "{got:?}");
    assert_eq!(got[0].json()["value"], 42);
    assert_eq!(server.count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn expect_100_continue_still_gets_its_continue() {
    let server = start(ServeLimits::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let body = "{\"value\": 7}";
    stream
        .write_all(
            format!(
                "POST /add HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(common::DEADLINE, stream.read_exact(&mut interim))
        .await
        .expect("no 100 Continue before the deadline")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).await.unwrap();
    let raw = read_to_close(&mut stream, common::DEADLINE).await.unwrap();
    let got = responses(&raw);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 201, "{got:?}");
    assert_eq!(server.count(), 1);
    server.shutdown().await;
}

/// A megabyte-sized chunked upload crosses many reads and chunk boundaries unchanged:
/// every entry of it is imported.
#[tokio::test]
async fn a_large_chunked_import_passes_unchanged() {
    let source = tempfile::tempdir().unwrap();
    let (other, _) =
        kappalog::node::Node::open_with_identity(source.path(), common::identity(40)).unwrap();
    let n = 3_000;
    other
        .offer_entries(common::entries(&common::feed(&common::identity(41), n)))
        .await
        .unwrap();
    let mut csv = Vec::new();
    other.export(&mut csv).unwrap();
    assert!(csv.len() > 500_000, "{} bytes", csv.len());

    let server = start(ServeLimits::default()).await;
    let mut request =
        b"POST /import HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for chunk in csv.chunks(10_007) {
        request.extend_from_slice(format!("{:x};n=1\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let got = exchange(server.addr, &request).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 200, "{got:?}");
    assert_eq!(got[0].json()["added"], n);
    assert_eq!(server.count(), n);
    server.shutdown().await;
}
