//! In-process API tests: a real router on a real (in-memory) SQLite store and a real call
//! engine.

use std::sync::Arc;

use store::Store;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{AppState, router};

pub(crate) const TOKEN: &str = "test-token";

/// The API on a real store and a real call engine (SIP on a loopback port of its own).
pub(crate) async fn app() -> axum::Router {
    app_and_store().await.0
}

/// [`app`], with its store for tests that plant records the API only reads.
async fn app_and_store() -> (axum::Router, Arc<store::SqliteStore>) {
    app_with(|_| {}).await
}

/// [`app_and_store`] with the engine's configuration adjusted by `tune`.
pub(crate) async fn app_with(
    tune: impl FnOnce(&mut runtime::Config),
) -> (axum::Router, Arc<store::SqliteStore>) {
    let (app, store, _) = app_with_engine(tune).await;
    (app, store)
}

/// [`app_with`], with the engine too (its event bus, for tests that wait on events).
pub(crate) async fn app_with_engine(
    tune: impl FnOnce(&mut runtime::Config),
) -> (axum::Router, Arc<store::SqliteStore>, Arc<runtime::Runtime>) {
    let store = Arc::new(store::SqliteStore::open("sqlite::memory:").await.unwrap());
    store
        .bootstrap(Some(TOKEN), &store::utc_now())
        .await
        .unwrap();
    let mut config = runtime::Config {
        rtp_ports: (43000, 43100),
        media_workers: 1,
        keepalive_interval: std::time::Duration::from_millis(200),
        ..runtime::Config::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir())
    };
    tune(&mut config);
    let engine = Arc::new(
        runtime::Runtime::start(config, store.clone())
            .await
            .unwrap(),
    );
    let app = router(AppState {
        store: store.clone(),
        engine: engine.clone(),
    });
    (app, store, engine)
}

pub(crate) async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    send_as(app, TOKEN, method, uri, body).await
}

/// [`send`] with another API token.
pub(crate) async fn send_as(
    app: &axum::Router,
    token: &str,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
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

pub(crate) fn ivr() -> Value {
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
        err["error"]["path"], "actions[3].option.target_ids[\"2\"]",
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nowhere"),
        "{err}"
    );
}

#[tokio::test]
async fn api_flow_with_unknown_type_is_refused() {
    let app = app().await;
    let body = json!({"name": "x", "actions": [{"type": "answer"}, {"type": "dance"}]});
    let (status, err) = send(&app, "POST", "/v1.0/flows", Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["path"], "actions[1].type", "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("dance"),
        "{err}"
    );
}

