//! RFC 4733 reception through `MediaSession`: one `Dtmf` event per key press, whatever the
//! sender's habits (marker, repeated ends, foreign SSRC) or the network's (loss, reordering).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use voxflow_media::rtp::RtpHeader;
use voxflow_media::{Codec, MediaEvent, MediaSession, SessionConfig};

const AUDIO_SSRC: u32 = 0x1111_1111;
const FOREIGN_SSRC: u32 = 0x5EED_0001;

fn peer() -> SocketAddr {
    "198.51.100.7:4000".parse().unwrap()
}

fn session() -> MediaSession {
    MediaSession::new(SessionConfig {
        codec: Codec::Pcmu,
        payload_type: 0,
        dtmf_payload_type: Some(101),
        ssrc: 42,
        initial_seq: 1,
        initial_timestamp: 0,
        remote: Some(peer()),
        ptime_ms: 20,
        rtp_timeout_ms: 0,
    })
}

/// A sender of RTP as a peer would send it.
struct Peer {
    ssrc: u32,
    seq: u16,
}

impl Peer {
    fn new(ssrc: u32) -> Self {
        Peer { ssrc, seq: 100 }
    }

    fn packet(&mut self, marker: bool, pt: u8, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        RtpHeader {
            marker,
            payload_type: pt,
            sequence_number: self.seq,
            timestamp,
            ssrc: self.ssrc,
        }
        .write(&mut out);
        out.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        out
    }

    fn event(
        &mut self,
        marker: bool,
        timestamp: u32,
        event: u8,
        end: bool,
        duration: u16,
    ) -> Vec<u8> {
        let flags = if end { 0x80 | 10 } else { 10 };
        let [d0, d1] = duration.to_be_bytes();
        self.packet(marker, 101, timestamp, &[event, flags, d0, d1])
    }

    /// The packets of one key press the way pjsua sends it: a marked start, an update every
    /// 20 ms, and the end packet three times.
    fn key_press(
        &mut self,
        timestamp: u32,
        event: u8,
        duration: u16,
        marker: bool,
    ) -> Vec<Vec<u8>> {
        let mut packets = vec![self.event(marker, timestamp, event, false, 160)];
        let mut d = 320;
        while d < duration {
            packets.push(self.event(false, timestamp, event, false, d));
            d += 160;
        }
        for _ in 0..3 {
            packets.push(self.event(false, timestamp, event, true, duration));
        }
        packets
    }
}

