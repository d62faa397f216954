//! The runtime as a SIP UAC: `Runtime::originate` places calls to a hand-written callee on
//! loopback, which answers, rings then answers, rejects, or never answers.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use sip::{Message, Method, Request, Response};
use store::Store;
use tokio::net::UdpSocket;
use voxflow_runtime as runtime;

/// The next request the callee receives (responses, e.g. to our own BYE, are skipped).
async fn next_request(phone: &Phone) -> Request {
    loop {
        if let Message::Request(r) = phone.recv().await {
            return r;
        }
    }
}

/// Our response to `request` in the callee's early/confirmed dialog `tag`.
fn reply(phone: &Phone, request: &Request, status: u16, tag: &str, sdp: Option<&str>) -> String {
    let mut response = Response::for_request(request, status);
    response.set_to_tag(tag);
    response
        .headers
        .push("Contact", format!("<sip:bob@{}>", phone.addr()));
    if let Some(sdp) = sdp {
        response.headers.push("Content-Type", "application/sdp");
        response.body = sdp.as_bytes().to_vec();
    }
    String::from_utf8(response.to_bytes()).unwrap()
}

async fn originate(
    rig: &Rig,
    phone: &Phone,
    actions: serde_json::Value,
    ring: Duration,
) -> store::CallRecord {
    let account = rig.store.account_by_token("t").await.unwrap().unwrap();
    let mut actions = actions;
    flow::assign_ids(&mut actions, || uuid::Uuid::new_v4().to_string());
    rig.runtime
        .originate(runtime::Originate {
            account_id: account.id,
            source: runtime::Address {
                kind: "tel".into(),
                target: "+15550001".into(),
            },
            destination: runtime::Address {
                kind: "sip".into(),
                target: format!("sip:bob@{}", phone.addr()),
            },
            flow_id: None,
            actions,
            ring_timeout: ring,
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn uac_rings_then_answers_runs_the_flow_and_hangs_up() {
    let rig = rig(41400).await;
    let mut events = rig.runtime.subscribe();
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let flow = serde_json::json!([{"type": "beep"}, {"type": "hangup"}]);
    let created = originate(&rig, &phone, flow, Duration::from_secs(10)).await;
    assert_eq!(
        (created.status.as_str(), created.direction.as_str()),
        ("dialing", "outgoing")
    );

    let invite = next_request(&phone).await;
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(invite.uri.user(), Some("bob"));
    assert!(String::from_utf8_lossy(&invite.body).contains("m=audio "));
    assert!(
        invite
            .from()
            .unwrap()
            .uri()
            .to_string()
            .starts_with("sip:+15550001@")
    );
    phone.send(&reply(&phone, &invite, 180, "bob1", None)).await;
    wait_update(&mut events, |c| c.status == "ringing").await;
    let answer = pcmu_offer(rtp.local_addr().unwrap().port());
    let ok = reply(&phone, &invite, 200, "bob1", Some(&answer));
    phone.send(&ok).await;
    let ack = next_request(&phone).await;
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.cseq().unwrap().seq, invite.cseq().unwrap().seq);
    assert_eq!(ack.to().unwrap().tag(), Some("bob1"));
    wait_update(&mut events, |c| c.status == "progressing").await;

    // A retransmitted 200 gets the same ACK again.
    phone.send(&ok).await;
    let again = next_request(&phone).await;
    assert_eq!(again.method, Method::Ack);
    assert_eq!(again.to_bytes(), ack.to_bytes());

    // The beep arrives over RTP, then the flow's hangup sends a BYE in our dialog.
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(WAIT, rtp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n >= 172);
    let bye = next_request(&phone).await;
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.to().unwrap().tag(), Some("bob1"));
    phone
        .send(std::str::from_utf8(&Response::for_request(&bye, 200).to_bytes()).unwrap())
        .await;
    let done = wait_update(&mut events, |c| c.status == "hangup").await;
    assert_eq!(
        (done.hangup_reason.as_str(), done.hangup_by.as_str()),
        ("normal", "local")
    );
    assert_eq!(done.id, created.id);
}

#[tokio::test]
async fn uac_busy_callee_ends_the_call_as_busy() {
    let rig = rig(41450).await;
    let mut events = rig.runtime.subscribe();
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    originate(
        &rig,
        &phone,
        serde_json::json!([{"type": "hangup"}]),
        Duration::from_secs(10),
    )
    .await;
    let invite = next_request(&phone).await;
    phone.send(&reply(&phone, &invite, 486, "bob2", None)).await;
    // The INVITE transaction ACKs the 486 itself.
    let ack = next_request(&phone).await;
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.cseq().unwrap().method, Method::Ack);
    let done = wait_update(&mut events, |c| c.status == "hangup").await;
    assert_eq!(
        (done.hangup_reason.as_str(), done.hangup_by.as_str()),
        ("busy", "remote")
    );
}