#[tokio::test]
async fn api_bad_json_is_a_400_not_a_panic() {
    let app = app().await;
    for body in ["{", "[]", "{\"actions\": 3}", "", "\u{0}"] {
        let (status, err) = send(&app, "POST", "/v1.0/flows", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(err["error"]["code"], "invalid_request");
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
    assert_eq!(err["error"]["path"], "call_flow_id");
    let bad = json!({"number": "sales", "call_flow_id": flow_id}).to_string();
    let (status, err) = send(&app, "POST", "/v1.0/numbers", Some(&bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["path"], "number");
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
    assert_eq!(list["error"]["path"], "page_size");
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
        assert_eq!(err["error"]["path"], path, "{err}");
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
        assert_eq!(err["error"]["path"], path, "{err}");
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
        assert_eq!(err["error"]["path"], path);
    }
    assert_eq!(
        send(&app, "DELETE", &format!("/v1.0/devices/{id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
}

/// A directory under the system temp dir, removed when dropped (also when a test fails).
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("voxflow-api-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("recordings")).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A 16-bit 8 kHz PCM WAV of `frames` frames of `channels` channels, each sample distinct.
fn wav(channels: u16, frames: u32) -> Vec<u8> {
    let data_len = frames * u32::from(channels) * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&(8000 * u32::from(channels) * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..frames * u32::from(channels) {
        out.extend_from_slice(&((i % 65_521) as u16).to_le_bytes());
    }
    out
}

/// A recording of `account` that has ended, its WAV written into `dir` when `bytes` is given.
fn ended_recording(
    account: uuid::Uuid,
    call: uuid::Uuid,
    tm_start: &str,
    dir: &Scratch,
    bytes: Option<&[u8]>,
) -> store::RecordingRecord {
    let id = uuid::Uuid::new_v4();
    let path = dir.0.join("recordings").join(format!("{id}.wav"));
    if let Some(bytes) = bytes {
        std::fs::write(&path, bytes).unwrap();
    }
    store::RecordingRecord {
        id,
        account_id: account,
        call_id: call,
        status: "ended".into(),
        format: "wav".into(),
        channels: 2,
        path: path.display().to_string(),
        duration_ms: 10_000,
        end_reason: "hangup".into(),
        tm_start: tm_start.into(),
        tm_end: Some("2026-11-21T11:00:00.000000Z".into()),
        tm_update: "2026-11-21T11:00:00.000000Z".into(),
    }
}

/// A GET with optional extra headers; the raw status, headers and body.
async fn fetch(
    app: &axum::Router,
    method: &str,
    uri: &str,
    range: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, axum::body::Bytes) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"));
    if let Some(range) = range {
        req = req.header("range", range);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap();
    (parts.status, parts.headers, bytes)
}

#[tokio::test]
async fn api_recordings_list_newest_first_filter_by_call_and_show_on_the_call() {
    let (app, store) = app_and_store().await;
    let account = store.first_account().await.unwrap().unwrap().id;
    let dir = Scratch::new();
    let call = store::CallRecord {
        id: uuid::Uuid::new_v4(),
        account_id: account,
        flow_id: None,
        direction: "incoming".into(),
        status: "hangup".into(),
        source_type: "tel".into(),
        source_target: "+15550001".into(),
        destination_type: "tel".into(),
        destination_target: "+15550100".into(),
        hangup_reason: "normal".into(),
        hangup_by: "remote".into(),
        sip_call_id: "abc@host".into(),
        tm_create: "2026-11-21T10:00:00.000000Z".into(),
        tm_ringing: None,
        tm_progressing: None,
        tm_hangup: None,
        tm_update: "2026-11-21T10:00:00.000000Z".into(),
    };
    store.insert_call(&call).await.unwrap();
    let first = ended_recording(account, call.id, "2026-11-21T10:00:01.000000Z", &dir, None);
    let other = ended_recording(
        account,
        uuid::Uuid::new_v4(),
        "2026-11-21T10:00:02.000000Z",
        &dir,
        None,
    );
    let second = ended_recording(account, call.id, "2026-11-21T10:00:03.000000Z", &dir, None);
    for r in [&first, &other, &second] {
        store.create_recording(r).await.unwrap();
    }
    let ids = |list: &Value| -> Vec<String> {
        list["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let (status, list) = send(&app, "GET", "/v1.0/recordings", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        ids(&list),
        [second.id, other.id, first.id].map(|id| id.to_string())
    );
    assert_eq!(list["next_page_token"], Value::Null);
    let one = &list["result"][2];
    assert_eq!(
        *one,
        json!({"id": first.id, "customer_id": account, "call_id": call.id, "status": "ended",
            "format": "wav", "channels": 2, "duration_ms": 10_000, "end_reason": "hangup",
            "tm_start": "2026-11-21T10:00:01.000000Z", "tm_end": "2026-11-21T11:00:00.000000Z",
            "tm_update": "2026-11-21T11:00:00.000000Z"})
    );
    let (status, got) = send(&app, "GET", &format!("/v1.0/recordings/{}", first.id), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, *one);

    // Pages of one, following the tokens, with and without the call filter.
    for (filter, expected) in [
        ("", vec![second.id, other.id, first.id]),
        (&*format!("&call_id={}", call.id), vec![second.id, first.id]),
    ] {
        let mut seen = Vec::new();
        let mut uri = format!("/v1.0/recordings?page_size=1{filter}");
        loop {
            let (status, page) = send(&app, "GET", &uri, None).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            seen.extend(ids(&page));
            match page["next_page_token"].as_str() {
                Some(token) => {
                    uri = format!("/v1.0/recordings?page_size=1{filter}&page_token={token}");
                }
                None => break,
            }
        }
        let expected: Vec<String> = expected.iter().map(ToString::to_string).collect();
        assert_eq!(seen, expected, "{filter}");
    }
    let (status, none) = send(
        &app,
        "GET",
        &format!("/v1.0/recordings?call_id={}", uuid::Uuid::new_v4()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(none["result"], json!([]));
    let (status, err) = send(&app, "GET", "/v1.0/recordings?call_id=nope", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["path"], "call_id");

    let (status, shown) = send(&app, "GET", &format!("/v1.0/calls/{}", call.id), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["recording_ids"], json!([first.id, second.id]));
}

#[tokio::test]
async fn api_recording_file_streams_exact_bytes_and_ranges() {
    let (app, store) = app_and_store().await;
    let account = store.first_account().await.unwrap().unwrap().id;
    let dir = Scratch::new();
    // Larger than one 64 KiB body chunk.
    let bytes = wav(2, 40_000);
    let len = bytes.len();
    let r = ended_recording(
        account,
        uuid::Uuid::new_v4(),
        "2026-11-21T10:00:00.000000Z",
        &dir,
        Some(&bytes),
    );
    store.create_recording(&r).await.unwrap();
    let uri = format!("/v1.0/recordings/{}/file", r.id);

    let (status, headers, body) = fetch(&app, "GET", &uri, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "audio/wav");
    assert_eq!(headers["content-length"], len.to_string().as_str());
    assert_eq!(
        headers["content-disposition"],
        format!("attachment; filename=\"{}.wav\"", r.id).as_str()
    );
    assert_eq!(headers["accept-ranges"], "bytes");
    assert!(body[..] == bytes[..], "the body differs from the file");

    let (status, headers, body) = fetch(&app, "GET", &uri, Some("bytes=0-43")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        headers["content-range"],
        format!("bytes 0-43/{len}").as_str()
    );
    assert_eq!(headers["content-length"], "44");
    assert_eq!(&body[..], &bytes[..44]);

    let (status, headers, body) = fetch(&app, "GET", &uri, Some("bytes=-70000")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        headers["content-range"],
        format!("bytes {}-{}/{len}", len - 70_000, len - 1).as_str()
    );
    assert!(body[..] == bytes[len - 70_000..]);

    let (status, headers, body) = fetch(&app, "GET", &uri, Some(&format!("bytes={len}-"))).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers["content-range"], format!("bytes */{len}").as_str());
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "range_not_satisfiable");

    // HEAD answers the headers without the body.
    let (status, headers, body) = fetch(&app, "HEAD", &uri, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], len.to_string().as_str());
    assert!(body.is_empty());
}

#[tokio::test]
async fn api_recording_in_progress_or_without_file_is_refused() {
    let (app, store) = app_and_store().await;
    let account = store.first_account().await.unwrap().unwrap().id;
    let dir = Scratch::new();
    let live = store::RecordingRecord {
        status: "recording".into(),
        duration_ms: 0,
        end_reason: String::new(),
        tm_end: None,
        ..ended_recording(
            account,
            uuid::Uuid::new_v4(),
            "2026-11-21T10:00:00.000000Z",
            &dir,
            Some(&wav(1, 100)),
        )
    };
    store.create_recording(&live).await.unwrap();
    let (status, err) = send(
        &app,
        "GET",
        &format!("/v1.0/recordings/{}/file", live.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["error"]["code"], "conflict");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in progress"),
        "{err}"
    );
    let (status, _) = send(
        &app,
        "DELETE",
        &format!("/v1.0/recordings/{}", live.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(std::path::Path::new(&live.path).exists());
    assert_eq!(
        send(&app, "GET", &format!("/v1.0/recordings/{}", live.id), None)
            .await
            .0,
        StatusCode::OK
    );

    let gone = ended_recording(
        account,
        uuid::Uuid::new_v4(),
        "2026-11-21T10:00:00.000000Z",
        &dir,
        None,
    );
    store.create_recording(&gone).await.unwrap();
    let (status, err) = send(
        &app,
        "GET",
        &format!("/v1.0/recordings/{}/file", gone.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "not_found");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("file is missing"),
        "{err}"
    );
    // Its record can still be deleted.
    assert_eq!(
        send(
            &app,
            "DELETE",
            &format!("/v1.0/recordings/{}", gone.id),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn api_recording_delete_removes_record_and_file() {
    let (app, store) = app_and_store().await;
    let account = store.first_account().await.unwrap().unwrap().id;
    let dir = Scratch::new();
    let r = ended_recording(
        account,
        uuid::Uuid::new_v4(),
        "2026-11-21T10:00:00.000000Z",
        &dir,
        Some(&wav(1, 800)),
    );
    store.create_recording(&r).await.unwrap();
    let uri = format!("/v1.0/recordings/{}", r.id);
    assert_eq!(
        send(&app, "DELETE", &uri, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(!std::path::Path::new(&r.path).exists());
    assert_eq!(send(&app, "GET", &uri, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&app, "GET", &format!("{uri}/file"), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, "DELETE", &uri, None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn api_recordings_of_another_account_are_not_found() {
    let (app, store) = app_and_store().await;
    let dir = Scratch::new();
    let theirs = ended_recording(
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        "2026-11-21T10:00:00.000000Z",
        &dir,
        Some(&wav(1, 800)),
    );
    store.create_recording(&theirs).await.unwrap();
    for (method, uri) in [
        ("GET", format!("/v1.0/recordings/{}", theirs.id)),
        ("GET", format!("/v1.0/recordings/{}/file", theirs.id)),
        ("DELETE", format!("/v1.0/recordings/{}", theirs.id)),
        ("GET", "/v1.0/recordings/not-a-uuid".to_owned()),
    ] {
        let (status, err) = send(&app, method, &uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(err["error"]["code"], "not_found");
    }
    assert!(std::path::Path::new(&theirs.path).exists());
    let (_, list) = send(&app, "GET", "/v1.0/recordings", None).await;
    assert_eq!(list["result"], json!([]));
    let (_, list) = send(
        &app,
        "GET",
        &format!("/v1.0/recordings?call_id={}", theirs.call_id),
        None,
    )
    .await;
    assert_eq!(list["result"], json!([]));
}

#[tokio::test]
async fn api_flow_simulate_runs_offline_and_reports_bad_script_fields() {
    let app = app().await;
    let (status, flow) = send(&app, "POST", "/v1.0/flows", Some(&ivr().to_string())).await;
    assert_eq!(status, StatusCode::OK, "{flow}");
    let uri = format!("/v1.0/flows/{}/simulate", flow["id"].as_str().unwrap());

    // No body: the defaults; nobody presses anything, so the menu times out to "other".
    let (status, report) = send(&app, "POST", &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["spoken"], json!(["press one", "other"]));
    assert_eq!(report["end_reason"], "hangup");
    // "press one": 9 * 60 + 300 ms of talk, 5000 ms of waiting, "other": 5 * 60 + 300 ms.
    assert_eq!(report["duration_ms"], 840 + 5000 + 600);

    // A scripted key at 2 s.
    let script = json!({"dtmf": [{"digits": "1", "at_ms": 2000}]});
    let (status, report) = send(&app, "POST", &uri, Some(&script.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let path: Vec<&str> = report["executed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        [
            "answer",
            "talk",
            "digits_receive",
            "branch",
            "talk",
            "hangup"
        ]
    );
    assert_eq!(report["executed"][4]["id"], "one");
    assert_eq!(report["executed"][4]["at_ms"], 2000);
    assert_eq!(report["spoken"], json!(["press one", "one"]));
    assert_eq!(report["hangup"]["reason"], "normal");

    // A typo or a bad value is a 400 naming the field.
    for (body, path) in [
        (json!({"dtfm": []}), "dtfm"),
        (
            json!({"dtmf": [{"digits": "1x", "at_ms": 0}]}),
            "dtmf[0].digits",
        ),
        (json!({"start_time": "noon"}), "start_time"),
        (json!([]), "$"),
    ] {
        let (status, err) = send(&app, "POST", &uri, Some(&body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err["error"]["path"], path, "{err}");
    }
    let (status, err) = send(&app, "POST", &uri, Some("{")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["path"], "$");

    // A fetch_flow of a stored flow of the account runs it.
    let inner =
        json!({"name": "inner", "actions": [{"type": "talk", "option": {"text": "from inner"}}]});
    let (_, inner) = send(&app, "POST", "/v1.0/flows", Some(&inner.to_string())).await;
    let outer = json!({"name": "outer", "actions": [
        {"type": "fetch_flow", "option": {"flow_id": inner["id"]}},
        {"type": "talk", "option": {"text": "back"}}
    ]});
    let (_, outer) = send(&app, "POST", "/v1.0/flows", Some(&outer.to_string())).await;
    let outer_uri = format!("/v1.0/flows/{}/simulate", outer["id"].as_str().unwrap());
    let (status, report) = send(&app, "POST", &outer_uri, Some("{}")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["spoken"], json!(["from inner", "back"]));
    assert_eq!(report["executed"][1]["stack"], 1);

    // Unknown flows (and malformed ids) are 404.
    let missing = format!("/v1.0/flows/{}/simulate", uuid::Uuid::new_v4());
    assert_eq!(
        send(&app, "POST", &missing, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, "POST", "/v1.0/flows/nope/simulate", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn metrics_and_healthz_answer_without_a_token() {
    let app = app().await;
    let get = |uri: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let ctype = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, ctype, String::from_utf8(bytes.to_vec()).unwrap())
        }
    };

    let (status, ctype, text) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    for line in [
        "# TYPE voxflow_calls_total counter",
        "voxflow_calls_active{direction=\"incoming\"} 0",
        "voxflow_calls_total{direction=\"outgoing\",result=\"busy\"} 0",
        "voxflow_rtp_packets_sent_total 0",
        "voxflow_webhook_deliveries_total{outcome=\"failed\"} 0",
        "voxflow_flow_runs_total{end_reason=\"completed\"} 0",
        "voxflow_media_workers_alive 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }

    let (status, ctype, text) = get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let health: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["checks"]["store"], "ok");
    assert_eq!(health["checks"]["media_workers"], 1);
    let sip: std::net::SocketAddr = health["checks"]["sip"].as_str().unwrap().parse().unwrap();
    assert!(sip.ip().is_loopback() && sip.port() != 0, "{sip}");

    // The token is not needed, and the old /health is still plain "ok".
    let (status, _, text) = get("/health").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "ok"));
}
