//! Playback framing, RTP continuity and symmetric RTP through `MediaSession`.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use voxflow_media::rtp::{RtpHeader, RtpPacket};
use voxflow_media::{Codec, MediaEvent, MediaSession, SessionConfig, g711, tone};

fn peer() -> SocketAddr {
    "198.51.100.7:4000".parse().unwrap()
}

fn config(codec: Codec) -> SessionConfig {
    SessionConfig {
        codec,
        payload_type: codec.payload_type(),
        dtmf_payload_type: Some(101),
        ssrc: 0xCAFE_F00D,
        initial_seq: 7,
        initial_timestamp: 1234,
        remote: Some(peer()),
        ptime_ms: 20,
        rtp_timeout_ms: 0,
    }
}

fn events(s: &mut MediaSession) -> Vec<MediaEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn ramp(start: i16, len: usize) -> Arc<[i16]> {
    (0..len).map(|i| start + (i as i16) * 8).collect()
}

#[test]
fn three_buffers_play_in_order_then_silence() {
    let mut s = MediaSession::new(config(Codec::Pcmu));
    let buffers = [ramp(-4000, 250), ramp(100, 160), ramp(-100, 400)];
    for (id, b) in buffers.iter().enumerate() {
        s.play(id as u64 + 1, b.clone());
    }
    assert!(s.is_playing());
    let mut out = Vec::new();
    let mut heard = Vec::new();
    let mut finished_at = Vec::new();
    for tick in 0..8 {
        assert_eq!(s.poll_packet(&mut out), Some(peer()));
        let packet = RtpPacket::parse(&out).unwrap();
        assert_eq!(packet.payload.len(), 160);
        heard.extend(packet.payload.iter().map(|b| g711::ulaw_decode(*b)));
        for e in events(&mut s) {
            match e {
                MediaEvent::PlaybackFinished { id } => finished_at.push((id, tick)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // 250 samples end in packet 1, 410 in packet 2, 810 in packet 5.
    assert_eq!(finished_at, [(1, 1), (2, 2), (3, 5)]);
    assert!(!s.is_playing());
    let expected: Vec<i16> = buffers
        .iter()
        .flat_map(|b| b.iter().map(|x| g711::ulaw_decode(g711::ulaw_encode(*x))))
        .collect();
    assert_eq!(heard[..810], expected[..]);
    assert!(
        heard[810..].iter().all(|s| *s == 0),
        "silence after playback"
    );
}

#[test]
fn idle_session_sends_encoded_silence() {
    for (codec, silence) in [(Codec::Pcmu, 0xFF), (Codec::Pcma, 0xD5)] {
        let mut s = MediaSession::new(config(codec));
        let mut out = Vec::new();
        for _ in 0..3 {
            assert_eq!(s.poll_packet(&mut out), Some(peer()));
            let p = RtpPacket::parse(&out).unwrap();
            assert_eq!(p.header.payload_type, codec.payload_type());
            assert!(p.payload.len() == 160 && p.payload.iter().all(|b| *b == silence));
        }
        assert_eq!(events(&mut s), []);
    }
}

#[test]
fn seq_and_timestamp_continuity_across_wraps() {
    let mut cfg = config(Codec::Pcma);
    cfg.initial_seq = 65_000;
    cfg.initial_timestamp = u32::MAX - 160 * 400;
    let mut s = MediaSession::new(cfg);
    s.play(1, tone::sine(1000.0, 10_000, 8000).into());
    let mut out = Vec::new();
    let mut previous: Option<RtpHeader> = None;
    let mut first_ptr = None;
    for i in 0..1000 {
        assert_eq!(s.poll_packet(&mut out), Some(peer()));
        assert_eq!(out.len(), 172);
        // The caller's buffer is reused: no reallocation after the first packet.
        let ptr = out.as_ptr();
        assert_eq!(*first_ptr.get_or_insert(ptr), ptr);
        let h = RtpPacket::parse(&out).unwrap().header;
        assert_eq!(h.ssrc, 0xCAFE_F00D);
        assert_eq!(h.marker, i == 0, "marker only on the first packet");
        match previous {
            None => {
                assert_eq!(h.sequence_number, 65_000);
                assert_eq!(h.timestamp, u32::MAX - 160 * 400);
            }
            Some(p) => {
                assert_eq!(h.sequence_number, p.sequence_number.wrapping_add(1));
                assert_eq!(h.timestamp, p.timestamp.wrapping_add(160));
            }
        }
        previous = Some(h);
    }
    let last = previous.unwrap();
    assert_eq!(last.sequence_number, (65_000u32 + 999 - 65_536) as u16);
    assert_eq!(last.timestamp, 160 * 599 - 1);
    let stats = s.stats();
    assert_eq!((stats.packets_sent, stats.bytes_sent), (1000, 172_000));
}

#[test]
fn ptime_sets_the_frame_size() {
    let mut cfg = config(Codec::Pcmu);
    cfg.ptime_ms = 30;
    let mut s = MediaSession::new(cfg.clone());
    let mut out = Vec::new();
    let _ = s.poll_packet(&mut out);
    let _ = s.poll_packet(&mut out);
    let p = RtpPacket::parse(&out).unwrap();
    assert_eq!((p.payload.len(), p.header.timestamp), (240, 1234 + 240));
    cfg.ptime_ms = 0; // nonsense: 20 ms
    let mut s = MediaSession::new(cfg);
    let _ = s.poll_packet(&mut out);
    assert_eq!(out.len(), 172);
}

#[test]
fn stop_playback_stops_everything_queued() {
    let mut s = MediaSession::new(config(Codec::Pcmu));
    s.play(10, tone::beep());
    s.play(11, tone::beep());
    s.play(12, Arc::from(Vec::new()));
    let mut out = Vec::new();
    let _ = s.poll_packet(&mut out);
    assert_eq!(events(&mut s), []);
    s.stop_playback();
    assert_eq!(
        events(&mut s),
        [
            MediaEvent::PlaybackStopped { id: 10 },
            MediaEvent::PlaybackStopped { id: 11 },
            MediaEvent::PlaybackStopped { id: 12 },
        ]
    );
    let _ = s.poll_packet(&mut out);
    assert!(
        RtpPacket::parse(&out)
            .unwrap()
            .payload
            .iter()
            .all(|b| *b == 0xFF)
    );
    s.stop_playback();
    assert_eq!(events(&mut s), []);
}

#[test]
fn empty_buffer_finishes_without_taking_time() {
    let mut s = MediaSession::new(config(Codec::Pcmu));
    s.play(1, Arc::from(Vec::new()));
    s.play(2, Arc::from(vec![1000i16; 160]));
    let mut out = Vec::new();
    let _ = s.poll_packet(&mut out);
    assert_eq!(
        events(&mut s),
        [
            MediaEvent::PlaybackFinished { id: 1 },
            MediaEvent::PlaybackFinished { id: 2 },
        ]
    );
}

#[test]
fn symmetric_rtp_latches_and_follows_the_peer() {
    let mut cfg = config(Codec::Pcmu);
    cfg.remote = None;
    cfg.initial_seq = 500;
    let mut s = MediaSession::new(cfg);
    s.play(1, Arc::from(vec![0i16; 320]));
    let mut out = vec![1, 2, 3];
    // No remote yet: nothing to send, but time passes (the playback advances).
    assert_eq!(s.poll_packet(&mut out), None);
    assert!(out.is_empty());
    assert_eq!(s.stats().packets_sent, 0);

    let mut incoming = Vec::new();
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence_number: 1,
        timestamp: 0,
        ssrc: 9,
    }
    .write(&mut incoming);
    incoming.extend_from_slice(&[0xFF; 160]);
    let nat: SocketAddr = "203.0.113.50:31000".parse().unwrap();
    s.handle_rtp(nat, &incoming);
    assert_eq!(s.remote(), Some(nat));
    assert_eq!(s.poll_packet(&mut out), Some(nat));
    let h = RtpPacket::parse(&out).unwrap().header;
    // The first packet really sent: first sequence number, marker, timestamp one ptime on.
    assert_eq!(
        (h.sequence_number, h.marker, h.timestamp),
        (500, true, 1234 + 160)
    );
    assert_eq!(events(&mut s), [MediaEvent::PlaybackFinished { id: 1 }]);

    // The peer moves (NAT rebinding): we follow.
    let moved: SocketAddr = "203.0.113.50:31002".parse().unwrap();
    s.handle_rtp(moved, &incoming);
    assert_eq!(s.poll_packet(&mut out), Some(moved));

    // A new SDP points elsewhere.
    s.set_remote(peer());
    assert_eq!(s.poll_packet(&mut out), Some(peer()));
    // RFC 2543 hold: 0.0.0.0 means do not send.
    s.set_remote("0.0.0.0:4000".parse().unwrap());
    assert_eq!(s.poll_packet(&mut out), None);
    let stats = s.stats();
    assert_eq!((stats.packets_received, stats.bytes_received), (2, 344));
    assert_eq!(stats.packets_sent, 3);
}