#[tokio::test]
async fn uac_unanswered_call_is_cancelled_after_the_ring_timeout() {
    let rig = rig(41500).await;
    let mut events = rig.runtime.subscribe();
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    originate(
        &rig,
        &phone,
        serde_json::json!([{"type": "hangup"}]),
        Duration::from_millis(300),
    )
    .await;
    let invite = next_request(&phone).await;
    phone.send(&reply(&phone, &invite, 180, "bob3", None)).await;
    let cancel = next_request(&phone).await;
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(
        cancel.top_via().unwrap().branch(),
        invite.top_via().unwrap().branch()
    );
    phone
        .send(std::str::from_utf8(&Response::for_request(&cancel, 200).to_bytes()).unwrap())
        .await;
    phone.send(&reply(&phone, &invite, 487, "bob3", None)).await;
    let done = wait_update(&mut events, |c| c.status == "hangup").await;
    assert_eq!(
        (done.hangup_reason.as_str(), done.hangup_by.as_str()),
        ("noanswer", "local")
    );
}

#[tokio::test]
async fn uac_hangup_through_the_engine_cancels_a_ringing_call() {
    let rig = rig(41550).await;
    let mut events = rig.runtime.subscribe();
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let call = originate(
        &rig,
        &phone,
        serde_json::json!([{"type": "hangup"}]),
        Duration::from_secs(30),
    )
    .await;
    let invite = next_request(&phone).await;
    phone.send(&reply(&phone, &invite, 180, "bob4", None)).await;
    wait_update(&mut events, |c| c.status == "ringing").await;
    assert!(rig.runtime.hangup(call.id));
    let cancel = next_request(&phone).await;
    assert_eq!(cancel.method, Method::Cancel);
}

#[tokio::test]
async fn uac_tel_calls_go_through_the_trunk_and_answer_its_challenge() {
    let rig = rig(41800).await;
    let mut events = rig.runtime.subscribe();
    let carrier = Phone::new(rig.runtime.sip_addr()).await;
    let account = rig.store.account_by_token("t").await.unwrap().unwrap();
    rig.trunk(TrunkSpec {
        port: Some(carrier.addr().port()),
        username: "acct42",
        password: "trunk-secret",
        caller_id: "+15557770000",
        ..TrunkSpec::default()
    })
    .await;
    let mut actions = serde_json::json!([{"type": "hangup"}]);
    flow::assign_ids(&mut actions, || uuid::Uuid::new_v4().to_string());
    rig.runtime
        .originate(runtime::Originate {
            account_id: account.id,
            source: runtime::Address {
                kind: "tel".into(),
                target: "+15550001".into(),
            },
            destination: runtime::Address {
                kind: "tel".into(),
                target: "+442071234567".into(),
            },
            flow_id: None,
            actions,
            ring_timeout: Duration::from_secs(10),
        })
        .await
        .unwrap();

    let first = next_request(&carrier).await;
    assert_eq!(
        first.uri.to_string(),
        format!("sip:+442071234567@127.0.0.1:{}", carrier.addr().port())
    );
    assert!(
        first
            .from()
            .unwrap()
            .uri()
            .to_string()
            .starts_with("sip:+15557770000@"),
        "the trunk's caller id"
    );
    // Challenge as a carrier's proxy does.
    let issuer = carrier.challenge(&first, 407, "c1").await;
    let ack = next_request(&carrier).await;
    assert_eq!(ack.method, Method::Ack);

    let second = next_request(&carrier).await;
    assert_eq!(second.method, Method::Invite);
    assert_eq!(second.cseq().unwrap().seq, first.cseq().unwrap().seq + 1);
    assert_eq!(second.call_id(), first.call_id());
    let creds =
        sip::auth::Credentials::parse(second.headers.get("Proxy-Authorization").unwrap()).unwrap();
    assert_eq!(creds.username, "acct42");
    let verified = issuer.verify(
        &creds,
        &Method::Invite,
        CARRIER_REALM,
        sip::auth::PasswordOrHa1::Password("trunk-secret"),
        CARRIER_NOW + 10,
    );
    assert_eq!(verified, Ok(()));
    carrier
        .send(&reply(&carrier, &second, 486, "c2", None))
        .await;
    let done = wait_update(&mut events, |c| c.status == "hangup").await;
    assert_eq!(done.hangup_reason, "busy");
}

