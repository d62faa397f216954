//! The registrar and device authentication over real UDP: REGISTER challenged and accepted with
//! digest, devices trusted by address, INVITEs from devices challenged, calls to a registered
//! device reaching its Contact.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use sip::auth::{Credentials, select_challenge};
use sip::{Message, Method, Request, Response};
use store::Store;
use uuid::Uuid;
use voxflow_runtime as runtime;

async fn device(rig: &Rig, username: &str, password: &str, allowed_ips: &[&str]) {
    let account = rig.store.account_by_token("t").await.unwrap().unwrap();
    let (ha1_md5, ha1_sha256) = if password.is_empty() {
        (String::new(), String::new())
    } else {
        runtime::device_ha1(username, "voxflow", password)
    };
    let now = store::utc_now();
    rig.store
        .create_device(&store::DeviceRecord {
            id: Uuid::new_v4(),
            account_id: account.id,
            username: username.into(),
            realm: "voxflow".into(),
            ha1_md5,
            ha1_sha256,
            name: String::new(),
            allowed_ips: allowed_ips.iter().map(|s| (*s).to_owned()).collect(),
            tm_create: now.clone(),
            tm_update: now,
        })
        .await
        .unwrap();
}

fn register(
    phone: &Phone,
    user: &str,
    cseq: u32,
    branch: &str,
    auth: Option<&Credentials>,
) -> String {
    let auth = auth
        .map(|c| format!("Authorization: {c}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:{user}@{server}>;tag=r1\r\nTo: <sip:{user}@{server}>\r\nCall-ID: reg-{user}@test\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n",
        server = phone.server,
        me = phone.addr(),
    )
}

/// The next response (keep-alive OPTIONS sent to registered phones meanwhile are skipped).
async fn response(phone: &Phone) -> Response {
    loop {
        match phone.recv().await {
            Message::Response(r) => return r,
            Message::Request(r) if r.method == Method::Options => {}
            Message::Request(r) => panic!("unexpected {}", r.method),
        }
    }
}

/// Answer the challenge of `challenged` for `method` with `password`.
fn credentials(
    challenged: &Response,
    method: Method,
    uri: &str,
    user: &str,
    password: &str,
) -> Credentials {
    let challenge = select_challenge(challenged.headers.get_all("WWW-Authenticate")).unwrap();
    sip::auth::respond(&challenge, &method, uri, user, password, "0a4f113b", 1).unwrap()
}

#[tokio::test]
async fn registrar_challenges_then_binds_the_contact() {
    let rig = rig(41600).await;
    device(&rig, "alice", "correct horse", &[]).await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let uri = format!("sip:{}", phone.server);

    phone
        .send(&register(&phone, "alice", 1, "z9hG4bKr1", None))
        .await;
    let challenged = response(&phone).await;
    assert_eq!(challenged.status, 401);
    let algorithms: Vec<&str> = challenged.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(algorithms.len(), 2, "MD5 and SHA-256 offered");
    assert!(
        algorithms[0].contains("algorithm=MD5"),
        "MD5 first by default: {algorithms:?}"
    );
    assert!(algorithms[1].contains("algorithm=SHA-256"));

    // A wrong password is challenged again; the right one binds.
    let wrong = credentials(
        &challenged,
        Method::Register,
        &uri,
        "alice",
        "battery staple",
    );
    phone
        .send(&register(&phone, "alice", 2, "z9hG4bKr2", Some(&wrong)))
        .await;
    assert_eq!(response(&phone).await.status, 401);
    let good = credentials(
        &challenged,
        Method::Register,
        &uri,
        "alice",
        "correct horse",
    );
    phone
        .send(&register(&phone, "alice", 3, "z9hG4bKr3", Some(&good)))
        .await;
    let ok = response(&phone).await;
    assert_eq!(ok.status, 200);
    assert!(
        ok.headers.get("Contact").unwrap().contains("expires="),
        "{ok:?}"
    );
    let account = rig.store.account_by_token("t").await.unwrap().unwrap();
    let alice = rig
        .store
        .list_devices(account.id, &store::Page::default())
        .await
        .unwrap()
        .remove(0);
    let bindings = rig.store.registrations(alice.id).await.unwrap();
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].source, format!("udp:{}", phone.addr()));

    // An unknown user is 404.
    phone
        .send(&register(&phone, "mallory", 1, "z9hG4bKr4", None))
        .await;
    assert_eq!(response(&phone).await.status, 404);
}

#[tokio::test]
async fn registrar_trusts_a_device_by_address_without_a_challenge() {
    let rig = rig(41650).await;
    device(&rig, "pbx", "", &["127.0.0.0/8"]).await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    phone
        .send(&register(&phone, "pbx", 1, "z9hG4bKt1", None))
        .await;
    assert_eq!(response(&phone).await.status, 200);
    // With no password, digest credentials are never accepted from elsewhere.
    let rig2 = common::rig(41700).await;
    device(&rig2, "pbx", "", &["192.0.2.0/24"]).await;
    let phone2 = Phone::new(rig2.runtime.sip_addr()).await;
    phone2
        .send(&register(&phone2, "pbx", 1, "z9hG4bKt2", None))
        .await;
    let challenged = response(&phone2).await;
    assert_eq!(challenged.status, 401);
    let forged = credentials(
        &challenged,
        Method::Register,
        &format!("sip:{}", phone2.server),
        "pbx",
        "",
    );
    phone2
        .send(&register(&phone2, "pbx", 2, "z9hG4bKt3", Some(&forged)))
        .await;
    assert_eq!(response(&phone2).await.status, 401);
}

