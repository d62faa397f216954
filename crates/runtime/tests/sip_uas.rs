//! The runtime as a SIP UAS, driven over real UDP sockets on loopback by a hand-written peer:
//! every answer the issue promises (100/180/200, 487, 404, 488, 481, 501, 400, OPTIONS) and the
//! BYE on shutdown. Flows here need no speech, so espeak-ng is not involved.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use sip::{Message, Response};
use tokio::net::UdpSocket;
use voxflow_runtime as runtime;

#[tokio::test]
async fn uas_unknown_number_is_404() {
    let rig = rig(41000).await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    phone
        .send(&phone.invite("+19990000", "z9hG4bKa1", Some(&pcmu_offer(4000))))
        .await;
    let r = phone.expect_status(404).await;
    assert!(
        r.to().unwrap().tag().is_some(),
        "a final response carries a To-tag"
    );
}

#[tokio::test]
async fn uas_no_common_codec_is_488() {
    let rig = rig(41050).await;
    rig.bind(
        "+15550100",
        serde_json::json!([{"type": "answer"}, {"type": "sleep", "option": {"duration": 5000}}]),
    )
    .await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let g722 = offer(4000, "9", "a=rtpmap:9 G722/8000\r\n");
    phone
        .send(&phone.invite("15550100", "z9hG4bKb1", Some(&g722)))
        .await;
    phone.expect_status(488).await;
}

#[tokio::test]
async fn uas_cancel_before_answer_is_487_and_recorded() {
    let rig = rig(41100).await;
    rig.bind(
        "+15550101",
        serde_json::json!([{"type": "sleep", "option": {"duration": 20000}}, {"type": "hangup"}]),
    )
    .await;
    let mut events = rig.runtime.subscribe();
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    phone
        .send(&phone.invite("+15550101", "z9hG4bKc1", Some(&pcmu_offer(4000))))
        .await;
    phone.expect_status(180).await;
    let cancel = format!(
        "CANCEL sip:+15550101@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKc1\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@{me}>;tag=alice1\r\nTo: <sip:+15550101@{server}>\r\n\
         Call-ID: {cid}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        server = phone.server,
        me = phone.addr(),
        cid = phone.call_id
    );
    phone.send(&cancel).await;
    // The 200 for the CANCEL and the 487 for the INVITE, in either order.
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Message::Response(r) = phone.recv().await {
            got.push((r.status, r.cseq().unwrap().method.to_string()));
        }
    }
    got.sort();
    assert_eq!(
        got,
        [(200, "CANCEL".to_owned()), (487, "INVITE".to_owned())]
    );
    let call = wait_update(&mut events, |c| c.status == "hangup").await;
    assert_eq!(
        (call.hangup_reason.as_str(), call.hangup_by.as_str()),
        ("cancel", "remote")
    );
}

