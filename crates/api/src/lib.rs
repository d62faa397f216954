//! voxflow HTTP API.
//!
//! Owns the native `/v1.0` surface (shaped like VoIPBIN's): routers per resource, the bearer/`?token=`
//! auth extractor, and one [`ApiError`] type mapped to HTTP status and a JSON body in one place.
//! It holds no call state: records come from the [`store::Store`], live calls from the runtime.
//!
//! Drive it with [`router`] and serve it on any listener (tests bind port 0).
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod accounts;
mod activeflows;
mod auth;
mod calls;
mod devices;
mod error;
mod flows;
mod json;
mod numbers;
mod openapi;
mod ops;
mod recordings;
mod simulate;
mod trunks;
mod webhooks;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The platform's store.
    pub store: Arc<dyn store::Store>,
    /// The call engine (places and hangs up calls).
    pub engine: Arc<runtime::Runtime>,
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(ops::metrics))
        .route("/v1.0/openapi.json", get(openapi::json))
        .route("/v1.0/docs", get(openapi::docs))
        .route("/healthz", get(ops::healthz))
        .route("/v1.0/accounts", get(accounts::list).post(accounts::create))
        .route(
            "/v1.0/accounts/{id}",
            get(accounts::get).put(accounts::update),
        )
        .route(
            "/v1.0/tokens",
            get(accounts::list_tokens).post(accounts::create_token),
        )
        .route(
            "/v1.0/tokens/{id}",
            axum::routing::delete(accounts::delete_token),
        )
        .route("/v1.0/flows", get(flows::list).post(flows::create))
        .route(
            "/v1.0/flows/{id}",
            get(flows::get).put(flows::update).delete(flows::delete),
        )
        .route("/v1.0/flows/{id}/simulate", post(simulate::simulate))
        .route("/v1.0/numbers", get(numbers::list).post(numbers::create))
        .route(
            "/v1.0/numbers/{id}",
            get(numbers::get)
                .put(numbers::update)
                .delete(numbers::delete),
        )
        .route("/v1.0/devices", get(devices::list).post(devices::create))
        .route(
            "/v1.0/devices/{id}",
            get(devices::get).delete(devices::delete),
        )
        .route("/v1.0/trunks", get(trunks::list).post(trunks::create))
        .route("/v1.0/trunks/{id}", get(trunks::get).delete(trunks::delete))
        .route("/v1.0/calls", get(calls::list).post(calls::create))
        .route("/v1.0/calls/{id}", get(calls::get))
        .route("/v1.0/calls/{id}/hangup", post(calls::hangup))
        .route("/v1.0/calls/{id}/actions", post(calls::inject))
        .route("/v1.0/activeflows", get(activeflows::list))
        .route("/v1.0/activeflows/{id}", get(activeflows::get))
        .route("/v1.0/activeflows/{id}/stop", post(activeflows::stop))
        .route(
            "/v1.0/activeflows/{id}/continue",
            post(activeflows::continue_),
        )
        .route("/v1.0/recordings", get(recordings::list))
        .route(
            "/v1.0/recordings/{id}",
            get(recordings::get).delete(recordings::delete),
        )
        .route("/v1.0/recordings/{id}/file", get(recordings::file))
        .route("/v1.0/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1.0/webhooks/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1.0/webhooks/{id}/resume", post(webhooks::resume))
        .route("/v1.0/webhooks/{id}/test", post(webhooks::test))
        .route("/v1.0/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/v1.0/webhooks/{id}/deliveries/{delivery_id}",
            get(webhooks::delivery),
        )
        .route(
            "/v1.0/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(webhooks::retry),
        )
        .route("/v1.0/ws", get(ws::upgrade))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

#[cfg(test)]
mod platform_tests;
#[cfg(test)]
mod tests;
