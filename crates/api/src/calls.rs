//! `/v1.0/calls`: call records.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};

use crate::auth::Auth;
use crate::error::FieldError;
use crate::flows::validated_actions;
use crate::json::{List, Object, PageQuery, path_id};
use crate::{ApiError, AppState};
use runtime::views::CallView;

/// The call `id` of `account` (404 for another account's: it does not exist for this one).
async fn owned(
    state: &AppState,
    account: uuid::Uuid,
    id: &str,
) -> Result<store::CallRecord, ApiError> {
    state
        .store
        .call(account, path_id(id)?)
        .await?
        .ok_or(ApiError::NotFound)
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    let call = owned(&state, account.id, &id).await?;
    let recordings = state.store.recordings_of_call(account.id, call.id).await?;
    Ok(Json(CallView {
        recording_ids: Some(recordings.iter().map(|r| r.id).collect()),
        ..call.into()
    }))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(account): Auth,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<CallView>>, ApiError> {
    let page = query.page()?;
    let calls = state.store.list_calls(account.id, &page).await?;
    let views = calls.into_iter().map(CallView::from).collect();
    Ok(Json(List::new(views, &page, |c: &CallView| {
        (c.tm_create.clone(), c.id)
    })))
}

/// Address types a call can be placed to.
const DIALABLE: [&str; 4] = ["tel", "sip", "endpoint", "extension"];

/// Read `{"type", "target"}` at `path`.
fn address(value: Option<&serde_json::Value>, path: &str) -> Result<runtime::Address, ApiError> {
    let Some(serde_json::Value::Object(map)) = value else {
        return Err(ApiError::field(
            path,
            "must be an object with type and target",
        ));
    };
    let text = |key: &str| match map.get(key) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(ApiError::field(
            format!("{path}.{key}"),
            "must be a non-empty string",
        )),
    };
    Ok(runtime::Address {
        kind: text("type")?,
        target: text("target")?,
    })
}

/// `POST /v1.0/calls`: place a call to each destination and run the flow (`flow_id`, or inline
/// `actions`) on each once it answers. All or nothing: if one destination cannot be placed, the
/// calls already placed are hung up and the request fails naming that destination.
pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(account): Auth,
    body: Bytes,
) -> Result<Json<Vec<CallView>>, ApiError> {
    let mut body = Object::parse(&body)?;
    let source = address(body.0.get("source"), "source")?;
    let destinations = match body.0.get("destinations") {
        Some(serde_json::Value::Array(items)) if !items.is_empty() && items.len() <= 100 => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let path = format!("destinations[{i}]");
                let a = address(Some(v), &path)?;
                if DIALABLE.contains(&a.kind.as_str()) {
                    Ok(a)
                } else {
                    Err(ApiError::field(
                        format!("{path}.type"),
                        "must be tel, sip, endpoint or extension",
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(ApiError::field(
                "destinations",
                "must be an array of 1 to 100 addresses",
            ));
        }
    };
    let ring_timeout = body
        .opt_u32("ring_timeout", Some(60), 1..=600)?
        .unwrap_or(60);
    let (flow_id, actions) = match body.0.get("flow_id") {
        Some(serde_json::Value::Null) | None => (None, validated_actions(body.take("actions"))?),
        Some(_) if body.0.get("actions").is_some_and(|a| !a.is_null()) => {
            return Err(ApiError::field(
                "actions",
                "give flow_id or actions, not both",
            ));
        }
        Some(_) => {
            let id = body.uuid("flow_id")?;
            let flow = state.store.flow(account.id, id).await?;
            let flow =
                flow.ok_or_else(|| ApiError::field("flow_id", "names no flow of this account"))?;
            (Some(flow.id), flow.actions)
        }
    };
    let mut placed: Vec<CallView> = Vec::new();
    for (i, destination) in destinations.into_iter().enumerate() {
        let request = runtime::Originate {
            account_id: account.id,
            source: source.clone(),
            destination,
            flow_id,
            actions: actions.clone(),
            ring_timeout: Duration::from_secs(u64::from(ring_timeout)),
        };
        match state.engine.originate(request).await {
            Ok(record) => placed.push(record.into()),
            Err(err) => {
                for call in &placed {
                    state.engine.hangup(call.id);
                }
                let path = format!("destinations[{i}]");
                match &err {
                    runtime::OriginateError::Limited(runtime::LimitError::Destination(..)) => {
                        return Err(ApiError::Forbidden(format!("{path}: {err}")));
                    }
                    runtime::OriginateError::Limited(_) => {
                        return Err(ApiError::Limited(err.to_string()));
                    }
                    _ => {}
                }
                return Err(ApiError::BadRequest {
                    message: format!("{path}: {err}"),
                    errors: vec![FieldError {
                        path,
                        message: err.to_string(),
                    }],
                });
            }
        }
    }
    Ok(Json(placed))
}

/// `POST /v1.0/calls/{id}/hangup`: hang up a live call; the record as it stands comes back.
pub(crate) async fn hangup(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    let call = owned(&state, account.id, &id).await?;
    state.engine.hangup(call.id);
    Ok(Json(call.into()))
}

/// `POST /v1.0/calls/{id}/actions` `{"actions": [...]}`: run these actions on the live call now.
/// The action in progress is cut short (its prompt stops); when they are done the call's flow
/// goes on after it. Answers the activeflow as it stands. 409 when the call is not in progress
/// or its flow is in a step that cannot be interrupted (a `connect` bridge, AMD).
pub(crate) async fn inject(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<runtime::views::ActiveflowView>, ApiError> {
    let call = owned(&state, account.id, &id).await?;
    let mut body = Object::parse(&body)?;
    let actions = validated_actions(body.take("actions"))?;
    let op = runtime::ActiveflowOp::Inject { actions };
    match state.engine.activeflow(call.id, op).await {
        Ok(record) => Ok(Json(record.into())),
        Err(runtime::ActiveflowError::NotFound) => Err(ApiError::Conflict(
            "the call is not in progress (or runs no flow)".into(),
        )),
        Err(runtime::ActiveflowError::Refused(why)) => Err(ApiError::Conflict(why)),
    }
}
