//! `MediaSession` through its public API: received audio through the jitter buffer, echo, DTMF
//! out (RFC 4733 and in-band tones) and in (in-band detection), the RTP timeout, RTCP, and the
//! frames kept for recording. The session's only clock is `poll_packet`, one call per 20 ms
//! tick; every test steps it and asserts exact outputs.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use voxflow_media::rtcp::{Report, ReportBlock, RtcpPacket, RtcpPackets, SenderInfo};
use voxflow_media::rtp::{RtpHeader, RtpPacket};
use voxflow_media::{
    Codec, DtmfSource, FRAME_SAMPLES, InvalidDigit, MediaEvent, MediaSession, SessionConfig, g711,
    tone,
};

const OUR_SSRC: u32 = 0x0A0B_0C0D;
const PEER_SSRC: u32 = 0x5EE5_0001;
/// The negotiated telephone-event payload type.
const TE: u8 = 101;
const OUR_SEQ: u16 = 1000;
const OUR_TS: u32 = 50_000;

fn peer() -> SocketAddr {
    "198.51.100.7:4000".parse().unwrap()
}

fn peer_rtcp() -> SocketAddr {
    "198.51.100.7:4001".parse().unwrap()
}

fn us() -> SocketAddr {
    "192.0.2.10:20000".parse().unwrap()
}

/// Our session: PCMU, telephone-event `dtmf_payload_type` if any, sending to `peer()`.
fn config(dtmf_payload_type: Option<u8>) -> SessionConfig {
    SessionConfig {
        codec: Codec::Pcmu,
        payload_type: 0,
        dtmf_payload_type,
        ssrc: OUR_SSRC,
        initial_seq: OUR_SEQ,
        initial_timestamp: OUR_TS,
        remote: Some(peer()),
        ptime_ms: 20,
        rtp_timeout_ms: 0,
    }
}

/// A second session playing the far end, sending to `us()`.
fn far_end(dtmf_payload_type: Option<u8>) -> MediaSession {
    MediaSession::new(SessionConfig {
        ssrc: PEER_SSRC,
        initial_seq: 60_000,
        initial_timestamp: 7,
        remote: Some(us()),
        ..config(dtmf_payload_type)
    })
}

fn events(s: &mut MediaSession) -> Vec<MediaEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// The digits reported, as (digit, source); panics on any other event.
fn digits(events: &[MediaEvent]) -> Vec<(char, DtmfSource)> {
    events
        .iter()
        .map(|e| match e {
            MediaEvent::Dtmf { digit, source, .. } => (*digit, *source),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// One tick: the datagram `poll_packet` wrote (empty when it had nowhere to send).
fn poll(s: &mut MediaSession) -> Vec<u8> {
    let mut out = Vec::new();
    let to = s.poll_packet(&mut out);
    assert_eq!(to.is_some(), !out.is_empty());
    out
}

fn header(datagram: &[u8]) -> RtpHeader {
    RtpPacket::parse(datagram).unwrap().header
}

fn payload(datagram: &[u8]) -> &[u8] {
    RtpPacket::parse(datagram).unwrap().payload
}

/// The PCM of one of our µ-law packets.
fn decode(datagram: &[u8]) -> Vec<i16> {
    assert_eq!(header(datagram).payload_type, 0);
    payload(datagram)
        .iter()
        .map(|b| g711::ulaw_decode(*b))
        .collect()
}

/// What µ-law does to `pcm`: exactly what a receiver can get back.
fn ulaw_round_trip(pcm: &[i16]) -> Vec<i16> {
    pcm.iter()
        .map(|s| g711::ulaw_decode(g711::ulaw_encode(*s)))
        .collect()
}

/// An RFC 4733 payload as (event, end, duration).
fn telephone_event(datagram: &[u8]) -> (u8, bool, u16) {
    let [event, flags, d0, d1] = payload(datagram).try_into().unwrap();
    (event, flags & 0x80 != 0, u16::from_be_bytes([d0, d1]))
}

fn te_payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
    let [d0, d1] = duration.to_be_bytes();
    [event, if end { 0x80 | 10 } else { 10 }, d0, d1]
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[i16], needle: &[i16]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rms(pcm: &[i16]) -> f64 {
    let sum: f64 = pcm.iter().map(|s| f64::from(*s).powi(2)).sum();
    (sum / pcm.len() as f64).sqrt()
}

/// Deterministic noise, so that an echoed stretch can be found at exactly one offset.
fn noise(samples: usize, amplitude: i16) -> Vec<i16> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..samples)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (2 * amplitude as u64 + 1)) as i16 - amplitude
        })
        .collect()
}

/// A phone sending RTP to us: µ-law audio and RFC 4733 events on one SSRC.
struct Peer {
    seq: u16,
    timestamp: u32,
}

impl Peer {
    fn new() -> Self {
        Peer {
            seq: 100,
            timestamp: 8000,
        }
    }

    fn packet(&mut self, marker: bool, pt: u8, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        RtpHeader {
            marker,
            payload_type: pt,
            sequence_number: self.seq,
            timestamp,
            ssrc: PEER_SSRC,
        }
        .write(&mut out);
        out.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        out
    }

    /// `pcm` as one µ-law packet at the current timestamp, which then moves on.
    fn audio(&mut self, pcm: &[i16]) -> Vec<u8> {
        let codes: Vec<u8> = pcm.iter().map(|s| g711::ulaw_encode(*s)).collect();
        let p = self.packet(false, 0, self.timestamp, &codes);
        self.timestamp = self.timestamp.wrapping_add(pcm.len() as u32);
        p
    }

    /// One key press in place of `updates` audio packets: a marked start, updates every 20 ms,
    /// then the end three times. One packet per tick.
    fn key_press(&mut self, event: u8, updates: u16) -> Vec<Vec<u8>> {
        let ts = self.timestamp;
        let mut packets: Vec<Vec<u8>> = (1..=updates)
            .map(|i| self.packet(i == 1, TE, ts, &te_payload(event, false, i * 160)))
            .collect();
        for _ in 0..3 {
            packets.push(self.packet(false, TE, ts, &te_payload(event, true, updates * 160)));
        }
        self.timestamp = ts.wrapping_add(u32::from(updates + 2) * 160);
        packets
    }

