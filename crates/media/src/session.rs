//! One call's RTP media session: symmetric RTP, a jitter buffer with loss concealment on what
//! arrives, G.711 playback framing on what leaves, DTMF in and out (RFC 4733 or in-band), echo,
//! dead-media detection and RTCP reports.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::Codec;
use crate::dtmf_detect::InbandDtmfDetector;
use crate::g711;
use crate::jitter::{FrameKind, JitterBuffer, JitterConfig};
use crate::rtcp;
use crate::rtp::{self, RtpHeader, RtpPacket};
use crate::telephone_event::{DtmfPacket, DtmfReceiver, DtmfSender, InvalidDigit, TelephoneEvent};
use crate::tone;

/// How a [`MediaSession`] is set up (usually from [`sdp::Negotiated`] plus random SSRC,
/// sequence number and timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The codec to send (and that arriving audio is expected in).
    pub codec: Codec,
    /// The negotiated payload type of `codec`.
    pub payload_type: u8,
    /// The negotiated telephone-event/8000 payload type, if any. Without one, DTMF is detected
    /// in and sent as in-band tones.
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
    /// Report [`MediaEvent::RtpTimeout`] after this long without RTP from the peer while it is
    /// expected to send (see [`MediaSession::set_receiving`]); 0 never does.
    pub rtp_timeout_ms: u32,
}

/// Where a DTMF digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfSource {
    /// RFC 4733 telephone-events.
    Rfc4733,
    /// Tones in the audio, found by the in-band detector.
    Inband,
}