fn digits(session: &mut MediaSession) -> Vec<(char, u32)> {
    let mut out = Vec::new();
    while let Some(event) = session.poll_event() {
        match event {
            MediaEvent::Dtmf {
                digit, duration_ms, ..
            } => out.push((digit, duration_ms)),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

fn feed(session: &mut MediaSession, packets: &[Vec<u8>]) {
    for p in packets {
        session.handle_rtp(peer(), p);
    }
}

#[test]
fn pjsua_sequence_counts_once() {
    let mut s = session();
    let mut phone = Peer::new(AUDIO_SSRC);
    let audio = phone.packet(true, 0, 8000, &[0xFF; 160]);
    s.handle_rtp(peer(), &audio);
    let press = phone.key_press(9600, 5, 1600, true);
    assert_eq!(press.len(), 1 + 8 + 3);
    // Nothing is reported before the end packet.
    feed(&mut s, &press[..9]);
    assert_eq!(digits(&mut s), []);
    feed(&mut s, &press[9..]);
    assert_eq!(digits(&mut s), [('5', 200)]);
    assert_eq!(s.stats().dtmf_events, 1);
    assert_eq!(s.stats().packets_received, 13);
    assert_eq!(s.stats().packets_invalid, 0);
}

#[test]
fn a_whole_pin_with_audio_in_between() {
    let mut s = session();
    let mut phone = Peer::new(AUDIO_SSRC);
    let mut ts = 0u32;
    for event in [1, 2, 3, 4, 11, 10, 0, 12, 15] {
        for _ in 0..5 {
            let audio = phone.packet(false, 0, ts, &[0xFF; 160]);
            s.handle_rtp(peer(), &audio);
            ts += 160;
        }
        feed(&mut s, &phone.key_press(ts, event, 800, true));
        ts += 800;
    }
    let got: String = digits(&mut s).into_iter().map(|(d, _)| d).collect();
    assert_eq!(got, "1234#*0AD");
}

#[test]
fn missing_marker_still_counts_once() {
    let mut s = session();
    let mut twinkle = Peer::new(AUDIO_SSRC);
    feed(&mut s, &twinkle.key_press(1000, 7, 960, false));
    feed(&mut s, &twinkle.key_press(5000, 7, 960, false));
    assert_eq!(digits(&mut s), [('7', 120), ('7', 120)]);
}

#[test]
fn lost_end_packets_count_when_the_next_event_starts() {
    let mut s = session();
    let mut phone = Peer::new(AUDIO_SSRC);
    let first = phone.key_press(1000, 1, 800, true);
    feed(&mut s, &first[..first.len() - 3]); // all three ends lost
    assert_eq!(digits(&mut s), []);
    let second = phone.key_press(3000, 2, 800, true);
    feed(&mut s, &second[..1]);
    assert_eq!(digits(&mut s), [('1', 80)]);
    feed(&mut s, &second[1..]);
    assert_eq!(digits(&mut s), [('2', 100)]);
}

#[test]
fn lost_end_packets_count_after_a_long_gap() {
    let mut s = session();
    let mut phone = Peer::new(AUDIO_SSRC);
    let mut out = Vec::new();
    let press = phone.key_press(1000, 9, 800, true);
    feed(&mut s, &press[..press.len() - 3]);
    // 500 ms of ticks without a packet for the event: reported on the 25th tick.
    for tick in 1..=25 {
        let _ = s.poll_packet(&mut out);
        let got = digits(&mut s);
        if tick < 25 {
            assert_eq!(got, [], "tick {tick}");
        } else {
            assert_eq!(got, [('9', 80)]);
        }
    }
    // The end packets arriving late do not count it again.
    feed(&mut s, &press[press.len() - 3..]);
    for _ in 0..50 {
        let _ = s.poll_packet(&mut out);
    }
    assert_eq!(digits(&mut s), []);
    assert_eq!(s.stats().dtmf_events, 1);
}

#[test]
fn foreign_ssrc_and_duplicated_packets_count_once() {
    // SIPp's dtmf_2833 pcap: the events carry their own SSRC, sequence and timestamps.
    let mut s = session();
    let mut phone = Peer::new(AUDIO_SSRC);
    let mut pcap = Peer::new(FOREIGN_SSRC);
    let mut ts = 50_000u32;
    for event in 0..12u8 {
        let audio = phone.packet(false, 0, u32::from(event) * 160, &[0xFF; 160]);
        s.handle_rtp(peer(), &audio);
        // Every packet delivered twice (a duplicating network or a retransmitting gateway).
        for p in pcap.key_press(ts, event, 2240, event == 0) {
            s.handle_rtp(peer(), &p);
            s.handle_rtp(peer(), &p);
        }
        ts = ts.wrapping_add(4000);
    }
    let got: String = digits(&mut s).into_iter().map(|(d, _)| d).collect();
    assert_eq!(got, "0123456789*#");
}

#[test]
fn reordered_packets_count_once_with_the_longest_duration() {
    let mut s = session();
    let mut phone = Peer::new(AUDIO_SSRC);
    let p = phone.key_press(1000, 3, 960, true); // start, 4 updates, 3 ends
    let order = [2, 0, 1, 5, 4, 3, 7, 6]; // an end before the last updates
    for i in order {
        s.handle_rtp(peer(), &p[i]);
    }
    assert_eq!(digits(&mut s), [('3', 120)]);

    // Two events interleaved: A's end arrives after B started.
    let a = phone.key_press(5000, 4, 480, true);
    let b = phone.key_press(6000, 6, 480, true);
    feed(&mut s, &a[..2]); // start and update, duration 320
    feed(&mut s, &b[..2]);
    feed(&mut s, &a[2..]); // A's three ends, late
    feed(&mut s, &b[2..]);
    assert_eq!(digits(&mut s), [('4', 40), ('6', 60)]);
}

#[test]
fn non_digit_events_are_ignored() {
    let mut s = session();
    let mut phone = Peer::new(AUDIO_SSRC);
    feed(&mut s, &phone.key_press(1000, 16, 800, true)); // flash
    feed(&mut s, &phone.key_press(2000, 200, 800, true));
    assert_eq!(digits(&mut s), []);
    assert_eq!(s.stats().packets_invalid, 0);
}

#[test]
fn truncated_and_garbage_packets_are_counted_and_dropped() {
    let mut s = MediaSession::new(SessionConfig {
        remote: None,
        ..session().config().clone()
    });
    let mut phone = Peer::new(AUDIO_SSRC);
    let good_event = phone.event(true, 1000, 1, true, 800);
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x80],
        vec![0xFF; 3],
        b"INVITE sip:bob@example.com SIP/2.0\r\n".to_vec(),
        good_event[..14].to_vec(), // telephone-event payload cut short
        phone.packet(false, 96, 0, &[1, 2, 3]), // payload type not negotiated
        vec![0x80, 200, 0, 6, 0, 0, 0, 1], // RTCP on the RTP port
    ];
    let mut v1 = good_event.clone();
    v1[0] = 0x40;
    garbage.push(v1);
    let mut bad_csrc = good_event.clone();
    bad_csrc[0] |= 0x0F;
    garbage.push(bad_csrc);
    for g in &garbage {
        s.handle_rtp(peer(), g);
    }
    assert_eq!(s.stats().packets_invalid, garbage.len() as u64);
    assert_eq!(s.stats().packets_received, 0);
    assert_eq!(
        s.remote(),
        None,
        "garbage must not latch the remote address"
    );
    assert_eq!(digits(&mut s), []);

    // Every prefix and every single-byte corruption of a good packet: no panic.
    for cut in 0..good_event.len() {
        s.handle_rtp(peer(), &good_event[..cut]);
    }
    for i in 0..good_event.len() {
        for b in [0u8, 0xFF, 0x80, 0x7F] {
            let mut p = good_event.clone();
            p[i] = b;
            s.handle_rtp(peer(), &p);
        }
    }
}

/// A deterministic xorshift generator, so that the fuzz loop below is reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_datagrams_never_panic_and_are_accounted_for() {
    let mut s = session();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    let mut datagram = Vec::with_capacity(256);
    for i in 0..20_000u32 {
        datagram.clear();
        let len = (rng.next() % 200) as usize;
        datagram.extend((0..len).map(|_| rng.next() as u8));
        if i % 2 == 0 && len >= 2 {
            // Half of them look like RTP with one of our payload types.
            datagram[0] = 0x80 | (datagram[0] & 0x3F);
            datagram[1] = if i % 4 == 0 { 101 } else { 0 };
        }
        s.handle_rtp(peer(), &datagram);
        if i % 10 == 0 {
            let _ = s.poll_packet(&mut out);
        }
        while s.poll_event().is_some() {}
    }
    let stats = s.stats();
    assert_eq!(stats.packets_received + stats.packets_invalid, 20_000);
    assert!(stats.packets_received > 0 && stats.packets_invalid > 0);
}