#[tokio::test]
async fn uas_options_unknown_method_and_unknown_dialog() {
    let rig = rig(41150).await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let me = phone.addr();
    let server = phone.server;
    let req = |method: &str, to_tag: &str, branch: &str| {
        format!(
            "{method} sip:voxflow@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{me}>;tag=a\r\nTo: <sip:voxflow@{server}>{to_tag}\r\n\
             Call-ID: x-{branch}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    phone.send(&req("OPTIONS", "", "z9hG4bKo1")).await;
    let ok = phone.expect_status(200).await;
    assert!(ok.headers.get("Allow").unwrap().contains("INVITE"));
    phone.send(&req("FOO", "", "z9hG4bKf1")).await;
    phone.expect_status(501).await;
    phone.send(&req("BYE", ";tag=nothere", "z9hG4bKy1")).await;
    phone.expect_status(481).await;
}

#[tokio::test]
async fn uas_malformed_request_gets_400_and_the_server_lives_on() {
    let rig = rig(41200).await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let me = phone.addr();
    let bad = format!(
        "OPTIONS sip:voxflow@{s} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKm1\r\nMax-Forwards: 70\r\n\
         From: <sip:a@{me}>;tag=a\r\nTo: <sip:v@{s}>\r\nCall-ID: m1\r\nCSeq: notanumber OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        s = phone.server
    );
    phone.send(&bad).await;
    phone.expect_status(400).await;
    // Garbage gets nothing back, and does not stop the next request from being answered.
    phone.send("\u{0}\u{1}garbage\r\n\r\n").await;
    phone
        .send(
            &bad.replace("notanumber", "1")
                .replace("m1", "m2")
                .replace("bKm1", "bKm2"),
        )
        .await;
    phone.expect_status(200).await;
}

#[tokio::test]
async fn uas_answers_late_offer_dtmf_branches_and_shutdown_sends_bye() {
    let rig = rig(41250).await;
    rig.bind(
        "+15550102",
        serde_json::json!([
            {"type": "answer"},
            {"type": "digits_receive", "option": {"duration": 10000, "length": 1}},
            {"type": "branch", "option": {"target_ids": {"7": "wait"}, "default_target_id": "bye"}},
            {"id": "bye", "type": "hangup"},
            {"id": "wait", "type": "sleep", "option": {"duration": 30000}}
        ]),
    )
    .await;
    let mut events = rig.runtime.subscribe();
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = rtp.local_addr().unwrap().port();
    // No SDP in the INVITE: voxflow offers in the 200 and we answer in the ACK.
    phone
        .send(&phone.invite("15550102", "z9hG4bKd1", None))
        .await;
    let ok = phone.expect_status(200).await;
    let body = String::from_utf8(ok.body.clone()).unwrap();
    assert!(
        body.contains("m=audio ") && body.contains("PCMU/8000"),
        "{body}"
    );
    let tag = to_tag(&ok);
    let answer = pcmu_offer(rtp_port);
    let ack = phone.in_dialog(
        "ACK",
        1,
        &tag,
        "z9hG4bKd2",
        "Content-Type: application/sdp\r\n",
        &answer,
    );
    phone.send(&ack).await;

    // Media flows to the address in our answer (silence before any prompt).
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(WAIT, rtp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n >= 12 + 160, "an RTP packet of 20 ms G.711");
    assert_eq!(buf[1] & 0x7f, 0, "PCMU payload type");

    // Press 7 by SIP INFO: the branch goes to the long sleep, so the call stays up.
    let info = phone.in_dialog(
        "INFO",
        2,
        &tag,
        "z9hG4bKd3",
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=7\r\nDuration=160\r\n",
    );
    phone.send(&info).await;
    phone.expect_status(200).await;
    let call = wait_update(&mut events, |c| c.status == "progressing").await;
    assert_eq!(call.destination_target, "15550102");
    assert_eq!(call.source_target, "alice");

    // And by RFC 4733 from the media address: a second key is not needed by the flow, but the
    // packets must be accepted without disturbing the call.
    let mut pkt = vec![
        0x80,
        101,
        0,
        1,
        0,
        0,
        0,
        160,
        1,
        2,
        3,
        4,
        7,
        0x80 | 10,
        0,
        160,
    ];
    rtp.send_to(&pkt, from).await.unwrap();
    pkt[13] = 0x80 | 10;
    rtp.send_to(&pkt, from).await.unwrap();

    // Shutdown hangs the call up with a BYE, which we answer.
    let shutdown = tokio::spawn(async move { rig.runtime.shutdown(WAIT).await });
    let bye = loop {
        match phone.recv().await {
            Message::Request(r) if r.method == sip::Method::Bye => break r,
            _ => {}
        }
    };
    let resp = Response::for_request(&bye, 200);
    phone
        .send(std::str::from_utf8(&resp.to_bytes()).unwrap())
        .await;
    let call = wait_update(&mut events, |c| c.status == "hangup").await;
    assert_eq!(
        (call.hangup_reason.as_str(), call.hangup_by.as_str()),
        ("shutdown", "local")
    );
    shutdown.await.unwrap();
}

#[tokio::test]
async fn uas_remote_bye_ends_the_call_and_the_record() {
    let rig = rig(41300).await;
    rig.bind(
        "+15550103",
        serde_json::json!([{"type": "answer"}, {"type": "sleep", "option": {"duration": 30000}}]),
    )
    .await;
    let mut events = rig.runtime.subscribe();
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    phone
        .send(&phone.invite("+15550103", "z9hG4bKe1", Some(&pcmu_offer(4002))))
        .await;
    let ok = phone.expect_status(200).await;
    let tag = to_tag(&ok);
    assert!(String::from_utf8_lossy(&ok.body).contains("a=rtpmap:101 telephone-event/8000"));
    phone
        .send(&phone.in_dialog("ACK", 1, &tag, "z9hG4bKe2", "", ""))
        .await;
    phone
        .send(&phone.in_dialog("BYE", 2, &tag, "z9hG4bKe3", "", ""))
        .await;
    phone.expect_status(200).await;
    let call = wait_update(&mut events, |c| c.status == "hangup").await;
    assert_eq!(
        (call.hangup_reason.as_str(), call.hangup_by.as_str()),
        ("normal", "remote")
    );
    assert!(call.tm_progressing.is_some() && call.tm_hangup.is_some());
}

/// A 16-bit mono PCM WAV of a sine tone.
fn tone_wav(freq: f32, ms: u32, rate: u32) -> Vec<u8> {
    let n = rate * ms / 1000;
    let data: Vec<u8> = (0..n)
        .flat_map(|i| {
            let s = (f32::sin(2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32) * 12000.0)
                as i16;
            s.to_le_bytes()
        })
        .collect();
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

/// Serve `body` once per connection as an HTTP/1.1 200, on a loopback port.
async fn serve_http(body: Vec<u8>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut req = vec![0u8; 4096];
                let _ = stream.read(&mut req).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn uas_play_streams_local_and_http_wav_over_rtp_then_hangs_up() {
    let rig = rig(41350).await;
    // 500 ms of 1 kHz from a local file (at 16 kHz: resampled) and 500 ms of 500 Hz over HTTP.
    // Local files are read from the data directory's `media` folder (or a --media-dir).
    let file = rig.dir.0.join("media").join("tone.wav");
    std::fs::write(&file, tone_wav(1000.0, 500, 16000)).unwrap();
    let http = serve_http(tone_wav(500.0, 500, 8000)).await;
    rig.bind(
        "+15550104",
        serde_json::json!([
            {"type": "answer"},
            {"type": "play", "option": {"stream_urls": [file.display().to_string(), format!("http://{http}/tone.wav")]}},
            {"type": "hangup"}
        ]),
    )
    .await;
    let mut events = rig.runtime.subscribe();
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = pcmu_offer(rtp.local_addr().unwrap().port());
    phone
        .send(&phone.invite("+15550104", "z9hG4bKp1", Some(&offer)))
        .await;
    let ok = phone.expect_status(200).await;
    phone
        .send(&phone.in_dialog("ACK", 1, &to_tag(&ok), "z9hG4bKp2", "", ""))
        .await;

    // Collect RTP until voxflow hangs up.
    let mut samples: Vec<i16> = Vec::new();
    let mut seqs: Vec<u16> = Vec::new();
    let mut sip_buf = vec![0u8; 65536];
    let mut rtp_buf = [0u8; 2048];
    let bye = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                got = rtp.recv_from(&mut rtp_buf) => {
                    let (n, _) = got.unwrap();
                    seqs.push(u16::from_be_bytes([rtp_buf[2], rtp_buf[3]]));
                    samples.extend(rtp_buf[12..n].iter().map(|&b| media::g711::ulaw_decode(b)));
                }
                got = phone.socket.recv_from(&mut sip_buf) => {
                    let (n, _) = got.unwrap();
                    if let Ok(Message::Request(r)) = Message::parse(&sip_buf[..n])
                        && r.method == sip::Method::Bye
                    {
                        return r;
                    }
                }
            }
        }
    })
    .await
    .expect("voxflow never hung up");
    phone
        .send(std::str::from_utf8(&Response::for_request(&bye, 200).to_bytes()).unwrap())
        .await;

    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "consecutive sequence numbers"
    );
    // The audible part: 20 ms frames with energy, and the tones' frequencies by zero crossings.
    let loud: Vec<&[i16]> = samples
        .chunks(160)
        .filter(|f| f.iter().map(|&s| i64::from(s).abs()).sum::<i64>() / 160 > 1000)
        .collect();
    assert!(
        (48..=52).contains(&loud.len()),
        "about 1 s of tone, got {} frames",
        loud.len()
    );
    let crossings = |frames: &[&[i16]]| {
        let all: Vec<i16> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        all.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count() as f32
            / (all.len() as f32 / 8000.0)
            / 2.0
    };
    let first = crossings(&loud[2..20]);
    let second = crossings(&loud[30..48]);
    assert!(
        (first - 1000.0).abs() < 30.0,
        "first file is 1 kHz, measured {first}"
    );
    assert!(
        (second - 500.0).abs() < 20.0,
        "second file is 500 Hz, measured {second}"
    );
    let call = wait_update(&mut events, |c| c.status == "hangup").await;
    assert_eq!(
        (call.hangup_reason.as_str(), call.hangup_by.as_str()),
        ("normal", "local")
    );
}

