//! RFC 4733 telephone-events: [`DtmfSender`] turns digits into the packets of one event per
//! key press, and the receiver turns the start/update/end packets of each key press into exactly
//! one digit.
//!
//! # Sending
//!
//! The session asks [`DtmfSender::poll`] once per packetisation interval what to send: an event
//! packet in place of the audio frame, or the audio frame. All packets of one event carry the
//! RTP timestamp of its first packet (the session subtracts
//! [`DtmfPacket::Event::timestamp_offset`] from the timestamp of the tick), the first has the
//! marker bit, the duration grows by one ptime per packet, and the end is sent three times with
//! the E bit and the final duration; then the interval between digits passes as audio.
//!
//! # Receiving
//!
//! An event is identified by (SSRC, RTP timestamp, event code). It is reported once: on its
//! first end packet (E bit), or — when every end packet was lost — when a different event
//! starts or after [`DtmfReceiver::handle_tick`] sees no packet for it for a long gap. Events
//! already reported are remembered in a small ring so that repeated end packets and late,
//! reordered packets of a finished event are ignored. The marker bit and the SSRC of the
//! audio stream play no part, so events without a marker or from a foreign SSRC count too.

use std::collections::VecDeque;

/// Sends digits as RFC 4733 telephone-events, one packet per ptime tick.
///
/// The session queues digits with [`send`](Self::send) and, every tick, asks
/// [`poll`](Self::poll) whether to send an event packet or its audio frame. For `"1"` of 100 ms
/// at a 20 ms ptime, the ticks give seven event packets with durations 160, 320, 480, 640, then
/// 800 three times with the E bit, all with the timestamp of the first (which has the marker);
/// then the interval passes as audio. [`take_finished`](Self::take_finished) is `true` once
/// after the last digit's third end packet.
#[derive(Debug, Default)]
pub struct DtmfSender {
    /// Digits waiting for the one being sent.
    queue: VecDeque<Tone>,
    state: SendState,
    /// Whether the end of the queue is to be reported (not after a cancel).
    report_finish: bool,
    /// The edge reported by `take_finished`.
    finished: bool,
}

/// What to send in one packetisation interval, from [`DtmfSender::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfPacket {
    /// No event now: send the normal audio frame (or silence).
    Audio,
    /// Send this telephone-event packet, with the negotiated telephone-event payload type and
    /// the session's next sequence number, instead of the audio frame.
    Event {
        /// The 4-byte RFC 4733 payload: event, E bit and volume, duration (big-endian).
        payload: [u8; 4],
        /// The RTP marker bit: set on the first packet of each event.
        marker: bool,
        /// Samples from the start of the event to this tick. The packet's RTP timestamp is the
        /// one this tick's audio packet would carry minus this (wrapping), i.e. the timestamp of
        /// the event's first packet, for which it is 0.
        timestamp_offset: u32,
    },
}

/// A character that is not a DTMF digit was given to [`DtmfSender::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a DTMF digit (0-9, *, #, A-D)")]
pub struct InvalidDigit(pub char);

impl DtmfSender {
    /// A sender with nothing to send.
    #[must_use]
    pub fn new() -> Self {
        DtmfSender::default()
    }

    /// Whether an event is being sent or digits are queued (the pause after the last digit does
    /// not count).
    #[must_use]
    pub fn is_active(&self) -> bool {
        !self.queue.is_empty() || matches!(self.state, SendState::Sending { .. })
    }

