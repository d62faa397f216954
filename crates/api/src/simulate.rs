//! `POST /v1.0/flows/{id}/simulate`: dry-run a stored flow offline in simulated time.
//!
//! The body is a simulation script ([`flow::Script`], all fields optional; an empty body means
//! the defaults) and the response is the [`flow::Report`]. No call is placed and nothing is
//! sent anywhere: HTTP replies, called parties and DTMF all come from the script. Flows that a
//! `fetch_flow` or `call` names by a literal id and the script does not give are taken from the
//! account's stored flows.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Auth;
use crate::json::path_id;
use crate::{ApiError, AppState};

/// Stored flows looked up for one simulation, at most.
const MAX_FLOW_LOOKUPS: usize = 20;

pub(crate) async fn simulate(
    State(state): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<flow::Report>, ApiError> {
    let record = state
        .store
        .flow(account.id, path_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut script = if body.iter().all(u8::is_ascii_whitespace) {
        flow::Script::default()
    } else {
        flow::Script::from_slice(&body).map_err(|e| ApiError::field(e.path, e.message))?
    };
    let program = flow::compile(&record.actions).map_err(stored_flow_invalid)?;
    for flow_id in referenced_flows(&record.actions) {
        if script.flows.contains_key(&flow_id) {
            continue;
        }
        let Ok(uuid) = Uuid::parse_str(&flow_id) else {
            continue;
        };
        if let Some(other) = state.store.flow(account.id, uuid).await?
            && let Value::Array(actions) = other.actions
        {
            script.flows.insert(flow_id, actions);
        }
    }
    let report = tokio::task::spawn_blocking(move || flow::simulate(Arc::new(program), &script))
        .await
        .map_err(|e| ApiError::Internal(format!("simulation task failed: {e}")))?;
    Ok(Json(report))
}

/// A stored flow that no longer compiles (validated by an older version): a 400 that lists
/// every problem with its path, as on create.
fn stored_flow_invalid(diagnostics: Vec<flow::Diagnostic>) -> ApiError {
    crate::flows::flow_errors("the stored flow does not compile", diagnostics)
}

/// The literal (not templated) flow ids the `fetch_flow` and `call` actions of `actions` name,
/// including those of inline `call` actions, in order, without repeats, at most
/// [`MAX_FLOW_LOOKUPS`].
fn referenced_flows(actions: &Value) -> Vec<String> {
    let mut found = BTreeMap::new();
    collect_flow_ids(actions, &mut found, 0);
    let mut ids: Vec<(usize, String)> = found.into_iter().map(|(id, order)| (order, id)).collect();
    ids.sort();
    ids.into_iter()
        .map(|(_, id)| id)
        .take(MAX_FLOW_LOOKUPS)
        .collect()
}

fn collect_flow_ids(actions: &Value, found: &mut BTreeMap<String, usize>, depth: usize) {
    let Some(items) = actions.as_array() else {
        return;
    };
    for action in items {
        let option = &action["option"];
        if let Some("fetch_flow" | "call") = action["type"].as_str() {
            if let Some(id) = option["flow_id"].as_str().filter(|id| !id.contains("${")) {
                let next = found.len();
                found.entry(id.to_owned()).or_insert(next);
            }
            if depth < 2 {
                collect_flow_ids(&option["actions"], found, depth + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn referenced_flows_are_literal_ids_in_order() {
        let actions = json!([
            {"type": "fetch_flow", "option": {"flow_id": "b"}},
            {"type": "fetch_flow", "option": {"flow_id": "${x}"}},
            {"type": "call", "option": {"flow_id": "a", "destinations": []}},
            {"type": "call", "option": {"actions": [{"type": "fetch_flow", "option": {"flow_id": "c"}}]}},
            {"type": "fetch_flow", "option": {"flow_id": "b"}},
            {"type": "talk", "option": {"flow_id": "no"}},
        ]);
        assert_eq!(referenced_flows(&actions), ["b", "a", "c"]);
        assert!(referenced_flows(&json!({})).is_empty());
    }
}
