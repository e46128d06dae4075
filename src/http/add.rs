//! `POST /add`: the body grammar, the `Idempotency-Key` header, and their errors.
//!
//! Accepted bodies: `{"value": 42, "data": "optional text"}`, a bare JSON integer `42`, or an
//! empty body (a random value, as a demo convenience). Anything else is a 400 that names the
//! problem; nothing is appended.
//!
//! An optional `Idempotency-Key` header (1 to 64 bytes of visible ASCII, once; rules in
//! [`crate::idempotency`]) makes retries safe. Answers:
//!
//! - 201 with the entry and its tail `cursor` (for `GET /query?after=`): appended now;
//! - 200 with the same entry JSON (same hash): the key was used before for the same request,
//!   nothing appended (also when the first request is still being written: the retry waits
//!   for it);
//! - 400: the header is malformed or repeated; nothing appended;
//! - 422: the key was used before for a different request (other value or data); nothing
//!   appended.
//!
//! Only `/add` (appends to the node's own feed) takes a key; it is remembered for the most
//! recent [`crate::store::keys::MAX_REMEMBERED_KEYS`] keyed appends.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::Value;

use super::{ApiError, AppState, MAX_ADD_BODY_BYTES};
use crate::entry::{EntryJson, MAX_DATA_BYTES};
use crate::idempotency::IdempotencyKey;
use crate::node::{Added, KeyedAppend};
use crate::tail::cursor::Cursor;

/// The request header that carries an idempotency key (HTTP header names are
/// case-insensitive; this is the lowercase form the `http` crate matches).
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// A parsed `/add` request.
#[derive(Debug, PartialEq, Eq)]
pub struct AddRequest {
    /// `None` for an empty body: the node picks a random value.
    pub value: Option<i64>,
    /// The entry's text; empty when the body gave none.
    pub data: String,
}

/// Parses an `/add` body.
pub fn parse_add_body(body: &[u8]) -> Result<AddRequest, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Ok(AddRequest {
            value: None,
            data: String::new(),
        });
    }
    let json: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    if json.is_object() {
        // `Value` keeps the last of repeated keys; a body that says two things is refused.
        serde_json::from_str::<UniqueKeys>(text)
            .map_err(|e| ApiError::BadRequest(format!("body is ambiguous: {e}")))?;
    }
    match json {
        Value::Number(n) => Ok(AddRequest {
            value: Some(integer(&n, "body")?),
            data: String::new(),
        }),
        Value::Object(mut fields) => {
            let value = match fields.remove("value") {
                Some(Value::Number(n)) => integer(&n, "value")?,
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "\"value\" must be an integer, got {}",
                        kind(&other)
                    )))
                }
                None => return Err(ApiError::BadRequest("missing field \"value\"".into())),
            };
            let data = match fields.remove("data") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s,
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "\"data\" must be a string, got {}",
                        kind(&other)
                    )))
                }
            };
            if let Some(unknown) = fields.keys().next() {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {unknown:?}: expected \"value\" and optional \"data\""
                )));
            }
            if data.len() > MAX_DATA_BYTES {
                return Err(ApiError::BadRequest(format!(
                    "\"data\" is {} bytes, the limit is {MAX_DATA_BYTES}",
                    data.len()
                )));
            }
            Ok(AddRequest {
                value: Some(value),
                data,
            })
        }
        other => Err(ApiError::BadRequest(format!(
            "body must be a JSON object {{\"value\": N, \"data\": \"...\"}}, an integer, or empty; got {}",
            kind(&other)
        ))),
    }
}

fn integer(n: &serde_json::Number, what: &str) -> Result<i64, ApiError> {
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    // A whole number that does not fit (u64 above i64::MAX, or a float beyond 2^63) is out
    // of range; a number written with a fraction or an exponent (`1.5`, but also `1.0` or
    // `1e3`) is not an integer as JSON writes integers.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    let out_of_range = n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() >= LIMIT);
    if out_of_range {
        Err(ApiError::BadRequest(format!(
            "{what} {n} is out of range for a 64-bit signed integer"
        )))
    } else {
        Err(ApiError::BadRequest(format!(
            "{what} must be an integer written without a fraction or exponent (e.g. 42), got {n}"
        )))
    }
}

/// Deserializes a JSON object only to refuse a key that appears twice.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::BTreeSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "field {key:?} appears twice"
                        )));
                    }
                }
                Ok(UniqueKeys)
            }
        }
        d.deserialize_map(Keys)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `Idempotency-Key` of a request, if it sent one; 400 if it is malformed or repeated
