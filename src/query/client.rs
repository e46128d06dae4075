//! `kappalog query --url`: sends one statement to a running node's `POST /query` and reads
//! its JSON answer back (the CLI prints it in the format asked for, so a table or CSV from a
//! node is the same as one from a data directory).

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{header, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Answer, Cell, Statement};

/// The most of an answer read: a node's cap on answer bytes with room for JSON's escaping.
pub const MAX_ANSWER_BODY_BYTES: usize = 256 * 1024 * 1024;
/// How long connecting and the whole exchange may take (a node bounds its statement's time
/// by `--query-timeout`, its wait by `--query-wait`).
pub const EXCHANGE_TIMEOUT_MS: u64 = 120_000;

/// Why a node gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--url` is not `http://HOST[:PORT]`.
    #[error("--url must be http://HOST[:PORT], not {0}")]
    BadUrl(String),
    /// The node could not be reached or the exchange broke.
    #[error("{0}")]
    Exchange(String),
    /// The answer's body is over the caller's cap.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The node answered with an error: its status and message.
    #[error("the node answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `error` of its JSON body, or the body.
        message: String,
    },
}

/// Sends `statement` to the node at `url`; its answer and the JSON text it came as.
pub async fn ask(url: &Uri, statement: &Statement) -> Result<(Answer, String), ClientError> {
    tokio::time::timeout(
        Duration::from_millis(EXCHANGE_TIMEOUT_MS),
        exchange(url, statement),
    )
    .await
    .map_err(|_| ClientError::Exchange("the node did not answer in time".into()))?
}

async fn exchange(url: &Uri, statement: &Statement) -> Result<(Answer, String), ClientError> {
    let request = Request::post(format!("/query{}", query_string(&statement.params)))
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/sql")
        .body(Full::new(Bytes::from(statement.sql.clone())))
        .map_err(|e| ClientError::Exchange(format!("building the request: {e}")))?;
    let text = send(url, request).await?;
    let answer = parse_answer(&text)
        .map_err(|e| ClientError::Exchange(format!("the answer is not a query answer: {e}")))?;
    Ok((answer, text))
}

/// Sends `request` (its path relative) to the node at `url` and reads the answer's body
/// (at most [`MAX_ANSWER_BODY_BYTES`]): its text on a 2xx, else [`ClientError::Refused`]
/// with the JSON `error`. No timeout: the caller bounds the exchange.
pub async fn send(url: &Uri, request: Request<Full<Bytes>>) -> Result<String, ClientError> {
    let body = send_bounded(url, request, MAX_ANSWER_BODY_BYTES).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// [`send`] with the body capped at `max_body_bytes` and returned as bytes, unaltered. A
/// `Content-Length` over the cap is refused before any of the body is read; a body that
/// streams past it is refused at the first byte over ([`ClientError::TooLarge`]). Only
/// `http://`; a redirect is an answer like any non-2xx (never followed).
pub async fn send_bounded(
    url: &Uri,
    mut request: Request<Full<Bytes>>,
    max_body_bytes: usize,
) -> Result<Bytes, ClientError> {
    if url.scheme_str() != Some("http") {
        return Err(ClientError::BadUrl(url.to_string()));
    }
    let authority = url
        .authority()
        .ok_or_else(|| ClientError::BadUrl(url.to_string()))?;
    let host = authority.host().trim_matches(['[', ']']).to_owned();
    let port = authority.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| ClientError::Exchange(format!("connecting to {authority}: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| ClientError::Exchange(format!("HTTP handshake: {e}")))?;
    let driver = tokio::spawn(connection);
    // The connection task ends with this function, whichever way it returns.
    let _driver = AbortOnDrop(driver);
    let host_header = header::HeaderValue::from_str(authority.as_str())
        .map_err(|e| ClientError::BadUrl(format!("{url}: {e}")))?;
    request.headers_mut().insert(header::HOST, host_header);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ClientError::Exchange(format!("sending the request: {e}")))?;
    let status = response.status();
    let announced = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > u64::try_from(max_body_bytes).unwrap_or(u64::MAX)) {
        return Err(ClientError::TooLarge {
            limit: max_body_bytes,
        });
    }
    let body = Limited::new(response.into_body(), max_body_bytes)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ClientError::TooLarge {
                    limit: max_body_bytes,
                }
            } else {
                ClientError::Exchange(format!("reading the answer: {e}"))
            }
        })?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_else(|| text.into_owned());
        return Err(ClientError::Refused {
            status: status.as_u16(),
            message,
        });
    }
    Ok(body)
}

/// Aborts the connection's task when dropped, so an early return leaves nothing running.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `?:name=value&...`, percent-encoded; empty without parameters.
fn query_string(params: &[(String, String)]) -> String {
    let pairs: Vec<String> = params
        .iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                percent_encode(&format!(":{name}")),
                percent_encode(value)
            )
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (for a query string).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Reads a JSON answer back into an [`Answer`] (the inverse of its serialization).
pub fn parse_answer(text: &str) -> Result<Answer, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let field = |name: &str| value.get(name).ok_or(format!("no {name:?}"));
    let columns = field("columns")?
        .as_array()
        .ok_or("columns is not an array")?
        .iter()
        .map(|c| {
            c.as_str()
                .map(String::from)
                .ok_or("a column is not a string")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = field("rows")?
        .as_array()
        .ok_or("rows is not an array")?
        .iter()
        .map(|row| {
            row.as_array()
                .ok_or_else(|| "a row is not an array".to_string())?
                .iter()
                .map(cell_of)
                .collect::<Result<Vec<Cell>, String>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Answer {
        columns,
        rows,
        as_of: field("as_of")?.as_str().unwrap_or_default().to_string(),
        truncated: field("truncated")?.as_bool().unwrap_or(false),
        digest: field("digest")?.as_str().unwrap_or_default().to_string(),
    })
}

fn cell_of(value: &serde_json::Value) -> Result<Cell, String> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => Cell::Null,
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cell::Integer(i),
            None => Cell::Real(n.as_f64().ok_or("a number out of range")?),
        },
        Value::String(s) => Cell::Text(s.as_bytes().to_vec()),
        Value::Object(map) => match (map.get("blob"), map.get("real")) {
            (Some(Value::String(hex)), None) => {
                Cell::Blob(hex::decode(hex).map_err(|e| format!("a blob: {e}"))?)
            }
            (None, Some(Value::String(name))) => Cell::Real(match name.as_str() {
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => f64::NAN,
            }),
            _ => return Err(format!("an unknown value {value}")),
        },
        Value::Bool(_) | Value::Array(_) => return Err(format!("an unknown value {value}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_round_trips_through_its_json() {
        let answer = Answer {
            columns: vec!["a".into(), "b".into()],
            rows: vec![
                vec![Cell::Integer(-1), Cell::Real(1.5)],
                vec![Cell::Blob(vec![1, 2]), Cell::Real(f64::NEG_INFINITY)],
                vec![Cell::Null, Cell::Text(b"x".to_vec())],
            ],
            as_of: "start".into(),
            truncated: true,
            digest: "ab".into(),
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(parse_answer(&text).unwrap(), answer);
    }

    #[test]
    fn parameters_are_percent_encoded() {
        assert_eq!(
            query_string(&[("a".into(), "x y&z".into())]),
            "?%3Aa=x%20y%26z"
        );
        assert_eq!(query_string(&[]), "");
    }
}
