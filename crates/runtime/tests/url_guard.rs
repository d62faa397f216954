//! The outbound URL guard through a whole call: with the default configuration (private targets
//! refused), `webhook_send`, `play` and `fetch` to a loopback HTTP server never reach it, and the
//! run ends with the guard's reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use store::Store;
use tokio::net::UdpSocket;

/// A loopback HTTP server that counts every request (and would answer each with a hangup).
async fn counting_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { axum::Json(serde_json::json!([{"type": "hangup"}])) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

/// Call `number`, answer its 200, wait for voxflow to end the call; the run's end reason.
async fn call_and_end_reason(rig: &Rig, number: &str) -> String {
    let mut events = rig.runtime.subscribe();
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = pcmu_offer(rtp.local_addr().unwrap().port());
    let branch = format!("z9hG4bK{number}");
    phone
        .send(&phone.invite(number, &branch, Some(&offer)))
        .await;
    let ok = phone.expect_status(200).await;
    phone
        .send(&phone.in_dialog("ACK", 1, &to_tag(&ok), &format!("{branch}a"), "", ""))
        .await;
    let call = wait_update(&mut events, |c| c.status == "hangup").await;
    let account = rig.store.account_by_token("t").await.unwrap().unwrap();
    let runs = rig
        .store
        .list_activeflows(account.id, &store::Page::default())
        .await
        .unwrap();
    let run = runs
        .iter()
        .find(|r| r.call_id == call.id)
        .expect("the call's activeflow is stored");
    run.end_reason.clone()
}

#[tokio::test]
async fn by_default_play_fetch_and_webhooks_to_loopback_are_refused() {
    let rig = rig_with(44400, |c| c.allow_private_urls = false).await;
    let (http, hits) = counting_server().await;
    rig.bind(
        "+15550190",
        serde_json::json!([
            {"type": "answer"},
            {"type": "webhook_send", "option": {"sync": true, "uri": format!("http://{http}/hook"), "data": "x"}},
            {"type": "play", "option": {"stream_urls": [format!("http://{http}/a.wav")]}},
            {"type": "hangup"}
        ]),
    )
    .await;
    rig.bind(
        "+15550191",
        serde_json::json!([
            {"type": "answer"},
            {"type": "fetch", "option": {"event_url": format!("http://localhost:{}/next", http.port())}}
        ]),
    )
    .await;

    let played = call_and_end_reason(&rig, "+15550190").await;
    assert!(
        played.starts_with("error: ")
            && played.contains(&format!("http://{http}/a.wav: refused: 127.0.0.1 is a loopback address; start voxflow with --allow-private-urls")),
        "{played}"
    );
    let fetched = call_and_end_reason(&rig, "+15550191").await;
    assert!(
        fetched.contains("refused: localhost is the loopback interface"),
        "{fetched}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "neither the webhook, the prompt nor the fetch reached the server"
    );
}
