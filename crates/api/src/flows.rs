//! `/v1.0/flows`: create (validated), list, get.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Auth;
use crate::error::FieldError;
use crate::json::{List, Object, PageQuery, path_id};
use crate::{ApiError, AppState};

/// A flow as the API shows it.
#[derive(Serialize)]
pub(crate) struct FlowView {
    id: Uuid,
    customer_id: Uuid,
    name: String,
    detail: String,
    actions: Value,
    on_complete_flow_id: Option<Uuid>,
    tm_create: String,
    tm_update: String,
}

impl From<store::FlowRecord> for FlowView {
    fn from(f: store::FlowRecord) -> Self {
        FlowView {
            id: f.id,
            customer_id: f.account_id,
            name: f.name,
            detail: f.detail,
            actions: f.actions,
            on_complete_flow_id: f.on_complete_flow_id,
            tm_create: f.tm_create,
            tm_update: f.tm_update,
        }
    }
}

/// Assign ids to actions that have none, then compile; the errors of `compile` become a 400 that
/// lists every problem with its path.
pub(crate) fn validated_actions(actions: Option<Value>) -> Result<Value, ApiError> {
    let mut actions = match actions {
        Some(v @ Value::Array(_)) => v,
        Some(_) => return Err(ApiError::field("actions", "must be an array of actions")),
        None => return Err(ApiError::field("actions", "is required")),
    };
    flow::assign_ids(&mut actions, || Uuid::new_v4().to_string());
    if let Err(diagnostics) = flow::compile(&actions) {
        return Err(flow_errors("invalid flow", diagnostics));
    }
    Ok(actions)
}

/// The errors among `diagnostics` as a 400 that lists every problem with its path; the message
/// starts with `what` and names the first.
pub(crate) fn flow_errors(what: &str, diagnostics: Vec<flow::Diagnostic>) -> ApiError {
    let errors: Vec<FieldError> = diagnostics
        .into_iter()
        .filter(|d| d.severity == flow::Severity::Error)
        .map(|d| FieldError {
            path: d.path,
            message: d.message,
        })
        .collect();
    let message = match errors.first() {
        Some(first) if errors.len() == 1 => format!("{what}: {}: {}", first.path, first.message),
        Some(first) => format!(
            "{what}: {}: {} (and {} more)",
            first.path,
            first.message,
            errors.len() - 1
        ),
        None => what.to_owned(),
    };
    ApiError::BadRequest { message, errors }
}

/// The settable fields of a flow, read and checked from a request body.
struct FlowFields {
    name: String,
    detail: String,
    actions: Value,
    on_complete_flow_id: Option<Uuid>,
}

async fn read_fields(
    state: &AppState,
    account: Uuid,
    mut body: Object,
    id: Option<Uuid>,
) -> Result<FlowFields, ApiError> {
    let name = body.opt_string("name")?;
    let detail = body.opt_string("detail")?;
    let actions = validated_actions(body.take("actions"))?;
    let on_complete_flow_id = match body.opt_string("on_complete_flow_id")?.as_str() {
        "" | "00000000-0000-0000-0000-000000000000" => None,
        text => {
            let next = Uuid::parse_str(text)
                .map_err(|_| ApiError::field("on_complete_flow_id", "must be a UUID"))?;
            if Some(next) == id {
                return Err(ApiError::field(
                    "on_complete_flow_id",
                    "a flow cannot name itself to run on completion",
                ));
            }
            if state.store.flow(account, next).await?.is_none() {
                return Err(ApiError::field(
                    "on_complete_flow_id",
                    "no flow of this account has this id",
                ));
            }
            Some(next)
        }
    };
    Ok(FlowFields {
        name,
        detail,
        actions,
        on_complete_flow_id,
    })
}

/// The flow `id` of `account` (404 for another account's: it does not exist for this one).
async fn owned(state: &AppState, account: Uuid, id: &str) -> Result<store::FlowRecord, ApiError> {
    state
        .store
        .flow(account, path_id(id)?)
        .await?
        .ok_or(ApiError::NotFound)
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(account): Auth,
    body: Bytes,
) -> Result<Json<FlowView>, ApiError> {
    let fields = read_fields(&state, account.id, Object::parse(&body)?, None).await?;
    let now = store::utc_now();
    let record = store::FlowRecord {
        id: Uuid::new_v4(),
        account_id: account.id,
        name: fields.name,
        detail: fields.detail,
        actions: fields.actions,
        on_complete_flow_id: fields.on_complete_flow_id,
        tm_create: now.clone(),
        tm_update: now,
    };
    state.store.create_flow(&record).await?;
    Ok(Json(record.into()))
}

/// `PUT /v1.0/flows/{id}`: replace the actions and on_complete_flow_id (validated as on create),
/// and name and detail when given. Calls already running keep the version they started with.
pub(crate) async fn update(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<FlowView>, ApiError> {
    let mut flow = owned(&state, account.id, &id).await?;
    let body = Object::parse(&body)?;
    // name and detail left out keep their value; actions are always given in full.
    let (has_name, has_detail) = (body.0.contains_key("name"), body.0.contains_key("detail"));
    let fields = read_fields(&state, account.id, body, Some(flow.id)).await?;
    if has_name {
        flow.name = fields.name;
    }
    if has_detail {
        flow.detail = fields.detail;
    }
    flow.actions = fields.actions;
    flow.on_complete_flow_id = fields.on_complete_flow_id;
    flow.tm_update = store::utc_now();
    if !state.store.update_flow(&flow).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(flow.into()))
}

/// `DELETE /v1.0/flows/{id}`: answers the flow as it was. Calls running it go on.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<FlowView>, ApiError> {
    let flow = owned(&state, account.id, &id).await?;
    if !state.store.delete_flow(account.id, flow.id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(flow.into()))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<FlowView>, ApiError> {
    let flow = owned(&state, account.id, &id).await?;
    Ok(Json(flow.into()))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(account): Auth,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<FlowView>>, ApiError> {
    let page = query.page()?;
    let flows = state.store.list_flows(account.id, &page).await?;
    let views = flows.into_iter().map(FlowView::from).collect();
    Ok(Json(List::new(views, &page, |f: &FlowView| {
        (f.tm_create.clone(), f.id)
    })))
}
