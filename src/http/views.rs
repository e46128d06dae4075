//! Named views over HTTP (docs/QUERY.md, "Named views"):
//!
//! - `GET /views`: every view with its state, `{"views":[...], "index": {...}}` sorted
//!   by name, with the index's own state (`/health`'s);
//! - `PUT /views/NAME` (a write: the node's token when it has one): add or replace a view
//!   from `{"sql", "indexes", "description", "params"}`; vetted first ([`crate::query::vet`]),
//!   saved before the answer (201 created, 200 replaced or unchanged), its indexes built in
//!   the background;
//! - `GET /views/NAME?:param=...&after=CURSOR`: runs it, answered like `/query`;
//! - `DELETE /views/NAME` (a write): drops it (its indexes follow), never the log.
//!
//! A node run with `--no-index` has no views: 503.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::query::VetError;
use crate::views::{DefinitionError, Put, PutError, ViewDef, ViewRequest, ViewState, Views};

/// The largest `PUT /views/NAME` body: a statement of 64 KiB, eight index statements of
/// 4 KiB, a description and sample parameters, with room for JSON's escaping.
pub(crate) const MAX_VIEW_BODY_BYTES: usize = 256 * 1024;

/// One view as `GET /views` lists it.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    def: &'a ViewDef,
    #[serde(flatten)]
    state: &'a ViewState,
}

fn views(state: &AppState) -> Result<&Views, ApiError> {
    state
        .index
        .as_ref()
        .map(|index| index.views())
        .ok_or_else(|| {
            ApiError::Unavailable(
                "this node runs without the SQL index (--no-index): it has no views".into(),
            )
        })
}

fn listed(views: &Views, name: &str) -> serde_json::Value {
    let list = views.list();
    list.iter()
        .find(|(def, _)| def.name == name)
        .and_then(|(def, state)| serde_json::to_value(Listed { def, state }).ok())
        .unwrap_or(serde_json::Value::Null)
}

pub(crate) async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let views = views(&state)?;
    let list = views.list();
    let listed: Vec<Listed<'_>> = list
        .iter()
        .map(|(def, state)| Listed { def, state })
        .collect();
    // The index's own state beside the views': a degraded or failed index (a full disk)
    // keeps every view's indexes waiting, and this says why.
    let index = state
        .index
        .as_ref()
        .and_then(|index| serde_json::to_value(index.state()).ok())
        .unwrap_or_default();
    Ok(Json(serde_json::json!({ "views": listed, "index": index })).into_response())
}

pub(crate) async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let views = views(&state)?.clone();
    crate::views::definition::check_name(&name).map_err(definition_error)?;
    let body = tokio::time::timeout(
        state.request_timeout,
        super::add::read_limited(request.into_body(), MAX_VIEW_BODY_BYTES),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout("the view did not arrive in time".into()))??;
    let request = parse_request(&body)?;
    let def = state
        .query
        .vet(&name, &request)
        .await
        .map_err(|e| match e {
            VetError::Definition(e) => definition_error(e),
            VetError::Query(e) => ApiError::from(e),
        })?;
    let keeper = views.clone();
    let put = crate::determinism::blocking(move || keeper.put(def))
        .await
        .map_err(|e| ApiError::Internal(format!("saving the view: {e}")))?
        .map_err(|e| match e {
            PutError::Definition(e) => definition_error(e),
            PutError::File(e) => ApiError::Internal(format!("the view was not saved: {e}")),
        })?;
    let status = match put {
        Put::Created => StatusCode::CREATED,
        Put::Replaced | Put::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(listed(&views, &name))).into_response())
}

fn parse_request(body: &Bytes) -> Result<ViewRequest, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be a view, {{\"sql\": \"SELECT ...\", \"indexes\": [\"CREATE INDEX ...\"], \"description\": \"...\"}}: {e}"
        ))
    })
}

fn definition_error(error: DefinitionError) -> ApiError {
    match error {
        e @ (DefinitionError::IndexTaken { .. } | DefinitionError::TooMany) => {
            ApiError::Conflict(e.to_string())
        }
        e @ DefinitionError::TooBig(_) => ApiError::PayloadTooLarge(e.to_string()),
        e => ApiError::BadRequest(e.to_string()),
    }
}

pub(crate) async fn run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let views = views(&state)?;
    let Some(def) = views.get(&name) else {
        return Err(ApiError::NotFound(format!("no view named {name:?}")));
    };
    let Query(pairs) = pairs.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let params = super::query::parse_params(pairs)?;
    if params.sql.is_some() {
        return Err(ApiError::BadRequest(
            "a view runs its own statement: drop sql= (parameters are :NAME=VALUE)".into(),
        ));
    }
    super::query::answer(&state, &headers, def.sql, params).await
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let views = views(&state)?.clone();
    let gone = name.clone();
    let removed = crate::determinism::blocking(move || views.remove(&gone))
        .await
        .map_err(|e| ApiError::Internal(format!("dropping the view: {e}")))?
        .map_err(|e| ApiError::Internal(format!("the view was not dropped: {e}")))?;
    if !removed {
        return Err(ApiError::NotFound(format!("no view named {name:?}")));
    }
    Ok(Json(serde_json::json!({ "deleted": name })).into_response())
}
