//! `/v1.0/numbers`: bind a number to a flow for inbound calls.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Auth;
use crate::json::{List, Object, PageQuery, path_id};
use crate::{ApiError, AppState};

/// A number as the API shows it.
#[derive(Serialize)]
pub(crate) struct NumberView {
    id: Uuid,
    customer_id: Uuid,
    number: String,
    call_flow_id: Uuid,
    name: String,
    tm_create: String,
    tm_update: String,
}

impl From<store::NumberRecord> for NumberView {
    fn from(n: store::NumberRecord) -> Self {
        NumberView {
            id: n.id,
            customer_id: n.account_id,
            number: n.number,
            call_flow_id: n.call_flow_id,
            name: n.name,
            tm_create: n.tm_create,
            tm_update: n.tm_update,
        }
    }
}

/// A number is `+` then 1 to 20 digits, or digits alone (what a SIP Request-URI user part carries).
fn check_number(number: &str) -> Result<(), ApiError> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::field(
            "number",
            "must be digits with an optional leading '+', e.g. +15550100",
        ));
    }
    Ok(())
}

/// `number`, `call_flow_id` and `name` of a body, checked; a field absent from an update keeps
/// the value in `current`.
async fn read_fields(
    state: &AppState,
    account: Uuid,
    body: &Bytes,
    current: Option<&store::NumberRecord>,
) -> Result<(String, Uuid, String), ApiError> {
    let body = Object::parse(body)?;
    let number = match (current, body.0.contains_key("number")) {
        (Some(n), false) => n.number.clone(),
        _ => body.string("number")?.trim().to_owned(),
    };
    check_number(&number)?;
    let call_flow_id = match (current, body.0.contains_key("call_flow_id")) {
        (Some(n), false) => n.call_flow_id,
        _ => body.uuid("call_flow_id")?,
    };
    if state.store.flow(account, call_flow_id).await?.is_none() {
        return Err(ApiError::field(
            "call_flow_id",
            "names no flow of this account",
        ));
    }
    let name = match (current, body.0.contains_key("name")) {
        (Some(n), false) => n.name.clone(),
        _ => body.opt_string("name")?,
    };
    Ok((number, call_flow_id, name))
}

/// The number `id` of `account` (404 for another account's).
async fn owned(state: &AppState, account: Uuid, id: &str) -> Result<store::NumberRecord, ApiError> {
    state
        .store
        .number(account, path_id(id)?)
        .await?
        .ok_or(ApiError::NotFound)
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(account): Auth,
    body: Bytes,
) -> Result<Json<NumberView>, ApiError> {
    let (number, call_flow_id, name) = read_fields(&state, account.id, &body, None).await?;
    let now = store::utc_now();
    let record = store::NumberRecord {
        id: Uuid::new_v4(),
        account_id: account.id,
        number,
        call_flow_id,
        name,
        tm_create: now.clone(),
        tm_update: now,
    };
    state.store.create_number(&record).await?;
    Ok(Json(record.into()))
}

/// `PUT /v1.0/numbers/{id}`: change the number, the flow it routes to, or its name (fields
/// left out keep their value).
pub(crate) async fn update(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<NumberView>, ApiError> {
    let mut record = owned(&state, account.id, &id).await?;
    let (number, call_flow_id, name) =
        read_fields(&state, account.id, &body, Some(&record)).await?;
    record.number = number;
    record.call_flow_id = call_flow_id;
    record.name = name;
    record.tm_update = store::utc_now();
    if !state.store.update_number(&record).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(record.into()))
}

/// `DELETE /v1.0/numbers/{id}`: inbound calls to it are refused from now on.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<NumberView>, ApiError> {
    let record = owned(&state, account.id, &id).await?;
    if !state.store.delete_number(account.id, record.id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(record.into()))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<NumberView>, ApiError> {
    let n = owned(&state, account.id, &id).await?;
    Ok(Json(n.into()))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(account): Auth,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<NumberView>>, ApiError> {
    let page = query.page()?;
    let numbers = state.store.list_numbers(account.id, &page).await?;
    let views = numbers.into_iter().map(NumberView::from).collect();
    Ok(Json(List::new(views, &page, |n: &NumberView| {
        (n.tm_create.clone(), n.id)
    })))
}
