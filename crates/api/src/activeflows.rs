//! `/v1.0/activeflows`: the runs of flows on calls — read them (live while they run, from the
//! store once over), stop one, or release one parked in a `block` action.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use uuid::Uuid;

use crate::auth::Auth;
use crate::json::{List, Object, PageQuery, path_id};
use crate::{ApiError, AppState};
use runtime::views::ActiveflowView;

/// `GET /v1.0/activeflows`: newest first (as stored: running ones show their start).
pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(account): Auth,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<ActiveflowView>>, ApiError> {
    let page = query.page()?;
    let records = state.store.list_activeflows(account.id, &page).await?;
    let views = records.into_iter().map(ActiveflowView::from).collect();
    Ok(Json(List::new(views, &page, |a: &ActiveflowView| {
        (a.tm_create.clone(), a.id)
    })))
}

/// The stored record of `id` if it is this account's (else 404).
async fn stored(
    state: &AppState,
    account: Uuid,
    id: &str,
) -> Result<store::ActiveflowRecord, ApiError> {
    state
        .store
        .activeflow(account, path_id(id)?)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Apply `op` to the live run; once it has ended, the stored record (for `Get`) or a 409.
async fn live(
    state: &AppState,
    record: store::ActiveflowRecord,
    op: runtime::ActiveflowOp,
) -> Result<ActiveflowView, ApiError> {
    let is_get = op == runtime::ActiveflowOp::Get;
    match state.engine.activeflow(record.id, op).await {
        Ok(now) => Ok(now.into()),
        Err(runtime::ActiveflowError::NotFound) => {
            // Over: the stored record is the last word (re-read: it may have just closed).
            let last = state
                .store
                .activeflow(record.account_id, record.id)
                .await?
                .unwrap_or(record);
            if is_get {
                Ok(last.into())
            } else {
                Err(ApiError::Conflict(format!(
                    "the activeflow has ended ({})",
                    last.end_reason
                )))
            }
        }
        Err(runtime::ActiveflowError::Refused(why)) => Err(ApiError::Conflict(why)),
    }
}

/// `GET /v1.0/activeflows/{id}`: the live state while it runs.
pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<ActiveflowView>, ApiError> {
    let record = stored(&state, account.id, &id).await?;
    live(&state, record, runtime::ActiveflowOp::Get)
        .await
        .map(Json)
}

/// `POST /v1.0/activeflows/{id}/stop`: end the run (the call is hung up). 409 once ended.
pub(crate) async fn stop(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<ActiveflowView>, ApiError> {
    let record = stored(&state, account.id, &id).await?;
    live(&state, record, runtime::ActiveflowOp::Stop)
        .await
        .map(Json)
}

/// `POST /v1.0/activeflows/{id}/continue` `{"current_action_id"}`: release a run parked in that
/// `block` action. 409 when it is not blocked there (a stale request) or has ended.
pub(crate) async fn continue_(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ActiveflowView>, ApiError> {
    let body = Object::parse(&body)?;
    let action_id = body.string("current_action_id")?;
    let record = stored(&state, account.id, &id).await?;
    live(
        &state,
        record,
        runtime::ActiveflowOp::Continue { action_id },
    )
    .await
    .map(Json)
}
