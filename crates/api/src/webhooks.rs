//! `/v1.0/webhooks`: account-level event targets, and their delivery log.
//!
//! Deliveries are made by the runtime (`runtime::webhooks`): signed, retried with backoff, held
//! (never dropped) while a failing target is paused by the circuit breaker.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Auth;
use crate::json::{List, Object, PageQuery, path_id};
use crate::{ApiError, AppState};
use runtime::events::{Event, EventType};

/// A webhook as the API shows it. The secret is shown only in the answer to its creation (and to
/// an update that sets a new one).
#[derive(Serialize)]
pub(crate) struct WebhookView {
    id: Uuid,
    customer_id: Uuid,
    name: String,
    uri: String,
    method: String,
    event_types: Vec<String>,
    /// `active`, or `paused` while the circuit breaker holds deliveries back.
    status: String,
    consecutive_failures: u32,
    paused_until: Option<String>,
    last_error: String,
    tm_create: String,
    tm_update: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<store::WebhookRecord> for WebhookView {
    fn from(w: store::WebhookRecord) -> Self {
        WebhookView {
            id: w.id,
            customer_id: w.account_id,
            name: w.name,
            uri: w.uri,
            method: w.method,
            event_types: w.event_types,
            status: w.status,
            consecutive_failures: w.consecutive_failures,
            paused_until: w.paused_until,
            last_error: w.last_error,
            tm_create: w.tm_create,
            tm_update: w.tm_update,
            secret: None,
        }
    }
}

/// One delivery (outbox row) with its attempt log.
#[derive(Serialize)]
pub(crate) struct DeliveryView {
    id: Uuid,
    webhook_id: Uuid,
    event_id: Uuid,
    event_type: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    attempts: u32,
    /// When the next attempt is due (pending only).
    next_attempt_at: Option<String>,
    last_status: Option<u16>,
    last_error: String,
    attempt_log: Value,
    /// The event exactly as sent.
    payload: Value,
    tm_create: String,
    tm_update: String,
    tm_delivered: Option<String>,
}

impl From<store::DeliveryRecord> for DeliveryView {
    fn from(d: store::DeliveryRecord) -> Self {
        let pending = d.status == store::DeliveryRecord::PENDING;
        DeliveryView {
            id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: pending.then(|| unix_ms_text(d.next_attempt_at)),
            last_status: d.last_status,
            last_error: d.last_error,
            attempt_log: d.attempt_log,
            payload: serde_json::from_str(&d.payload).unwrap_or(Value::String(d.payload)),
            tm_create: d.tm_create,
            tm_update: d.tm_update,
            tm_delivered: d.tm_delivered,
        }
    }
}

fn unix_ms_text(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    store::format_utc(at)
}

/// The settable fields of a webhook.
struct Fields {
    name: String,
    uri: String,
    method: String,
    secret: Option<String>,
    event_types: Vec<String>,
}

/// Read and check a body; for an update, absent fields keep `current`'s values.
fn read_fields(
    state: &AppState,
    body: &Bytes,
    current: Option<&store::WebhookRecord>,
) -> Result<Fields, ApiError> {
    let body = Object::parse(body)?;
    let has = |key: &str| current.is_none() || body.0.contains_key(key);
    let uri = if has("uri") {
        let uri = body.string("uri")?.trim().to_owned();
        state
            .engine
            .check_outbound_url(&uri)
            .map_err(|why| ApiError::field("uri", why))?;
        uri
    } else {
        current.map(|w| w.uri.clone()).unwrap_or_default()
    };
    let method = match (body.0.get("method"), current) {
        (None | Some(Value::Null), Some(w)) => w.method.clone(),
        (None | Some(Value::Null), None) => "POST".into(),
        (Some(Value::String(m)), _) if m.eq_ignore_ascii_case("POST") => "POST".into(),
        (Some(Value::String(m)), _) if m.eq_ignore_ascii_case("PUT") => "PUT".into(),
        _ => return Err(ApiError::field("method", "must be POST or PUT")),
    };
    let secret = match body.0.get("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() >= 16 && s.len() <= 256 => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(ApiError::field(
                "secret",
                "must be 16 to 256 characters long",
            ));
        }
        Some(_) => return Err(ApiError::field("secret", "must be a string")),
    };
    let event_types = if has("event_types") {
        if !body.0.contains_key("event_types") {
            return Err(ApiError::field(
                "event_types",
                "is required: a list of event types, or [\"*\"] for all",
            ));
        }
        let types = body.opt_strings("event_types")?;
        if types.is_empty() {
            return Err(ApiError::field(
                "event_types",
                "must name at least one event type, or \"*\" for all",
            ));
        }
        for (i, name) in types.iter().enumerate() {
            if name != "*" && EventType::parse(name).is_none() {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                return Err(ApiError::field(
                    format!("event_types[{i}]"),
                    format!(
                        "unknown event type {name:?}; known: *, {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        types
    } else {
        current.map(|w| w.event_types.clone()).unwrap_or_default()
    };
    let name = if has("name") {
        body.opt_string("name")?
    } else {
        current.map(|w| w.name.clone()).unwrap_or_default()
    };
    Ok(Fields {
        name,
        uri,
        method,
        secret,
        event_types,
    })
}

/// A fresh signing secret.
fn new_secret() -> String {
    format!(
        "whsec_{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    )
}

async fn owned(
    state: &AppState,
    account: Uuid,
    id: &str,
) -> Result<store::WebhookRecord, ApiError> {
    state
        .store
        .webhook(account, path_id(id)?)
        .await?
        .ok_or(ApiError::NotFound)
}

/// `POST /v1.0/webhooks`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(account): Auth,
    body: Bytes,
) -> Result<Json<WebhookView>, ApiError> {
    let fields = read_fields(&state, &body, None)?;
    let secret = fields.secret.unwrap_or_else(new_secret);
    let now = store::utc_now();
    let record = store::WebhookRecord {
        id: Uuid::new_v4(),
        account_id: account.id,
        name: fields.name,
        uri: fields.uri,
        method: fields.method,
        secret: secret.clone(),
        event_types: fields.event_types,
        status: store::WebhookRecord::ACTIVE.into(),
        consecutive_failures: 0,
        paused_until: None,
        last_error: String::new(),
        tm_create: now.clone(),
        tm_update: now,
    };
    state.store.create_webhook(&record).await?;
    let mut view = WebhookView::from(record);
    view.secret = Some(secret);
    Ok(Json(view))
}

/// `GET /v1.0/webhooks`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(account): Auth,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<WebhookView>>, ApiError> {
    let page = query.page()?;
    let hooks = state.store.list_webhooks(account.id, &page).await?;
    let views = hooks.into_iter().map(WebhookView::from).collect();
    Ok(Json(List::new(views, &page, |w: &WebhookView| {
        (w.tm_create.clone(), w.id)
    })))
}

/// `GET /v1.0/webhooks/{id}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    Ok(Json(owned(&state, account.id, &id).await?.into()))
}

/// `PUT /v1.0/webhooks/{id}`: change any of uri, method, secret, event_types, name.
pub(crate) async fn update(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<WebhookView>, ApiError> {
    let mut record = owned(&state, account.id, &id).await?;
    let fields = read_fields(&state, &body, Some(&record))?;
    let new_secret = fields.secret.clone();
    record.name = fields.name;
    record.uri = fields.uri;
    record.method = fields.method;
    record.event_types = fields.event_types;
    if let Some(secret) = fields.secret {
        record.secret = secret;
    }
    record.tm_update = store::utc_now();
    if !state.store.update_webhook_settings(&record).await? {
        return Err(ApiError::NotFound);
    }
    state.engine.webhooks_changed();
    // The breaker state as it is now (the dispatcher may have changed it meanwhile).
    let record = state
        .store
        .webhook(account.id, record.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut view = WebhookView::from(record);
    view.secret = new_secret;
    Ok(Json(view))
}

/// `DELETE /v1.0/webhooks/{id}`: its pending deliveries go with it; the log of the others stays.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let record = owned(&state, account.id, &id).await?;
    if !state.store.delete_webhook(account.id, record.id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(record.into()))
}

/// `POST /v1.0/webhooks/{id}/resume`: end a pause now and send what it held back.
pub(crate) async fn resume(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let mut record = owned(&state, account.id, &id).await?;
    record.status = store::WebhookRecord::ACTIVE.into();
    record.consecutive_failures = 0;
    record.paused_until = None;
    record.tm_update = store::utc_now();
    if !state.store.update_webhook_breaker(&record).await? {
        return Err(ApiError::NotFound);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    state
        .store
        .retry_deliveries_now(record.id, i64::try_from(now).unwrap_or(i64::MAX))
        .await?;
    state.engine.webhooks_changed();
    Ok(Json(record.into()))
}

/// `POST /v1.0/webhooks/{id}/test`: deliver a `ping` event to this webhook alone.
pub(crate) async fn test(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = owned(&state, account.id, &id).await?;
    let event = Event::new(
        EventType::Ping,
        account.id,
        serde_json::json!({"webhook_id": record.id.to_string()}),
    );
    let event_id = event.id;
    state.engine.events().publish(event);
    Ok(Json(serde_json::json!({"event_id": event_id})))
}

/// `GET /v1.0/webhooks/{id}/deliveries`: newest first.
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<DeliveryView>>, ApiError> {
    let record = owned(&state, account.id, &id).await?;
    let page = query.page()?;
    let rows = state
        .store
        .list_deliveries(account.id, Some(record.id), &page)
        .await?;
    let views = rows.into_iter().map(DeliveryView::from).collect();
    Ok(Json(List::new(views, &page, |d: &DeliveryView| {
        (d.tm_create.clone(), d.id)
    })))
}

/// The delivery `delivery` of webhook `id`.
async fn owned_delivery(
    state: &AppState,
    account: Uuid,
    id: &str,
    delivery: &str,
) -> Result<store::DeliveryRecord, ApiError> {
    let webhook = path_id(id)?;
    state
        .store
        .delivery(account, path_id(delivery)?)
        .await?
        .filter(|d| d.webhook_id == webhook)
        .ok_or(ApiError::NotFound)
}

/// `GET /v1.0/webhooks/{id}/deliveries/{delivery_id}`.
pub(crate) async fn delivery(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Json<DeliveryView>, ApiError> {
    Ok(Json(
        owned_delivery(&state, account.id, &id, &delivery)
            .await?
            .into(),
    ))
}

/// `POST /v1.0/webhooks/{id}/deliveries/{delivery_id}/retry`: send a failed delivery again now.
/// A pending one is already on its way (409, with when); a delivered one is done (409).
pub(crate) async fn retry(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Json<DeliveryView>, ApiError> {
    let record = owned_delivery(&state, account.id, &id, &delivery).await?;
    if record.status != store::DeliveryRecord::FAILED {
        return Err(not_retriable(&record));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    // One conditional write on `failed`: nothing else writes a failed delivery, so no attempt
    // result can overwrite the retry, and two retries at once make one.
    let retried = state
        .store
        .retry_delivery(
            account.id,
            record.id,
            i64::try_from(now).unwrap_or(i64::MAX),
            &store::utc_now(),
        )
        .await?;
    let record = owned_delivery(&state, account.id, &id, &delivery).await?;
    if !retried {
        return Err(not_retriable(&record));
    }
    state.engine.webhooks_changed();
    Ok(Json(record.into()))
}

fn not_retriable(record: &store::DeliveryRecord) -> ApiError {
    ApiError::Conflict(if record.status == store::DeliveryRecord::DELIVERED {
        "the delivery was already delivered".into()
    } else {
        format!(
            "the delivery is {}: its next attempt is already due at {} (unix ms)",
            record.status, record.next_attempt_at
        )
    })
}
