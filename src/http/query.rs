//! `GET /query?sql=...` and `POST /query` (the statement as the body): a read-only,
//! bounded SQL statement over the index ([`crate::query`], docs/QUERY.md). Reads: no token.
//!
//! The query string carries the named parameters (`:author=HEX`, bound as TEXT, never
//! spliced) and `after=CURSOR` (wait, at most `--query-wait`, until the index covers the
//! cursor, a `/add` answer's). The answer is JSON, or CSV with a header row for
//! `Accept: text/csv` with `Kappalog-As-Of`, `Kappalog-Digest` and `Kappalog-Truncated`
//! response headers.
//!
//! Errors (`{"error": "..."}`): 400 for bad SQL, a refused statement (the message names
//! what), a bad parameter or cursor, a value over the size limit or a statement over the
//! memory limit; 413 for a statement over 64 KiB; 503 when the engine is busy (queue full),
//! when there is no index yet, or when `after` was not covered in time (with `"as_of"`);
//! 504 when the statement ran past `--query-timeout` and was interrupted.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, AppState};
use crate::query::{Answer, QueryError, Statement, MAX_STATEMENT_BYTES};
use crate::tail::cursor::Cursor;
use std::time::Duration;

/// CSV answers' response headers.
pub const AS_OF_HEADER: &str = "kappalog-as-of";
/// See [`AS_OF_HEADER`].
pub const DIGEST_HEADER: &str = "kappalog-digest";
/// See [`AS_OF_HEADER`].
pub const TRUNCATED_HEADER: &str = "kappalog-truncated";

/// What the query string says besides the statement.
pub(crate) struct Params {
    pub(crate) sql: Option<String>,
    pub(crate) after: Option<String>,
    pub(crate) bound: Vec<(String, String)>,
}

pub(crate) fn parse_params(pairs: Vec<(String, String)>) -> Result<Params, ApiError> {
    let mut params = Params {
        sql: None,
        after: None,
        bound: Vec::new(),
    };
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "sql" => &mut params.sql,
            "after" => &mut params.after,
            _ => {
                let Some(name) = key.strip_prefix(':').filter(|n| !n.is_empty()) else {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter {key:?}: expected sql, after or :NAME"
                    )));
                };
                if params.bound.iter().any(|(n, _)| n == name) {
                    return Err(ApiError::BadRequest(format!(
                        "parameter :{name} given twice"
                    )));
                }
                params.bound.push((name.to_string(), value));
                continue;
            }
        };
        if slot.replace(value).is_some() {
            return Err(ApiError::BadRequest(format!("{key} given twice")));
        }
    }
    Ok(params)
}

pub(crate) async fn query_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = pairs.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let params = parse_params(pairs)?;
    let Some(sql) = params.sql.clone() else {
        return Err(ApiError::BadRequest(
            "missing query parameter \"sql\" (or POST the statement as the body)".into(),
        ));
    };
    answer(&state, &headers, sql, params).await
}

pub(crate) async fn query_post(
    State(state): State<AppState>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Query(pairs) = pairs.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let params = parse_params(pairs)?;
    if params.sql.is_some() {
        return Err(ApiError::BadRequest(
            "the statement is the body of a POST: drop sql= from the query string".into(),
        ));
    }
    let (parts, body) = request.into_parts();
    let body = tokio::time::timeout(
        state.request_timeout,
        super::add::read_limited(body, MAX_STATEMENT_BYTES),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout("the statement did not arrive in time".into()))??;
    let sql = statement_text(body)?;
    answer(&state, &parts.headers, sql, params).await
}

fn statement_text(body: Bytes) -> Result<String, ApiError> {
    String::from_utf8(body.to_vec())
        .map_err(|e| ApiError::BadRequest(format!("the statement is not valid UTF-8: {e}")))
}

pub(crate) async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    sql: String,
    params: Params,
) -> Result<Response, ApiError> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(QueryError::TooLong { len: sql.len() }.into());
    }
    if let Some(after) = params.after.as_deref() {
        let cursor: Cursor = after
            .parse()
            .map_err(|e| QueryError::Cursor(format!("{e}")))?;
        if !cursor.is_of(&state.node.author()) {
            return Err(QueryError::Cursor("a cursor of another node's log".into()).into());
        }
        let wait = state.query.config().wait;
        // With the node's indexer at hand, wait on the coverage it publishes after each
        // batch's commit: no connection is held and nothing is polled while the index
        // catches up. Whether covered or not, the engine then answers from `meta` (a query
        // that lost the race to a rebuild says so there). Without one (an index written by
        // another process), poll `meta`.
        let waited = match &state.index {
            Some(index) => {
                let mut coverage = index.coverage();
                let covered = coverage.wait_for(|c| c.covers(cursor.offset));
                let _ = tokio::time::timeout(wait, covered).await;
                let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                state
                    .query
                    .wait_for(cursor, Duration::ZERO)
                    .await
                    .map_err(|e| match e {
                        QueryError::NotCovered { as_of, .. } => {
                            QueryError::NotCovered { ms, as_of }
                        }
                        e => e,
                    })
            }
            None => state.query.wait_for(cursor, wait).await,
        };
        if let Err(e) = waited {
            return Ok(query_error_response(e));
        }
    }
    let statement = Statement {
        sql,
        params: params.bound,
    };
    match state.query.query(statement).await {
        Ok(answer) if super::accepts(headers, "text/csv") => csv_response(&answer),
        Ok(answer) => Ok(Json(answer).into_response()),
        Err(e) => Ok(query_error_response(e)),
    }
}

/// A query error as a response: [`ApiError`]'s, but a `NotCovered` also says `as_of`.
fn query_error_response(error: QueryError) -> Response {
    if let QueryError::NotCovered { as_of, .. } = &error {
        let body = serde_json::json!({ "error": error.to_string(), "as_of": as_of });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    ApiError::from(error).into_response()
}

fn csv_response(answer: &Answer) -> Result<Response, ApiError> {
    let mut bytes = Vec::new();
    crate::query::render::write_csv(answer, &mut bytes)
        .map_err(|e| ApiError::Internal(format!("writing CSV: {e}")))?;
    let header_value = |text: &str| {
        HeaderValue::from_str(text).map_err(|e| ApiError::Internal(format!("a header: {e}")))
    };
    let mut response = Body::from(bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(AS_OF_HEADER, header_value(&answer.as_of)?);
    headers.insert(DIGEST_HEADER, header_value(&answer.digest)?);
    headers.insert(
        TRUNCATED_HEADER,
        HeaderValue::from_static(if answer.truncated { "true" } else { "false" }),
    );
    Ok(response)
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> ApiError {
        match error {
            e @ (QueryError::NoIndex(_)
            | QueryError::Busy { .. }
            | QueryError::NotCovered { .. }) => ApiError::Unavailable(e.to_string()),
            e @ QueryError::TooLong { .. } => ApiError::PayloadTooLarge(e.to_string()),
            e @ QueryError::Deadline { .. } => ApiError::Timeout(e.to_string()),
            e @ (QueryError::Refused(_)
            | QueryError::MultipleStatements
            | QueryError::Empty
            | QueryError::Sql(_)
            | QueryError::Parameter(_)
            | QueryError::Memory { .. }
            | QueryError::ValueTooBig { .. }
            | QueryError::Cursor(_)) => ApiError::BadRequest(e.to_string()),
            e @ QueryError::Internal(_) => ApiError::Internal(e.to_string()),
        }
    }
}
