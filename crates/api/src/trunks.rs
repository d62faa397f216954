//! `/v1.0/trunks`: SIP trunks to carriers and PBXs.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Auth;
use crate::json::{List, Object, PageQuery, path_id};
use crate::{ApiError, AppState};

/// A trunk as the API shows it (never its password).
#[derive(Serialize)]
pub(crate) struct TrunkView {
    id: Uuid,
    customer_id: Uuid,
    name: String,
    host: String,
    port: Option<u16>,
    transport: String,
    username: String,
    password_set: bool,
    register: bool,
    register_expires: u32,
    caller_id: String,
    allowed_ips: Vec<String>,
    /// Where the outbound registration stands (trunks with `register: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    registration: Option<RegistrationView>,
    tm_create: String,
    tm_update: String,
}

/// A trunk's registration state.
#[derive(Serialize)]
pub(crate) struct RegistrationView {
    /// `registering`, `registered` or `failed`.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl TrunkView {
    fn new(t: store::TrunkRecord, engine: &runtime::Runtime) -> Self {
        let registration = engine.trunk_registration(t.id).map(|r| match r {
            runtime::TrunkRegistration::Registering => RegistrationView {
                state: "registering",
                expires: None,
                reason: None,
            },
            runtime::TrunkRegistration::Registered { expires } => RegistrationView {
                state: "registered",
                expires: Some(expires),
                reason: None,
            },
            runtime::TrunkRegistration::Failed { reason } => RegistrationView {
                state: "failed",
                expires: None,
                reason: Some(reason),
            },
        });
        TrunkView {
            registration,
            ..TrunkView::from(t)
        }
    }
}

impl From<store::TrunkRecord> for TrunkView {
    fn from(t: store::TrunkRecord) -> Self {
        TrunkView {
            registration: None,
            id: t.id,
            customer_id: t.account_id,
            name: t.name,
            host: t.host,
            port: t.port,
            transport: t.transport,
            username: t.username,
            password_set: !t.password.is_empty(),
            register: t.register,
            register_expires: t.register_expires,
            caller_id: t.caller_id,
            allowed_ips: t.allowed_ips,
            tm_create: t.tm_create,
            tm_update: t.tm_update,
        }
    }
}

/// A host name or IP literal: letters, digits, dots, dashes, and the brackets/colons of IPv6.
fn check_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(account): Auth,
    body: Bytes,
) -> Result<Json<TrunkView>, ApiError> {
    let body = Object::parse(&body)?;
    let host = body.string("host")?.trim().to_owned();
    if !check_host(&host) {
        return Err(ApiError::field(
            "host",
            "must be a host name or an IP address",
        ));
    }
    let port = body.opt_u32("port", None, 1..=65535)?.map(|p| p as u16);
    let transport = match body.opt_string("transport")?.to_ascii_lowercase().as_str() {
        "" | "udp" => "udp".to_owned(),
        "tcp" => "tcp".to_owned(),
        _ => return Err(ApiError::field("transport", "must be \"udp\" or \"tcp\"")),
    };
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
    let register = body.opt_bool("register", false)?;
    let username = body.opt_string("username")?;
    if register && username.is_empty() {
        return Err(ApiError::field(
            "username",
            "is required when register is true",
        ));
    }
    let now = store::utc_now();
    let record = store::TrunkRecord {
        id: Uuid::new_v4(),
        account_id: account.id,
        name: body.opt_string("name")?,
        host,
        port,
        transport,
        username,
        password: body.opt_string("password")?,
        register,
        register_expires: body
            .opt_u32("register_expires", Some(600), 60..=86_400)?
            .unwrap_or(600),
        caller_id: body.opt_string("caller_id")?,
        allowed_ips,
        tm_create: now.clone(),
        tm_update: now,
    };
    state.store.create_trunk(&record).await?;
    Ok(Json(record.into()))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<Json<TrunkView>, ApiError> {
    let t = state
        .store
        .trunk(account.id, path_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(TrunkView::new(t, &state.engine)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_trunk(account.id, path_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(account): Auth,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<TrunkView>>, ApiError> {
    let page = query.page()?;
    let trunks = state.store.list_trunks(account.id, &page).await?;
    let views = trunks
        .into_iter()
        .map(|t| TrunkView::new(t, &state.engine))
        .collect();
    Ok(Json(List::new(views, &page, |t: &TrunkView| {
        (t.tm_create.clone(), t.id)
    })))
}
