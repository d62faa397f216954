//! Accounts, tokens, flow and number CRUD, and account webhooks delivered to a real local HTTP
//! server: signatures, retries, the circuit breaker and the delivery log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::tests::{TOKEN, app, app_with, app_with_engine, ivr, send, send_as};

/// Make an account as the administrator; returns (account id, its token).
async fn new_account(app: &axum::Router, name: &str) -> (String, String) {
    let (status, account) = send(
        app,
        "POST",
        "/v1.0/accounts",
        Some(&json!({"name": name}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    let token = account["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("vf_"), "{account}");
    (account["id"].as_str().unwrap().to_owned(), token)
}

async fn create_flow(app: &axum::Router, token: &str) -> String {
    let (status, flow) = send_as(app, token, "POST", "/v1.0/flows", Some(&ivr().to_string())).await;
    assert_eq!(status, StatusCode::OK, "{flow}");
    flow["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn accounts_are_isolated_and_only_administrators_make_them() {
    let app = app().await;
    let (other_id, other) = new_account(&app, "acme").await;
    let mine = create_flow(&app, TOKEN).await;
    let theirs = create_flow(&app, &other).await;

    // Each sees its own, and the other's is simply not there: 404 on read, change and delete.
    for (token, foreign) in [(TOKEN, &theirs), (other.as_str(), &mine)] {
        let uri = format!("/v1.0/flows/{foreign}");
        for method in ["GET", "DELETE"] {
            let (status, err) = send_as(&app, token, method, &uri, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {err}");
            assert_eq!(err["error"]["code"], "not_found");
        }
        let (status, _) = send_as(&app, token, "PUT", &uri, Some(&ivr().to_string())).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, list) = send_as(&app, token, "GET", "/v1.0/flows", None).await;
        assert_eq!(list["result"].as_array().unwrap().len(), 1, "{list}");
    }

    // A number bound by one account cannot be bound by another, nor to another's flow.
    let body = json!({"number": "+15550100", "call_flow_id": mine}).to_string();
    assert_eq!(
        send(&app, "POST", "/v1.0/numbers", Some(&body)).await.0,
        StatusCode::OK
    );
    let (status, _) = send_as(&app, &other, "POST", "/v1.0/numbers", Some(&body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "their flow is not mine");
    let body = json!({"number": "+15550100", "call_flow_id": theirs}).to_string();
    let (status, err) = send_as(&app, &other, "POST", "/v1.0/numbers", Some(&body)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");

    // Account administration.
    let (status, err) = send_as(
        &app,
        &other,
        "POST",
        "/v1.0/accounts",
        Some(r#"{"name":"x"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    let (_, list) = send_as(&app, &other, "GET", "/v1.0/accounts", None).await;
    let ids: Vec<&str> = list["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [other_id.as_str()]);
    let (_, list) = send(&app, "GET", "/v1.0/accounts", None).await;
    assert_eq!(list["result"].as_array().unwrap().len(), 2, "{list}");
    let (_, me) = send(&app, "GET", "/v1.0/accounts", None).await;
    let admin_id = me["result"][1]["id"].as_str().unwrap().to_owned();
    let (status, _) = send_as(
        &app,
        &other,
        "GET",
        &format!("/v1.0/accounts/{admin_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Limits: set by the administrator, validated with paths.
    let uri = format!("/v1.0/accounts/{other_id}");
    let (status, err) = send(
        &app,
        "PUT",
        &uri,
        Some(r#"{"destination_prefixes":["+1", "x"]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["path"], "destination_prefixes[1]");
    let limits = json!({"max_concurrent_calls": 2, "max_calls_per_second": 1, "destination_prefixes": ["+1555"]});
    let (status, account) = send(&app, "PUT", &uri, Some(&limits.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["max_concurrent_calls"], 2);
    let (status, _) = send_as(
        &app,
        &other,
        "PUT",
        &uri,
        Some(r#"{"max_concurrent_calls": 100}"#),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an account cannot raise its own limits"
    );
    let (_, account) = send_as(&app, &other, "GET", &uri, None).await;
    assert_eq!(account["destination_prefixes"], json!(["+1555"]));
    assert!(
        account.get("token").is_none(),
        "the token is shown only once"
    );
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_revoked_at_once() {
    let app = app().await;
    let (status, made) = send(&app, "POST", "/v1.0/tokens", Some(r#"{"name":"ci"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let secret = made["token"].as_str().unwrap().to_owned();
    assert_eq!(made["admin"], false);
    assert_eq!(made["prefix"], secret[..7]);

    let (status, list) = send_as(&app, &secret, "GET", "/v1.0/tokens", None).await;
    assert_eq!(status, StatusCode::OK);
    let tokens = list["result"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{list}");
    assert!(tokens.iter().all(|t| t.get("token").is_none()), "{list}");
    assert!(!list.to_string().contains(&secret));

    // A plain token cannot mint an administrator's.
    let (status, _) = send_as(
        &app,
        &secret,
        "POST",
        "/v1.0/tokens",
        Some(r#"{"admin":true}"#),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Nor revoke one.
    let bootstrap = tokens.iter().find(|t| t["admin"] == true).unwrap()["id"].clone();
    let uri_admin = format!("/v1.0/tokens/{}", bootstrap.as_str().unwrap());
    let (status, _) = send_as(&app, &secret, "DELETE", &uri_admin, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let uri = format!("/v1.0/tokens/{}", made["id"].as_str().unwrap());
    let (status, _) = send(&app, "DELETE", &uri, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = send_as(&app, &secret, "GET", "/v1.0/flows", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"]["code"], "unauthorized");
    assert_eq!(
        send(&app, "DELETE", &uri, None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn flows_and_numbers_update_and_delete() {
    let app = app().await;
    let flow = create_flow(&app, TOKEN).await;
    let other = create_flow(&app, TOKEN).await;
    let uri = format!("/v1.0/flows/{flow}");

    let changed = json!({"name": "renamed", "actions": [{"type": "answer"}, {"type": "hangup"}]});
    let (status, updated) = send(&app, "PUT", &uri, Some(&changed.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["actions"].as_array().unwrap().len(), 2);
    assert_ne!(updated["tm_update"], updated["tm_create"]);
    let bad = json!({"actions": [{"type": "goto", "option": {"target_id": "nowhere"}}]});
    let (status, err) = send(&app, "PUT", &uri, Some(&bad.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["path"], "actions[0].option.target_id", "{err}");
    let (_, still) = send(&app, "GET", &uri, None).await;
    assert_eq!(still["name"], "renamed", "a refused update changes nothing");

    let body = json!({"number": "+15550123", "call_flow_id": flow, "name": "main"}).to_string();
    let (_, number) = send(&app, "POST", "/v1.0/numbers", Some(&body)).await;
    let number_uri = format!("/v1.0/numbers/{}", number["id"].as_str().unwrap());
    let (status, moved) = send(
        &app,
        "PUT",
        &number_uri,
        Some(&json!({"call_flow_id": other}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["call_flow_id"], other.as_str());
    assert_eq!(moved["name"], "main", "fields left out keep their value");
    let (status, err) = send(&app, "PUT", &number_uri, Some(r#"{"number":"12x"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["path"], "number");

    assert_eq!(
        send(&app, "DELETE", &number_uri, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, "GET", &number_uri, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(send(&app, "DELETE", &uri, None).await.0, StatusCode::OK);
    assert_eq!(send(&app, "GET", &uri, None).await.0, StatusCode::NOT_FOUND);

    // Wrong method on a known path: 405 in the one error shape.
    let (status, err) = send(&app, "PATCH", &uri, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(err["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn webhooks_validate_with_paths_and_hide_the_secret() {
    let app = app().await;
    let cases = [
        (json!({"event_types": ["*"]}), "uri"),
        (json!({"uri": "ftp://x/", "event_types": ["*"]}), "uri"),
        (json!({"uri": "https://hooks.example.com/x"}), "event_types"),
        (
            json!({"uri": "https://hooks.example.com/x", "event_types": []}),
            "event_types",
        ),
        (
            json!({"uri": "https://hooks.example.com/x", "event_types": ["call_hangup", "call_exploded"]}),
            "event_types[1]",
        ),
        (
            json!({"uri": "https://hooks.example.com/x", "event_types": ["*"], "method": "GET"}),
            "method",
        ),
        (
            json!({"uri": "https://hooks.example.com/x", "event_types": ["*"], "secret": "short"}),
            "secret",
        ),
    ];
    for (body, path) in cases {
        let (status, err) = send(&app, "POST", "/v1.0/webhooks", Some(&body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err["error"]["path"], path, "{body} -> {err}");
    }
    // The default engine refuses private targets (the SSRF guard).
    let body = json!({"uri": "http://127.0.0.1:9/", "event_types": ["*"]});
    let (status, err) = send(&app, "POST", "/v1.0/webhooks", Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow-private-urls"),
        "{err}"
    );

    let body = json!({"uri": "https://hooks.example.com/x", "event_types": ["call_hangup"]});
    let (status, made) = send(&app, "POST", "/v1.0/webhooks", Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let secret = made["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{made}");
    assert_eq!(made["status"], "active");
    let uri = format!("/v1.0/webhooks/{}", made["id"].as_str().unwrap());
    let (_, read) = send(&app, "GET", &uri, None).await;
    assert!(read.get("secret").is_none(), "{read}");
    let (_, list) = send(&app, "GET", "/v1.0/webhooks", None).await;
    assert!(!list.to_string().contains(secret));
    let (status, updated) = send(&app, "PUT", &uri, Some(r#"{"event_types":["*"]}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["event_types"], json!(["*"]));
    assert_eq!(updated["uri"], "https://hooks.example.com/x");
}

/// A local webhook target: answers each request with the status in `status`, and reports every
/// request it got (headers, body).
async fn target(status: Arc<AtomicU16>) -> (String, mpsc::UnboundedReceiver<(HeaderMap, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            let status = Arc::clone(&status);
            async move {
                let _ = tx.send((headers, body));
                StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

async fn next_request(
    rx: &mut mpsc::UnboundedReceiver<(HeaderMap, String)>,
) -> (HeaderMap, String) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the webhook target got no request in 10 s")
        .unwrap()
}

/// Read `uri` until `done` holds of the answer, reading again after each webhook attempt is
/// recorded (the dispatcher writes its log right after the response the target sent); bounded.
async fn read_until(
    app: &axum::Router,
    runtime: &runtime::Runtime,
    uri: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut recorded = runtime.watch_webhook_attempts();
    let read = async {
        loop {
            recorded.borrow_and_update();
            let (_, value) = send(app, "GET", uri, None).await;
            if done(&value) {
                return value;
            }
            recorded.changed().await.expect("the dispatcher runs");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("{uri} never reached the expected state in 10 s"))
}

fn fast_webhooks(config: &mut runtime::Config) {
    config.allow_private_urls = true;
    config.webhooks.first_retry = Duration::from_millis(50);
    config.webhooks.max_retry_delay = Duration::from_millis(200);
    config.webhooks.breaker_failures = 3;
    config.webhooks.breaker_pause = Duration::from_millis(300);
}

fn verify(headers: &HeaderMap, body: &str, secret: &str) {
    let header = headers["x-voxflow-signature"].to_str().unwrap();
    let (t, v1) = header.split_once(',').unwrap();
    let t: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let expected =
        runtime::webhooks::hmac_sha256(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    let expected: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v1, expected, "signature of {body}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - t).abs() < 60, "timestamp {t} is now");
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_logged() {
    let (app, _, runtime) = app_with_engine(fast_webhooks).await;
    let status = Arc::new(AtomicU16::new(503));
    let (uri, mut rx) = target(Arc::clone(&status)).await;
    let body = json!({"uri": uri, "event_types": ["*"], "secret": "0123456789abcdef-secret"});
    let (_, hook) = send(&app, "POST", "/v1.0/webhooks", Some(&body.to_string())).await;
    let hook_uri = format!("/v1.0/webhooks/{}", hook["id"].as_str().unwrap());

    let (status_code, test) = send(&app, "POST", &format!("{hook_uri}/test"), None).await;
    assert_eq!(status_code, StatusCode::OK, "{test}");
    let (headers, first) = next_request(&mut rx).await;
    verify(&headers, &first, "0123456789abcdef-secret");
    let event: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(event["type"], "ping");
    assert_eq!(event["id"], test["event_id"]);
    assert_eq!(headers["x-voxflow-event"], "ping");
    assert_eq!(headers["x-voxflow-attempt"], "1");

    // The target fails once more, then accepts: the same event, the same body, a fresh signature.
    let (headers, second) = next_request(&mut rx).await;
    assert_eq!(second, first);
    assert_eq!(headers["x-voxflow-attempt"], "2");
    status.store(204, Ordering::SeqCst);
    let (headers, third) = next_request(&mut rx).await;
    assert_eq!(third, first);
    verify(&headers, &third, "0123456789abcdef-secret");

    let deliveries = format!("{hook_uri}/deliveries");
    let log = read_until(&app, &runtime, &deliveries, |v| {
        v["result"][0]["status"] == "delivered"
    })
    .await;
    let delivery = &log["result"][0];
    assert_eq!(delivery["attempts"], 3, "{delivery}");
    let attempts = delivery["attempt_log"].as_array().unwrap();
    let statuses: Vec<&Value> = attempts.iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [&json!(503), &json!(503), &json!(204)]);
    assert_eq!(delivery["payload"]["type"], "ping");
    let one = format!("{deliveries}/{}", delivery["id"].as_str().unwrap());
    assert_eq!(send(&app, "GET", &one, None).await.1["status"], "delivered");
    // A delivered one is not sent again.
    let (status_code, _) = send(&app, "POST", &format!("{one}/retry"), None).await;
    assert_eq!(status_code, StatusCode::CONFLICT);

    // A 4xx fails at once; a manual retry sends it again, its first attempt kept in the log.
    status.store(400, Ordering::SeqCst);
    let (_, test) = send(&app, "POST", &format!("{hook_uri}/test"), None).await;
    next_request(&mut rx).await;
    let failed_log = read_until(&app, &runtime, &deliveries, |v| {
        v["result"][0]["event_id"] == test["event_id"] && v["result"][0]["status"] == "failed"
    })
    .await;
    let failed = format!(
        "{deliveries}/{}",
        failed_log["result"][0]["id"].as_str().unwrap()
    );
    status.store(204, Ordering::SeqCst);
    let (status_code, retried) = send(&app, "POST", &format!("{failed}/retry"), None).await;
    assert_eq!(status_code, StatusCode::OK, "{retried}");
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["attempts"], 1, "{retried}");
    next_request(&mut rx).await;
    let done = read_until(&app, &runtime, &deliveries, |v| {
        v["result"][0]["status"] == "delivered"
    })
    .await;
    let statuses: Vec<&Value> = done["result"][0]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(400), &json!(204)]);
    // Another account cannot read it.
    let (_, other) = new_account(&app, "other").await;
    assert_eq!(
        send_as(&app, &other, "GET", &one, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send_as(&app, &other, "GET", &deliveries, None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn webhooks_breaker_pauses_a_failing_target_and_loses_nothing() {
    let (app, _, runtime) = app_with_engine(fast_webhooks).await;
    let status = Arc::new(AtomicU16::new(500));
    let (uri, mut rx) = target(Arc::clone(&status)).await;
    let body = json!({"uri": uri, "event_types": ["ping", "call_hangup"]});
    let (_, hook) = send(&app, "POST", "/v1.0/webhooks", Some(&body.to_string())).await;
    let hook_uri = format!("/v1.0/webhooks/{}", hook["id"].as_str().unwrap());
    // A second hook on the same account, listening for pauses.
    let (watch_uri, mut watch) = target(Arc::new(AtomicU16::new(200))).await;
    let body = json!({"uri": watch_uri, "event_types": ["webhook_paused", "webhook_resumed"]});
    send(&app, "POST", "/v1.0/webhooks", Some(&body.to_string())).await;

    for _ in 0..3 {
        send(&app, "POST", &format!("{hook_uri}/test"), None).await;
    }
    // Three failures in a row trip the breaker; the other hook is told.
    let (_, paused) = next_request(&mut watch).await;
    let paused: Value = serde_json::from_str(&paused).unwrap();
    assert_eq!(paused["type"], "webhook_paused", "{paused}");
    assert_eq!(paused["data"]["status"], "paused");
    let (_, read) = send(&app, "GET", &hook_uri, None).await;
    assert_eq!(read["status"], "paused", "{read}");
    assert_eq!(read["last_error"], "HTTP 500");
    // Changing its settings does not undo the pause.
    let (_, renamed) = send(&app, "PUT", &hook_uri, Some(r#"{"name":"renamed"}"#)).await;
    assert_eq!(
        (&renamed["name"], &renamed["status"]),
        (&json!("renamed"), &json!("paused")),
        "{renamed}"
    );
    let (_, read) = send(&app, "GET", &hook_uri, None).await;
    assert_eq!(read["status"], "paused", "{read}");

    // A held delivery is pending, not failed: a manual retry is refused (it is queued).
    let (_, held) = send(&app, "GET", &format!("{hook_uri}/deliveries"), None).await;
    let held = held["result"][0]["id"].as_str().unwrap().to_owned();
    let retry = format!("{hook_uri}/deliveries/{held}/retry");
    let (status_code, refused) = send(&app, "POST", &retry, None).await;
    assert_eq!(status_code, StatusCode::CONFLICT, "{refused}");

    // The target recovers: after the pause a probe gets through, and everything held is sent.
    status.store(200, Ordering::SeqCst);
    let (_, resumed) = next_request(&mut watch).await;
    let resumed: Value = serde_json::from_str(&resumed).unwrap();
    assert_eq!(resumed["type"], "webhook_resumed", "{resumed}");
    let deliveries = format!("{hook_uri}/deliveries");
    let log = read_until(&app, &runtime, &deliveries, |v| {
        v["result"]
            .as_array()
            .is_some_and(|all| all.len() == 3 && all.iter().all(|d| d["status"] == "delivered"))
    })
    .await;
    assert_eq!(log["result"].as_array().unwrap().len(), 3);
    let (_, read) = send(&app, "GET", &hook_uri, None).await;
    assert_eq!(read["status"], "active");
    assert_eq!(read["consecutive_failures"], 0);
    // Every event reached the target at least once while it was failing, and once after.
    let mut seen = 0;
    while rx.try_recv().is_ok() {
        seen += 1;
    }
    assert!(seen >= 6, "{seen} requests");
}

mod websocket {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::*;

    type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("{addr}")
    }

    async fn next_json(socket: &mut Socket) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("no message in 10 s")
                .unwrap()
                .unwrap();
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    async fn request(socket: &mut Socket, value: Value) -> Value {
        socket
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
        next_json(socket).await
    }

    #[tokio::test]
    async fn ws_streams_subscribed_events_of_the_account_only() {
        let (app, _) = app_with(fast_webhooks).await;
        let addr = serve(app.clone()).await;
        let (_, other) = new_account(&app, "other").await;

        let (status, _) = send_as(&app, "wrong", "GET", "/v1.0/ws", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let (mut mine, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/v1.0/ws?token={TOKEN}"))
                .await
                .unwrap();
        let (mut theirs, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/v1.0/ws?token={other}"))
                .await
                .unwrap();
        let r = request(
            &mut mine,
            json!({"type": "subscribe", "topics": ["account"]}),
        )
        .await;
        assert_eq!(r, json!({"type": "subscribed", "topics": ["account"]}));
        let r = request(
            &mut theirs,
            json!({"type": "subscribe", "topics": ["account"]}),
        )
        .await;
        assert_eq!(r["type"], "subscribed");
        let r = request(&mut mine, json!({"type": "subscribe", "topics": ["nope"]})).await;
        assert_eq!(r["error"]["path"], "topics[0]", "{r}");
        assert_eq!(
            request(&mut mine, json!({"type": "ping"})).await["type"],
            "pong"
        );

        // An event of my account: a webhook test ping.
        let (uri, _rx) = target(Arc::new(AtomicU16::new(200))).await;
        let body = json!({"uri": uri, "event_types": ["ping"]});
        let (_, hook) = send(&app, "POST", "/v1.0/webhooks", Some(&body.to_string())).await;
        let hook_uri = format!("/v1.0/webhooks/{}/test", hook["id"].as_str().unwrap());
        let (_, test) = send(&app, "POST", &hook_uri, None).await;
        let got = next_json(&mut mine).await;
        assert_eq!(got["type"], "event", "{got}");
        assert_eq!(got["topic"], "account");
        assert_eq!(got["event"]["type"], "ping");
        assert_eq!(got["event"]["id"], test["event_id"]);

        // The other account's socket got nothing of it: the next thing it sees is its pong.
        assert_eq!(
            request(&mut theirs, json!({"type": "ping"})).await["type"],
            "pong"
        );

        // Unsubscribed: no more events.
        let r = request(
            &mut mine,
            json!({"type": "unsubscribe", "topics": ["account"]}),
        )
        .await;
        assert_eq!(r["type"], "unsubscribed");
        send(&app, "POST", &hook_uri, None).await;
        assert_eq!(
            request(&mut mine, json!({"type": "ping"})).await["type"],
            "pong"
        );
    }
}

#[tokio::test]
async fn account_limits_refuse_calls_with_clear_errors() {
    let (app, _, engine) = app_with_engine(|_| {}).await;
    let mut events = engine.events().subscribe();
    let (id, token) = new_account(&app, "limited").await;
    let limits = json!({"max_concurrent_calls": 1, "destination_prefixes": ["+1555"]});
    let (status, _) = send(
        &app,
        "PUT",
        &format!("/v1.0/accounts/{id}"),
        Some(&limits.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let call = |target: &str| {
        json!({
            "source": {"type": "tel", "target": "+15550100"},
            "destinations": [{"type": "sip", "target": target}],
            "actions": [{"type": "answer"}, {"type": "hangup"}],
        })
        .to_string()
    };

    // Toll-fraud guard: a destination outside the allowed prefixes is refused before dialling.
    let (status, err) = send_as(
        &app,
        &token,
        "POST",
        "/v1.0/calls",
        Some(&call("sip:+882123@127.0.0.1:9")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("destinations[0]"),
        "{err}"
    );

    // One call at a time: the first rings out (to a port where nobody answers), the second is
    // refused until the first is over.
    let (status, placed) = send_as(
        &app,
        &token,
        "POST",
        "/v1.0/calls",
        Some(&call("sip:+15550101@127.0.0.1:9")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{placed}");
    let first = placed[0]["id"].as_str().unwrap().to_owned();
    let (status, err) = send_as(
        &app,
        &token,
        "POST",
        "/v1.0/calls",
        Some(&call("sip:+15550102@127.0.0.1:9")),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{err}");
    assert_eq!(err["error"]["code"], "limit_exceeded");

    // The administrator's account has no limits and is not affected.
    let (status, _) = send(
        &app,
        "POST",
        "/v1.0/calls",
        Some(&call("sip:+882123@127.0.0.1:9")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = send_as(
        &app,
        &token,
        "POST",
        &format!("/v1.0/calls/{first}/hangup"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Its `call_hangup` event comes once its slot is free again.
    let first_id: uuid::Uuid = first.parse().unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.recv().await.expect("the event bus is open");
            if event.event_type == runtime::events::EventType::CallHangup
                && event.call_id == Some(first_id)
            {
                break;
            }
        }
    })
    .await
    .expect("the first call's call_hangup within 10 s");
    let (status, placed) = send_as(
        &app,
        &token,
        "POST",
        "/v1.0/calls",
        Some(&call("sip:+15550103@127.0.0.1:9")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the slot came back: {placed}");
}

#[tokio::test]
async fn inject_checks_ownership_body_and_that_the_flow_runs() {
    let app = app().await;
    let (_, other) = new_account(&app, "other").await;
    let body = json!({
        "source": {"type": "tel", "target": "+15550100"},
        "destinations": [{"type": "sip", "target": "sip:bob@127.0.0.1:9"}],
        "actions": [{"type": "answer"}, {"type": "hangup"}],
    });
    let (status, placed) = send(&app, "POST", "/v1.0/calls", Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{placed}");
    let uri = format!("/v1.0/calls/{}/actions", placed[0]["id"].as_str().unwrap());
    let good = json!({"actions": [{"type": "hangup"}]}).to_string();

    let (status, _) = send_as(&app, &other, "POST", &uri, Some(&good)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another account's call does not exist"
    );
    let bad = json!({"actions": [{"type": "goto", "option": {"target_id": "x"}}]});
    let (status, err) = send(&app, "POST", &uri, Some(&bad.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["path"], "actions[0].option.target_id", "{err}");
    // Still ringing (nobody answers at port 9): its flow has not started.
    let (status, err) = send(&app, "POST", &uri, Some(&good)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["code"], "conflict");

    // flow_id and actions together are ambiguous.
    let (_, flow) = send(&app, "POST", "/v1.0/flows", Some(&ivr().to_string())).await;
    let mut both = body.clone();
    both["flow_id"] = flow["id"].clone();
    let (status, err) = send(&app, "POST", "/v1.0/calls", Some(&both.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["path"], "actions");
}
