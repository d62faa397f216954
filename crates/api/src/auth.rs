//! Bearer-token authentication: `Authorization: Bearer <token>` or `?token=<token>`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::{ApiError, AppState};

/// The authenticated account of a request.
pub(crate) struct Auth(pub(crate) store::Account);

/// The authenticated account and the token it used (for account and token administration).
pub(crate) struct Caller {
    /// The token's account.
    pub(crate) account: store::Account,
    /// The token (its role decides what may be administered).
    pub(crate) token: store::TokenRecord,
}

impl Caller {
    /// Refuse unless the token is an administrator's.
    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        if self.token.admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this needs an administrator's token".into(),
            ))
        }
    }
}

fn token_of(parts: &Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut words = value.split_whitespace();
        if let (Some(scheme), Some(token)) = (words.next(), words.next())
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.to_owned());
        }
    }
    parts.uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "token").then(|| percent_decode(value))
    })
}

/// Decode `%XX` escapes and `+` in a query value; malformed escapes are kept as they are.
pub(crate) fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b),
            },
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = token_of(parts).ok_or(ApiError::Unauthorized)?;
        let (account, token) = state
            .store
            .authenticate(&secret)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Caller { account, token })
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        Ok(Auth(caller.account))
    }
}
