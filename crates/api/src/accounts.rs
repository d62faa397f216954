//! `/v1.0/accounts` (tenants and their limits) and `/v1.0/tokens` (API tokens of the caller's
//! account).
//!
//! Administrators (the bootstrap token, and tokens they mark `admin`) create and list accounts
//! and set their limits; everyone else sees only their own account. A token's secret is shown
//! once, when it is made; the store keeps only its hash.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::json::{List, Object, PageQuery, path_id};
use crate::{ApiError, AppState};

/// An account as the API shows it.
#[derive(Serialize)]
pub(crate) struct AccountView {
    id: Uuid,
    name: String,
    max_concurrent_calls: Option<u32>,
    max_calls_per_second: Option<u32>,
    destination_prefixes: Vec<String>,
    tm_create: String,
    tm_update: String,
    /// The first API token of a new account (only in the answer to its creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<store::Account> for AccountView {
    fn from(a: store::Account) -> Self {
        AccountView {
            id: a.id,
            name: a.name,
            max_concurrent_calls: a.limits.max_concurrent_calls,
            max_calls_per_second: a.limits.max_calls_per_second,
            destination_prefixes: a.limits.destination_prefixes,
            tm_create: a.tm_create,
            tm_update: a.tm_update,
            token: None,
        }
    }
}

/// A token as the API shows it: never its secret, except in `token` right after creation.
#[derive(Serialize)]
pub(crate) struct TokenView {
    id: Uuid,
    customer_id: Uuid,
    name: String,
    /// The first characters of the secret.
    prefix: String,
    admin: bool,
    tm_create: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<store::TokenRecord> for TokenView {
    fn from(t: store::TokenRecord) -> Self {
        TokenView {
            id: t.id,
            customer_id: t.account_id,
            name: t.name,
            prefix: t.prefix,
            admin: t.admin,
            tm_create: t.tm_create,
            token: None,
        }
    }
}

/// A fresh secret: `vf_` then 128 random bits in hex.
fn new_secret() -> String {
    format!("vf_{}", Uuid::new_v4().simple())
}

/// A new token record for `account` and its secret.
fn new_token(account: Uuid, name: String, admin: bool) -> (store::TokenRecord, String) {
    let secret = new_secret();
    let record = store::TokenRecord {
        id: Uuid::new_v4(),
        account_id: account,
        name,
        token_hash: store::hash_token(&secret),
        prefix: store::token_prefix(&secret),
        admin,
        tm_create: store::utc_now(),
    };
    (record, secret)
}

/// Read the limit fields present in `body` onto `limits` (absent fields keep their value;
/// `null` clears a limit).
fn read_limits(body: &Object, limits: &mut store::AccountLimits) -> Result<(), ApiError> {
    for (key, slot) in [
        ("max_concurrent_calls", &mut limits.max_concurrent_calls),
        ("max_calls_per_second", &mut limits.max_calls_per_second),
    ] {
        match body.0.get(key) {
            None => {}
            Some(Value::Null) => *slot = None,
            Some(_) => *slot = body.opt_u32(key, None, 1..=1_000_000)?,
        }
    }
    if body.0.contains_key("destination_prefixes") {
        let prefixes = body.opt_strings("destination_prefixes")?;
        for (i, prefix) in prefixes.iter().enumerate() {
            let digits = prefix.strip_prefix('+').unwrap_or(prefix);
            if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(ApiError::field(
                    format!("destination_prefixes[{i}]"),
                    "must be digits with an optional leading '+', e.g. +1555",
                ));
            }
        }
        limits.destination_prefixes = prefixes;
    }
    Ok(())
}

/// `POST /v1.0/accounts` (administrators): a new account and its first token.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<AccountView>, ApiError> {
    caller.require_admin()?;
    let body = Object::parse(&body)?;
    let name = body.string("name")?;
    let mut limits = store::AccountLimits::default();
    read_limits(&body, &mut limits)?;
    let now = store::utc_now();
    let account = store::Account {
        id: Uuid::new_v4(),
        name,
        limits,
        tm_create: now.clone(),
        tm_update: now,
    };
    state.store.create_account(&account).await?;
    let (token, secret) = new_token(account.id, "first token".into(), false);
    state.store.create_token(&token).await?;
    let mut view = AccountView::from(account);
    view.token = Some(secret);
    Ok(Json(view))
}

/// `GET /v1.0/accounts`: every account for an administrator, else just the caller's.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<AccountView>>, ApiError> {
    let page = query.page()?;
    let accounts = if caller.token.admin {
        state.store.list_accounts(&page).await?
    } else if page.after.is_none() {
        vec![caller.account]
    } else {
        Vec::new()
    };
    let views = accounts.into_iter().map(AccountView::from).collect();
    Ok(Json(List::new(views, &page, |a: &AccountView| {
        (a.tm_create.clone(), a.id)
    })))
}

/// The account `id` if the caller may see it (its own, or any for an administrator).
async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<store::Account, ApiError> {
    let id = path_id(id)?;
    if id == caller.account.id {
        return Ok(caller.account.clone());
    }
    if !caller.token.admin {
        return Err(ApiError::NotFound);
    }
    state.store.account(id).await?.ok_or(ApiError::NotFound)
}

/// `GET /v1.0/accounts/{id}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(visible(&state, &caller, &id).await?.into()))
}

/// `PUT /v1.0/accounts/{id}` (administrators): name and limits.
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<AccountView>, ApiError> {
    let mut account = visible(&state, &caller, &id).await?;
    caller.require_admin()?;
    let body = Object::parse(&body)?;
    if body.0.contains_key("name") {
        account.name = body.string("name")?;
    }
    read_limits(&body, &mut account.limits)?;
    account.tm_update = store::utc_now();
    if !state.store.update_account(&account).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(account.into()))
}

/// `POST /v1.0/tokens`: a new token of the caller's account (`admin` only from an
/// administrator).
pub(crate) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<TokenView>, ApiError> {
    let body = if body.is_empty() {
        Object(serde_json::Map::new())
    } else {
        Object::parse(&body)?
    };
    let admin = body.opt_bool("admin", false)?;
    if admin {
        caller.require_admin()?;
    }
    let (token, secret) = new_token(caller.account.id, body.opt_string("name")?, admin);
    state.store.create_token(&token).await?;
    let mut view = TokenView::from(token);
    view.token = Some(secret);
    Ok(Json(view))
}

/// `GET /v1.0/tokens`.
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<TokenView>>, ApiError> {
    let page = query.page()?;
    let tokens = state.store.list_tokens(caller.account.id, &page).await?;
    let views = tokens.into_iter().map(TokenView::from).collect();
    Ok(Json(List::new(views, &page, |t: &TokenView| {
        (t.tm_create.clone(), t.id)
    })))
}

/// `DELETE /v1.0/tokens/{id}`: revoke at once (the next request with it is a 401).
pub(crate) async fn delete_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(&id)?;
    if !caller.token.admin {
        let page = store::Page {
            size: 1000,
            after: None,
        };
        let tokens = state.store.list_tokens(caller.account.id, &page).await?;
        if tokens.iter().any(|t| t.id == id && t.admin) {
            return Err(ApiError::Forbidden(
                "only an administrator may revoke an administrator's token".into(),
            ));
        }
    }
    if !state.store.delete_token(caller.account.id, id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(serde_json::json!({"id": id, "revoked": true})))
}
