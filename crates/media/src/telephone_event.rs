//! RFC 4733 telephone-event reception: turns the start/update/end packets of each key press
//! into exactly one digit.
//!
//! An event is identified by (SSRC, RTP timestamp, event code). It is reported once: on its
//! first end packet (E bit), or — when every end packet was lost — when a different event
//! starts or after [`DtmfReceiver::handle_tick`] sees no packet for it for a long gap. Events
//! already reported are remembered in a small ring so that repeated end packets and late,
//! reordered packets of a finished event are ignored. The marker bit and the SSRC of the
//! audio stream play no part, so events without a marker or from a foreign SSRC count too.

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
}
