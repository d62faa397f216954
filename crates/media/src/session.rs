//! One call's RTP media session: symmetric RTP, G.711 playback framing, RFC 4733 reception.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::Codec;
use crate::g711;
use crate::rtp::{self, RtpHeader, RtpPacket};
use crate::telephone_event::{DtmfReceiver, TelephoneEvent};

/// How a [`MediaSession`] is set up (usually from [`sdp::Negotiated`] plus random SSRC,
/// sequence number and timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The codec to send (and that arriving audio is expected in).
    pub codec: Codec,
    /// The negotiated payload type of `codec`.
    pub payload_type: u8,
    /// The negotiated telephone-event/8000 payload type, if any.
    pub dtmf_payload_type: Option<u8>,
    /// Our SSRC (random, RFC 3550 §8).
    pub ssrc: u32,
    /// Sequence number of our first packet (random).
    pub initial_seq: u16,
    /// RTP timestamp of our first packet (random).
    pub initial_timestamp: u32,
    /// Where to send, if already known from SDP; learned from arriving RTP otherwise.
    pub remote: Option<SocketAddr>,
    /// Packetisation time in ms: the shell calls [`MediaSession::poll_packet`] once per
    /// `ptime_ms`. Values outside 10..=120 are treated as 20.
    pub ptime_ms: u32,
}

/// What a media session reports to the call that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A DTMF key press received as RFC 4733 telephone-events (reported once per press).
    Dtmf {
        /// `'0'..='9'`, `'*'`, `'#'` or `'A'..='D'`.
        digit: char,
        /// How long the key was held, from the event's duration field.
        duration_ms: u32,
    },
    /// A buffer queued with [`MediaSession::play`] was sent to the end.
    PlaybackFinished {
        /// The id given to `play`.
        id: u64,
    },
    /// A buffer queued with [`MediaSession::play`] was stopped before its end.
    PlaybackStopped {
        /// The id given to `play`.
        id: u64,
    },
}

/// Counters of a media session. Byte counts are whole UDP payloads (RTP header included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// RTP packets written by [`MediaSession::poll_packet`].
    pub packets_sent: u64,
    /// Bytes of those packets.
    pub bytes_sent: u64,
    /// Valid RTP packets received with our audio, comfort-noise or telephone-event payload type.
    pub packets_received: u64,
    /// Bytes of those packets.
    pub bytes_received: u64,
    /// Datagrams dropped: not RTP, RTCP, malformed, unknown payload type, short telephone-event.
    pub packets_invalid: u64,
    /// DTMF digits reported.
    pub dtmf_events: u64,
}

/// The media of one call, as a sans-IO state machine.
///
/// Inputs: [`handle_rtp`](Self::handle_rtp) for every datagram on the call's RTP port, and
/// [`play`](Self::play)/[`stop_playback`](Self::stop_playback)/[`set_remote`](Self::set_remote)
/// from the call. Outputs: [`poll_packet`](Self::poll_packet) once per ptime (the shell's tick
/// is the session's only clock) and [`poll_event`](Self::poll_event) until `None`.
///
/// In the steady state nothing is allocated: audio is encoded straight from the shared PCM
/// buffers into the caller's reused output buffer.
#[derive(Debug)]
pub struct MediaSession {
    config: SessionConfig,
    remote: Option<SocketAddr>,
    samples_per_packet: usize,
    next_sequence: u16,
    next_timestamp: u32,
    sent_first_packet: bool,
    playlist: VecDeque<Playback>,
    events: VecDeque<MediaEvent>,
    stats: MediaStats,
    dtmf: DtmfReceiver,
    /// Number of `poll_packet` calls so far: the session's clock, in ptimes.
    ticks: u64,
}

impl MediaSession {
    /// Creates a session; nothing is sent until [`poll_packet`](Self::poll_packet).
    #[must_use]
    pub fn new(config: SessionConfig) -> Self {
        let ptime_ms = if (10..=120).contains(&config.ptime_ms) {
            config.ptime_ms
        } else {
            DEFAULT_PTIME_MS
        };
        let gap_ticks = u64::from(DTMF_END_GAP_MS.div_ceil(ptime_ms));
        MediaSession {
            remote: config.remote,
            samples_per_packet: (ptime_ms * SAMPLES_PER_MS) as usize,
            next_sequence: config.initial_seq,
            next_timestamp: config.initial_timestamp,
            sent_first_packet: false,
            playlist: VecDeque::new(),
            events: VecDeque::new(),
            stats: MediaStats::default(),
            dtmf: DtmfReceiver::new(gap_ticks),
            ticks: 0,
            config,
        }
    }

    /// The configuration the session was created with.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Where packets go now (from SDP, [`set_remote`](Self::set_remote), or latched from RTP).
    #[must_use]
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Whether any playback is queued or playing.
    #[must_use]
    pub fn is_playing(&self) -> bool {
        !self.playlist.is_empty()
    }

    /// The session's counters.
    #[must_use]
    pub fn stats(&self) -> MediaStats {
        self.stats
    }