#[tokio::test]
async fn invite_from_a_device_must_authenticate_and_calls_reach_registered_devices() {
    let rig = rig(41750).await;
    device(&rig, "alice", "correct horse", &[]).await;
    rig.bind(
        "+15550105",
        serde_json::json!([{"type": "answer"}, {"type": "sleep", "option": {"duration": 5000}}]),
    )
    .await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    // The phone's INVITEs come From alice (see `Phone::invite`), one of our devices.
    let invite = |phone: &Phone, cseq: u32, branch: &str, auth: Option<&Credentials>| {
        let text = phone.invite("+15550105", branch, Some(&pcmu_offer(4004)));
        let text = text.replace("CSeq: 1 INVITE", &format!("CSeq: {cseq} INVITE"));
        match auth {
            Some(c) => text.replacen(
                "Max-Forwards: 70\r\n",
                &format!("Max-Forwards: 70\r\nAuthorization: {c}\r\n"),
                1,
            ),
            None => text,
        }
    };
    phone.send(&invite(&phone, 1, "z9hG4bKi1", None)).await;
    let challenged = phone.expect_status(401).await;
    let uri = format!("sip:+15550105@{}", phone.server);
    let creds = credentials(&challenged, Method::Invite, &uri, "alice", "correct horse");
    phone
        .send(&invite(&phone, 2, "z9hG4bKi2", Some(&creds)))
        .await;
    let ok = phone.expect_status(200).await;
    assert_eq!(ok.cseq().unwrap().seq, 2);

    // Register alice from a second phone and call her as an endpoint: the INVITE reaches it.
    let callee = Phone::new(rig.runtime.sip_addr()).await;
    let uri = format!("sip:{}", callee.server);
    callee
        .send(&register(&callee, "alice", 1, "z9hG4bKr9", None))
        .await;
    let challenged = response(&callee).await;
    let creds = credentials(
        &challenged,
        Method::Register,
        &uri,
        "alice",
        "correct horse",
    );
    callee
        .send(&register(&callee, "alice", 2, "z9hG4bKra", Some(&creds)))
        .await;
    assert_eq!(response(&callee).await.status, 200);
    let account = rig.store.account_by_token("t").await.unwrap().unwrap();
    let mut actions = serde_json::json!([{"type": "hangup"}]);
    flow::assign_ids(&mut actions, || Uuid::new_v4().to_string());
    rig.runtime
        .originate(runtime::Originate {
            account_id: account.id,
            source: runtime::Address {
                kind: "tel".into(),
                target: "+15550001".into(),
            },
            destination: runtime::Address {
                kind: "endpoint".into(),
                target: "alice".into(),
            },
            flow_id: None,
            actions,
            ring_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
    let to_alice: Request = loop {
        if let Message::Request(r) = callee.recv().await
            && r.method == Method::Invite
        {
            break r;
        }
    };
    assert_eq!(to_alice.method, Method::Invite);
    assert_eq!(
        to_alice.uri.to_string(),
        format!("sip:alice@{}", callee.addr())
    );
}

#[tokio::test]
async fn registered_contacts_get_options_keepalives() {
    let rig = rig(41850).await;
    device(&rig, "desk", "", &["127.0.0.1"]).await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    phone
        .send(&register(&phone, "desk", 1, "z9hG4bKk1", None))
        .await;
    assert_eq!(response(&phone).await.status, 200);
    // The rig's keep-alive interval is 200 ms.
    let options = loop {
        if let Message::Request(r) = phone.recv().await {
            break r;
        }
    };
    assert_eq!(options.method, Method::Options);
    assert_eq!(
        options.uri.to_string(),
        format!("sip:desk@{}", phone.addr())
    );
    phone
        .send(std::str::from_utf8(&Response::for_request(&options, 200).to_bytes()).unwrap())
        .await;
}

#[tokio::test]
async fn trunks_that_register_answer_the_challenge_and_report_their_state() {
    let rig = rig(41950).await;
    let carrier = Phone::new(rig.runtime.sip_addr()).await;
    let mut changes = rig.runtime.watch_trunk_registrations();
    let trunk_id = rig
        .trunk(TrunkSpec {
            port: Some(carrier.addr().port()),
            username: "acct42",
            password: "trunk-secret",
            register: true,
            ..TrunkSpec::default()
        })
        .await;
    let next_register = || async {
        loop {
            if let Message::Request(r) = carrier.recv().await
                && r.method == Method::Register
            {
                return r;
            }
        }
    };
    let first = next_register().await;
    assert_eq!(first.headers.get("Expires"), Some("300"));
    assert!(
        first
            .to()
            .unwrap()
            .uri()
            .to_string()
            .starts_with("sip:acct42@127.0.0.1")
    );
    let issuer = carrier.challenge(&first, 401, "reg1").await;

    let second = next_register().await;
    assert_eq!(second.cseq().unwrap().seq, first.cseq().unwrap().seq + 1);
    assert_eq!(second.call_id(), first.call_id());
    let creds = Credentials::parse(second.headers.get("Authorization").unwrap()).unwrap();
    let verified = issuer.verify(
        &creds,
        &Method::Register,
        CARRIER_REALM,
        sip::auth::PasswordOrHa1::Password("trunk-secret"),
        CARRIER_NOW + 5,
    );
    assert_eq!(verified, Ok(()));
    let mut ok = Response::for_request(&second, 200);
    ok.set_to_tag("reg1");
    ok.headers.push(
        "Contact",
        format!("{};expires=120", second.headers.get("Contact").unwrap()),
    );
    carrier
        .send(std::str::from_utf8(&ok.to_bytes()).unwrap())
        .await;

    tokio::time::timeout(WAIT, async {
        loop {
            if rig.runtime.trunk_registration(trunk_id)
                == Some(runtime::TrunkRegistration::Registered { expires: 120 })
            {
                return;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the trunk never reported itself registered");
}
