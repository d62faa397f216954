//! Reading request bodies field by field, so every error names the path of the bad field, and the
//! list envelope shared by every collection.

use axum::body::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ApiError;

/// A JSON object body.
pub(crate) struct Object(pub(crate) Map<String, Value>);

impl Object {
    /// Parse a request body that must be a JSON object.
    pub(crate) fn parse(body: &Bytes) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::field("$", format!("the body is not valid JSON ({e})")))?;
        match value {
            Value::Object(map) => Ok(Object(map)),
            _ => Err(ApiError::field("$", "the body must be a JSON object")),
        }
    }

    /// A required string field.
    pub(crate) fn string(&self, key: &str) -> Result<String, ApiError> {
        match self.0.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(ApiError::field(key, "must not be empty")),
            Some(_) => Err(ApiError::field(key, "must be a string")),
            None => Err(ApiError::field(key, "is required")),
        }
    }

    /// An optional string field ("" when absent).
    pub(crate) fn opt_string(&self, key: &str) -> Result<String, ApiError> {
        match self.0.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Null) | None => Ok(String::new()),
            Some(_) => Err(ApiError::field(key, "must be a string")),
        }
    }

    /// A required UUID field.
    pub(crate) fn uuid(&self, key: &str) -> Result<Uuid, ApiError> {
        let text = self.string(key)?;
        Uuid::parse_str(&text).map_err(|_| ApiError::field(key, "must be a UUID"))
    }

    /// An optional boolean field.
    pub(crate) fn opt_bool(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.0.get(key) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Null) | None => Ok(default),
            Some(_) => Err(ApiError::field(key, "must be true or false")),
        }
    }

    /// An optional whole number within `range`.
    pub(crate) fn opt_u32(
        &self,
        key: &str,
        default: Option<u32>,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<Option<u32>, ApiError> {
        match self.0.get(key) {
            Some(Value::Null) | None => Ok(default),
            Some(Value::Number(n)) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::field(
                    key,
                    format!(
                        "must be a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )),
            },
            Some(_) => Err(ApiError::field(key, "must be a number")),
        }
    }

    /// An optional array of strings (empty when absent).
    pub(crate) fn opt_strings(&self, key: &str) -> Result<Vec<String>, ApiError> {
        match self.0.get(key) {
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(ApiError::field(format!("{key}[{i}]"), "must be a string")),
                })
                .collect(),
            Some(_) => Err(ApiError::field(key, "must be an array of strings")),
        }
    }

    /// Take a field out of the object.
    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key)
    }
}

/// `?page_size=&page_token=` of a list request.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct PageQuery {
    page_size: Option<String>,
    page_token: Option<String>,
}

impl PageQuery {
    /// The store page the query asks for.
    pub(crate) fn page(&self) -> Result<store::Page, ApiError> {
        let size = match self.page_size.as_deref() {
            None | Some("") => 100,
            Some(s) => match s.parse::<u32>() {
                Ok(n @ 1..=1000) => n,
                _ => {
                    return Err(ApiError::field(
                        "page_size",
                        "must be a number from 1 to 1000",
                    ));
                }
            },
        };
        let after = match self.page_token.as_deref() {
            None | Some("") => None,
            Some(token) => {
                let (tm, id) = token
                    .split_once('|')
                    .filter(|(_, id)| Uuid::parse_str(id).is_ok())
                    .ok_or_else(|| {
                        ApiError::field("page_token", "is not a token this API issued")
                    })?;
                Some((tm.to_owned(), id.to_owned()))
            }
        };
        Ok(store::Page { size, after })
    }
}

/// A page of results: `{"result": [...], "next_page_token": "..."}`.
#[derive(Serialize)]
pub(crate) struct List<T> {
    result: Vec<T>,
    next_page_token: Option<String>,
}

impl<T> List<T> {
    /// Wrap a page; `key` gives each item's `(tm_create, id)` for the next token.
    pub(crate) fn new(
        result: Vec<T>,
        page: &store::Page,
        key: impl Fn(&T) -> (String, Uuid),
    ) -> Self {
        let next_page_token = match result.last() {
            Some(last) if result.len() == page.size as usize => {
                let (tm, id) = key(last);
                Some(format!("{tm}|{id}"))
            }
            _ => None,
        };
        List {
            result,
            next_page_token,
        }
    }
}

/// Parse an id from the path; a malformed id is simply not found.
pub(crate) fn path_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound)
}
