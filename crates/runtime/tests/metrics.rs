//! The metrics move with a real call: the active gauge while it runs, `calls_total` by its
//! hangup reason, the `webhook_send` outcome, and the RTP packets both ways once its media has
//! ended; and the health check sees the store, the media worker and SIP.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::net::UdpSocket;

/// The value of the sample `series` (`name` or `name{labels}`) in the metrics text.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .parse()
        .unwrap()
}

/// Where voxflow wants RTP, from the SDP of its 200.
fn media_addr(ok: &sip::Response) -> SocketAddr {
    let body = String::from_utf8(ok.body.clone()).unwrap();
    let port: u16 = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Our RTP packet `seq`: 20 ms of a loud 1 kHz tone in PCMU.
fn tone_packet(seq: u16) -> Vec<u8> {
    let mut out = Vec::new();
    media::rtp::RtpHeader {
        marker: seq == 0,
        payload_type: 0,
        sequence_number: seq,
        timestamp: u32::from(seq) * 160,
        ssrc: 0x00C0_FFEE,
    }
    .write(&mut out);
    out.extend((0..160).map(|i| {
        let s = (f32::sin(2.0 * std::f32::consts::PI * i as f32 / 8.0) * 12000.0) as i16;
        media::g711::ulaw_encode(s)
    }));
    out
}

fn loud(payload: &[u8]) -> bool {
    let sum: i64 = payload
        .iter()
        .map(|&b| i64::from(media::g711::ulaw_decode(b)).abs())
        .sum();
    !payload.is_empty() && sum / payload.len() as i64 > 1000
}

#[tokio::test]
async fn a_call_moves_the_call_webhook_and_rtp_metrics() {
    let rig = rig(44200).await;
    // A port nothing listens on: the webhook cannot be delivered (refused by the URL guard or
    // by the kernel; either way it has no status: `failed`).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    rig.bind(
        "+15550301",
        serde_json::json!([
            {"type": "answer"},
            {"type": "webhook_send", "option": {"sync": true, "uri": hook, "data": "{}"}},
            {"type": "echo", "option": {"duration": 30000}}
        ]),
    )
    .await;
    rig.bind(
        "+15550302",
        serde_json::json!([{"type": "answer"}, {"type": "sleep", "option": {"duration": 30000}}]),
    )
    .await;
    let before = rig.runtime.metrics_text();
    assert_eq!(
        value(&before, "voxflow_calls_active{direction=\"incoming\"}"),
        0.0
    );
    assert_eq!(value(&before, "voxflow_rtp_packets_sent_total"), 0.0);

    let mut events = rig.runtime.subscribe();
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = pcmu_offer(rtp.local_addr().unwrap().port());
    phone
        .send(&phone.invite("+15550301", "z9hG4bKm1", Some(&offer)))
        .await;
    let ok = phone.expect_status(200).await;
    let tag = to_tag(&ok);
    phone
        .send(&phone.in_dialog("ACK", 1, &tag, "z9hG4bKm2", "", ""))
        .await;
    let during = rig.runtime.metrics_text();
    assert_eq!(
        value(&during, "voxflow_calls_active{direction=\"incoming\"}"),
        1.0
    );
    assert_eq!(
        value(&during, "voxflow_calls_active{direction=\"outgoing\"}"),
        0.0
    );

    // Talk like a phone (a packet every 20 ms) until the echo brings the tone back: by then
    // the webhook (sync) is over and voxflow has read our packets.
    let to = media_addr(&ok);
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(20));
    let mut buf = [0u8; 2048];
    let mut seq = 0u16;
    tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    rtp.send_to(&tone_packet(seq), to).await.unwrap();
                    seq += 1;
                }
                got = rtp.recv_from(&mut buf) => {
                    let (n, _) = got.unwrap();
                    if n > 12 && loud(&buf[12..n]) {
                        return;
                    }
                }
            }
        }
    })
    .await
    .expect("the echo never came back");
    let during = rig.runtime.metrics_text();
    assert_eq!(
        value(
            &during,
            "voxflow_webhook_deliveries_total{outcome=\"failed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &during,
            "voxflow_webhook_deliveries_total{outcome=\"delivered\"}"
        ),
        0.0
    );

    // The caller hangs up: the record's reason is counted before the update goes out.
    phone
        .send(&phone.in_dialog("BYE", 2, &tag, "z9hG4bKm3", "", ""))
        .await;
    phone.expect_status(200).await;
    let call = wait_update(&mut events, |c| c.status == "hangup").await;
    assert_eq!(call.hangup_reason, "normal");
    let after = rig.runtime.metrics_text();
    assert_eq!(
        value(
            &after,
            "voxflow_calls_total{direction=\"incoming\",result=\"normal\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "voxflow_calls_total{direction=\"outgoing\",result=\"normal\"}"
        ),
        0.0
    );

    // The first call's media left the (single) worker before the second call's was attached:
    // once the second call's first packet arrives, the first one's counts are published.
    let phone2 = Phone::new(rig.runtime.sip_addr()).await;
    let rtp2 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer2 = pcmu_offer(rtp2.local_addr().unwrap().port());
    phone2
        .send(&phone2.invite("+15550302", "z9hG4bKn1", Some(&offer2)))
        .await;
    let ok2 = phone2.expect_status(200).await;
    phone2
        .send(&phone2.in_dialog("ACK", 1, &to_tag(&ok2), "z9hG4bKn2", "", ""))
        .await;
    tokio::time::timeout(WAIT, rtp2.recv_from(&mut buf))
        .await
        .expect("no RTP on the second call")
        .unwrap();
    let text = rig.runtime.metrics_text();
    let sent = value(&text, "voxflow_rtp_packets_sent_total");
    let received = value(&text, "voxflow_rtp_packets_received_total");
    assert!(sent >= 1.0, "sent {sent}");
    assert!(
        received >= 1.0 && received <= f64::from(seq),
        "received {received} of our {seq}"
    );
    assert_eq!(value(&text, "voxflow_rtp_packets_lost_total"), 0.0);
    assert_eq!(value(&text, "voxflow_media_workers_alive"), 1.0);

    let health = rig.runtime.health().await;
    assert!(health.is_ok(), "{health:?}");
    assert_eq!((health.media_workers_alive, health.media_workers), (1, 1));
    assert_eq!(health.sip, Some(rig.runtime.sip_addr()));
}
