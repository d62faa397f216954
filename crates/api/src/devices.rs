//! `/v1.0/devices`: SIP devices (registrar users) with digest credentials.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Auth;
use crate::json::{List, Object, PageQuery, path_id};
use crate::{ApiError, AppState};

/// One registered Contact of a device.
#[derive(Serialize)]
pub(crate) struct RegistrationView {
    contact: String,
    expires_at: i64,
    source: String,
    tm_update: String,
}

/// A device as the API shows it (never its credentials).
#[derive(Serialize)]
pub(crate) struct DeviceView {
    id: Uuid,
    customer_id: Uuid,
    username: String,
    realm: String,
    name: String,
    allowed_ips: Vec<String>,
    password_set: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    registrations: Option<Vec<RegistrationView>>,
    tm_create: String,
    tm_update: String,
}

impl DeviceView {
    fn new(d: store::DeviceRecord, registrations: Option<Vec<store::RegistrationRecord>>) -> Self {
        DeviceView {
            id: d.id,
            customer_id: d.account_id,
            username: d.username,
            realm: d.realm,
            name: d.name,
            allowed_ips: d.allowed_ips,
            password_set: !d.ha1_md5.is_empty(),
            registrations: registrations.map(|rs| {
                rs.into_iter()
                    .map(|r| RegistrationView {
                        contact: r.contact,
                        expires_at: r.expires_at,
                        source: r.source,
                        tm_update: r.tm_update,
                    })
                    .collect()
            }),
            tm_create: d.tm_create,
            tm_update: d.tm_update,
        }
    }
}

/// A SIP user part we accept as a username: letters, digits and `. _ - +`, 1 to 64 long.
fn check_username(username: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::field(
            "username",
            "must be 1 to 64 letters, digits, '.', '_', '-' or '+'",
        ))
    }
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(account): Auth,
    body: Bytes,
) -> Result<Json<DeviceView>, ApiError> {
    let body = Object::parse(&body)?;
    let username = body.string("username")?;
    check_username(&username)?;
    let allowed_ips = body.opt_strings("allowed_ips")?;
    if let Some(i) = allowed_ips
        .iter()
        .position(|ip| runtime::parse_cidr(ip).is_none())
    {
        return Err(ApiError::field(
            format!("allowed_ips[{i}]"),
            "must be an IP address or a CIDR block",
        ));
    }
    // A device authenticates by digest, by address, or both; one of them is needed.
    let password = if allowed_ips.is_empty() {
        body.string("password")?
    } else {
        body.opt_string("password")?
    };
    if !password.is_empty() && !(8..=128).contains(&password.len()) {
        return Err(ApiError::field("password", "must be 8 to 128 characters"));
    }
    let realm = state.engine.realm().to_owned();
    let (ha1_md5, ha1_sha256) = if password.is_empty() {
        // No password: the device is trusted by address only; digest refuses an empty HA1.
        (String::new(), String::new())
    } else {
        runtime::device_ha1(&username, &realm, &password)
    };
    let now = store::utc_now();
    let record = store::DeviceRecord {
        id: Uuid::new_v4(),
        account_id: account.id,
        username,
        realm,
        ha1_md5,
        ha1_sha256,
        name: body.opt_string("name")?,
        allowed_ips,
        tm_create: now.clone(),
        tm_update: now,
    };
    state.store.create_device(&record).await?;
    Ok(Json(DeviceView::new(record, None)))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let device = state
        .store
        .device(account.id, path_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    let registrations = state.store.registrations(device.id).await?;
    Ok(Json(DeviceView::new(device, Some(registrations))))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_device(account.id, path_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(account): Auth,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<DeviceView>>, ApiError> {
    let page = query.page()?;
    let devices = state.store.list_devices(account.id, &page).await?;
    let views = devices
        .into_iter()
        .map(|d| DeviceView::new(d, None))
        .collect();
    Ok(Json(List::new(views, &page, |d: &DeviceView| {
        (d.tm_create.clone(), d.id)
    })))
}
