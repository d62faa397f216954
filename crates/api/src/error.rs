//! The one error type of the API and its HTTP mapping.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One problem with a request body, located by its JSON path.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the bad field, e.g. `actions[3].option.target_ids["2"]`.
    pub path: String,
    /// What is wrong, in a sentence.
    pub message: String,
}

/// Everything a handler can fail with. Internals are logged, never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown API token.
    #[error("missing or invalid API token")]
    Unauthorized,
    /// The token is valid but may not do this (e.g. account administration without the admin
    /// role).
    #[error("{0}")]
    Forbidden(String),
    /// Not there — or not this account's, which looks the same from outside.
    #[error("not found")]
    NotFound,
    /// The path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request is malformed or invalid; `errors` locate each problem.
    #[error("{message}")]
    BadRequest {
        /// Summary.
        message: String,
        /// Each problem with its path.
        errors: Vec<FieldError>,
    },
    /// A uniqueness rule was broken.
    #[error("{0}")]
    Conflict(String),
    /// An account limit refused the request (concurrent calls, calls per second).
    #[error("{0}")]
    Limited(String),
    /// Something on our side failed.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 400 for one bad field.
    pub(crate) fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        let message = message.into();
        ApiError::BadRequest {
            message: format!("{path}: {message}"),
            errors: vec![FieldError { path, message }],
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(err: store::StoreError) -> Self {
        match err {
            store::StoreError::Conflict(what) => {
                ApiError::Conflict(format!("{what} already exists"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The one error body: `{"error": {"code", "message", "path"?, "details"?}}`.
#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
    /// The path of the (first) bad field, for a 400.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    /// Every bad field when there are several.
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    details: &'a [FieldError],
}

impl ApiError {
    /// HTTP status and the stable `code` of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Limited(_) => (StatusCode::TOO_MANY_REQUESTS, "limit_exceeded"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let errors: &[FieldError] = match &self {
            ApiError::BadRequest { errors, .. } => errors,
            _ => &[],
        };
        let body = Body {
            error: Detail {
                code,
                message: self.to_string(),
                path: errors.first().map(|e| e.path.as_str()),
                details: if errors.len() > 1 { errors } else { &[] },
            },
        };
        (status, Json(body)).into_response()
    }
}
