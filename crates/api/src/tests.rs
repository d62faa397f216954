//! In-process API tests: a real router on a real (in-memory) SQLite store and a real call
//! engine.

use std::sync::Arc;

use store::Store;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{AppState, router};

const TOKEN: &str = "test-token";

/// The API on a real store and a real call engine (SIP on a loopback port of its own).
async fn app() -> axum::Router {
    let store = Arc::new(store::SqliteStore::open("sqlite::memory:").await.unwrap());
    store
        .bootstrap(Some(TOKEN), &store::utc_now())
        .await
        .unwrap();
    let engine = runtime::Runtime::start(
        runtime::Config {
            rtp_ports: (43000, 43100),
            media_workers: 1,
            keepalive_interval: std::time::Duration::from_millis(200),
            ..runtime::Config::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir())
        },
        store.clone(),
    )
    .await
    .unwrap();
    router(AppState {
        store,
        engine: Arc::new(engine),
    })
}

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn ivr() -> Value {
    json!({
        "name": "ivr",
        "actions": [
            {"type": "answer"},
            {"type": "talk", "option": {"text": "press one"}},
            {"id": "menu", "type": "digits_receive", "option": {"duration": 5000, "length": 1}},
            {"type": "branch", "option": {"target_ids": {"1": "one"}, "default_target_id": "other"}},
            {"id": "one", "type": "talk", "option": {"text": "one"}, "next_id": "bye"},
            {"id": "other", "type": "talk", "option": {"text": "other"}},
            {"id": "bye", "type": "hangup"}
        ]
    })
}