    /// Queues `digits` (`0`-`9`, `*`, `#`, `A`-`D`), each sent as an event of `duration_ms`
    /// followed by `interval_ms` of audio, after whatever is already queued. The whole string is
    /// checked first: on an invalid character nothing is queued.
    ///
    /// `duration_ms` is clamped to 40..=8000 (the Q.24 minimum; the largest duration the 16-bit
    /// field holds). An empty string queues nothing and, when the sender is idle, makes
    /// [`take_finished`](Self::take_finished) report completion at once.
    pub fn send(
        &mut self,
        digits: &str,
        duration_ms: u32,
        interval_ms: u32,
    ) -> Result<(), InvalidDigit> {
        let events = digits
            .chars()
            .map(|c| event_code(c).ok_or(InvalidDigit(c)))
            .collect::<Result<Vec<u8>, InvalidDigit>>()?;
        let duration = duration_ms.clamp(MIN_DURATION_MS, MAX_DURATION_MS) * SAMPLES_PER_MS;
        let interval = interval_ms.saturating_mul(SAMPLES_PER_MS);
        self.queue.extend(events.into_iter().map(|event| Tone {
            event,
            duration,
            interval,
        }));
        self.report_finish = true;
        if !self.is_active() {
            self.finished = true;
        }
        Ok(())
    }

    /// Drops the queued digits. An event being sent is ended properly: its end packets (with
    /// the duration sent so far) still go out in the next ticks. No completion is reported.
    pub fn cancel(&mut self) {
        self.queue.clear();
        self.report_finish = false;
        self.finished = false;
        if let SendState::Sending {
            phase: phase @ Phase::Tone,
            duration_sent,
            final_duration,
            ..
        } = &mut self.state
        {
            *final_duration = *duration_sent;
            *phase = Phase::End { sent: 0 };
        }
    }

    /// One packetisation interval of `ptime_ms` passed: what to send in this tick's packet.
    /// Call it every tick, with the session's ptime.
    #[must_use]
    pub fn poll(&mut self, ptime_ms: u32) -> DtmfPacket {
        let step = ptime_ms.max(1).saturating_mul(SAMPLES_PER_MS);
        if let SendState::Pause { remaining } = &mut self.state {
            if *remaining > 0 {
                *remaining = remaining.saturating_sub(step);
                return DtmfPacket::Audio;
            }
            self.state = SendState::Idle;
        }
        if matches!(self.state, SendState::Idle) {
            let Some(tone) = self.queue.pop_front() else {
                return DtmfPacket::Audio;
            };
            self.state = SendState::Sending {
                tone,
                phase: Phase::Tone,
                since_start: 0,
                duration_sent: 0,
                final_duration: tone.duration,
            };
        }
        let SendState::Sending {
            tone,
            phase,
            since_start,
            duration_sent,
            final_duration,
        } = &mut self.state
        else {
            return DtmfPacket::Audio;
        };
        let marker = *since_start == 0;
        let timestamp_offset = *since_start;
        *since_start = since_start.saturating_add(step);
        let (end, duration) = match phase {
            Phase::Tone if *since_start < *final_duration => {
                *duration_sent = *since_start;
                (false, *since_start)
            }
            Phase::Tone => {
                *duration_sent = *final_duration;
                *phase = Phase::End { sent: 1 };
                (true, *final_duration)
            }
            Phase::End { sent } => {
                *sent = sent.saturating_add(1);
                (true, *final_duration)
            }
        };
        let payload = payload(tone.event, end, duration);
        if matches!(phase, Phase::End { sent } if *sent >= END_PACKETS) {
            let interval = tone.interval;
            self.state = SendState::Pause {
                remaining: interval,
            };
            if self.queue.is_empty() && self.report_finish {
                self.report_finish = false;
                self.finished = true;
            }
        }
        DtmfPacket::Event {
            payload,
            marker,
            timestamp_offset,
        }
    }

    /// `true` once, after the end packets of the last queued digit went out (the flow that
    /// sent the digits continues then).
    #[must_use]
    pub fn take_finished(&mut self) -> bool {
        std::mem::take(&mut self.finished)
    }
}

/// The RFC 4733 event code of a DTMF digit.
fn event_code(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        _ => None,
    }
}

/// The payload of one event packet (volume 10: -10 dBm0).
fn payload(event: u8, end: bool, duration: u32) -> [u8; 4] {
    let [d0, d1] = u16::try_from(duration).unwrap_or(u16::MAX).to_be_bytes();
    [event, u8::from(end) << 7 | VOLUME, d0, d1]
}