#[tokio::test]
async fn uas_session_timer_is_agreed_and_too_small_intervals_get_422() {
    let rig = rig(41900).await;
    rig.bind(
        "+15550106",
        serde_json::json!([{"type": "answer"}, {"type": "sleep", "option": {"duration": 5000}}]),
    )
    .await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    let with_timer = |branch: &str, interval: u32, call_id: &str| {
        phone
            .invite("+15550106", branch, Some(&pcmu_offer(4006)))
            .replacen(
                "Max-Forwards: 70\r\n",
                &format!("Max-Forwards: 70\r\nSupported: timer\r\nSession-Expires: {interval};refresher=uac\r\n"),
                1,
            )
            .replace(&phone.call_id, call_id)
    };
    phone.send(&with_timer("z9hG4bKs1", 30, "st-1@test")).await;
    let refused = phone.expect_status(422).await;
    assert_eq!(refused.headers.get("Min-SE"), Some("90"));
    phone
        .send(&with_timer("z9hG4bKs2", 1800, "st-2@test"))
        .await;
    let ok = phone.expect_status(200).await;
    assert_eq!(
        ok.headers.get("Session-Expires"),
        Some("1800;refresher=uac")
    );
    assert!(
        ok.headers.get_all("Require").any(|r| r.contains("timer")),
        "{ok:?}"
    );
}