    /// A UDP datagram arrived on this call's RTP port.
    ///
    /// Symmetric RTP: the remote address latches to `from` of every valid RTP packet with one of
    /// our payload types (so it follows the peer if it moves). RFC 4733 events are turned into
    /// [`MediaEvent::Dtmf`]. Never panics; garbage is counted in
    /// [`MediaStats::packets_invalid`] and dropped.
    pub fn handle_rtp(&mut self, from: SocketAddr, data: &[u8]) {
        if rtp::is_rtcp(data) {
            self.stats.packets_invalid += 1;
            return;
        }
        let Ok(packet) = RtpPacket::parse(data) else {
            self.stats.packets_invalid += 1;
            return;
        };
        let payload_type = packet.header.payload_type;
        if Some(payload_type) == self.config.dtmf_payload_type {
            let Some(event) = TelephoneEvent::parse(packet.payload) else {
                self.stats.packets_invalid += 1;
                return;
            };
            let events = &mut self.events;
            let stats = &mut self.stats;
            self.dtmf.handle_event(
                packet.header.ssrc,
                packet.header.timestamp,
                event,
                self.ticks,
                |d| {
                    stats.dtmf_events += 1;
                    events.push_back(MediaEvent::Dtmf {
                        digit: d.digit,
                        duration_ms: d.duration_ms,
                    });
                },
            );
        } else if payload_type != self.config.payload_type && payload_type != COMFORT_NOISE {
            self.stats.packets_invalid += 1;
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += data.len() as u64;
        if self.remote != Some(from) {
            self.remote = Some(from);
        }
    }

    /// Queues 8 kHz mono PCM to play after what is already queued; `id` is echoed in
    /// [`MediaEvent::PlaybackFinished`] or [`MediaEvent::PlaybackStopped`].
    pub fn play(&mut self, id: u64, pcm: Arc<[i16]>) {
        self.playlist.push_back(Playback {
            id,
            pcm,
            position: 0,
        });
    }

    /// Stops everything queued or playing now, emitting [`MediaEvent::PlaybackStopped`] for each
    /// in queue order. The next packet is silence.
    pub fn stop_playback(&mut self) {
        for playback in self.playlist.drain(..) {
            self.events
                .push_back(MediaEvent::PlaybackStopped { id: playback.id });
        }
    }

    /// The peer's RTP address changed in a new SDP. An unspecified address (`0.0.0.0`, the
    /// RFC 2543 hold) or port 0 stops sending until RTP arrives from the peer.
    pub fn set_remote(&mut self, addr: SocketAddr) {
        self.remote = Some(addr);
    }

    /// Called by the shell once per ptime, on absolute deadlines (the tick is this session's
    /// clock). Writes the next RTP packet into `out` (cleared first): the next frame of the
    /// playlist, padded with silence, or encoded silence when nothing plays, so RTP keeps
    /// flowing. Returns where to send it, or `None` (and leaves `out` empty) while no usable
    /// remote address is known; time still passes then: playback advances and the RTP
    /// timestamp moves on, only the sequence number waits for the next packet really sent.
    #[must_use]
    pub fn poll_packet(&mut self, out: &mut Vec<u8>) -> Option<SocketAddr> {
        self.ticks += 1;
        if let Some(d) = self.dtmf.handle_tick(self.ticks) {
            self.stats.dtmf_events += 1;
            self.events.push_back(MediaEvent::Dtmf {
                digit: d.digit,
                duration_ms: d.duration_ms,
            });
        }

        out.clear();
        RtpHeader {
            marker: !self.sent_first_packet,
            payload_type: self.config.payload_type,
            sequence_number: self.next_sequence,
            timestamp: self.next_timestamp,
            ssrc: self.config.ssrc,
        }
        .write(out);
        self.write_frame(out);
        self.next_timestamp = self
            .next_timestamp
            .wrapping_add(self.samples_per_packet as u32);

        let Some(remote) = self
            .remote
            .filter(|r| !r.ip().is_unspecified() && r.port() != 0)
        else {
            out.clear();
            return None;
        };
        self.sent_first_packet = true;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += out.len() as u64;
        Some(remote)
    }

    /// The next event for the call, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// Encodes one packet's worth of samples from the playlist (then silence) into `out`.
    fn write_frame(&mut self, out: &mut Vec<u8>) {
        let encode = match self.config.codec {
            Codec::Pcmu => g711::ulaw_encode,
            Codec::Pcma => g711::alaw_encode,
        };
        let mut remaining = self.samples_per_packet;
        while remaining > 0 {
            let Some(head) = self.playlist.front_mut() else {
                break;
            };
            let unplayed = head.pcm.get(head.position..).unwrap_or_default();
            let n = unplayed.len().min(remaining);
            out.extend(unplayed.iter().take(n).map(|s| encode(*s)));
            head.position += n;
            remaining -= n;
            if head.position >= head.pcm.len() {
                let id = head.id;
                self.playlist.pop_front();
                self.events.push_back(MediaEvent::PlaybackFinished { id });
            }
        }
        let silence = encode(0);
        out.resize(out.len() + remaining, silence);
    }
}

const DEFAULT_PTIME_MS: u32 = 20;
const SAMPLES_PER_MS: u32 = 8;
/// Report a telephone-event whose end packets never came after this much silence.
const DTMF_END_GAP_MS: u32 = 500;
/// RFC 3389 comfort noise: a valid packet from the peer, nothing to decode.
const COMFORT_NOISE: u8 = 13;

#[derive(Debug)]
struct Playback {
    id: u64,
    pcm: Arc<[i16]>,
    position: usize,
}