const SAMPLES_PER_MS: u32 = 8;
const MIN_DURATION_MS: u32 = 40;
const MAX_DURATION_MS: u32 = 8000;
/// The end of an event is sent this many times (RFC 4733 §2.5.1.4).
const END_PACKETS: u8 = 3;
/// The power level of sent events, in -dBm0.
const VOLUME: u8 = 10;

/// One digit to send, durations in samples.
#[derive(Debug, Clone, Copy)]
struct Tone {
    event: u8,
    duration: u32,
    interval: u32,
}

#[derive(Debug, Default)]
enum SendState {
    #[default]
    Idle,
    /// Packets of an event are going out.
    Sending {
        tone: Tone,
        phase: Phase,
        /// Samples from the event's start to the next tick.
        since_start: u32,
        /// The duration in the last packet sent.
        duration_sent: u32,
        /// The duration the end packets carry.
        final_duration: u32,
    },
    /// Audio between two digits: samples still to wait.
    Pause { remaining: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The tone is on: packets without the E bit, duration growing.
    Tone,
    /// `sent` end packets are out.
    End { sent: u8 },
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TelephoneEvent {
    /// The event code (0-9, 10 `*`, 11 `#`, 12-15 `A`-`D`, others are not DTMF digits).
    pub(crate) event: u8,
    /// The E bit: this is (a retransmission of) the end packet.
    pub(crate) end: bool,
    /// Duration so far, in RTP timestamp units (8 kHz).
    pub(crate) duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event of a telephone-event payload; `None` if shorter than 4 bytes.
    pub(crate) fn parse(payload: &[u8]) -> Option<Self> {
        let [event, flags, d0, d1] = *payload.first_chunk::<4>()?;
        Some(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The DTMF digit of this event code, if it is one.
    pub(crate) fn digit(&self) -> Option<char> {
        match self.event {
            0..=9 => Some(char::from(b'0' + self.event)),
            10 => Some('*'),
            11 => Some('#'),
            12..=15 => Some(char::from(b'A' + (self.event - 12))),
            _ => None,
        }
    }
}

/// A digit recognised by the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digit {
    pub(crate) digit: char,
    pub(crate) duration_ms: u32,
}

/// State of RFC 4733 reception for one media session.
#[derive(Debug)]
pub(crate) struct DtmfReceiver {
    /// The event being received and not yet reported.
    pending: Option<Pending>,
    /// Recently reported events, oldest overwritten first.
    reported: [Option<EventKey>; REPORTED_RING],
    next_reported: usize,
    /// Ticks without a packet after which a pending event is reported anyway.
    gap_ticks: u64,
}

impl DtmfReceiver {
    /// A receiver that reports an event whose end packets were lost after `gap_ticks` ticks
    /// without packets for it.
    pub(crate) fn new(gap_ticks: u64) -> Self {
        DtmfReceiver {
            pending: None,
            reported: [None; REPORTED_RING],
            next_reported: 0,
            gap_ticks: gap_ticks.max(1),
        }
    }

    /// A telephone-event packet arrived at tick `now`. Calls `emit` for every digit this
    /// completes (at most two: a pending event whose end was lost, and this one).
    pub(crate) fn handle_event(
        &mut self,
        ssrc: u32,
        timestamp: u32,
        event: TelephoneEvent,
        now: u64,
        mut emit: impl FnMut(Digit),
    ) {
        let Some(digit) = event.digit() else {
            return;
        };
        let key = EventKey {
            ssrc,
            timestamp,
            event: event.event,
        };
        if self.reported.contains(&Some(key)) {
            return; // a repeated end packet or a late packet of a finished event
        }
        match &mut self.pending {
            Some(pending) if pending.key == key => {
                pending.duration = pending.duration.max(event.duration);
                pending.last_seen = now;
            }
            _ => {
                if let Some(lost_end) = self.pending.take() {
                    emit(self.report(lost_end));
                }
                self.pending = Some(Pending {
                    key,
                    digit,
                    duration: event.duration,
                    last_seen: now,
                });
            }
        }
        if event.end
            && let Some(pending) = self.pending.take()
        {
            emit(self.report(pending));
        }
    }

    /// A tick passed (`now`): reports a pending event that has been silent for the gap.
    pub(crate) fn handle_tick(&mut self, now: u64) -> Option<Digit> {
        let stale = self
            .pending
            .as_ref()
            .is_some_and(|p| now.saturating_sub(p.last_seen) >= self.gap_ticks);
        if !stale {
            return None;
        }
        let pending = self.pending.take()?;
        Some(self.report(pending))
    }

    fn report(&mut self, pending: Pending) -> Digit {
        if let Some(slot) = self.reported.get_mut(self.next_reported) {
            *slot = Some(pending.key);
        }
        self.next_reported = (self.next_reported + 1) % REPORTED_RING;
        Digit {
            digit: pending.digit,
            duration_ms: u32::from(pending.duration) / 8,
        }
    }
}

const REPORTED_RING: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventKey {
    ssrc: u32,
    timestamp: u32,
    event: u8,
}

#[derive(Debug)]
struct Pending {
    key: EventKey,
    digit: char,
    duration: u16,
    last_seen: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: u8, end: bool, duration: u16) -> TelephoneEvent {
        TelephoneEvent {
            event,
            end,
            duration,
        }
    }

    #[test]
    fn digit_mapping() {
        let digits: String = (0..=17).filter_map(|e| ev(e, false, 0).digit()).collect();
        assert_eq!(digits, "0123456789*#ABCD");
    }

    #[test]
    fn parse_payload() {
        assert_eq!(
            TelephoneEvent::parse(&[11, 0x8A, 0x03, 0x20]),
            Some(ev(11, true, 800))
        );
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn gap_reports_event_without_end() {
        let mut rx = DtmfReceiver::new(25);
        let mut got = Vec::new();
        rx.handle_event(1, 100, ev(5, false, 160), 10, |d| got.push(d));
        assert!(got.is_empty());
        assert_eq!(rx.handle_tick(34), None);
        assert_eq!(
            rx.handle_tick(35),
            Some(Digit {
                digit: '5',
                duration_ms: 20
            })
        );
        assert_eq!(rx.handle_tick(100), None);
        // A late end packet for it is ignored.
        rx.handle_event(1, 100, ev(5, true, 800), 101, |d| got.push(d));
        assert!(got.is_empty());
    }

    /// One packet as the session would build it from `poll`: (marker, timestamp, event, end,
    /// volume, duration), or `None` for an audio tick.
    type Sent = Option<(bool, u32, u8, bool, u8, u16)>;

    /// A session's view of a sender: the RTP timestamp of each tick starts at 1000.
    struct Session {
        sender: DtmfSender,
        timestamp: u32,
    }

    impl Session {
        fn new() -> Self {
            Session {
                sender: DtmfSender::new(),
                timestamp: 1000,
            }
        }

        /// Runs `ticks` ticks of `ptime_ms`, as the session would.
        fn run(&mut self, ptime_ms: u32, ticks: usize) -> Vec<Sent> {
            (0..ticks)
                .map(|_| {
                    let packet = self.sender.poll(ptime_ms);
                    let this_tick = self.timestamp;
                    self.timestamp = self.timestamp.wrapping_add(ptime_ms * 8);
                    match packet {
                        DtmfPacket::Audio => None,
                        DtmfPacket::Event {
                            payload,
                            marker,
                            timestamp_offset,
                        } => {
                            let event = TelephoneEvent::parse(&payload).unwrap();
                            Some((
                                marker,
                                this_tick.wrapping_sub(timestamp_offset),
                                event.event,
                                event.end,
                                payload[1] & 0x3F,
                                event.duration,
                            ))
                        }
                    }
                })
                .collect()
        }
    }

    fn packet(marker: bool, ts: u32, event: u8, end: bool, duration: u16) -> Sent {
        Some((marker, ts, event, end, 10, duration))
    }

    #[test]
    fn one_digit_of_100_ms_at_20_ms_ptime() {
        let mut sender = DtmfSender::new();
        assert!(!sender.is_active());
        assert_eq!(sender.poll(20), DtmfPacket::Audio);
        sender.send("1", 100, 50).unwrap();
        assert!(sender.is_active());
        assert_eq!(
            sender.poll(20),
            DtmfPacket::Event {
                payload: [1, 0x0A, 0x00, 0xA0],
                marker: true,
                timestamp_offset: 0
            }
        );
        let mut session = Session {
            sender,
            timestamp: 1160,
        };
        assert_eq!(
            session.run(20, 8),
            [
                packet(false, 1000, 1, false, 320),
                packet(false, 1000, 1, false, 480),
                packet(false, 1000, 1, false, 640),
                packet(false, 1000, 1, true, 800),
                packet(false, 1000, 1, true, 800),
                packet(false, 1000, 1, true, 800),
                None,
                None,
            ]
        );
        let sender = &mut session.sender;
        assert!(sender.take_finished());
        assert!(!sender.take_finished());
        assert!(!sender.is_active());
    }

    #[test]
    fn the_timestamp_offset_counts_samples_since_the_event_start() {
        let mut sender = DtmfSender::new();
        sender.send("#", 60, 0).unwrap();
        let offsets: Vec<(u32, bool)> = (0..5)
            .map(|_| match sender.poll(20) {
                DtmfPacket::Event {
                    timestamp_offset,
                    marker,
                    ..
                } => (timestamp_offset, marker),
                DtmfPacket::Audio => panic!("audio during the event"),
            })
            .collect();
        assert_eq!(
            offsets,
            [
                (0, true),
                (160, false),
                (320, false),
                (480, false),
                (640, false)
            ]
        );
        assert_eq!(sender.poll(20), DtmfPacket::Audio);
    }

    #[test]
    fn two_digits_with_a_50_ms_interval() {
        let mut session = Session::new();
        session.sender.send("12", 60, 50).unwrap();
        // 60 ms = 3 ticks of tone (the third is the first end packet), 2 more end packets, then
        // 50 ms of audio rounded up to 3 ticks; the second event starts 8 ticks after the first.
        let first = 1000;
        let second = first + 8 * 160;
        assert_eq!(
            session.run(20, 18),
            [
                packet(true, first, 1, false, 160),
                packet(false, first, 1, false, 320),
                packet(false, first, 1, true, 480),
                packet(false, first, 1, true, 480),
                packet(false, first, 1, true, 480),
                None,
                None,
                None,
                packet(true, second, 2, false, 160),
                packet(false, second, 2, false, 320),
                packet(false, second, 2, true, 480),
                packet(false, second, 2, true, 480),
            ]
            .into_iter()
            .chain([packet(false, second, 2, true, 480)])
            .chain([None; 5])
            .collect::<Vec<_>>()
        );
        assert!(session.sender.take_finished());
    }

    #[test]
    fn finished_is_reported_after_the_last_digit_only() {
        let mut session = Session::new();
        session.sender.send("123", 40, 40).unwrap();
        let mut finished_at = Vec::new();
        for tick in 0..40 {
            let _ = session.sender.poll(20);
            if session.sender.take_finished() {
                finished_at.push(tick);
            }
        }
        // Each digit: 2 tone ticks (the second is the first end packet), 2 more end packets,
        // 2 ticks of interval; the last digit's third end packet is tick 6 + 6 + 3.
        assert_eq!(finished_at, [15]);
    }

    #[test]
    fn a_duration_that_is_not_a_multiple_of_the_ptime() {
        let mut session = Session::new();
        session.sender.send("9", 90, 0).unwrap();
        assert_eq!(
            session.run(20, 8),
            [
                packet(true, 1000, 9, false, 160),
                packet(false, 1000, 9, false, 320),
                packet(false, 1000, 9, false, 480),
                packet(false, 1000, 9, false, 640),
                packet(false, 1000, 9, true, 720),
                packet(false, 1000, 9, true, 720),
                packet(false, 1000, 9, true, 720),
                None,
            ]
        );
    }

    #[test]
    fn thirty_ms_ptime() {
        let mut session = Session::new();
        session.sender.send("*D", 100, 30).unwrap();
        let first = 1000;
        let second = first + 7 * 240;
        assert_eq!(
            session.run(30, 15),
            [
                packet(true, first, 10, false, 240),
                packet(false, first, 10, false, 480),
                packet(false, first, 10, false, 720),
                packet(false, first, 10, true, 800),
                packet(false, first, 10, true, 800),
                packet(false, first, 10, true, 800),
                None,
                packet(true, second, 15, false, 240),
                packet(false, second, 15, false, 480),
                packet(false, second, 15, false, 720),
                packet(false, second, 15, true, 800),
                packet(false, second, 15, true, 800),
                packet(false, second, 15, true, 800),
                None,
                None,
            ]
        );
    }

    #[test]
    fn a_duration_shorter_than_the_ptime_is_all_end_packets() {
        let mut session = Session::new();
        // 10 ms is raised to 40 ms, less than one 60 ms ptime.
        session.sender.send("0", 10, 0).unwrap();
        assert_eq!(
            session.run(60, 4),
            [
                packet(true, 1000, 0, true, 320),
                packet(false, 1000, 0, true, 320),
                packet(false, 1000, 0, true, 320),
                None,
            ]
        );
    }

    #[test]
    fn long_durations_fit_the_16_bit_field() {
        let mut session = Session::new();
        session.sender.send("5", 100_000, 0).unwrap();
        let sent = session.run(20, 404);
        assert_eq!(sent[398], packet(false, 1000, 5, false, 63_840));
        assert_eq!(sent[399], packet(false, 1000, 5, true, 64_000));
        assert_eq!(sent[401], packet(false, 1000, 5, true, 64_000));
        assert_eq!(sent[402], None);
    }

    #[test]
    fn cancel_mid_digit_ends_the_event_properly() {
        let mut session = Session::new();
        session.sender.send("47", 200, 50).unwrap();
        let mut sent = session.run(20, 3);
        session.sender.cancel();
        assert!(
            session.sender.is_active(),
            "the end packets are still to go"
        );
        sent.extend(session.run(20, 6));
        assert_eq!(
            sent,
            [
                packet(true, 1000, 4, false, 160),
                packet(false, 1000, 4, false, 320),
                packet(false, 1000, 4, false, 480),
                // Ended with the duration sent so far, the timestamp still the event's.
                packet(false, 1000, 4, true, 480),
                packet(false, 1000, 4, true, 480),
                packet(false, 1000, 4, true, 480),
                None,
                None,
                None,
            ]
        );
        assert!(!session.sender.is_active());
        assert!(
            !session.sender.take_finished(),
            "a cancel reports no completion"
        );
    }

    #[test]
    fn cancel_during_the_end_packets_or_the_interval() {
        let mut session = Session::new();
        session.sender.send("12", 40, 40).unwrap();
        let mut sent = session.run(20, 3); // tone, end, end
        session.sender.cancel();
        sent.extend(session.run(20, 5));
        assert_eq!(
            sent,
            [
                packet(true, 1000, 1, false, 160),
                packet(false, 1000, 1, true, 320),
                packet(false, 1000, 1, true, 320),
                packet(false, 1000, 1, true, 320),
                None,
                None,
                None,
                None,
            ]
        );
        session.sender.cancel();
        session.sender.cancel();
        assert!(!session.sender.is_active());
        assert!(!session.sender.take_finished());
        // The sender is usable again.
        session.sender.send("3", 40, 0).unwrap();
        assert_eq!(
            session.run(20, 1),
            [packet(true, 1000 + 8 * 160, 3, false, 160)]
        );
    }

    #[test]
    fn cancel_before_the_first_packet_sends_nothing() {
        let mut session = Session::new();
        session.sender.send("1", 100, 0).unwrap();
        session.sender.cancel();
        assert!(!session.sender.is_active());
        assert_eq!(session.run(20, 3), [None, None, None]);
        assert!(!session.sender.take_finished());
    }

    #[test]
    fn invalid_digits_are_rejected_before_anything_is_queued() {
        let mut session = Session::new();
        assert_eq!(session.sender.send("12x4", 100, 50), Err(InvalidDigit('x')));
        assert_eq!(session.sender.send("a", 100, 50), Err(InvalidDigit('a')));
        assert_eq!(session.sender.send("1 2", 100, 50), Err(InvalidDigit(' ')));
        assert_eq!(
            InvalidDigit('x').to_string(),
            "'x' is not a DTMF digit (0-9, *, #, A-D)"
        );
        assert!(!session.sender.is_active());
        assert_eq!(session.sender.poll(20), DtmfPacket::Audio);
        assert!(!session.sender.take_finished());
    }

    #[test]
    fn an_empty_string_finishes_at_once() {
        let mut session = Session::new();
        session.sender.send("", 100, 50).unwrap();
        assert!(!session.sender.is_active());
        assert!(session.sender.take_finished());
        assert!(!session.sender.take_finished());
    }

    #[test]
    fn digits_queued_while_sending_follow_after_the_interval() {
        let mut session = Session::new();
        session.sender.send("1", 40, 20).unwrap();
        let _ = session.run(20, 1);
        session.sender.send("2", 40, 0).unwrap();
        let events: Vec<(u8, bool)> = session
            .run(20, 12)
            .into_iter()
            .map(|p| p.map_or((99, false), |(_, _, e, end, _, _)| (e, end)))
            .collect();
        assert_eq!(
            events,
            [
                (1, true),
                (1, true),
                (1, true),
                (99, false),
                (2, false),
                (2, true),
                (2, true),
                (2, true),
                (99, false),
                (99, false),
                (99, false),
                (99, false)
            ]
        );
        assert!(session.sender.take_finished());
    }

    #[test]
    fn event_codes_round_trip_through_the_receiver_mapping() {
        for digit in "0123456789*#ABCD".chars() {
            let code = event_code(digit).unwrap();
            assert_eq!(ev(code, false, 0).digit(), Some(digit));
        }
        assert_eq!(event_code('E'), None);
        assert_eq!(event_code('a'), None);
    }

    #[test]
    fn sender_to_receiver_round_trip() {
        use crate::rtp::{RtpHeader, RtpPacket};

        let digits = "1234567890*#ABCD1111";
        for (ptime_ms, interval_ms) in [(20, 50), (20, 0), (30, 40), (10, 60)] {
            let mut sender = DtmfSender::new();
            sender.send(digits, 70, interval_ms).unwrap();
            let mut receiver = DtmfReceiver::new(25);
            let mut got = String::new();
            let (mut timestamp, mut sequence_number) = (0xFFFF_F000u32, 65_500u16);
            let mut datagram = Vec::new();
            for tick in 0..2000u64 {
                if let DtmfPacket::Event {
                    payload,
                    marker,
                    timestamp_offset,
                } = sender.poll(ptime_ms)
                {
                    datagram.clear();
                    RtpHeader {
                        marker,
                        payload_type: 101,
                        sequence_number,
                        timestamp: timestamp.wrapping_sub(timestamp_offset),
                        ssrc: 7,
                    }
                    .write(&mut datagram);
                    datagram.extend_from_slice(&payload);
                    let packet = RtpPacket::parse(&datagram).unwrap();
                    let event = TelephoneEvent::parse(packet.payload).unwrap();
                    receiver.handle_event(
                        packet.header.ssrc,
                        packet.header.timestamp,
                        event,
                        tick,
                        |d| {
                            assert_eq!(d.duration_ms, 70);
                            got.push(d.digit);
                        },
                    );
                }
                sequence_number = sequence_number.wrapping_add(1);
                timestamp = timestamp.wrapping_add(ptime_ms * 8);
                if let Some(d) = receiver.handle_tick(tick) {
                    got.push(d.digit);
                }
            }
            assert_eq!(got, digits, "ptime {ptime_ms} interval {interval_ms}");
            assert!(sender.take_finished());
        }
    }
}
