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
    /// Not there — or not this account's, which looks the same from outside.
    #[error("not found")]
    NotFound,
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

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let errors: &[FieldError] = match &self {
            ApiError::BadRequest { errors, .. } => errors,
            _ => &[],
        };
        let body = Body {
            error: code,
            message: self.to_string(),
            errors,
        };
        (status, Json(body)).into_response()
    }
}