/// (two keys would leave it ambiguous which request this is).
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let more = values.count();
    if more > 0 {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key appears {} times: send it once",
            more + 1
        )));
    }
    IdempotencyKey::try_from(first.as_bytes())
        .map(Some)
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Appends one entry. The request timeout bounds only the wait for the body (408 past it):
/// once the entry is handed to the writer the answer is the truth, 201 once it is durable or
/// an error if the write failed (and then nothing was appended), however long that takes.
/// With an `Idempotency-Key` a retry of a request already appended answers 200 with its
/// entry (see the module docs).
pub(crate) async fn add(
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<AddAnswer>), ApiError> {
    // The whole request rather than a `HeaderMap` extractor, which would clone the headers
    // on every append.
    let (parts, body) = request.into_parts();
    let key = idempotency_key(&parts.headers)?;
    let timeout = state.request_timeout;
    let body = tokio::time::timeout(timeout, read_limited(body, MAX_ADD_BODY_BYTES))
        .await
        .map_err(|_| {
            ApiError::RequestTimeout(format!(
                "the body did not arrive within {} s; nothing was appended",
                timeout.as_secs()
            ))
        })??;
    let request = parse_add_body(&body)?;
    // If the client goes away from here on, the writer still makes the entry durable; only
    // the answer is lost (a retry with the same key recovers it).
    let Some(key) = key else {
        let value = request.value.unwrap_or_else(rand::random::<i64>);
        let added = state.node.append_located(value, request.data).await?;
        return Ok((StatusCode::CREATED, Json(answer(&state, added))));
    };
    match state
        .node
        .append_idempotent(key, request.value, request.data)
        .await?
    {
        KeyedAppend::Created(added) => Ok((StatusCode::CREATED, Json(answer(&state, added)))),
        KeyedAppend::Replayed(added) => Ok((StatusCode::OK, Json(answer(&state, added)))),
    }
}

/// `/add`'s answer: the entry and the tail cursor of its record, which
/// `GET /query?after=CURSOR` waits for and `GET /tail?from=` resumes after.
#[derive(serde::Serialize)]
pub(crate) struct AddAnswer {
    #[serde(flatten)]
    entry: EntryJson,
    cursor: String,
}

fn answer(state: &AppState, added: Added) -> AddAnswer {
    let cursor = Cursor::new(&state.node.author(), added.offset, &added.entry.hash);
    AddAnswer {
        entry: added.entry,
        cursor: cursor.to_string(),
    }
}

/// Reads a whole body of at most `limit` bytes: 413 beyond it (a declared `Content-Length`
/// over the limit is refused before anything is read), 400 if the body breaks off.
pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large =
        || ApiError::PayloadTooLarge(format!("body exceeds the limit of {limit} bytes"));
    let declared = axum::body::HttpBody::size_hint(&body).lower();
    if usize::try_from(declared).map_or(true, |n| n > limit) {
        return Err(too_large());
    }
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::BadRequest(format!(
            "reading the body failed: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<AddRequest, String> {
        parse_add_body(body.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn accepted_shapes() {
        assert_eq!(
            parse(r#"{"value": 42, "data": "hi"}"#),
            Ok(AddRequest {
                value: Some(42),
                data: "hi".into()
            })
        );
        assert_eq!(
            parse("-3"),
            Ok(AddRequest {
                value: Some(-3),
                data: String::new()
            })
        );
        assert_eq!(
            parse(""),
            Ok(AddRequest {
                value: None,
                data: String::new()
            })
        );
        assert_eq!(
            parse(r#"{"value": 1, "data": null}"#).unwrap().value,
            Some(1)
        );
    }

    #[test]
    fn each_bad_body_names_its_problem() {
        let cases = [
            ("{", "not valid JSON"),
            ("\"x\"", "got a string"),
            (r#"{"data": "x"}"#, "missing field \"value\""),
            (r#"{"value": "1"}"#, "must be an integer, got a string"),
            (r#"{"value": 1.5}"#, "must be an integer"),
            (r#"{"value": 9223372036854775808}"#, "out of range"),
            (r#"{"value": 1, "data": 5}"#, "\"data\" must be a string"),
            (r#"{"value": 1, "extra": 5}"#, "unknown field \"extra\""),
            (
                r#"{"value": 1.0}"#,
                "must be an integer written without a fraction",
            ),
            (
                r#"{"value": 1e3}"#,
                "must be an integer written without a fraction",
            ),
            (r#"{"value": 1e300}"#, "out of range"),
            (
                r#"{"value": 1, "value": 2}"#,
                "field \"value\" appears twice",
            ),
            (
                r#"{"value": 1, "data": "a", "data": "b"}"#,
                "field \"data\" appears twice",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
        }
        let long = format!(
            r#"{{"value": 1, "data": "{}"}}"#,
            "x".repeat(MAX_DATA_BYTES + 1)
        );
        assert!(parse(&long).unwrap_err().contains("limit is 4096"));
        let err = parse_add_body(&[0xff, 0xfe]).unwrap_err().to_string();
        assert!(err.contains("not valid UTF-8"), "{err}");
    }

    fn key_of(values: &[&[u8]]) -> Result<Option<String>, String> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                IDEMPOTENCY_KEY_HEADER,
                axum::http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        idempotency_key(&headers)
            .map(|k| k.map(|k| k.to_string()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_idempotency_key_header_is_optional_once_and_checked() {
        assert_eq!(key_of(&[]), Ok(None));
        assert_eq!(key_of(&[b"order-1"]), Ok(Some("order-1".into())));
        assert_eq!(
            key_of(&[b"a", b"a"]),
            Err("Idempotency-Key appears 2 times: send it once".into())
        );
        assert!(key_of(&[b""]).unwrap_err().contains("is empty"));
        assert!(key_of(&[&[b'k'; 65]])
            .unwrap_err()
            .contains("is 65 bytes, the limit is 64"));
        assert!(key_of(&[b"caf\xc3\xa9"])
            .unwrap_err()
            .contains("byte 3 is 0xc3"));
        assert!(key_of(&[b"a\tb"]).unwrap_err().contains("byte 1 is 0x09"));
    }
}