#[tokio::test]
async fn uas_restricted_policy_takes_calls_only_from_trunk_addresses() {
    let rig = rig_with(41960, |c| {
        c.inbound_policy = runtime::InboundPolicy::Restricted
    })
    .await;
    rig.bind(
        "+15550107",
        serde_json::json!([{"type": "answer"}, {"type": "sleep", "option": {"duration": 5000}}]),
    )
    .await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    phone
        .send(&phone.invite("+15550107", "z9hG4bKq1", Some(&pcmu_offer(4008))))
        .await;
    phone.expect_status(403).await;

    rig.trunk(TrunkSpec {
        allowed_ips: &["127.0.0.0/8"],
        ..TrunkSpec::default()
    })
    .await;
    let phone = Phone::new(rig.runtime.sip_addr()).await;
    phone
        .send(&phone.invite("+15550107", "z9hG4bKq2", Some(&pcmu_offer(4008))))
        .await;
    phone.expect_status(200).await;
}

#[tokio::test]
async fn uas_tcp_connections_per_address_are_capped_and_sip_goes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rig = rig(42050).await;
    let server = rig.runtime.sip_addr();
    let mut held = Vec::new();
    for _ in 0..128 {
        held.push(tokio::net::TcpStream::connect(server).await.unwrap());
    }
    // An OPTIONS on one of the 128 is answered ...
    let options = "OPTIONS sip:voxflow@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKtcp1\r\n\
                   Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:voxflow@127.0.0.1>\r\n\
                   Call-ID: tcp-cap@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    held[0].write_all(options.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, held[0].read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"));
    // ... and the 129th connection from the same address is closed at once.
    let mut extra = tokio::net::TcpStream::connect(server).await.unwrap();
    let n = tokio::time::timeout(WAIT, extra.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "refused connections are closed");
    // UDP is unaffected.
    let phone = Phone::new(server).await;
    phone
        .send(
            &options
                .replace("TCP 127.0.0.1:9", &format!("UDP {}", phone.addr()))
                .replace("tcp1", "udp1"),
        )
        .await;
    phone.expect_status(200).await;
}
