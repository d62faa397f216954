//! `/v1.0/calls`: call records.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Auth;
use crate::json::{List, PageQuery, path_id};
use crate::{ApiError, AppState};

/// An address as VoIPBIN shows it.
#[derive(Serialize)]
pub(crate) struct Address {
    r#type: String,
    target: String,
}

/// A call as the API shows it.
#[derive(Serialize)]
pub(crate) struct CallView {
    id: Uuid,
    customer_id: Uuid,
    flow_id: Option<Uuid>,
    direction: String,
    status: String,
    source: Address,
    destination: Address,
    hangup_reason: String,
    hangup_by: String,
    tm_create: String,
    tm_ringing: Option<String>,
    tm_progressing: Option<String>,
    tm_hangup: Option<String>,
    tm_update: String,
}

impl From<store::CallRecord> for CallView {
    fn from(c: store::CallRecord) -> Self {
        CallView {
            id: c.id,
            customer_id: c.account_id,
            flow_id: c.flow_id,
            direction: c.direction,
            status: c.status,
            source: Address {
                r#type: c.source_type,
                target: c.source_target,
            },
            destination: Address {
                r#type: c.destination_type,
                target: c.destination_target,
            },
            hangup_reason: c.hangup_reason,
            hangup_by: c.hangup_by,
            tm_create: c.tm_create,
            tm_ringing: c.tm_ringing,
            tm_progressing: c.tm_progressing,
            tm_hangup: c.tm_hangup,
            tm_update: c.tm_update,
        }
    }
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    let call = state
        .store
        .call(account.id, path_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(call.into()))
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