    /// `pcm` cut into packets of `packet_samples`, grouped by the tick in which each arrives:
    /// a packet is sent as soon as its last sample was captured.
    fn stream(&mut self, pcm: &[i16], packet_samples: usize) -> Vec<Vec<Vec<u8>>> {
        let mut ticks = vec![Vec::new(); pcm.len().div_ceil(FRAME_SAMPLES)];
        for (i, chunk) in pcm.chunks(packet_samples).enumerate() {
            let end = i * packet_samples + chunk.len();
            ticks[end.div_ceil(FRAME_SAMPLES) - 1].push(self.audio(chunk));
        }
        ticks
    }
}

/// Our session receiving `schedule` (the packets arriving in each tick): every tick's
/// `received_frame`, concatenated.
fn hear(s: &mut MediaSession, schedule: &[Vec<Vec<u8>>]) -> Vec<i16> {
    let mut heard = Vec::new();
    for arriving in schedule {
        for p in arriving {
            s.handle_rtp(peer(), p);
        }
        let _ = poll(s);
        heard.extend_from_slice(s.received_frame());
    }
    heard
}

/// One second of a 440 Hz sine, then 200 ms of silence (so that the sine is played out before
/// the peer stops sending).
fn sine_then_silence() -> Vec<i16> {
    let mut pcm = tone::sine(440.0, 1000, 8000);
    pcm.extend(tone::silence(200));
    pcm
}

// ---------------------------------------------------------------------------------------------
// 1. Received audio
// ---------------------------------------------------------------------------------------------

#[test]
fn received_frames_are_the_decoded_sine_after_the_jitter_delay() {
    let pcm = sine_then_silence();
    let expected = ulaw_round_trip(&pcm);
    let mut s = MediaSession::new(config(Some(TE)));
    let schedule = Peer::new().stream(&pcm, 160);
    let mut frames = Vec::new();
    for arriving in &schedule {
        for p in arriving {
            s.handle_rtp(peer(), p);
        }
        let _ = poll(&mut s);
        frames.push(*s.received_frame());
    }
    // Silence until the jitter delay has passed, then the sine frame by frame.
    let delay = frames
        .iter()
        .position(|f| f.iter().any(|x| *x != 0))
        .unwrap();
    assert!((1..=3).contains(&delay), "delay {delay} ticks");
    for (tick, frame) in frames.iter().enumerate().skip(delay) {
        let start = (tick - delay) * FRAME_SAMPLES;
        assert_eq!(
            frame[..],
            expected[start..start + FRAME_SAMPLES],
            "tick {tick}"
        );
    }
    let stats = s.jitter_stats();
    assert_eq!(
        (stats.concealed_frames, stats.late, stats.resyncs),
        (0, 0, 1)
    );
}

/// The sine in `packet_ms` packets comes out exactly, with no frame stretched or skipped.
fn assert_heard_intact(packet_ms: usize) {
    let pcm = sine_then_silence();
    let expected = ulaw_round_trip(&pcm[..8000]);
    let mut s = MediaSession::new(config(Some(TE)));
    let schedule = Peer::new().stream(&pcm, packet_ms * 8);
    let heard = hear(&mut s, &schedule);
    let stats = s.jitter_stats();
    let adapted = (stats.late, stats.stretched_frames, stats.skipped_frames);
    assert_eq!(adapted, (0, 0, 0), "{packet_ms} ms: {stats:?}");
    let offset = find(&heard, &expected)
        .unwrap_or_else(|| panic!("{packet_ms} ms packets: the sine is not heard intact"));
    // Play-out is by timestamp: where a frame starts depends on the packetisation.
    assert!(
        offset <= 4 * FRAME_SAMPLES,
        "{packet_ms} ms: delay {offset}"
    );
    assert!(heard[..offset].iter().all(|x| *x == 0), "{packet_ms} ms");
}

#[test]
fn ten_and_twenty_ms_packets_give_the_same_pcm() {
    assert_heard_intact(10);
    assert_heard_intact(20);
}

#[test]
fn thirty_ms_packets_give_the_same_pcm() {
    assert_heard_intact(30);
}

#[test]
fn packets_swapped_in_pairs_still_play_exactly() {
    let pcm = sine_then_silence();
    let expected = ulaw_round_trip(&pcm[..8000]);
    let mut schedule = Peer::new().stream(&pcm, 160);
    for pair in schedule.chunks_mut(2) {
        pair.reverse();
    }
    let mut s = MediaSession::new(config(Some(TE)));
    let heard = hear(&mut s, &schedule);
    // Play-out may start on any sample (the buffer places it from arrival times); what
    // matters is that every sample comes out, in order, with nothing concealed.
    find(&heard, &expected).expect("the sine is heard intact");
    let stats = s.jitter_stats();
    // At most the very first frame, which may start before the stream's first sample.
    assert!(stats.concealed_frames <= 1, "{stats:?}");
    assert_eq!(stats.late, 0);
    assert!(stats.reordered >= 25, "{stats:?}");
}

#[test]
fn a_lost_packet_is_concealed_not_silent() {
    let pcm = sine_then_silence();
    let expected = ulaw_round_trip(&pcm);
    let mut schedule = Peer::new().stream(&pcm, 160);
    schedule[20].clear(); // samples 3200..3360 never arrive
    let mut s = MediaSession::new(config(Some(TE)));
    let heard = hear(&mut s, &schedule);
    let offset = find(&heard, &expected[..3200]).expect("the audio before the loss is exact");
    let concealed = &heard[offset + 3200..offset + 3360];
    assert!(
        rms(concealed) > 0.3 * rms(&expected[3200..3360]),
        "concealment is audible: rms {}",
        rms(concealed)
    );
    assert_ne!(concealed, &expected[3200..3360]);
    // The frame after the loss cross-fades back; from the next one the audio is exact again.
    assert_eq!(
        heard[offset + 3520..offset + 8000],
        expected[3520..8000],
        "exact after recovery"
    );
    assert_eq!(s.jitter_stats().concealed_frames, 1);
}

// ---------------------------------------------------------------------------------------------
// 2. Echo
// ---------------------------------------------------------------------------------------------