#[tokio::test]
async fn uac_sends_through_the_outbound_proxy_with_a_route() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = socket.local_addr().unwrap();
    let proxy_uri = sip::Uri::parse(&format!("sip:{proxy_addr}")).unwrap();
    let rig = rig_with(42000, |c| c.outbound_proxy = Some(proxy_uri)).await;
    let proxy = Phone {
        socket,
        server: rig.runtime.sip_addr(),
        call_id: "unused".into(),
    };
    let account = rig.store.account_by_token("t").await.unwrap().unwrap();
    let mut actions = serde_json::json!([{"type": "hangup"}]);
    flow::assign_ids(&mut actions, || uuid::Uuid::new_v4().to_string());
    rig.runtime
        .originate(runtime::Originate {
            account_id: account.id,
            source: runtime::Address {
                kind: "tel".into(),
                target: "+15550001".into(),
            },
            // An address nobody listens on: only the proxy can take it.
            destination: runtime::Address {
                kind: "sip".into(),
                target: "sip:bob@192.0.2.99".into(),
            },
            flow_id: None,
            actions,
            ring_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
    let invite = next_request(&proxy).await;
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(invite.uri.to_string(), "sip:bob@192.0.2.99");
    assert_eq!(
        invite.headers.get("Route"),
        Some(format!("<sip:{proxy_addr};lr>").as_str())
    );
}

#[tokio::test]
async fn uac_follows_a_redirect_to_the_contact_it_names() {
    let rig = rig(42100).await;
    let mut events = rig.runtime.subscribe();
    let redirector = Phone::new(rig.runtime.sip_addr()).await;
    let target = Phone::new(rig.runtime.sip_addr()).await;
    originate(
        &rig,
        &redirector,
        serde_json::json!([{"type": "hangup"}]),
        Duration::from_secs(10),
    )
    .await;
    let first = next_request(&redirector).await;
    let mut moved = Response::for_request(&first, 302);
    moved.set_to_tag("r1");
    moved
        .headers
        .push("Contact", format!("<sip:carol@{}>", target.addr()));
    redirector
        .send(std::str::from_utf8(&moved.to_bytes()).unwrap())
        .await;
    let second = next_request(&target).await;
    assert_eq!(second.method, Method::Invite);
    assert_eq!(
        second.uri.to_string(),
        format!("sip:carol@{}", target.addr())
    );
    assert_eq!(second.call_id(), first.call_id());
    assert_eq!(second.cseq().unwrap().seq, first.cseq().unwrap().seq + 1);
    target.send(&reply(&target, &second, 486, "t1", None)).await;
    let done = wait_update(&mut events, |c| c.status == "hangup").await;
    assert_eq!(done.hangup_reason, "busy");
}