/// What a media session reports to the call that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A DTMF key press (reported once per press).
    Dtmf {
        /// `'0'..='9'`, `'*'`, `'#'` or `'A'..='D'`.
        digit: char,
        /// How long the key was held (RFC 4733 duration; 0 when unknown for in-band tones).
        duration_ms: u32,
        /// How it arrived.
        source: DtmfSource,
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
    /// Every digit of [`MediaSession::send_digits`] was sent (or the sending was cancelled).
    DigitsSent {
        /// The id given to `send_digits`.
        id: u64,
    },
    /// An echo started with [`MediaSession::start_echo`] ran its duration or was stopped.
    EchoFinished {
        /// The id given to `start_echo`.
        id: u64,
    },
    /// No RTP arrived for [`SessionConfig::rtp_timeout_ms`] while the peer should be sending.
    /// Reported once; the call decides (normally it hangs up).
    RtpTimeout {
        /// How long nothing arrived.
        silent_ms: u64,
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
    /// Datagrams dropped: not RTP, malformed, unknown payload type, short telephone-event.
    pub packets_invalid: u64,
    /// DTMF digits reported.
    pub dtmf_events: u64,
    /// RTCP packets received and understood.
    pub rtcp_received: u64,
    /// RTCP reports sent.
    pub rtcp_sent: u64,
}

/// The media of one call, as a sans-IO state machine.
///
/// Inputs: [`handle_rtp`](Self::handle_rtp) for every datagram on the call's RTP port,
/// [`handle_rtcp`](Self::handle_rtcp) for its RTCP port, and
/// [`play`](Self::play)/[`stop_playback`](Self::stop_playback)/[`send_digits`](Self::send_digits)/
/// [`start_echo`](Self::start_echo)/[`set_remote`](Self::set_remote) from the call. Outputs:
/// [`poll_packet`](Self::poll_packet) once per ptime (the shell's tick is the session's only
/// clock), [`poll_rtcp`](Self::poll_rtcp) after it, [`poll_event`](Self::poll_event) until
/// `None`, and the tick's [`received_frame`](Self::received_frame) and
/// [`sent_frame`](Self::sent_frame) for recording and mixing.
///
/// Each tick, what arrived is played out of the jitter buffer into one 20 ms frame (concealing
/// loss), run through the in-band DTMF detector when the peer has no telephone-event (received
/// audio only: concealed frames are skipped, up to 200 ms), and is
/// what `echo` sends back; what leaves is the playlist (or echo, or in-band digit tones),
/// encoded straight into the caller's reused buffer — or an RFC 4733 event packet while digits
/// are being sent. In the steady state nothing is allocated.
#[derive(Debug)]
pub struct MediaSession {
    config: SessionConfig,
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    samples_per_packet: usize,
    ptime_ms: u32,
    next_sequence: u16,
    next_timestamp: u32,
    sent_first_packet: bool,
    playlist: VecDeque<Playback>,
    events: VecDeque<MediaEvent>,
    stats: MediaStats,
    dtmf: DtmfReceiver,
    /// Number of `poll_packet` calls so far: the session's clock, in ptimes.
    ticks: u64,
    jitter: JitterBuffer,
    /// This tick's received audio (after the jitter buffer).
    rx_frame: [i16; FRAME_SAMPLES],
    /// This tick's sent audio (silence while an RFC 4733 event replaces it).
    tx_frame: Vec<i16>,
    inband: Option<InbandDtmfDetector>,
    /// Frames in a row the jitter buffer could not fill with received audio (concealed or
    /// silent) and the in-band detector was not given.
    inband_gap: u32,
    sender: DtmfSender,
    /// The `send_digits` id whose RFC 4733 events are being sent.
    sending: Option<u64>,
    /// Digits sent as in-band tones (no telephone-event negotiated).
    inband_tx: Option<Playback>,
    echo: Option<Echo>,
    /// Bridged with packet relay: `poll_packet` sends nothing, [`Self::relay_packet`] does.
    relay: Option<Relay>,
    /// Audio from the other side of a bridge (or external media) to send when nothing plays:
    /// `Some` while bridged, refreshed every tick by the shell.
    bridge_in: Option<Box<[i16; FRAME_SAMPLES]>>,
    /// `mute` in: what the peer says is dropped (silence in recordings, bridges, echo).
    mute_in: bool,
    /// `mute` out: the peer hears silence.
    mute_out: bool,
    /// Whether the peer is expected to send (not on hold).
    receiving: bool,
    last_rx_tick: u64,
    timeout_reported: bool,
    /// Reception statistics of the peer's current stream (a new SSRC starts afresh).
    rx_stats: Option<rtcp::ReceiverStats>,
    rtcp_timer: rtcp::ReportTimer,
    /// Whether we sent RTP since the last report (decides SR or RR).
    sent_since_report: bool,
    peer_report: Option<rtcp::ReportBlock>,
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
        let samples_per_packet = (ptime_ms * SAMPLES_PER_MS) as usize;
        MediaSession {
            remote: config.remote,
            remote_rtcp: config.remote.map(rtcp_address),
            samples_per_packet,
            ptime_ms,
            next_sequence: config.initial_seq,
            next_timestamp: config.initial_timestamp,
            sent_first_packet: false,
            playlist: VecDeque::new(),
            events: VecDeque::new(),
            stats: MediaStats::default(),
            dtmf: DtmfReceiver::new(gap_ticks),
            ticks: 0,
            jitter: JitterBuffer::new(JitterConfig::default()),
            rx_frame: [0; FRAME_SAMPLES],
            tx_frame: vec![0; samples_per_packet],
            inband: config
                .dtmf_payload_type
                .is_none()
                .then(InbandDtmfDetector::new),
            inband_gap: 0,
            sender: DtmfSender::new(),
            sending: None,
            inband_tx: None,
            echo: None,
            relay: None,
            bridge_in: None,
            mute_in: false,
            mute_out: false,
            receiving: true,
            last_rx_tick: 0,
            timeout_reported: false,
            rx_stats: None,
            rtcp_timer: rtcp::ReportTimer::new(0, u64::from(config.ssrc)),
            sent_since_report: false,
            peer_report: None,
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

    /// The jitter buffer's counters (late, duplicate, concealed, ...).
    #[must_use]
    pub fn jitter_stats(&self) -> crate::jitter::JitterStats {
        self.jitter.stats()
    }

    /// What the peer said about our stream in its last RTCP report, if it sent one.
    #[must_use]
    pub fn peer_report(&self) -> Option<&rtcp::ReportBlock> {
        self.peer_report.as_ref()
    }

    /// This tick's 20 ms of received audio (8 kHz PCM, after loss concealment; silence before
    /// anything arrived). Valid after [`poll_packet`](Self::poll_packet).
    #[must_use]
    pub fn received_frame(&self) -> &[i16; FRAME_SAMPLES] {
        &self.rx_frame
    }

    /// This tick's sent audio (8 kHz PCM; silence while an RFC 4733 event was sent instead).
    /// Valid after [`poll_packet`](Self::poll_packet).
    #[must_use]
    pub fn sent_frame(&self) -> &[i16] {
        &self.tx_frame
    }

    /// A UDP datagram arrived on this call's RTP port.
    ///
    /// Symmetric RTP: the remote address latches to `from` of every valid RTP packet with one of
    /// our payload types (so it follows the peer if it moves). Audio goes to the jitter buffer;
    /// RFC 4733 events become [`MediaEvent::Dtmf`]. Never panics; garbage is counted in
    /// [`MediaStats::packets_invalid`] and dropped. RTCP on the RTP port (rtcp-mux) is taken
    /// as RTCP.
    pub fn handle_rtp(&mut self, from: SocketAddr, data: &[u8]) {
        if rtp::is_rtcp(data) {
            self.handle_rtcp(from, data);
            return;
        }
        let Ok(packet) = RtpPacket::parse(data) else {
            self.stats.packets_invalid += 1;
            return;
        };
        let header = packet.header;
        let payload_type = header.payload_type;
        if Some(payload_type) == self.config.dtmf_payload_type {
            let Some(event) = TelephoneEvent::parse(packet.payload) else {
                self.stats.packets_invalid += 1;
                return;
            };
            let events = &mut self.events;
            let stats = &mut self.stats;
            let echo_dtmf = self.echo.as_ref().is_some_and(|e| e.dtmf);
            let sender = &mut self.sender;
            self.dtmf
                .handle_event(header.ssrc, header.timestamp, event, self.ticks, |d| {
                    stats.dtmf_events += 1;
                    events.push_back(MediaEvent::Dtmf {
                        digit: d.digit,
                        duration_ms: d.duration_ms,
                        source: DtmfSource::Rfc4733,
                    });
                    if echo_dtmf {
                        let duration = d.duration_ms.clamp(40, 1000);
                        let _ = sender.send(&d.digit.to_string(), duration, 50);
                    }
                });
        } else if payload_type == self.config.payload_type {
            self.jitter.push(
                header.ssrc,
                header.sequence_number,
                header.timestamp,
                self.config.codec,
                packet.payload,
                // Played out at the next tick: the one `poll_packet` is about to count.
                self.ticks + 1,
            );
            let now_ms = self.now_ms();
            let stats = match &mut self.rx_stats {
                Some(stats) if stats.ssrc() == header.ssrc => stats,
                slot => slot.insert(rtcp::ReceiverStats::new(header.ssrc, CLOCK_RATE)),
            };
            stats.handle_packet(header.sequence_number, header.timestamp, now_ms);
        } else if payload_type != COMFORT_NOISE {
            self.stats.packets_invalid += 1;
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += data.len() as u64;
        self.last_rx_tick = self.ticks;
        self.timeout_reported = false;
        if self.remote != Some(from) {
            self.remote = Some(from);
            self.remote_rtcp = Some(rtcp_address(from));
        }
    }

    /// A datagram arrived on the call's RTCP port (or RTCP on the RTP port). Reports from the
    /// peer are kept for [`peer_report`](Self::peer_report); garbage is counted as invalid.
    pub fn handle_rtcp(&mut self, from: SocketAddr, data: &[u8]) {
        match rtcp::RtcpSummary::parse(data, self.config.ssrc) {
            Ok(summary) => {
                self.stats.rtcp_received += 1;
                let now_ms = self.now_ms();
                if let (Some(sr), Some(stats)) = (summary.sender_report, self.rx_stats.as_mut())
                    && summary.sender_ssrc == Some(stats.ssrc())
                {
                    stats.handle_sender_report(sr.ntp, now_ms);
                }
                if let Some(report) = summary.report_about_us {
                    self.peer_report = Some(report);
                }
                // Symmetric RTCP: answer where it came from.
                self.remote_rtcp = Some(from);
                // RTCP is media too: a peer on hold still sends reports.
                self.last_rx_tick = self.ticks;
                self.timeout_reported = false;
            }
            Err(_) => self.stats.packets_invalid += 1,
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

    /// Sends `digits` (0-9, `*`, `#`, A-D): RFC 4733 events when the peer negotiated
    /// telephone-event, tones in the audio otherwise. Each key lasts `duration_ms`, with
    /// `interval_ms` between keys. [`MediaEvent::DigitsSent`] with `id` follows the last one.
    /// Digits already being sent are cut short (their events still end properly).
    ///
    /// # Errors
    /// A character that is not a DTMF key; nothing is sent then.
    pub fn send_digits(
        &mut self,
        id: u64,
        digits: &str,
        duration_ms: u32,
        interval_ms: u32,
    ) -> Result<(), InvalidDigit> {
        if let Some(bad) = digits.chars().find(|c| tone::dtmf(*c, 0, 0).is_none()) {
            return Err(InvalidDigit(bad));
        }
        self.cancel_digits();
        if self.config.dtmf_payload_type.is_some() {
            self.sender.send(digits, duration_ms, interval_ms)?;
            self.sending = Some(id);
        } else {
            let mut pcm = Vec::new();
            for digit in digits.chars() {
                let tone =
                    tone::dtmf(digit, duration_ms, INBAND_AMPLITUDE).ok_or(InvalidDigit(digit))?;
                pcm.extend_from_slice(&tone);
                pcm.extend(std::iter::repeat_n(
                    0,
                    (interval_ms * SAMPLES_PER_MS) as usize,
                ));
            }
            self.inband_tx = Some(Playback {
                id,
                pcm: pcm.into(),
                position: 0,
            });
        }
        Ok(())
    }

    /// Sends the caller's audio back to it — and its DTMF too with `dtmf` — for `duration_ms`
    /// (or until [`stop_echo`](Self::stop_echo) with `None`); then [`MediaEvent::EchoFinished`].
    /// Playback waits while echo runs.
    pub fn start_echo(&mut self, id: u64, duration_ms: Option<u32>, dtmf: bool) {
        self.stop_echo();
        self.echo = Some(Echo {
            id,
            ticks_left: duration_ms.map(|ms| u64::from(ms.div_ceil(self.ptime_ms))),
            dtmf,
        });
    }

    /// Ends a running echo now ([`MediaEvent::EchoFinished`]).
    pub fn stop_echo(&mut self) {
        if let Some(echo) = self.echo.take() {
            self.events
                .push_back(MediaEvent::EchoFinished { id: echo.id });
        }
    }

    /// Whether packets of `other`'s peer can be relayed to this session's peer unchanged
    /// but for the header: the same codec (a bridge then skips decoding and encoding).
    #[must_use]
    pub fn can_relay_from(&self, other: &SessionConfig) -> bool {
        self.config.codec == other.codec
    }

    /// Starts (with the bridged leg's audio and telephone-event payload types) or ends packet
    /// relay. While it runs, [`poll_packet`](Self::poll_packet) keeps the session's clock,
    /// reception and events going but sends nothing: the bridge calls
    /// [`relay_packet`](Self::relay_packet) with each packet from the other leg instead. Our
    /// sequence numbers and timestamps stay one continuous stream across the switches.
    pub fn set_relaying(&mut self, from: Option<(u8, Option<u8>)>) {
        self.relay = from.map(|(audio_pt, dtmf_pt)| Relay {
            audio_pt,
            dtmf_pt,
            source: None,
        });
    }

    /// Relays one RTP packet that arrived on the bridged leg (see
    /// [`set_relaying`](Self::set_relaying)): the payload is copied untouched; the header gets
    /// our SSRC, our payload type numbers, and sequence numbers and timestamps continuing our
    /// stream (gaps and reordering in the source are kept; a new source SSRC is re-based so the
    /// far end sees no jump). Writes the packet into `out` and returns where to send it, or
    /// `None` (and `out` empty) when relay is off, the packet is not RTP of the leg's audio or
    /// telephone-event types, or no remote address is known.
    #[must_use]
    pub fn relay_packet(&mut self, data: &[u8], out: &mut Vec<u8>) -> Option<SocketAddr> {
        out.clear();
        let relay = self.relay.as_mut()?;
        let packet = RtpPacket::parse(data).ok()?;
        let header = packet.header;
        let (payload_type, advances) = if header.payload_type == relay.audio_pt {
            (self.config.payload_type, true)
        } else if relay.dtmf_pt == Some(header.payload_type) {
            (self.config.dtmf_payload_type?, false)
        } else {
            return None;
        };
        let source = match relay.source {
            Some(source) if source.ssrc == header.ssrc => source,
            _ => {
                let source = RelaySource {
                    ssrc: header.ssrc,
                    sequence_offset: self.next_sequence.wrapping_sub(header.sequence_number),
                    timestamp_offset: self.next_timestamp.wrapping_sub(header.timestamp),
                };
                relay.source = Some(source);
                source
            }
        };
        let sequence_number = header.sequence_number.wrapping_add(source.sequence_offset);
        let timestamp = header.timestamp.wrapping_add(source.timestamp_offset);
        let remote = self
            .remote
            .filter(|r| !r.ip().is_unspecified() && r.port() != 0)?;
        RtpHeader {
            marker: header.marker,
            payload_type,
            sequence_number,
            timestamp,
            ssrc: self.config.ssrc,
        }
        .write(out);
        out.extend_from_slice(packet.payload);
        // Our stream continues after the newest packet relayed (older ones fill gaps).
        if sequence_number.wrapping_sub(self.next_sequence) < 0x8000 {
            self.next_sequence = sequence_number.wrapping_add(1);
        }
        if advances {
            let end = timestamp.wrapping_add(packet.payload.len() as u32);
            if end.wrapping_sub(self.next_timestamp) < 0x8000_0000 {
                self.next_timestamp = end;
            }
        }
        self.sent_first_packet = true;
        self.sent_since_report = true;
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += out.len() as u64;
        Some(remote)
    }

    /// Starts (`true`) or ends PCM bridging: while on, the frame given to
    /// [`set_bridge_frame`](Self::set_bridge_frame) is what the peer hears whenever no
    /// playback, echo or in-band DTMF is going on. Works across codecs and packet sizes (each
    /// side decodes and encodes its own G.711), unlike [`relay_packet`](Self::relay_packet).
    pub fn set_bridged(&mut self, bridged: bool) {
        self.bridge_in = bridged.then(|| Box::new([0; FRAME_SAMPLES]));
    }

    /// The other side's latest 20 ms (8 kHz PCM), sent with the next packet; ignored unless
    /// [`set_bridged`](Self::set_bridged) is on.
    pub fn set_bridge_frame(&mut self, frame: &[i16]) {
        if let Some(buf) = self.bridge_in.as_mut() {
            let n = frame.len().min(FRAME_SAMPLES);
            buf[..n].copy_from_slice(&frame[..n]);
            buf[n..].fill(0);
        }
    }

    /// Whether either direction is muted (see [`set_mute`](Self::set_mute)).
    #[must_use]
    pub fn is_muted(&self) -> bool {
        self.mute_in || self.mute_out
    }

    /// `mute`: `inbound` drops the peer's audio (its received frame becomes silence; DTMF is
    /// still detected), `outbound` sends silence to the peer (DTMF events still go).
    pub fn set_mute(&mut self, inbound: bool, outbound: bool) {
        self.mute_in = inbound;
        self.mute_out = outbound;
    }

    /// Packets of the peer's current stream that never arrived (RFC 3550 cumulative loss:
    /// expected minus received, never negative); a new SSRC starts the count afresh.
    #[must_use]
    pub fn packets_lost(&self) -> u64 {
        self.rx_stats
            .as_ref()
            .map_or(0, |s| u64::try_from(s.cumulative_lost()).unwrap_or(0))
    }

    /// The peer's RTP address changed in a new SDP. An unspecified address (`0.0.0.0`, the
    /// RFC 2543 hold) or port 0 stops sending until RTP arrives from the peer.
    pub fn set_remote(&mut self, addr: SocketAddr) {
        self.remote = Some(addr);
        self.remote_rtcp = Some(rtcp_address(addr));
    }

    /// Whether the peer is expected to send RTP (`false` while it holds the call with
    /// `sendonly`-from-us / `inactive`): the RTP timeout only runs while it is.
    pub fn set_receiving(&mut self, receiving: bool) {
        self.receiving = receiving;
        self.last_rx_tick = self.ticks;
        self.timeout_reported = false;
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
            // An event whose end packets were all lost.
            self.report_dtmf(d.digit, d.duration_ms, DtmfSource::Rfc4733);
            if self.echo.as_ref().is_some_and(|e| e.dtmf) {
                let _ = self
                    .sender
                    .send(&d.digit.to_string(), d.duration_ms.clamp(40, 1000), 50);
            }
        }
        self.receive_frame();
        self.check_timeout();

        out.clear();
        if self.relay.is_some() {
            // The bridge sends the other leg's packets; our clock and reception go on.
            self.tx_frame.fill(0);
            return None;
        }
        let event = if self.sender.is_active() {
            Some(self.sender.poll(self.ptime_ms))
        } else {
            None
        };
        match event {
            Some(DtmfPacket::Event {
                payload,
                marker,
                timestamp_offset,
            }) => {
                // Every packet of an event carries the timestamp of its start (RFC 4733 §2.5.1.2).
                let timestamp = self.next_timestamp.wrapping_sub(timestamp_offset);
                RtpHeader {
                    marker,
                    payload_type: self.config.dtmf_payload_type.unwrap_or(DEFAULT_DTMF_PT),
                    sequence_number: self.next_sequence,
                    timestamp,
                    ssrc: self.config.ssrc,
                }
                .write(out);
                out.extend_from_slice(&payload);
                self.tx_frame.fill(0);
                // Playback keeps time while the event replaces the audio.
                self.advance_playlist_silently();
            }
            _ => {
                self.fill_tx_frame();
                RtpHeader {
                    marker: !self.sent_first_packet,
                    payload_type: self.config.payload_type,
                    sequence_number: self.next_sequence,
                    timestamp: self.next_timestamp,
                    ssrc: self.config.ssrc,
                }
                .write(out);
                let encode = match self.config.codec {
                    Codec::Pcmu => g711::ulaw_encode,
                    Codec::Pcma => g711::alaw_encode,
                };
                out.extend(self.tx_frame.iter().map(|s| encode(*s)));
            }
        }
        if self.sender.take_finished()
            && let Some(id) = self.sending.take()
        {
            self.events.push_back(MediaEvent::DigitsSent { id });
        }
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
        self.sent_since_report = true;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += out.len() as u64;
        Some(remote)
    }

    /// After [`poll_packet`](Self::poll_packet): writes an RTCP compound report (SR or RR, then
    /// SDES) into `out` when one is due (about every 5 s) and returns where to send it. `ntp` is
    /// the wall clock now as a 64-bit NTP timestamp (32.32), the one input the session cannot
    /// derive from its ticks.
    #[must_use]
    pub fn poll_rtcp(&mut self, ntp: u64, out: &mut Vec<u8>) -> Option<SocketAddr> {
        out.clear();
        let now_ms = self.now_ms();
        if !self.rtcp_timer.handle_timeout(now_ms) {
            return None;
        }
        let to = self
            .remote_rtcp
            .filter(|r| !r.ip().is_unspecified() && r.port() != 0)?;
        let sender = self.sent_since_report.then(|| rtcp::SenderInfo {
            ntp,
            rtp_timestamp: self.next_timestamp,
            packet_count: self.stats.packets_sent as u32,
            octet_count: self
                .stats
                .bytes_sent
                .saturating_sub(self.stats.packets_sent * RTP_HEADER_LEN)
                as u32,
        });
        let block = self
            .rx_stats
            .as_mut()
            .and_then(|stats| stats.report_block(now_ms));
        rtcp::Report {
            ssrc: self.config.ssrc,
            sender,
            block,
            cname: CNAME,
        }
        .write(out);
        self.sent_since_report = false;
        self.stats.rtcp_sent += 1;
        Some(to)
    }

    /// The next event for the call, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// The session's clock in ms (ticks × ptime).
    fn now_ms(&self) -> u64 {
        self.ticks * u64::from(self.ptime_ms)
    }

    fn report_dtmf(&mut self, digit: char, duration_ms: u32, source: DtmfSource) {
        self.stats.dtmf_events += 1;
        self.events.push_back(MediaEvent::Dtmf {
            digit,
            duration_ms,
            source,
        });
    }

    /// Plays this tick's 20 ms out of the jitter buffer; looks for in-band digits in it.
    fn receive_frame(&mut self) {
        let kind = self.jitter.pop_frame(self.ticks, &mut self.rx_frame);
        if let Some(detector) = self.inband.as_mut() {
            // Audio the peer did not send (a lost or late packet, concealed) says nothing about
            // the key: the detector skips it, so one lost packet does not split a press in
            // two. A gap of more than 200 ms is given to it as silence: the key counts as up.
            let frame = if kind == FrameKind::Audio {
                self.inband_gap = 0;
                Some(&self.rx_frame)
            } else {
                self.inband_gap = self.inband_gap.saturating_add(1);
                (self.inband_gap > INBAND_GAP_FRAMES).then_some(&SILENCE_FRAME)
            };
            let mut found = frame.and_then(|frame| detector.process(frame));
            while let Some(digit) = found {
                self.stats.dtmf_events += 1;
                self.events.push_back(MediaEvent::Dtmf {
                    digit,
                    duration_ms: 0,
                    source: DtmfSource::Inband,
                });
                found = detector.poll_digit();
            }
        }
        if self.mute_in {
            self.rx_frame.fill(0);
        }
    }

    fn check_timeout(&mut self) {
        if self.config.rtp_timeout_ms == 0 || !self.receiving || self.timeout_reported {
            return;
        }
        let silent_ms = (self.ticks - self.last_rx_tick) * u64::from(self.ptime_ms);
        if silent_ms >= u64::from(self.config.rtp_timeout_ms) {
            self.timeout_reported = true;
            self.events.push_back(MediaEvent::RtpTimeout { silent_ms });
        }
    }

    /// This tick's outgoing audio: in-band digit tones, else echo, else the playlist, then
    /// silence.
    fn fill_tx_frame(&mut self) {
        let mut filled = 0;
        if let Some(tones) = self.inband_tx.as_mut() {
            filled = tones.copy_into(&mut self.tx_frame);
            if tones.is_done() {
                let id = tones.id;
                self.inband_tx = None;
                self.events.push_back(MediaEvent::DigitsSent { id });
            }
        } else if let Some(echo) = self.echo.as_mut() {
            let n = self.tx_frame.len().min(FRAME_SAMPLES);
            self.tx_frame[..n].copy_from_slice(&self.rx_frame[..n]);
            filled = n;
            if let Some(left) = echo.ticks_left.as_mut() {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    let id = echo.id;
                    self.echo = None;
                    self.events.push_back(MediaEvent::EchoFinished { id });
                }
            }
        } else if let (true, Some(bridge)) = (self.playlist.is_empty(), self.bridge_in.as_ref()) {
            let n = self.tx_frame.len().min(FRAME_SAMPLES);
            self.tx_frame[..n].copy_from_slice(&bridge[..n]);
            filled = n;
        } else {
            while filled < self.tx_frame.len() {
                let Some(head) = self.playlist.front_mut() else {
                    break;
                };
                filled += head.copy_into(&mut self.tx_frame[filled..]);
                if head.is_done() {
                    let id = head.id;
                    self.playlist.pop_front();
                    self.events.push_back(MediaEvent::PlaybackFinished { id });
                }
            }
        }
        self.tx_frame[filled..].fill(0);
        if self.mute_out {
            self.tx_frame.fill(0);
        }
    }

    /// A tick passed without audio being sent (an RFC 4733 event went instead): playback keeps
    /// its timing.
    fn advance_playlist_silently(&mut self) {
        if self.echo.is_some() || self.inband_tx.is_some() {
            return;
        }
        let mut remaining = self.samples_per_packet;
        while remaining > 0 {
            let Some(head) = self.playlist.front_mut() else {
                break;
            };
            let n = (head.pcm.len() - head.position.min(head.pcm.len())).min(remaining);
            head.position += n;
            remaining -= n;
            if head.is_done() {
                let id = head.id;
                self.playlist.pop_front();
                self.events.push_back(MediaEvent::PlaybackFinished { id });
            }
        }
    }

    fn cancel_digits(&mut self) {
        if self.sender.is_active() {
            self.sender.cancel();
        }
        if let Some(id) = self.sending.take() {
            self.events.push_back(MediaEvent::DigitsSent { id });
        }
        if let Some(tones) = self.inband_tx.take() {
            self.events
                .push_back(MediaEvent::DigitsSent { id: tones.id });
        }
    }
}

pub use crate::jitter::FRAME_SAMPLES;
/// G.711's RTP clock.
const CLOCK_RATE: u32 = 8000;
const RTP_HEADER_LEN: u64 = 12;
/// The SDES CNAME of every session (RFC 7022 allows a per-session random one; the SSRC is
/// random already, and nothing correlates streams across calls).
const CNAME: &str = "voxflow";
const SILENCE_FRAME: [i16; FRAME_SAMPLES] = [0; FRAME_SAMPLES];
/// Frames in a row without received audio that the in-band detector skips (200 ms); after
/// them it hears silence.
const INBAND_GAP_FRAMES: u32 = 10;
const DEFAULT_PTIME_MS: u32 = 20;
const SAMPLES_PER_MS: u32 = 8;
/// Report a telephone-event whose end packets never came after this much silence.
const DTMF_END_GAP_MS: u32 = 500;
/// RFC 3389 comfort noise: a valid packet from the peer, nothing to decode.
const COMFORT_NOISE: u8 = 13;
/// Payload type used for events if none was negotiated (never: events need one).
const DEFAULT_DTMF_PT: u8 = 101;
/// Each tone of an in-band digit at about -9 dBm0.
const INBAND_AMPLITUDE: i16 = 8000;

/// RTCP goes to the RTP port + 1 (RFC 3550 §11) unless learned otherwise.
fn rtcp_address(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port().saturating_add(1))
}

#[derive(Debug)]
struct Playback {
    id: u64,
    pcm: Arc<[i16]>,
    position: usize,
}

impl Playback {
    /// Copies as much as fits into `out` from the current position; returns how much.
    fn copy_into(&mut self, out: &mut [i16]) -> usize {
        let unplayed = self.pcm.get(self.position..).unwrap_or_default();
        let n = unplayed.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), unplayed.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.position += n;
        n
    }

    fn is_done(&self) -> bool {
        self.position >= self.pcm.len()
    }
}

#[derive(Debug)]
struct Relay {
    audio_pt: u8,
    dtmf_pt: Option<u8>,
    source: Option<RelaySource>,
}

/// How a relayed source's sequence numbers and timestamps map onto our stream.
#[derive(Debug, Clone, Copy)]
struct RelaySource {
    ssrc: u32,
    sequence_offset: u16,
    timestamp_offset: u32,
}

#[derive(Debug)]
struct Echo {
    id: u64,
    ticks_left: Option<u64>,
    dtmf: bool,
}