#[test]
fn echo_sends_back_the_received_audio_then_finishes_once() {
    let talk = noise(60 * FRAME_SAMPLES, 6000);
    let schedule = Peer::new().stream(&talk, 160);
    let mut s = MediaSession::new(config(Some(TE)));
    let mut arriving = schedule.iter();
    let mut tick = |s: &mut MediaSession| {
        for p in arriving.next().unwrap() {
            s.handle_rtp(peer(), p);
        }
        poll(s)
    };
    for _ in 0..5 {
        let _ = tick(&mut s);
    }
    s.start_echo(7, Some(200), false);
    let beep = tone::beep();
    s.play(5, beep.clone());
    let mut echoed = Vec::new();
    for i in 0..10 {
        let sent = decode(&tick(&mut s));
        assert_eq!(sent, ulaw_round_trip(s.received_frame()), "echo tick {i}");
        assert_eq!(s.sent_frame(), &s.received_frame()[..], "echo tick {i}");
        echoed.extend(sent);
        let expected: &[MediaEvent] = if i == 9 {
            &[MediaEvent::EchoFinished { id: 7 }]
        } else {
            &[] // the playlist waits
        };
        assert_eq!(events(&mut s), expected, "echo tick {i}");
    }
    let offset = find(&ulaw_round_trip(&talk), &echoed).expect("the peer's audio comes back");
    assert_eq!(offset % FRAME_SAMPLES, 0);

    // The queued beep plays from its start after the echo.
    let mut played = Vec::new();
    for _ in 0..13 {
        played.extend(decode(&tick(&mut s)));
    }
    assert_eq!(played[..beep.len()], ulaw_round_trip(&beep)[..]);
    assert_eq!(events(&mut s), [MediaEvent::PlaybackFinished { id: 5 }]);
}

#[test]
fn stop_echo_ends_it_early() {
    let talk = noise(30 * FRAME_SAMPLES, 6000);
    let schedule = Peer::new().stream(&talk, 160);
    let mut s = MediaSession::new(config(Some(TE)));
    s.start_echo(8, Some(200), false);
    let mut sent = Vec::new();
    for (i, arriving) in schedule.iter().enumerate() {
        for p in arriving {
            s.handle_rtp(peer(), p);
        }
        sent.push(decode(&poll(&mut s)));
        if i == 5 {
            s.stop_echo();
            assert_eq!(events(&mut s), [MediaEvent::EchoFinished { id: 8 }]);
            s.stop_echo();
        }
    }
    // No second EchoFinished when the 200 ms would have run out.
    assert_eq!(events(&mut s), []);
    assert!(sent[3..=5].iter().all(|f| f.iter().any(|x| *x != 0)));
    assert!(
        sent[6..].iter().all(|f| f.iter().all(|x| *x == 0)),
        "silence after the echo stopped"
    );
}

/// Our session echoing with `dtmf`, the peer pressing `5`: our datagrams and events.
fn echo_a_key_press(dtmf: bool) -> (Vec<Vec<u8>>, Vec<MediaEvent>) {
    let mut s = MediaSession::new(config(Some(TE)));
    s.start_echo(9, None, dtmf);
    let mut phone = Peer::new();
    let mut arriving: Vec<Vec<u8>> = (0..5).map(|_| phone.audio(&[0; 160])).collect();
    arriving.extend(phone.key_press(5, 5));
    arriving.extend((0..20).map(|_| phone.audio(&[0; 160])));
    let mut sent = Vec::new();
    let mut got = Vec::new();
    for p in &arriving {
        s.handle_rtp(peer(), p);
        sent.push(poll(&mut s));
        got.extend(events(&mut s));
    }
    (sent, got)
}

#[test]
fn echo_with_dtmf_sends_a_received_digit_back_as_rfc4733() {
    let (sent, got) = echo_a_key_press(true);
    assert_eq!(digits(&got), [('5', DtmfSource::Rfc4733)]);
    let te_packets: Vec<&Vec<u8>> = sent
        .iter()
        .filter(|d| header(d).payload_type == TE)
        .collect();
    assert!(te_packets.len() >= 5, "{} event packets", te_packets.len());
    let first = header(te_packets[0]);
    assert!(first.marker);
    for e in &te_packets {
        assert_eq!(header(e).timestamp, first.timestamp);
        assert_eq!(telephone_event(e).0, 5);
    }
    let ends: Vec<bool> = te_packets.iter().map(|e| telephone_event(e).1).collect();
    assert_eq!(ends.iter().filter(|e| **e).count(), 3);
    assert!(ends[ends.len() - 3..].iter().all(|e| *e), "{ends:?}");

    // The phone hears exactly that digit.
    let mut phone = far_end(Some(TE));
    for d in &sent {
        phone.handle_rtp(us(), d);
    }
    assert_eq!(digits(&events(&mut phone)), [('5', DtmfSource::Rfc4733)]);
}

#[test]
fn echo_with_dtmf_sends_back_a_digit_whose_end_packets_were_lost() {
    let mut s = MediaSession::new(config(Some(TE)));
    s.start_echo(9, None, true);
    let mut phone = Peer::new();
    let mut press = phone.key_press(5, 5);
    press.truncate(5); // all three end packets lost
    let mut sent = Vec::new();
    let mut got = Vec::new();
    for i in 0..60 {
        if let Some(p) = press.get(i) {
            s.handle_rtp(peer(), p);
        }
        sent.push(poll(&mut s));
        got.extend(events(&mut s));
    }
    assert_eq!(digits(&got), [('5', DtmfSource::Rfc4733)]);
    let mut far = far_end(Some(TE));
    for d in &sent {
        far.handle_rtp(us(), d);
    }
    assert_eq!(digits(&events(&mut far)), [('5', DtmfSource::Rfc4733)]);
}

#[test]
fn echo_without_dtmf_does_not_send_digits_back() {
    let (sent, got) = echo_a_key_press(false);
    assert_eq!(digits(&got), [('5', DtmfSource::Rfc4733)]);
    assert!(sent.iter().all(|d| header(d).payload_type == 0));
}

// ---------------------------------------------------------------------------------------------
// 3. send_digits with telephone-event
// ---------------------------------------------------------------------------------------------