#[tokio::test]
async fn api_requires_a_valid_token() {
    let app = app().await;
    let req = Request::builder()
        .uri("/v1.0/flows")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let req = Request::builder()
        .uri("/v1.0/flows")
        .header("authorization", "Bearer wrong")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let req = Request::builder()
        .uri(format!("/v1.0/flows?token={TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn api_flow_create_assigns_ids_and_reads_back() {
    let app = app().await;
    let (status, flow) = send(&app, "POST", "/v1.0/flows", Some(&ivr().to_string())).await;
    assert_eq!(status, StatusCode::OK, "{flow}");
    let actions = flow["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 7);
    assert!(
        actions
            .iter()
            .all(|a| a["id"].as_str().is_some_and(|id| !id.is_empty()))
    );
    assert_eq!(actions[2]["id"], "menu");
    let id = flow["id"].as_str().unwrap();
    let (status, again) = send(&app, "GET", &format!("/v1.0/flows/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, flow);
    let (status, list) = send(&app, "GET", "/v1.0/flows", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["result"][0]["id"], id);
}

#[tokio::test]
async fn api_flow_with_dangling_target_is_refused_with_its_path() {
    let app = app().await;
    let mut flow = ivr();
    flow["actions"][3]["option"]["target_ids"]["2"] = json!("nowhere");
    let (status, err) = send(&app, "POST", "/v1.0/flows", Some(&flow.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        err["errors"][0]["path"], "actions[3].option.target_ids[\"2\"]",
        "{err}"
    );
    assert!(
        err["message"].as_str().unwrap().contains("nowhere"),
        "{err}"
    );
}

#[tokio::test]
async fn api_flow_with_unknown_type_is_refused() {
    let app = app().await;
    let body = json!({"name": "x", "actions": [{"type": "answer"}, {"type": "dance"}]});
    let (status, err) = send(&app, "POST", "/v1.0/flows", Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["errors"][0]["path"], "actions[1].type", "{err}");
    assert!(err["message"].as_str().unwrap().contains("dance"), "{err}");
}

#[tokio::test]
async fn api_bad_json_is_a_400_not_a_panic() {
    let app = app().await;
    for body in ["{", "[]", "{\"actions\": 3}", "", "\u{0}"] {
        let (status, err) = send(&app, "POST", "/v1.0/flows", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(err["error"], "bad_request");
    }
}

#[tokio::test]
async fn api_numbers_bind_to_flows_of_the_account() {
    let app = app().await;
    let (_, flow) = send(&app, "POST", "/v1.0/flows", Some(&ivr().to_string())).await;
    let flow_id = flow["id"].as_str().unwrap();
    let body = json!({"number": "+15550100", "call_flow_id": flow_id}).to_string();
    let (status, number) = send(&app, "POST", "/v1.0/numbers", Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{number}");
    assert_eq!(number["number"], "+15550100");
    // The same digits without '+' are the same number.
    let dup = json!({"number": "15550100", "call_flow_id": flow_id}).to_string();
    assert_eq!(
        send(&app, "POST", "/v1.0/numbers", Some(&dup)).await.0,
        StatusCode::CONFLICT
    );
    let stranger = json!({"number": "+15550101", "call_flow_id": uuid::Uuid::new_v4()}).to_string();
    let (status, err) = send(&app, "POST", "/v1.0/numbers", Some(&stranger)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["errors"][0]["path"], "call_flow_id");
    let bad = json!({"number": "sales", "call_flow_id": flow_id}).to_string();
    let (status, err) = send(&app, "POST", "/v1.0/numbers", Some(&bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["errors"][0]["path"], "number");
}

#[tokio::test]
async fn api_unknown_ids_are_404() {
    let app = app().await;
    let id = uuid::Uuid::new_v4();
    assert_eq!(
        send(&app, "GET", &format!("/v1.0/calls/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, "GET", "/v1.0/calls/not-a-uuid", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, "GET", "/v1.0/nothing", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, list) = send(&app, "GET", "/v1.0/calls?page_size=0", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(list["errors"][0]["path"], "page_size");
}

#[tokio::test]
async fn api_trunks_validate_and_never_show_the_password() {
    let app = app().await;
    let body = json!({"name": "carrier", "host": "sip.example.net", "port": 5080, "transport": "udp",
        "username": "u", "password": "secret", "register": true, "allowed_ips": ["192.0.2.0/24", "2001:db8::1"]});
    let (status, trunk) = send(&app, "POST", "/v1.0/trunks", Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{trunk}");
    assert_eq!(trunk["password_set"], true);
    assert!(!trunk.to_string().contains("secret"));
    let id = trunk["id"].as_str().unwrap();
    assert_eq!(
        send(&app, "GET", &format!("/v1.0/trunks/{id}"), None)
            .await
            .0,
        StatusCode::OK
    );

    for (bad, path) in [
        (json!({"host": "sip example"}), "host"),
        (json!({"host": "h", "transport": "sctp"}), "transport"),
        (
            json!({"host": "h", "allowed_ips": ["10.0.0.0/33"]}),
            "allowed_ips[0]",
        ),
        (json!({"host": "h", "port": 70000}), "port"),
        (json!({"host": "h", "register": true}), "username"),
    ] {
        let (status, err) = send(&app, "POST", "/v1.0/trunks", Some(&bad.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(err["errors"][0]["path"], path, "{err}");
    }
    assert_eq!(
        send(&app, "DELETE", &format!("/v1.0/trunks/{id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, "DELETE", &format!("/v1.0/trunks/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn api_calls_refuse_bad_requests_with_paths() {
    let app = app().await;
    let ok_actions = json!([{"type": "answer"}, {"type": "hangup"}]);
    for (body, path) in [
        (
            json!({"destinations": [{"type": "sip", "target": "sip:a@127.0.0.1"}], "actions": ok_actions}),
            "source",
        ),
        (
            json!({"source": {"type": "tel", "target": "+1"}, "destinations": [], "actions": ok_actions}),
            "destinations",
        ),
        (
            json!({"source": {"type": "tel", "target": "+1"}, "destinations": [{"type": "fax", "target": "1"}],
            "actions": ok_actions}),
            "destinations[0].type",
        ),
        (
            json!({"source": {"type": "tel", "target": "+1"}, "destinations": [{"type": "tel"}],
            "actions": ok_actions}),
            "destinations[0].target",
        ),
        (
            json!({"source": {"type": "tel", "target": "+1"}, "destinations": [{"type": "sip", "target": "sip:a@127.0.0.1"}],
            "actions": [{"type": "goto", "option": {"target_id": "nowhere"}}]}),
            "actions[0].option.target_id",
        ),
        (
            json!({"source": {"type": "tel", "target": "+1"}, "destinations": [{"type": "sip", "target": "sip:a@127.0.0.1"}],
            "flow_id": uuid::Uuid::new_v4()}),
            "flow_id",
        ),
        // A tel destination with no trunk cannot be placed.
        (
            json!({"source": {"type": "tel", "target": "+1"}, "destinations": [{"type": "tel", "target": "+15550100"}],
            "actions": ok_actions}),
            "destinations[0]",
        ),
        (
            json!({"source": {"type": "tel", "target": "+1"}, "destinations": [{"type": "endpoint", "target": "nobody"}],
            "actions": ok_actions}),
            "destinations[0]",
        ),
    ] {
        let (status, err) = send(&app, "POST", "/v1.0/calls", Some(&body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["errors"][0]["path"], path, "{err}");
    }
    let id = uuid::Uuid::new_v4();
    assert_eq!(
        send(&app, "POST", &format!("/v1.0/calls/{id}/hangup"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn api_devices_keep_only_hashes_and_unique_usernames() {
    let app = app().await;
    let body = json!({"username": "alice", "password": "correct horse", "name": "Alice"});
    let (status, device) = send(&app, "POST", "/v1.0/devices", Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device["realm"], "voxflow");
    assert!(!device.to_string().contains("correct horse"));
    let id = device["id"].as_str().unwrap();
    let (status, one) = send(&app, "GET", &format!("/v1.0/devices/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["registrations"], json!([]));
    assert_eq!(
        send(&app, "POST", "/v1.0/devices", Some(&body.to_string()))
            .await
            .0,
        StatusCode::CONFLICT
    );
    for (bad, path) in [
        (
            json!({"username": "a b", "password": "longenough"}),
            "username",
        ),
        (json!({"username": "bob", "password": "short"}), "password"),
        (json!({"password": "longenough"}), "username"),
    ] {
        let (status, err) = send(&app, "POST", "/v1.0/devices", Some(&bad.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(err["errors"][0]["path"], path);
    }
    assert_eq!(
        send(&app, "DELETE", &format!("/v1.0/devices/{id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
}
