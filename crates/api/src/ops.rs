//! Operations endpoints: `GET /metrics` (Prometheus text format) and `GET /healthz`.
//!
//! Neither needs the API token, so that a scraper or a load balancer can reach them; they say
//! nothing about any account's calls, but they belong on an internal network: do not expose
//! them publicly (see `docs/operations.md`).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: every runtime counter and gauge.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.engine.metrics_text(),
    )
        .into_response()
}

/// `GET /healthz`: 200 with `"status": "ok"` when the store answers, every media worker ticks
/// and SIP runs; 503 with `"degraded"` otherwise. `checks` says which part is failing.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let health = state.engine.health().await;
    let ok = health.is_ok();
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "checks": {
            "store": match &health.store {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.clone(),
            },
            "media_workers": health.media_workers_alive,
            "media_workers_started": health.media_workers,
            "sip": health.sip.map_or_else(|| "down".to_owned(), |addr| addr.to_string()),
        },
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