#[test]
fn send_digits_sends_rfc4733_events_between_audio_packets() {
    let mut s = MediaSession::new(config(Some(TE)));
    let mut sent = Vec::new();
    let mut digits_sent_at = Vec::new();
    for i in 0..40 {
        if i == 3 {
            s.send_digits(11, "1#", 100, 60).unwrap();
        }
        sent.push(poll(&mut s));
        for e in events(&mut s) {
            assert_eq!(e, MediaEvent::DigitsSent { id: 11 });
            digits_sent_at.push(i);
        }
    }
    // Contiguous sequence numbers; the timestamps of audio packets keep their 20 ms pace.
    for (i, d) in sent.iter().enumerate() {
        let h = header(d);
        assert_eq!(h.sequence_number, OUR_SEQ + i as u16, "packet {i}");
        assert_eq!(h.ssrc, OUR_SSRC);
        if h.payload_type == 0 {
            assert_eq!(h.timestamp, OUR_TS + 160 * i as u32, "packet {i}");
        }
    }
    let kinds: String = sent
        .iter()
        .map(|d| {
            if header(d).payload_type == TE {
                'E'
            } else {
                'a'
            }
        })
        .collect();
    // 7 packets per event (100 ms: 4 updates, 3 ends), 60 ms of audio in between.
    assert_eq!(
        kinds,
        format!("aaa{}aaa{}{}", "E".repeat(7), "E".repeat(7), "a".repeat(20))
    );

    for (start, event) in [(3, 1), (13, 11)] {
        let packets = &sent[start..start + 7];
        let ts = OUR_TS + 160 * start as u32; // what the tick's audio packet would carry
        let markers: Vec<bool> = packets.iter().map(|d| header(d).marker).collect();
        assert_eq!(markers, [true, false, false, false, false, false, false]);
        for d in packets {
            assert_eq!(header(d).timestamp, ts);
        }
        let payloads: Vec<(u8, bool, u16)> = packets.iter().map(|d| telephone_event(d)).collect();
        assert_eq!(
            payloads,
            [
                (event, false, 160),
                (event, false, 320),
                (event, false, 480),
                (event, false, 640),
                (event, true, 800),
                (event, true, 800),
                (event, true, 800),
            ]
        );
    }
    assert_eq!(digits_sent_at, [19], "once, with the last end packet");

    // The far end hears exactly those digits.
    let mut phone = far_end(Some(TE));
    for d in &sent {
        phone.handle_rtp(us(), d);
        let _ = poll(&mut phone);
    }
    assert_eq!(
        events(&mut phone),
        [
            MediaEvent::Dtmf {
                digit: '1',
                duration_ms: 100,
                source: DtmfSource::Rfc4733
            },
            MediaEvent::Dtmf {
                digit: '#',
                duration_ms: 100,
                source: DtmfSource::Rfc4733
            },
        ]
    );
}

#[test]
fn send_digits_rejects_an_invalid_digit_and_sends_nothing() {
    for dtmf in [Some(TE), None] {
        let mut s = MediaSession::new(config(dtmf));
        assert_eq!(s.send_digits(1, "12x3", 100, 50), Err(InvalidDigit('x')));
        for _ in 0..40 {
            let d = poll(&mut s);
            assert_eq!(header(&d).payload_type, 0);
            assert!(decode(&d).iter().all(|x| *x == 0), "{dtmf:?}: silence");
        }
        assert_eq!(events(&mut s), [], "{dtmf:?}");
    }
}

#[test]
fn an_invalid_send_digits_leaves_digits_in_progress_alone() {
    let mut s = MediaSession::new(config(Some(TE)));
    s.send_digits(1, "123", 100, 50).unwrap();
    let mut sent = vec![poll(&mut s), poll(&mut s)];
    assert!(s.send_digits(2, "9x", 100, 50).is_err());
    let mut got = Vec::new();
    for _ in 0..40 {
        sent.push(poll(&mut s));
        got.extend(events(&mut s));
    }
    assert_eq!(got, [MediaEvent::DigitsSent { id: 1 }]);
    let mut phone = far_end(Some(TE));
    for d in &sent {
        phone.handle_rtp(us(), d);
    }
    let heard: String = digits(&events(&mut phone)).iter().map(|d| d.0).collect();
    assert_eq!(heard, "123");
}

#[test]
fn send_digits_over_digits_in_progress_reports_both_ids() {
    for dtmf in [None, Some(TE)] {
        let mut s = MediaSession::new(config(dtmf));
        s.send_digits(1, "123", 100, 50).unwrap();
        let _ = poll(&mut s);
        s.send_digits(2, "4", 100, 50).unwrap();
        let mut got = events(&mut s);
        for _ in 0..40 {
            let _ = poll(&mut s);
            got.extend(events(&mut s));
        }
        assert_eq!(
            got,
            [
                MediaEvent::DigitsSent { id: 1 },
                MediaEvent::DigitsSent { id: 2 }
            ],
            "{dtmf:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. send_digits without telephone-event: in-band tones
// ---------------------------------------------------------------------------------------------

#[test]
fn send_digits_without_telephone_event_sends_tones_a_detector_hears() {
    let mut s = MediaSession::new(config(None));
    let mut phone = far_end(None);
    s.send_digits(12, "159#", 100, 100).unwrap();
    let mut ours = Vec::new();
    for _ in 0..60 {
        let d = poll(&mut s);
        assert_eq!(header(&d).payload_type, 0);
        phone.handle_rtp(us(), &d);
        let _ = poll(&mut phone);
        ours.extend(events(&mut s));
    }
    assert_eq!(ours, [MediaEvent::DigitsSent { id: 12 }]);
    let heard = events(&mut phone);
    assert_eq!(
        digits(&heard),
        [
            ('1', DtmfSource::Inband),
            ('5', DtmfSource::Inband),
            ('9', DtmfSource::Inband),
            ('#', DtmfSource::Inband),
        ]
    );
    assert!(
        heard
            .iter()
            .all(|e| matches!(e, MediaEvent::Dtmf { duration_ms: 0, .. }))
    );
}

// ---------------------------------------------------------------------------------------------
// 5. In-band detection
// ---------------------------------------------------------------------------------------------

/// "159#" as µ-law audio: 80 ms tones, 80 ms gaps, then 200 ms of silence.
fn keyed_audio() -> Vec<Vec<Vec<u8>>> {
    let mut pcm = Vec::new();
    for digit in "159#".chars() {
        pcm.extend(tone::dtmf(digit, 80, 7000).unwrap());
        pcm.extend(tone::silence(80));
    }
    pcm.extend(tone::silence(200));
    Peer::new().stream(&pcm, 160)
}

#[test]
fn inband_tones_are_detected_once_each_without_telephone_event() {
    let mut s = MediaSession::new(config(None));
    let _ = hear(&mut s, &keyed_audio());
    let got = events(&mut s);
    let keys: String = digits(&got).iter().map(|d| d.0).collect();
    assert_eq!(keys, "159#");
    assert!(
        digits(&got)
            .iter()
            .all(|(_, source)| *source == DtmfSource::Inband)
    );
    assert_eq!(s.stats().dtmf_events, 4);
}

/// A 200 ms press of `digit`, then 300 ms of silence, as 20 ms packets with sequence numbers.
fn one_press(digit: char) -> Vec<Vec<Vec<u8>>> {
    let mut pcm = tone::dtmf(digit, 200, 7000).unwrap();
    pcm.extend(tone::silence(300));
    Peer::new().stream(&pcm, 160)
}

fn inband_keys(s: &mut MediaSession) -> String {
    let got = events(s);
    assert!(
        digits(&got)
            .iter()
            .all(|(_, source)| *source == DtmfSource::Inband)
    );
    digits(&got).iter().map(|d| d.0).collect()
}

#[test]
fn a_lost_packet_inside_an_inband_press_does_not_split_it() {
    for lost in 2..10 {
        let mut schedule = one_press('5');
        schedule[lost].clear();
        let mut s = MediaSession::new(config(None));
        let _ = hear(&mut s, &schedule);
        assert_eq!(inband_keys(&mut s), "5", "packet {lost} lost");
    }
}

#[test]
fn a_stalled_sender_inside_an_inband_press_is_one_digit() {
    // The peer stops for 80 ms in the middle of the press, then sends what it held at once:
    // concealment, then late packets; still one press.
    for stall in [3, 4] {
        let mut schedule = one_press('8');
        let held: Vec<Vec<u8>> = (5..5 + stall)
            .flat_map(|t| schedule[t].split_off(0))
            .collect();
        schedule[5 + stall].splice(0..0, held);
        let mut s = MediaSession::new(config(None));
        let _ = hear(&mut s, &schedule);
        assert_eq!(inband_keys(&mut s), "8", "stalled {stall} packets");
    }
}

#[test]
fn the_same_inband_key_twice_is_two_digits() {
    let mut pcm = Vec::new();
    for _ in 0..2 {
        pcm.extend(tone::dtmf('5', 100, 7000).unwrap());
        pcm.extend(tone::silence(60));
    }
    pcm.extend(tone::silence(200));
    let mut s = MediaSession::new(config(None));
    let _ = hear(&mut s, &Peer::new().stream(&pcm, 160));
    assert_eq!(inband_keys(&mut s), "55");
}

#[test]
fn inband_tones_are_ignored_with_telephone_event() {
    let mut s = MediaSession::new(config(Some(TE)));
    let _ = hear(&mut s, &keyed_audio());
    assert_eq!(events(&mut s), []);
    assert_eq!(s.stats().dtmf_events, 0);
}

// ---------------------------------------------------------------------------------------------
// 6. RTP timeout
// ---------------------------------------------------------------------------------------------

fn timeout_session(rtp_timeout_ms: u32) -> MediaSession {
    MediaSession::new(SessionConfig {
        rtp_timeout_ms,
        ..config(Some(TE))
    })
}

/// Runs `ticks` ticks, calling `before(tick, session)` ahead of each poll; returns the ticks
/// (0-based) whose poll reported an `RtpTimeout`, with its `silent_ms`.
fn timeouts(
    s: &mut MediaSession,
    ticks: u64,
    mut before: impl FnMut(u64, &mut MediaSession),
) -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    for tick in 0..ticks {
        before(tick, s);
        let _ = poll(s);
        for e in events(s) {
            match e {
                MediaEvent::RtpTimeout { silent_ms } => found.push((tick, silent_ms)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    found
}

#[test]
fn rtp_timeout_fires_once_after_a_second_without_packets() {
    let mut s = timeout_session(1000);
    let mut phone = Peer::new();
    // Packets in ticks 0..10, nothing until 300, one packet then, nothing again.
    let got = timeouts(&mut s, 600, |tick, s| {
        if tick < 10 || tick == 300 {
            s.handle_rtp(peer(), &phone.audio(&[0; 160]));
        }
    });
    // With the 50th poll counted from the one right after the last packet.
    assert_eq!(got, [(58, 1000), (349, 1000)]);
}

#[test]
fn rtp_timeout_never_fires_while_packets_arrive() {
    let mut s = timeout_session(1000);
    let mut phone = Peer::new();
    let got = timeouts(&mut s, 1000, |tick, s| {
        if tick % 45 == 0 {
            s.handle_rtp(peer(), &phone.audio(&[0; 160]));
        } else if tick % 45 == 22 {
            // Comfort noise is media too (RFC 3389).
            let cn = phone.packet(false, 13, 0, &[40]);
            s.handle_rtp(peer(), &cn);
        }
    });
    assert_eq!(got, []);
}

#[test]
fn rtp_timeout_pauses_on_hold() {
    let mut s = timeout_session(1000);
    s.set_receiving(false);
    let got = timeouts(&mut s, 500, |tick, s| {
        if tick == 400 {
            s.set_receiving(true);
        }
    });
    assert_eq!(got, [(449, 1000)]);
}

#[test]
fn rtcp_from_the_peer_counts_as_life() {
    let mut s = timeout_session(1000);
    let mut rr = Vec::new();
    Report {
        ssrc: PEER_SSRC,
        sender: None,
        block: None,
        cname: "phone",
    }
    .write(&mut rr);
    let got = timeouts(&mut s, 1000, |tick, s| match tick % 80 {
        0 => s.handle_rtcp(peer_rtcp(), &rr),
        40 => s.handle_rtp(peer(), &rr), // rtcp-mux
        _ => {}
    });
    assert_eq!(got, []);
    assert_eq!(s.stats().rtcp_received, 25);
}

#[test]
fn rtp_timeout_zero_never_fires() {
    let mut s = timeout_session(0);
    assert_eq!(timeouts(&mut s, 5000, |_, _| {}), []);
}

// ---------------------------------------------------------------------------------------------
// 7. RTCP
// ---------------------------------------------------------------------------------------------

/// The wall clock at `tick` as NTP 32.32 (some day in 2024, plus 20 ms per tick).
fn ntp_at(tick: u64) -> u64 {
    (3_913_056_000u64 << 32) + tick * ((1u64 << 32) / 50)
}

/// A report we sent: when (tick), where, and the datagram.
struct Sent {
    tick: u64,
    to: SocketAddr,
    datagram: Vec<u8>,
}

/// The SR or RR of a compound packet from us: (ssrc, sender info, report blocks), after
/// checking it ends with our SDES CNAME.
fn parse_report(datagram: &[u8]) -> (u32, Option<SenderInfo>, Vec<ReportBlock>) {
    let packets: Vec<RtcpPacket<'_>> = RtcpPackets::new(datagram)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(packets.len(), 2, "{packets:?}");
    let RtcpPacket::SourceDescription(sdes) = packets[1] else {
        panic!("no SDES: {packets:?}");
    };
    assert_eq!(sdes.cname(OUR_SSRC), Some(&b"voxflow"[..]));
    match packets[0] {
        RtcpPacket::SenderReport {
            ssrc,
            sender,
            blocks,
        } => (ssrc, Some(sender), blocks.collect()),
        RtcpPacket::ReceiverReport { ssrc, blocks } => (ssrc, None, blocks.collect()),
        other => panic!("compound packet starts with {other:?}"),
    }
}

#[test]
fn rtcp_sender_reports_carry_our_counts_and_the_peers_loss() {
    let mut s = MediaSession::new(config(Some(TE)));
    let mut phone = far_end(Some(TE));
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut buf = Vec::new();
    let mut ours_stats = Vec::new();
    for tick in 0..400u64 {
        let d = poll(&mut s);
        phone.handle_rtp(us(), &d);
        let d = poll(&mut phone);
        if tick != 20 && tick != 40 {
            s.handle_rtp(peer(), &d); // 2 of the first 100 packets lost
        }
        if let Some(to) = s.poll_rtcp(ntp_at(tick), &mut buf) {
            ours.push(Sent {
                tick,
                to,
                datagram: buf.clone(),
            });
            ours_stats.push(s.stats());
            phone.handle_rtcp("192.0.2.10:20001".parse().unwrap(), &buf);
        }
        if let Some(to) = phone.poll_rtcp(ntp_at(tick), &mut buf) {
            assert_eq!(to, "192.0.2.10:20001".parse().unwrap());
            theirs.push(Sent {
                tick,
                to,
                datagram: buf.clone(),
            });
            s.handle_rtcp(peer_rtcp(), &buf);
        }
    }
    // First report after 1.25..3.75 s, then every 2.5..7.5 s.
    assert!((62..=188).contains(&ours[0].tick), "{}", ours[0].tick);
    assert!((2..=4).contains(&ours.len()), "{} reports", ours.len());
    assert_eq!(s.stats().rtcp_sent, ours.len() as u64);
    for (report, stats) in ours.iter().zip(&ours_stats) {
        assert_eq!(report.to, peer_rtcp(), "the RTP port + 1");
        let (ssrc, sender, blocks) = parse_report(&report.datagram);
        assert_eq!(ssrc, OUR_SSRC);
        let sender = sender.expect("an SR: we sent RTP");
        assert_eq!(sender.ntp, ntp_at(report.tick));
        assert_eq!(sender.packet_count as u64, stats.packets_sent);
        assert_eq!(sender.packet_count as u64, report.tick + 1);
        assert_eq!(sender.octet_count, 160 * sender.packet_count);
        assert_eq!(
            sender.rtp_timestamp,
            OUR_TS + 160 * (report.tick as u32 + 1)
        );
        let [block] = blocks[..] else {
            panic!("{blocks:?}")
        };
        assert_eq!(block.ssrc, PEER_SSRC);
        assert_eq!(block.cumulative_lost, 2);
        assert_eq!(block.extended_highest_sequence, 60_000 + report.tick as u32);
    }
    // The first report's fraction lost is 2 of all packets so far; later ones saw no loss.
    let (_, _, first) = parse_report(&ours[0].datagram);
    assert_eq!(
        u64::from(first[0].fraction_lost),
        (2 << 8) / (ours[0].tick + 1)
    );
    let (_, _, second) = parse_report(&ours[1].datagram);
    assert_eq!(second[0].fraction_lost, 0);

    // Once the peer's SR arrived, our blocks carry its LSR and the delay since (DLSR).
    let sr = theirs.first().expect("the peer reported too");
    let later = ours
        .iter()
        .find(|r| r.tick > sr.tick)
        .expect("a report after the peer's");
    let (_, _, blocks) = parse_report(&later.datagram);
    assert_eq!(blocks[0].last_sender_report, (ntp_at(sr.tick) >> 16) as u32);
    assert_eq!(
        blocks[0].delay_since_last_sender_report,
        ((later.tick - sr.tick) * 20 * 65536 / 1000) as u32
    );

    // Each side's view of its own stream comes from the other's report.
    let about_us = s.peer_report().expect("the peer reported about us");
    assert_eq!((about_us.ssrc, about_us.cumulative_lost), (OUR_SSRC, 0));
    let about_them = phone.peer_report().expect("we reported about the peer");
    assert_eq!(
        (about_them.ssrc, about_them.cumulative_lost),
        (PEER_SSRC, 2)
    );
}

#[test]
fn rtcp_is_a_receiver_report_when_we_have_not_sent() {
    // Without a remote address we send no RTP, and no RTCP until the peer's arrives.
    let mut s = MediaSession::new(SessionConfig {
        remote: None,
        ..config(Some(TE))
    });
    let mut buf = Vec::new();
    for tick in 0..400 {
        assert!(poll(&mut s).is_empty());
        assert_eq!(s.poll_rtcp(ntp_at(tick), &mut buf), None);
        assert!(buf.is_empty());
    }
    let mut rr = Vec::new();
    Report {
        ssrc: PEER_SSRC,
        sender: None,
        block: None,
        cname: "phone",
    }
    .write(&mut rr);
    let from: SocketAddr = "198.51.100.7:4555".parse().unwrap();
    s.handle_rtcp(from, &rr);
    let mut sent = Vec::new();
    for tick in 400..800 {
        assert!(poll(&mut s).is_empty());
        if let Some(to) = s.poll_rtcp(ntp_at(tick), &mut buf) {
            sent.push((to, buf.clone()));
        }
    }
    assert!(!sent.is_empty());
    for (to, datagram) in &sent {
        assert_eq!(*to, from, "symmetric RTCP");
        let (ssrc, sender, blocks) = parse_report(datagram);
        assert_eq!((ssrc, sender, blocks), (OUR_SSRC, None, vec![]));
    }
}

#[test]
fn rtcp_turns_into_receiver_reports_on_hold() {
    let mut s = MediaSession::new(config(Some(TE)));
    let mut phone = Peer::new();
    let mut buf = Vec::new();
    let mut reports = Vec::new();
    let mut rr = Vec::new();
    Report {
        ssrc: PEER_SSRC,
        sender: None,
        block: None,
        cname: "phone",
    }
    .write(&mut rr);
    for tick in 0..1000 {
        if tick < 300 {
            s.handle_rtp(peer(), &phone.audio(&[0; 160]));
        } else if tick == 300 {
            s.set_remote("0.0.0.0:4000".parse().unwrap()); // we hold: nothing is sent
            s.set_receiving(false);
        } else if tick % 100 == 0 {
            s.handle_rtcp(peer_rtcp(), &rr); // the peer still reports
        }
        let sent = poll(&mut s);
        assert_eq!(sent.is_empty(), tick >= 300);
        if s.poll_rtcp(ntp_at(tick), &mut buf).is_some() {
            reports.push((tick, parse_report(&buf)));
        }
    }
    let (tick, (_, sender, blocks)) = reports.last().unwrap();
    assert!(*tick > 600);
    assert_eq!(*sender, None, "an RR: nothing sent since the last report");
    assert_eq!(blocks.len(), 1);
    assert_eq!((blocks[0].ssrc, blocks[0].cumulative_lost), (PEER_SSRC, 0));
    assert!(
        reports
            .iter()
            .filter(|(t, _)| *t < 300)
            .all(|(_, (_, sender, _))| sender.is_some())
    );
}

#[test]
fn peer_reports_about_us_become_peer_report() {
    let mut s = MediaSession::new(config(Some(TE)));
    assert_eq!(s.peer_report(), None);
    let block = ReportBlock {
        ssrc: OUR_SSRC,
        fraction_lost: 12,
        cumulative_lost: 3,
        extended_highest_sequence: 0x0001_0010,
        jitter: 40,
        last_sender_report: 0x1234_5678,
        delay_since_last_sender_report: 0x0001_8000,
    };
    let mut sr = Vec::new();
    Report {
        ssrc: PEER_SSRC,
        sender: Some(SenderInfo {
            ntp: ntp_at(7),
            rtp_timestamp: 99,
            packet_count: 10,
            octet_count: 1600,
        }),
        block: Some(block),
        cname: "phone",
    }
    .write(&mut sr);
    s.handle_rtcp(peer_rtcp(), &sr);
    assert_eq!(s.peer_report(), Some(&block));

    // An RR, on the RTP port (rtcp-mux).
    let newer = ReportBlock {
        cumulative_lost: 5,
        ..block
    };
    let mut rr = Vec::new();
    Report {
        ssrc: PEER_SSRC,
        sender: None,
        block: Some(newer),
        cname: "phone",
    }
    .write(&mut rr);
    s.handle_rtp(peer(), &rr);
    assert_eq!(s.peer_report(), Some(&newer));

    // A report about someone else changes nothing.
    let mut other = Vec::new();
    Report {
        ssrc: PEER_SSRC,
        sender: None,
        block: Some(ReportBlock {
            ssrc: 0xBAD,
            ..block
        }),
        cname: "phone",
    }
    .write(&mut other);
    s.handle_rtcp(peer_rtcp(), &other);
    assert_eq!(s.peer_report(), Some(&newer));
    assert_eq!(s.stats().rtcp_received, 3);
    assert_eq!(s.stats().packets_invalid, 0);
}

#[test]
fn garbage_rtcp_is_counted_and_never_panics() {
    let mut s = MediaSession::new(config(Some(TE)));
    let garbage: [&[u8]; 7] = [
        &[],
        &[0x80],
        &[0x80, 200, 0],
        &[0x40, 201, 0, 1, 0, 0, 0, 1], // version 1
        &[0x80, 200, 0, 6, 0, 0, 0, 1], // length runs past the end
        &[0x81, 201, 0, 1, 0, 0, 0, 1], // one block announced, none there
        &[0xA0, 201, 0, 1, 0, 0, 0, 0], // padding count 0
    ];
    for g in garbage {
        s.handle_rtcp(peer_rtcp(), g);
    }
    assert_eq!(s.stats().packets_invalid, garbage.len() as u64);
    assert_eq!((s.stats().rtcp_received, s.peer_report()), (0, None));

    // Every prefix and single-byte corruption of a valid SR, on both ports.
    let mut sr = Vec::new();
    Report {
        ssrc: PEER_SSRC,
        sender: Some(SenderInfo::default()),
        block: Some(ReportBlock {
            ssrc: OUR_SSRC,
            ..ReportBlock::default()
        }),
        cname: "phone",
    }
    .write(&mut sr);
    let before = s.stats();
    let mut delivered = 0;
    for cut in 0..sr.len() {
        s.handle_rtcp(peer_rtcp(), &sr[..cut]);
        s.handle_rtp(peer(), &sr[..cut]);
        delivered += 2;
    }
    for i in 0..sr.len() {
        for b in [0u8, 0xFF, 0x80, 0x7F, 0x20] {
            let mut p = sr.clone();
            p[i] = b;
            s.handle_rtcp(peer_rtcp(), &p);
            s.handle_rtp(peer(), &p);
            delivered += 2;
        }
        let _ = poll(&mut s);
    }
    let after = s.stats();
    let accounted = (after.packets_invalid - before.packets_invalid)
        + (after.rtcp_received - before.rtcp_received)
        + (after.packets_received - before.packets_received);
    assert_eq!(accounted, delivered);
}

// ---------------------------------------------------------------------------------------------
// 8. Frames for recording
// ---------------------------------------------------------------------------------------------

#[test]
fn sent_frame_is_the_audio_encoded_and_silence_during_events() {
    let sine = tone::sine(300.0, 2000, 9000);
    let mut s = MediaSession::new(config(Some(TE)));
    s.play(1, Arc::from(sine.clone()));
    let mut event_ticks = 0;
    for tick in 0..60 {
        if tick == 10 {
            s.send_digits(2, "7", 100, 0).unwrap();
        }
        let d = poll(&mut s);
        let h = header(&d);
        if h.payload_type == TE {
            event_ticks += 1;
            assert_eq!(s.sent_frame(), &[0; FRAME_SAMPLES][..], "tick {tick}");
        } else {
            // Playback kept its time while events replaced the audio.
            let start = tick * FRAME_SAMPLES;
            assert_eq!(
                s.sent_frame(),
                &sine[start..start + FRAME_SAMPLES],
                "tick {tick}"
            );
            let encoded: Vec<u8> = s
                .sent_frame()
                .iter()
                .map(|x| g711::ulaw_encode(*x))
                .collect();
            assert_eq!(payload(&d), &encoded[..], "tick {tick}");
        }
    }
    assert_eq!(event_ticks, 7);
}

#[test]
fn sent_frame_follows_the_ptime() {
    let mut s = MediaSession::new(SessionConfig {
        ptime_ms: 30,
        ..config(Some(TE))
    });
    let ramp: Vec<i16> = (0..2400).map(|i| (i * 7 - 8000) as i16).collect();
    s.play(1, Arc::from(ramp.clone()));
    for tick in 0..10 {
        let d = poll(&mut s);
        assert_eq!(s.sent_frame(), &ramp[tick * 240..(tick + 1) * 240]);
        assert_eq!(decode(&d), ulaw_round_trip(s.sent_frame()));
    }
}

#[test]
#[ignore = "bug: reception assumes 20 ms ticks; with ptime 30 the jitter buffer plays 160 \
            samples per 30 ms tick and echo sends 80 zero samples in every packet"]
fn echo_at_30ms_ptime_sends_every_received_sample() {
    let mut s = MediaSession::new(SessionConfig {
        ptime_ms: 30,
        ..config(Some(TE))
    });
    let talk = noise(100 * 240, 6000);
    let mut phone = Peer::new();
    s.start_echo(1, None, false);
    let mut echoed = Vec::new();
    for chunk in talk.chunks(240) {
        s.handle_rtp(peer(), &phone.audio(chunk));
        echoed.extend(decode(&poll(&mut s)));
    }
    let expected = ulaw_round_trip(&talk);
    // One second from the middle of the call comes back intact.
    assert!(find(&echoed, &expected[9600..17_600]).is_some());
}

// ---- packet relay (bridged legs with the same codec) ----

/// A packet of the other leg: its own SSRC, PT 8 (say), and `fill` as payload.
fn foreign(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    RtpHeader {
        marker,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
    }
    .write(&mut out);
    out.extend_from_slice(payload);
    out
}

#[test]
fn relayed_packets_continue_our_stream_with_the_payload_untouched() {
    let mut s = MediaSession::new(config(Some(TE)));
    let before: Vec<Vec<u8>> = (0..3).map(|_| poll(&mut s)).collect();
    let last = header(&before[2]);
    s.set_relaying(Some((96, Some(100))));
    // While relaying, the tick sends nothing of its own.
    assert!(poll(&mut s).is_empty());
    let mut out = Vec::new();
    let mut relayed = Vec::new();
    for i in 0..5u16 {
        let body = [i as u8; 160];
        let packet = foreign(
            96,
            40_000 + i,
            9_000 + 160 * u32::from(i),
            0xF0F0,
            i == 0,
            &body,
        );
        assert_eq!(s.relay_packet(&packet, &mut out), Some(peer()));
        relayed.push(out.clone());
    }
    for (i, packet) in relayed.iter().enumerate() {
        let h = header(packet);
        assert_eq!(h.ssrc, OUR_SSRC);
        assert_eq!(h.payload_type, 0, "mapped to our audio payload type");
        assert_eq!(
            h.sequence_number,
            last.sequence_number.wrapping_add(1 + i as u16)
        );
        // Continuous with our last packet (the relay, not the tick, drives our timeline).
        assert_eq!(h.timestamp, last.timestamp + 160 * (1 + i as u32));
        assert_eq!(h.marker, i == 0);
        assert_eq!(payload(packet), [i as u8; 160]);
    }
    // Relay ends: our own packets carry on from the last relayed one.
    s.set_relaying(None);
    let next = header(&poll(&mut s));
    let last_relayed = header(&relayed[4]);
    assert_eq!(
        next.sequence_number,
        last_relayed.sequence_number.wrapping_add(1)
    );
    assert_eq!(next.timestamp, last_relayed.timestamp + 160);
}

#[test]
fn relay_keeps_gaps_rebases_a_new_source_and_maps_telephone_events() {
    let mut s = MediaSession::new(config(Some(TE)));
    s.set_relaying(Some((0, Some(101))));
    let mut out = Vec::new();
    let body = [0x55u8; 160];
    let _ = s.relay_packet(&foreign(0, 10, 1_000, 1, false, &body), &mut out);
    let first = header(&out);
    assert_eq!(
        (first.sequence_number, first.timestamp),
        (OUR_SEQ, OUR_TS),
        "the first relayed packet continues where our stream would"
    );
    // A lost packet in the source stays a gap for the far end.
    let _ = s.relay_packet(&foreign(0, 12, 1_320, 1, false, &body), &mut out);
    assert_eq!(header(&out).sequence_number, OUR_SEQ + 2);
    assert_eq!(header(&out).timestamp, OUR_TS + 320);
    // A telephone-event keeps its event timestamp and gets our DTMF payload type.
    let event = foreign(101, 13, 1_480, 1, true, &[5, 0x0A, 0, 160]);
    assert_eq!(s.relay_packet(&event, &mut out), Some(peer()));
    assert_eq!(header(&out).payload_type, TE);
    assert_eq!(header(&out).timestamp, OUR_TS + 480);
    assert_eq!(payload(&out), [5, 0x0A, 0, 160]);
    // The other leg is re-INVITEd to a new source: no jump for our far end.
    let _ = s.relay_packet(&foreign(0, 5_000, 777_777, 2, false, &body), &mut out);
    assert_eq!(header(&out).sequence_number, OUR_SEQ + 4);
    assert_eq!(header(&out).timestamp, OUR_TS + 480);
    // Neither of the leg's payload types, or not RTP: nothing is sent.
    assert_eq!(
        s.relay_packet(&foreign(18, 5_001, 0, 2, false, &body), &mut out),
        None
    );
    assert!(out.is_empty());
    assert_eq!(s.relay_packet(b"garbage", &mut out), None);
    // Relay off: nothing relayed.
    s.set_relaying(None);
    assert_eq!(
        s.relay_packet(&foreign(0, 5_002, 0, 2, false, &body), &mut out),
        None
    );
}

#[test]
fn relay_needs_the_same_codec() {
    let s = MediaSession::new(config(Some(TE)));
    assert!(s.can_relay_from(&config(None)));
    let alaw = SessionConfig {
        codec: Codec::Pcma,
        payload_type: 8,
        ..config(Some(TE))
    };
    assert!(!s.can_relay_from(&alaw));
}
