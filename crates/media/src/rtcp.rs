//! RTCP (RFC 3550 §6): reception statistics, report building and parsing, and the report
//! interval.
//!
//! - [`ReceiverStats`] follows the peer's RTP stream: extended highest sequence number with
//!   wrap-around and resynchronisation on large jumps (RFC 3550 A.1), expected and lost packets
//!   and the fraction lost per report interval (A.3), interarrival jitter (A.8), and the LSR/DLSR
//!   of the peer's last sender report. Arrival times are passed in; it reads no clock.
//! - [`Report`] appends an SR (if we sent RTP since the last report) or an RR, with at most one
//!   [`ReportBlock`], followed by an SDES CNAME; [`Bye`] appends a BYE. Both write into a reused
//!   buffer, like [`RtpHeader::write`](crate::rtp::RtpHeader::write).
//! - [`RtcpPackets`] walks a compound packet without allocating, skipping unknown types
//!   (APP, XR, feedback); [`RtcpSummary::parse`] extracts what a session needs from it. Garbage
//!   is an [`RtcpError`], never a panic.
//! - [`ReportTimer`] says when to report: every 5 s randomised to 0.5–1.5 × (RFC 3550 §6.2,
//!   without the timer reconsideration that only matters for large sessions).
//!
//! NTP timestamps are 64-bit 32.32 fixed point, supplied by the caller.
//!
//! ```
//! use voxflow_media::rtcp::{ReceiverStats, Report, ReportTimer, RtcpSummary, SenderInfo};
//! let mut stats = ReceiverStats::new(0x5EE5_0001, 8000);
//! let mut timer = ReportTimer::new(0, 42);
//! stats.handle_packet(1, 160, 20); // every audio packet from the peer: (seq, ts, arrival ms)
//! let now_ms = 10_000;
//! let mut out = Vec::with_capacity(128); // reused
//! if timer.handle_timeout(now_ms) {
//!     out.clear();
//!     Report {
//!         ssrc: 0x1234_5678,
//!         sender: Some(SenderInfo { ntp: 0, rtp_timestamp: 0, packet_count: 0, octet_count: 0 }),
//!         block: stats.report_block(now_ms),
//!         cname: "voxflow@example.invalid",
//!     }
//!     .write(&mut out);
//!     // socket.send_to(&out, rtcp_peer)
//! }
//! // every RTCP datagram from the peer:
//! if let Ok(summary) = RtcpSummary::parse(&out, 0x5EE5_0001) {
//!     if let Some(sr) = summary.sender_report {
//!         stats.handle_sender_report(sr.ntp, now_ms);
//!     }
//! }
//! ```

/// Why a datagram is not a valid RTCP compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Nothing, or fewer than the 4 bytes of a header, where a packet should start.
    #[error("RTCP packet shorter than its header")]
    TooShort,
    /// The version field is not 2.
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    /// The length field runs past the end of the datagram.
    #[error("RTCP length field runs past the datagram")]
    LengthOverrun,
    /// The padding count is zero or larger than the packet.
    #[error("bad RTCP padding length")]
    BadPadding,
    /// The packet is shorter than its count field and contents require.
    #[error("RTCP packet type {packet_type} truncated")]
    Truncated {
        /// The packet type (200 SR, 201 RR, 202 SDES, 203 BYE).
        packet_type: u8,
    },
}

/// Our sender information in an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SenderInfo {
    /// Wallclock time when the report is sent, NTP 32.32 fixed point.
    pub ntp: u64,
    /// The RTP timestamp corresponding to `ntp`, in our RTP clock.
    pub rtp_timestamp: u32,
    /// RTP packets sent since the start (wraps).
    pub packet_count: u32,
    /// RTP payload octets sent since the start (wraps).
    pub octet_count: u32,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Packets lost since the previous report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Packets lost since the start (expected − received), a 24-bit signed number; values
    /// outside `-0x80_0000..=0x7F_FFFF` are clamped when written.
    pub cumulative_lost: i32,
    /// Cycles (high 16 bits) and highest sequence number received (low 16 bits).
    pub extended_highest_sequence: u32,
    /// Interarrival jitter, in RTP timestamp units.
    pub jitter: u32,
    /// LSR: the middle 32 bits of the NTP timestamp of the last SR from the source, 0 if none.
    pub last_sender_report: u32,
    /// DLSR: delay since that SR was received, in 1/65536 s; 0 if none.
    pub delay_since_last_sender_report: u32,
}

impl ReportBlock {
    /// Length of a report block in bytes.
    pub const LEN: usize = 24;

    /// The round-trip time this block implies, for a block about our stream that arrived when
    /// our NTP clock read `arrival_ntp` (RFC 3550 §6.4.1: A − LSR − DLSR). `None` if the peer
    /// has no SR of ours yet (LSR 0) or the result is negative.
    #[must_use]
    pub fn round_trip_ms(&self, arrival_ntp: u64) -> Option<u32> {
        if self.last_sender_report == 0 {
            return None;
        }
        let rtt = ntp_middle(arrival_ntp)
            .wrapping_sub(self.last_sender_report)
            .wrapping_sub(self.delay_since_last_sender_report);
        if rtt > i32::MAX as u32 {
            return None;
        }
        u32::try_from(u64::from(rtt) * 1000 / 65536).ok()
    }

    fn write(&self, out: &mut Vec<u8>) {
        let lost = self
            .cumulative_lost
            .clamp(CUMULATIVE_LOST_MIN, CUMULATIVE_LOST_MAX);
        let [_, l0, l1, l2] = lost.to_be_bytes();
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&[self.fraction_lost, l0, l1, l2]);
        out.extend_from_slice(&self.extended_highest_sequence.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sender_report.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sender_report.to_be_bytes());
    }

    fn parse(bytes: &[u8; Self::LEN]) -> Self {
        let word = |i: usize| {
            bytes
                .get(i..i + 4)
                .and_then(|w| w.try_into().ok())
                .map_or(0, u32::from_be_bytes)
        };
        let [fraction_lost, l0, l1, l2] = word(4).to_be_bytes();
        // Sign-extend the 24-bit count.
        let cumulative_lost = i32::from_be_bytes([l0, l1, l2, 0]) >> 8;
        ReportBlock {
            ssrc: word(0),
            fraction_lost,
            cumulative_lost,
            extended_highest_sequence: word(8),
            jitter: word(12),
            last_sender_report: word(16),
            delay_since_last_sender_report: word(20),
        }
    }
}

/// Reception statistics of one RTP source (the peer's stream), per RFC 3550 A.1, A.3 and A.8.
///
/// Create a new one when the peer's SSRC changes. Unlike A.1, a new source is accepted from
/// its first packet (no probation): the peer is known from signalling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverStats {
    ssrc: u32,
    clock_rate: u32,
    /// Whether a packet has been received (and the fields below are meaningful).
    started: bool,
    max_seq: u16,
    /// Sequence number wrap-arounds, times 65536.
    cycles: u32,
    base_seq: u32,
    /// The sequence number that would confirm a large jump, if one is pending.
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Relative transit time of the previous packet, in RTP units.
    transit: Option<u32>,
    /// Interarrival jitter times 16 (A.8).
    jitter_x16: u64,
    /// LSR and our arrival time in ms of the peer's last SR.
    last_sr: Option<(u32, u64)>,
}

impl ReceiverStats {
    /// Statistics for source `ssrc` whose RTP clock runs at `clock_rate` Hz (8000 for G.711).
    #[must_use]
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        ReceiverStats {
            ssrc,
            clock_rate,
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter_x16: 0,
            last_sr: None,
        }
    }

    /// The source these statistics are about.
    #[must_use]
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Packets received (counted since the last resynchronisation on a large jump).
    #[must_use]
    pub fn packets_received(&self) -> u64 {
        self.received
    }

    /// The extended highest sequence number received: cycles in the high 16 bits.
    #[must_use]
    pub fn extended_highest_sequence(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected: extended highest − base + 1 (0 before the first packet).
    #[must_use]
    pub fn packets_expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        u64::from(self.extended_highest_sequence().wrapping_sub(self.base_seq)) + 1
    }

    /// Packets lost since the start: expected − received (negative with duplicates).
    #[must_use]
    pub fn cumulative_lost(&self) -> i64 {
        self.packets_expected() as i64 - self.received as i64
    }

    /// Interarrival jitter estimate, in RTP timestamp units.
    #[must_use]
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_x16 >> 4).unwrap_or(u32::MAX)
    }

    /// An RTP packet of this source arrived at `arrival_ms` (ms on the caller's clock).
    pub fn handle_packet(&mut self, sequence: u16, timestamp: u32, arrival_ms: u64) {
        if !self.started {
            self.restart(sequence);
        } else {
            let delta = sequence.wrapping_sub(self.max_seq);
            if delta < MAX_DROPOUT {
                // In order, possibly with a gap.
                if sequence < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(SEQ_MOD);
                }
                self.max_seq = sequence;
            } else if u32::from(delta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
                // A large jump: believe it when the next packet follows it.
                if self.bad_seq == Some(sequence) {
                    self.restart(sequence);
                } else {
                    self.bad_seq = Some(sequence.wrapping_add(1));
                    return;
                }
            }
            // Otherwise a duplicate or reordered packet: counted, no change to max_seq.
        }
        self.received += 1;
        self.update_jitter(timestamp, arrival_ms);
    }

    /// The peer's SR with NTP timestamp `ntp` arrived at `arrival_ms` (for LSR/DLSR).
    pub fn handle_sender_report(&mut self, ntp: u64, arrival_ms: u64) {
        self.last_sr = Some((ntp_middle(ntp), arrival_ms));
    }

    /// The report block to send at `now_ms`, ending the current report interval (the next
    /// fraction lost counts from here). `None` before the first packet.
    #[must_use]
    pub fn report_block(&mut self, now_ms: u64) -> Option<ReportBlock> {
        if !self.started {
            return None;
        }
        let expected = self.packets_expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            u8::try_from((lost_interval << 8) / expected_interval as i64).unwrap_or(u8::MAX)
        };
        let (last_sender_report, delay_since_last_sender_report) =
            self.last_sr.map_or((0, 0), |(lsr, at)| {
                let delay = now_ms.saturating_sub(at) * 65536 / 1000;
                (lsr, u32::try_from(delay).unwrap_or(u32::MAX))
            });
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self
                .cumulative_lost()
                .clamp(CUMULATIVE_LOST_MIN.into(), CUMULATIVE_LOST_MAX.into())
                as i32,
            extended_highest_sequence: self.extended_highest_sequence(),
            jitter: self.jitter(),
            last_sender_report,
            delay_since_last_sender_report,
        })
    }

    /// Starts counting afresh at `sequence` (A.1 `init_seq`).
    fn restart(&mut self, sequence: u16) {
        self.started = true;
        self.base_seq = u32::from(sequence);
        self.max_seq = sequence;
        self.bad_seq = None;
        self.cycles = 0;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.transit = None;
    }

    /// A.8: J += (|D| − J) / 16, in integer arithmetic scaled by 16.
    fn update_jitter(&mut self, timestamp: u32, arrival_ms: u64) {
        let arrival = (u128::from(arrival_ms) * u128::from(self.clock_rate) / 1000) as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(previous) = self.transit {
            let d = u64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
            self.jitter_x16 = self.jitter_x16 + d - ((self.jitter_x16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }
}

/// An SR or RR plus SDES CNAME: the regular compound packet (RFC 3550 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    /// Our SSRC.
    pub ssrc: u32,
    /// `Some` for an SR: we sent RTP since the last report (or the one before, RFC 3550
    /// §6.4); `None` for an RR.
    pub sender: Option<SenderInfo>,
    /// The report about the peer's stream, if we received any.
    pub block: Option<ReportBlock>,
    /// Our CNAME (RFC 7022: random per session is fine); truncated to 255 bytes.
    pub cname: &'a str,
}

impl Report<'_> {
    /// Appends the SR or RR and the SDES to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let count = u8::from(self.block.is_some());
        let block_len = usize::from(count) * ReportBlock::LEN;
        match &self.sender {
            Some(sender) => {
                write_header(out, count, SR, 4 + 4 + 20 + block_len);
                out.extend_from_slice(&self.ssrc.to_be_bytes());
                out.extend_from_slice(&sender.ntp.to_be_bytes());
                out.extend_from_slice(&sender.rtp_timestamp.to_be_bytes());
                out.extend_from_slice(&sender.packet_count.to_be_bytes());
                out.extend_from_slice(&sender.octet_count.to_be_bytes());
            }
            None => {
                write_header(out, count, RR, 4 + 4 + block_len);
                out.extend_from_slice(&self.ssrc.to_be_bytes());
            }
        }
        if let Some(block) = &self.block {
            block.write(out);
        }

        // SDES: one chunk, CNAME, then a null item and padding to a 32-bit boundary.
        let cname = item_text(self.cname);
        let items = 2 + cname.len();
        let nulls = 4 - items % 4;
        write_header(out, 1, SDES, 4 + 4 + items + nulls);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&[SDES_CNAME, cname.len() as u8]);
        out.extend_from_slice(cname);
        out.extend(std::iter::repeat_n(0, nulls));
    }
}

/// A BYE packet (RFC 3550 §6.6), appended after a [`Report`] when leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bye<'a> {
    /// Our SSRC.
    pub ssrc: u32,
    /// Reason for leaving; truncated to 255 bytes.
    pub reason: Option<&'a str>,
}

impl Bye<'_> {
    /// Appends the BYE to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let reason = self.reason.map(item_text);
        let reason_len = reason.map_or(0, |r| (1 + r.len()).div_ceil(4) * 4);
        write_header(out, 1, BYE, 4 + 4 + reason_len);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        if let Some(reason) = reason {
            out.push(reason.len() as u8);
            out.extend_from_slice(reason);
            out.extend(std::iter::repeat_n(0, reason_len - 1 - reason.len()));
        }
    }
}

/// One packet of a compound RTCP packet, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// SR (200).
    SenderReport {
        /// The sender's SSRC.
        ssrc: u32,
        /// Its sender information.
        sender: SenderInfo,
        /// Its reception report blocks.
        blocks: ReportBlocks<'a>,
    },
    /// RR (201).
    ReceiverReport {
        /// The sender's SSRC.
        ssrc: u32,
        /// Its reception report blocks.
        blocks: ReportBlocks<'a>,
    },
    /// SDES (202).
    SourceDescription(SourceDescription<'a>),
    /// BYE (203).
    Bye {
        /// The sources leaving.
        sources: Ssrcs<'a>,
        /// The reason, if given (not necessarily UTF-8).
        reason: Option<&'a [u8]>,
    },
    /// Any other type (APP, RTPFB, PSFB, XR, …), skipped.
    Other {
        /// The packet type.
        packet_type: u8,
    },
}

/// Iterates over the packets of a compound RTCP packet; after the first error it ends.
#[derive(Debug, Clone)]
pub struct RtcpPackets<'a> {
    rest: &'a [u8],
}

impl<'a> RtcpPackets<'a> {
    /// Walks `data`, one RTCP datagram.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        RtcpPackets { rest: data }
    }
}

impl<'a> Iterator for RtcpPackets<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = parse_packet(self.rest);
        match result {
            Ok((packet, rest)) => {
                self.rest = rest;
                Some(Ok(packet))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// The report blocks of an SR or RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    data: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let (block, rest) = self.data.split_first_chunk::<{ ReportBlock::LEN }>()?;
        self.data = rest;
        Some(ReportBlock::parse(block))
    }
}

/// A list of SSRCs (of a BYE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ssrcs<'a> {
    data: &'a [u8],
}

impl Iterator for Ssrcs<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (ssrc, rest) = self.data.split_first_chunk::<4>()?;
        self.data = rest;
        Some(u32::from_be_bytes(*ssrc))
    }
}

/// An SDES packet (validated when parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceDescription<'a> {
    chunks: &'a [u8],
    count: u8,
}

/// One SDES item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    /// The source described.
    pub ssrc: u32,
    /// Item type (1 CNAME, 2 NAME, …).
    pub item_type: u8,
    /// Item text (meant to be UTF-8, not checked).
    pub text: &'a [u8],
}

impl<'a> SourceDescription<'a> {
    /// All items of all chunks, in order.
    #[must_use]
    pub fn items(&self) -> SdesItems<'a> {
        SdesItems {
            chunks: self.chunks,
            chunks_left: self.count,
            chunk: None,
        }
    }

    /// The CNAME of `ssrc`, if described here.
    #[must_use]
    pub fn cname(&self, ssrc: u32) -> Option<&'a [u8]> {
        self.items()
            .find(|i| i.ssrc == ssrc && i.item_type == SDES_CNAME)
            .map(|i| i.text)
    }
}

/// Iterator over the items of a [`SourceDescription`].
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    chunks: &'a [u8],
    chunks_left: u8,
    /// SSRC and remaining items of the chunk being read.
    chunk: Option<(u32, &'a [u8])>,
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = SdesItem<'a>;

    fn next(&mut self) -> Option<SdesItem<'a>> {
        loop {
            if let Some((ssrc, items)) = self.chunk {
                match items {
                    [item_type, len, rest @ ..] if *item_type != 0 => {
                        let (text, after) = rest.split_at_checked(usize::from(*len))?;
                        self.chunk = Some((ssrc, after));
                        return Some(SdesItem {
                            ssrc,
                            item_type: *item_type,
                            text,
                        });
                    }
                    _ => self.chunk = None,
                }
            }
            if self.chunks_left == 0 {
                return None;
            }
            self.chunks_left -= 1;
            let (ssrc, items, rest) = split_sdes_chunk(self.chunks).ok()?;
            self.chunks = rest;
            self.chunk = Some((ssrc, items));
        }
    }
}

/// What a media session needs from one RTCP compound packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcpSummary {
    /// SSRC of the first SR or RR: who sent this compound packet.
    pub sender_ssrc: Option<u32>,
    /// The sender information of the (first) SR: feed its `ntp` to
    /// [`ReceiverStats::handle_sender_report`].
    pub sender_report: Option<SenderInfo>,
    /// The first report block about our SSRC: the peer's view of our stream.
    pub report_about_us: Option<ReportBlock>,
    /// Whether a BYE was present.
    pub bye: bool,
}

impl RtcpSummary {
    /// Parses a compound packet, validating every packet in it; `our_ssrc` selects the
    /// report block about us.
    pub fn parse(data: &[u8], our_ssrc: u32) -> Result<Self, RtcpError> {
        if data.is_empty() {
            return Err(RtcpError::TooShort);
        }
        let mut summary = RtcpSummary::default();
        for packet in RtcpPackets::new(data) {
            let mut about_us = |mut blocks: ReportBlocks<'_>| {
                if summary.report_about_us.is_none() {
                    summary.report_about_us = blocks.find(|b| b.ssrc == our_ssrc);
                }
            };
            match packet? {
                RtcpPacket::SenderReport {
                    ssrc,
                    sender,
                    blocks,
                } => {
                    about_us(blocks);
                    summary.sender_ssrc.get_or_insert(ssrc);
                    summary.sender_report.get_or_insert(sender);
                }
                RtcpPacket::ReceiverReport { ssrc, blocks } => {
                    about_us(blocks);
                    summary.sender_ssrc.get_or_insert(ssrc);
                }
                RtcpPacket::Bye { .. } => summary.bye = true,
                RtcpPacket::SourceDescription(_) | RtcpPacket::Other { .. } => {}
            }
        }
        Ok(summary)
    }
}

/// When to send the next report: every [`INTERVAL_MS`](Self::INTERVAL_MS), randomised to
/// 0.5–1.5 ×, the first after half of that (RFC 3550 §6.2). Time is ms on the caller's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTimer {
    next_ms: u64,
    rng: u64,
}

impl ReportTimer {
    /// The nominal report interval (the RFC 3550 minimum).
    pub const INTERVAL_MS: u64 = 5000;

    /// A timer started at `now_ms`; `seed` (random, per session) spreads the reports.
    #[must_use]
    pub fn new(now_ms: u64, seed: u64) -> Self {
        let mut timer = ReportTimer {
            next_ms: 0,
            rng: seed,
        };
        timer.next_ms = now_ms.saturating_add(timer.randomised(Self::INTERVAL_MS / 2));
        timer
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> u64 {
        self.next_ms
    }

    /// Returns whether a report is due at `now_ms`; if so, schedules the next one.
    #[must_use]
    pub fn handle_timeout(&mut self, now_ms: u64) -> bool {
        if now_ms < self.next_ms {
            return false;
        }
        self.next_ms = now_ms.saturating_add(self.randomised(Self::INTERVAL_MS));
        true
    }

    /// `interval` × a uniform factor in [0.5, 1.5].
    fn randomised(&mut self, interval: u64) -> u64 {
        // SplitMix64.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        interval / 2 + z % (interval + 1)
    }
}

const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BYE: u8 = 203;
const SDES_CNAME: u8 = 1;
const SEQ_MOD: u32 = 1 << 16;
/// A.1: a forward gap up to this is in-order loss.
const MAX_DROPOUT: u16 = 3000;
/// A.1: a backward step up to this is reordering.
const MAX_MISORDER: u16 = 100;
const CUMULATIVE_LOST_MIN: i32 = -0x80_0000;
const CUMULATIVE_LOST_MAX: i32 = 0x7F_FFFF;

/// The middle 32 bits of a 32.32 NTP timestamp (the LSR format).
fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Appends a common header for a packet of `len` bytes (a multiple of 4, header included).
fn write_header(out: &mut Vec<u8>, count: u8, packet_type: u8, len: usize) {
    let words = u16::try_from(len / 4 - 1).unwrap_or(u16::MAX);
    out.push(0x80 | (count & 0x1F));
    out.push(packet_type);
    out.extend_from_slice(&words.to_be_bytes());
}

/// At most 255 bytes of `text`, cut at a character boundary.
fn item_text(text: &str) -> &[u8] {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.as_bytes().get(..end).unwrap_or_default()
}

/// Parses the packet at the start of `data`; returns it and what follows.
fn parse_packet(data: &[u8]) -> Result<(RtcpPacket<'_>, &[u8]), RtcpError> {
    let (&[b0, packet_type, l0, l1], rest) =
        data.split_first_chunk::<4>().ok_or(RtcpError::TooShort)?;
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let count = b0 & 0x1F;
    let len = usize::from(u16::from_be_bytes([l0, l1])) * 4;
    let (mut body, rest) = rest.split_at_checked(len).ok_or(RtcpError::LengthOverrun)?;
    if b0 & 0x20 != 0 {
        let padding = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
        if padding == 0 || padding > body.len() {
            return Err(RtcpError::BadPadding);
        }
        body = body
            .get(..body.len() - padding)
            .ok_or(RtcpError::BadPadding)?;
    }
    let truncated = RtcpError::Truncated { packet_type };
    let blocks_len = usize::from(count) * ReportBlock::LEN;
    let packet = match packet_type {
        SR => {
            let (fixed, blocks) = body.split_first_chunk::<24>().ok_or(truncated)?;
            let word =
                |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
            RtcpPacket::SenderReport {
                ssrc: word(0),
                sender: SenderInfo {
                    ntp: u64::from(word(4)) << 32 | u64::from(word(8)),
                    rtp_timestamp: word(12),
                    packet_count: word(16),
                    octet_count: word(20),
                },
                blocks: ReportBlocks {
                    data: blocks.get(..blocks_len).ok_or(truncated)?,
                },
            }
        }
        RR => {
            let (ssrc, blocks) = body.split_first_chunk::<4>().ok_or(truncated)?;
            RtcpPacket::ReceiverReport {
                ssrc: u32::from_be_bytes(*ssrc),
                blocks: ReportBlocks {
                    data: blocks.get(..blocks_len).ok_or(truncated)?,
                },
            }
        }
        SDES => {
            let mut chunks = body;
            for _ in 0..count {
                let (_, _, after) = split_sdes_chunk(chunks).map_err(|()| truncated)?;
                chunks = after;
            }
            RtcpPacket::SourceDescription(SourceDescription {
                chunks: body,
                count,
            })
        }
        BYE => {
            let (sources, after) = body
                .split_at_checked(usize::from(count) * 4)
                .ok_or(truncated)?;
            let reason = match after {
                [] => None,
                [len, text @ ..] => Some(text.get(..usize::from(*len)).ok_or(truncated)?),
            };
            RtcpPacket::Bye {
                sources: Ssrcs { data: sources },
                reason,
            }
        }
        _ => RtcpPacket::Other { packet_type },
    };
    Ok((packet, rest))
}

/// Splits one SDES chunk off `data`: its SSRC, its items (up to the null item) and the rest
/// after its padding.
fn split_sdes_chunk(data: &[u8]) -> Result<(u32, &[u8], &[u8]), ()> {
    let (ssrc, items) = data.split_first_chunk::<4>().ok_or(())?;
    let mut pos = 0;
    loop {
        match items.get(pos..) {
            Some([0, ..]) => break,
            Some([_, len, ..]) => pos += 2 + usize::from(*len),
            _ => return Err(()),
        }
    }
    // The null item, then padding to a 32-bit boundary (from the chunk start).
    let end = (4 + pos + 1).div_ceil(4) * 4 - 4;
    let rest = items.get(end..).ok_or(())?;
    Ok((u32::from_be_bytes(*ssrc), items.get(..pos).ok_or(())?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NTP: u64 = 0xE5F3_1234_89AB_CDEF;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0xAABB_CCDD,
            fraction_lost: 64,
            cumulative_lost: -3,
            extended_highest_sequence: 0x0001_0005,
            jitter: 0x0102,
            last_sender_report: 0x1234_89AB,
            delay_since_last_sender_report: 0x0001_8000,
        }
    }

    #[test]
    fn sender_report_layout_is_byte_exact() {
        let mut out = vec![0xEE]; // written after what is there
        Report {
            ssrc: 0x1122_3344,
            sender: Some(SenderInfo {
                ntp: NTP,
                rtp_timestamp: 0x0001_0203,
                packet_count: 100,
                octet_count: 16_000,
            }),
            block: Some(block()),
            cname: "ab",
        }
        .write(&mut out);
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0xEE,
            // SR: V=2 P=0 RC=1, PT=200, length 12 (52 bytes / 4 - 1)
            0x81, 200, 0, 12,
            0x11, 0x22, 0x33, 0x44, // SSRC
            0xE5, 0xF3, 0x12, 0x34, // NTP seconds
            0x89, 0xAB, 0xCD, 0xEF, // NTP fraction
            0x00, 0x01, 0x02, 0x03, // RTP timestamp
            0, 0, 0, 100, // packet count
            0, 0, 0x3E, 0x80, // octet count 16000
            0xAA, 0xBB, 0xCC, 0xDD, // block: SSRC
            64, 0xFF, 0xFF, 0xFD, // fraction 64/256, cumulative -3 (24-bit)
            0x00, 0x01, 0x00, 0x05, // extended highest sequence: 1 cycle, seq 5
            0x00, 0x00, 0x01, 0x02, // jitter
            0x12, 0x34, 0x89, 0xAB, // LSR
            0x00, 0x01, 0x80, 0x00, // DLSR 1.5 s
            // SDES: V=2 P=0 SC=1, PT=202, length 3 (16 bytes)
            0x81, 202, 0, 3,
            0x11, 0x22, 0x33, 0x44, // SSRC
            1, 2, b'a', b'b', // CNAME "ab"
            0, 0, 0, 0, // null item + padding to the next word
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn receiver_report_layout_is_byte_exact() {
        let mut out = Vec::new();
        Report {
            ssrc: 0x0102_0304,
            sender: None,
            block: Some(block()),
            cname: "xyz",
        }
        .write(&mut out);
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x81, 201, 0, 7, // RR, RC=1, 32 bytes
            1, 2, 3, 4,
            0xAA, 0xBB, 0xCC, 0xDD, 64, 0xFF, 0xFF, 0xFD, 0, 1, 0, 5, 0, 0, 1, 2,
            0x12, 0x34, 0x89, 0xAB, 0, 1, 0x80, 0,
            0x81, 202, 0, 3, // SDES, 16 bytes
            1, 2, 3, 4,
            1, 3, b'x', b'y', b'z', 0, 0, 0, // CNAME "xyz", null, one byte of padding
        ];
        assert_eq!(out, expected);

        // Nothing received yet: an empty RR.
        out.clear();
        Report {
            ssrc: 0x0102_0304,
            sender: None,
            block: None,
            cname: "",
        }
        .write(&mut out);
        assert_eq!(
            out,
            [
                0x80, 201, 0, 1, 1, 2, 3, 4, 0x81, 202, 0, 2, 1, 2, 3, 4, 1, 0, 0, 0
            ]
        );
    }

    #[test]
    fn cumulative_lost_is_clamped_to_24_bits() {
        for (lost, bytes, parsed) in [
            (-9_000_000, [0x80, 0x00, 0x00], -0x80_0000),
            (9_000_000, [0x7F, 0xFF, 0xFF], 0x7F_FFFF),
            (-1, [0xFF, 0xFF, 0xFF], -1),
            (0x12_3456, [0x12, 0x34, 0x56], 0x12_3456),
        ] {
            let mut out = Vec::new();
            ReportBlock {
                cumulative_lost: lost,
                ..block()
            }
            .write(&mut out);
            assert_eq!(out[5..8], bytes);
            let parsed_block = ReportBlock::parse(out.as_slice().try_into().unwrap());
            assert_eq!(parsed_block.cumulative_lost, parsed);
        }
    }

    #[test]
    fn bye_layout_and_round_trip() {
        let mut out = Vec::new();
        Bye {
            ssrc: 0x0A0B_0C0D,
            reason: Some("done"),
        }
        .write(&mut out);
        assert_eq!(
            out,
            [
                0x81, 203, 0, 3, 0x0A, 0x0B, 0x0C, 0x0D, 4, b'd', b'o', b'n', b'e', 0, 0, 0
            ]
        );
        out.clear();
        Bye {
            ssrc: 0x0A0B_0C0D,
            reason: None,
        }
        .write(&mut out);
        assert_eq!(out, [0x81, 203, 0, 1, 0x0A, 0x0B, 0x0C, 0x0D]);

        let mut out = Vec::new();
        Report {
            ssrc: 0x0A0B_0C0D,
            sender: None,
            block: None,
            cname: "c",
        }
        .write(&mut out);
        Bye {
            ssrc: 0x0A0B_0C0D,
            reason: Some("bye now"),
        }
        .write(&mut out);
        let packets: Vec<_> = RtcpPackets::new(&out).map(Result::unwrap).collect();
        let RtcpPacket::Bye { sources, reason } = packets[2] else {
            panic!("{packets:?}");
        };
        assert_eq!(sources.collect::<Vec<_>>(), [0x0A0B_0C0D]);
        assert_eq!(reason, Some(&b"bye now"[..]));
        assert!(RtcpSummary::parse(&out, 1).unwrap().bye);
    }

    #[test]
    fn long_texts_are_truncated_at_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let mut out = Vec::new();
        Report {
            ssrc: 1,
            sender: None,
            block: None,
            cname: &long,
        }
        .write(&mut out);
        let Some(Ok(RtcpPacket::SourceDescription(sdes))) = RtcpPackets::new(&out).nth(1) else {
            panic!()
        };
        let cname = sdes.cname(1).unwrap();
        assert_eq!(cname.len(), 254);
        assert!(std::str::from_utf8(cname).is_ok());
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn build_then_parse_round_trips() {
        let sender = SenderInfo {
            ntp: NTP,
            rtp_timestamp: 99,
            packet_count: 7,
            octet_count: 1120,
        };
        let mut out = Vec::new();
        Report {
            ssrc: 0x5EE5,
            sender: Some(sender),
            block: Some(block()),
            cname: "peer@host",
        }
        .write(&mut out);

        let packets: Vec<_> = RtcpPackets::new(&out).map(Result::unwrap).collect();
        assert_eq!(packets.len(), 2);
        let RtcpPacket::SenderReport {
            ssrc,
            sender: parsed,
            blocks,
        } = packets[0]
        else {
            panic!("{packets:?}");
        };
        assert_eq!((ssrc, parsed), (0x5EE5, sender));
        assert_eq!(blocks.collect::<Vec<_>>(), [block()]);
        let RtcpPacket::SourceDescription(sdes) = packets[1] else {
            panic!("{packets:?}");
        };
        assert_eq!(sdes.cname(0x5EE5), Some(&b"peer@host"[..]));
        assert_eq!(sdes.cname(0x1234), None);

        let summary = RtcpSummary::parse(&out, 0xAABB_CCDD).unwrap();
        assert_eq!(
            summary,
            RtcpSummary {
                sender_ssrc: Some(0x5EE5),
                sender_report: Some(sender),
                report_about_us: Some(block()),
                bye: false,
            }
        );
        // A block about someone else is not about us.
        let summary = RtcpSummary::parse(&out, 0x1111).unwrap();
        assert_eq!(summary.report_about_us, None);

        // RR round trip.
        out.clear();
        Report {
            ssrc: 0x5EE5,
            sender: None,
            block: Some(block()),
            cname: "x",
        }
        .write(&mut out);
        let summary = RtcpSummary::parse(&out, 0xAABB_CCDD).unwrap();
        assert_eq!(summary.sender_report, None);
        assert_eq!(summary.sender_ssrc, Some(0x5EE5));
        assert_eq!(summary.report_about_us, Some(block()));
    }

    #[test]
    fn hand_written_sr_sdes_compound_parses() {
        // RFC 3550 §6.4.1 and §6.5, written out byte by byte: an SR from SSRC 0x01020304
        // with two report blocks, padding in the last packet (SDES with CNAME and NAME,
        // followed by an APP packet to be skipped).
        #[rustfmt::skip]
        let data: &[u8] = &[
            // SR header: V=2, P=0, RC=2; PT=200; length = (4+4+20+48)/4 - 1 = 18
            0x82, 0xC8, 0x00, 0x12,
            0x01, 0x02, 0x03, 0x04,
            // sender info: NTP 0xE8764800.5 s, RTP ts 8000, 50 packets, 8000 octets
            0xE8, 0x76, 0x48, 0x00, 0x80, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x1F, 0x40,
            0x00, 0x00, 0x00, 0x32,
            0x00, 0x00, 0x1F, 0x40,
            // block 1, about 0x0A0A0A0A: 10 % lost (25/256), 1000 lost, ext seq 70000,
            // jitter 40, no LSR
            0x0A, 0x0A, 0x0A, 0x0A,
            0x19, 0x00, 0x03, 0xE8,
            0x00, 0x01, 0x11, 0x70,
            0x00, 0x00, 0x00, 0x28,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            // block 2, about us (0x0B0B0B0B): nothing lost, LSR and DLSR 0.25 s
            0x0B, 0x0B, 0x0B, 0x0B,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x02, 0x00,
            0x00, 0x00, 0x00, 0x05,
            0x48, 0x00, 0x80, 0x00,
            0x00, 0x00, 0x40, 0x00,
            // SDES: SC=1, PT=202, length 5 (24 bytes)
            0x81, 0xCA, 0x00, 0x05,
            0x01, 0x02, 0x03, 0x04,
            0x01, 0x05, b'a', b'l', b'i', b'c', b'e', // CNAME "alice"
            0x02, 0x03, b'B', b'o', b'b', // NAME "Bob" (16 bytes so far)
            0x00, 0x00, 0x00, 0x00, // null item + padding to the next word
            // APP with padding: V=2, P=1, subtype 0; PT=204; length 3
            0xA0, 0xCC, 0x00, 0x03,
            0x01, 0x02, 0x03, 0x04,
            b't', b'e', b's', b't',
            0xFF, 0x00, 0x00, 0x03, // one byte of data, three bytes of padding
        ];
        let packets: Vec<_> = RtcpPackets::new(data).map(Result::unwrap).collect();
        assert_eq!(packets.len(), 3);
        let RtcpPacket::SenderReport {
            ssrc,
            sender,
            blocks,
        } = packets[0]
        else {
            panic!("{packets:?}");
        };
        assert_eq!(ssrc, 0x0102_0304);
        assert_eq!(
            sender,
            SenderInfo {
                ntp: 0xE876_4800u64 << 32 | 0x8000_0000,
                rtp_timestamp: 8000,
                packet_count: 50,
                octet_count: 8000,
            }
        );
        let blocks: Vec<_> = blocks.collect();
        assert_eq!(
            blocks[0],
            ReportBlock {
                ssrc: 0x0A0A_0A0A,
                fraction_lost: 25,
                cumulative_lost: 1000,
                extended_highest_sequence: 70_000,
                jitter: 40,
                last_sender_report: 0,
                delay_since_last_sender_report: 0,
            }
        );
        let RtcpPacket::SourceDescription(sdes) = packets[1] else {
            panic!("{packets:?}");
        };
        let items: Vec<_> = sdes
            .items()
            .map(|i| (i.ssrc, i.item_type, i.text))
            .collect();
        assert_eq!(
            items,
            [
                (0x0102_0304, 1, &b"alice"[..]),
                (0x0102_0304, 2, &b"Bob"[..])
            ]
        );
        assert_eq!(packets[2], RtcpPacket::Other { packet_type: 204 });

        let summary = RtcpSummary::parse(data, 0x0B0B_0B0B).unwrap();
        assert_eq!(summary.sender_ssrc, Some(0x0102_0304));
        let about_us = summary.report_about_us.unwrap();
        assert_eq!(about_us, blocks[1]);
        // We sent the SR whose middle NTP bits are 0x48008000; the peer held it 0.25 s; it
        // came back 0.75 s after we sent it: RTT 0.5 s.
        let sent = 0xE876_4800u64 << 32 | 0x8000_0000;
        let arrival = sent + (3u64 << 30); // + 0.75 s
        assert_eq!(about_us.round_trip_ms(arrival), Some(500));
        assert_eq!(blocks[0].round_trip_ms(arrival), None); // no LSR
        assert_eq!(about_us.round_trip_ms(sent), None); // negative
        // The peer's SR gives our next LSR: its middle 32 bits.
        let mut stats = ReceiverStats::new(0x0102_0304, 8000);
        stats.handle_packet(1, 0, 0);
        stats.handle_sender_report(summary.sender_report.unwrap().ntp, 1000);
        let block = stats.report_block(1500).unwrap();
        assert_eq!(block.last_sender_report, 0x4800_8000);
        assert_eq!(block.delay_since_last_sender_report, 32768); // 0.5 s
        assert_eq!(block.ssrc, 0x0102_0304);
    }

    #[test]
    fn unknown_packet_types_are_skipped() {
        let mut out = Vec::new();
        Report {
            ssrc: 9,
            sender: None,
            block: Some(block()),
            cname: "n",
        }
        .write(&mut out);
        // RTPFB generic NACK (205) and XR (207) after the report.
        out.extend_from_slice(&[
            0x81, 205, 0, 3, 0, 0, 0, 9, 0xAA, 0xBB, 0xCC, 0xDD, 0, 5, 0, 0,
        ]);
        out.extend_from_slice(&[0x80, 207, 0, 1, 0, 0, 0, 9]);
        let types: Vec<_> = RtcpPackets::new(&out)
            .map(|p| match p.unwrap() {
                RtcpPacket::Other { packet_type } => packet_type,
                RtcpPacket::ReceiverReport { .. } => RR,
                RtcpPacket::SourceDescription(_) => SDES,
                _ => 0,
            })
            .collect();
        assert_eq!(types, [RR, SDES, 205, 207]);
        let summary = RtcpSummary::parse(&out, 0xAABB_CCDD).unwrap();
        assert_eq!(summary.report_about_us, Some(block()));
    }

    #[test]
    fn truncated_and_garbage_packets_are_errors() {
        let mut good = Vec::new();
        Report {
            ssrc: 0x5EE5,
            sender: Some(SenderInfo::default()),
            block: Some(block()),
            cname: "cname",
        }
        .write(&mut good);
        Bye {
            ssrc: 0x5EE5,
            reason: Some("r"),
        }
        .write(&mut good);
        assert!(RtcpSummary::parse(&good, 0).is_ok());
        // Every cut except at packet boundaries is an error; none panics.
        let boundaries = [52usize, 52 + 16, good.len()];
        for len in 0..good.len() {
            let result = RtcpSummary::parse(&good[..len], 0);
            assert_eq!(
                result.is_ok(),
                boundaries.contains(&len),
                "len {len}: {result:?}"
            );
        }
        assert_eq!(RtcpSummary::parse(&[], 0), Err(RtcpError::TooShort));
        assert_eq!(RtcpSummary::parse(&good[..3], 0), Err(RtcpError::TooShort));
        assert_eq!(
            RtcpSummary::parse(&good[..51], 0),
            Err(RtcpError::LengthOverrun)
        );
        assert_eq!(
            RtcpSummary::parse(&[0x40, 201, 0, 0], 0),
            Err(RtcpError::BadVersion(1))
        );
        // RC says 2 blocks, the length holds one.
        let mut two = good[..52].to_vec();
        two[0] = 0x82;
        assert_eq!(
            RtcpSummary::parse(&two, 0),
            Err(RtcpError::Truncated { packet_type: SR })
        );
        // SR shorter than its sender info.
        assert_eq!(
            RtcpSummary::parse(&[0x80, 200, 0, 1, 0, 0, 0, 1], 0),
            Err(RtcpError::Truncated { packet_type: SR })
        );
        // Padding: zero, or more than the packet.
        assert_eq!(
            RtcpSummary::parse(&[0xA0, 201, 0, 1, 0, 0, 0, 0], 0),
            Err(RtcpError::BadPadding)
        );
        assert_eq!(
            RtcpSummary::parse(&[0xA0, 201, 0, 1, 0, 0, 0, 9], 0),
            Err(RtcpError::BadPadding)
        );
        assert_eq!(
            RtcpSummary::parse(&[0xA0, 201, 0, 0], 0),
            Err(RtcpError::BadPadding)
        );
        // SDES item running past its packet; BYE reason longer than the packet.
        assert_eq!(
            RtcpSummary::parse(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', b'b'], 0),
            Err(RtcpError::Truncated { packet_type: SDES })
        );
        assert_eq!(
            RtcpSummary::parse(&[0x81, 203, 0, 2, 0, 0, 0, 1, 9, b'a', 0, 0], 0),
            Err(RtcpError::Truncated { packet_type: BYE })
        );
        // A valid packet followed by garbage is an error (the packet is not skipped silently).
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0x80, 201]);
        assert_eq!(RtcpSummary::parse(&trailing, 0), Err(RtcpError::TooShort));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut good = Vec::new();
        Report {
            ssrc: 1,
            sender: Some(SenderInfo::default()),
            block: Some(block()),
            cname: "abc",
        }
        .write(&mut good);
        Bye {
            ssrc: 1,
            reason: Some("x"),
        }
        .write(&mut good);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut data = good.clone();
            // Flip a few bytes, keeping version 2 most of the time so parsing goes deep.
            for k in 0..3 {
                let at = (state >> (k * 16)) as usize % data.len();
                data[at] = (state >> (k * 8 + 40)) as u8;
            }
            let cut = (state >> 56) as usize % (data.len() + 1);
            let data = &data[..cut];
            let _ = RtcpSummary::parse(data, 1);
            for packet in RtcpPackets::new(data).flatten() {
                if let RtcpPacket::SourceDescription(sdes) = packet {
                    let _ = sdes.items().count();
                }
            }
        }
    }

    #[test]
    fn jitter_follows_rfc3550_a8() {
        // 20 ms packets (160 units) arriving at 0, 20, 45, 60, 90, 100 ms:
        // arrival in RTP units 0, 160, 360, 480, 720, 800; transit 0, 0, 40, 0, 80, 0;
        // |D| = 0, 40, 40, 80, 80.
        // J×16: 0 → 0 + 0 − 0 = 0 → 0 + 40 − 0 = 40 → 40 + 40 − 3 = 77
        //       → 77 + 80 − 5 = 152 → 152 + 80 − 10 = 222; J = 222 >> 4 = 13.
        let mut stats = ReceiverStats::new(7, 8000);
        let arrivals = [0u64, 20, 45, 60, 90, 100];
        let mut expected_x16 = [0u64, 0, 40, 77, 152, 222].into_iter();
        for (i, &at) in arrivals.iter().enumerate() {
            stats.handle_packet(100 + i as u16, 1_000_000 + 160 * i as u32, at);
            assert_eq!(stats.jitter_x16, expected_x16.next().unwrap());
        }
        assert_eq!(stats.jitter(), 13);
        assert_eq!(stats.report_block(100).unwrap().jitter, 13);

        // A constant delay, timestamps wrapping: no jitter.
        let mut stats = ReceiverStats::new(7, 8000);
        for i in 0..50u32 {
            let ts = (u32::MAX - 800).wrapping_add(160 * i);
            stats.handle_packet(i as u16, ts, 5_000 + 20 * u64::from(i));
        }
        assert_eq!(stats.jitter(), 0);
    }

    #[test]
    fn loss_and_fraction_across_sequence_wrap() {
        let mut stats = ReceiverStats::new(7, 8000);
        assert_eq!(stats.report_block(0), None);
        // 65530..=65535, 0..=3 expected; 65532 and 1 missing.
        for seq in [65530u16, 65531, 65533, 65534, 65535, 0, 2, 3] {
            stats.handle_packet(seq, 0, 0);
        }
        assert_eq!(stats.extended_highest_sequence(), 65536 + 3);
        assert_eq!(stats.packets_expected(), 10);
        assert_eq!(stats.cumulative_lost(), 2);
        let first = stats.report_block(1000).unwrap();
        assert_eq!(first.fraction_lost, 51); // 2 × 256 / 10
        assert_eq!(first.cumulative_lost, 2);
        assert_eq!(first.extended_highest_sequence, 0x0001_0003);
        assert_eq!(
            (
                first.last_sender_report,
                first.delay_since_last_sender_report
            ),
            (0, 0)
        );

        // Next interval: 4..=13 all received, plus a late 1 (reordered): fraction 0, and the
        // late packet reduces the cumulative count.
        for seq in 4..=13u16 {
            stats.handle_packet(seq, 0, 0);
        }
        stats.handle_packet(1, 0, 0);
        let second = stats.report_block(6000).unwrap();
        assert_eq!(second.fraction_lost, 0);
        assert_eq!(second.cumulative_lost, 1);
        assert_eq!(second.extended_highest_sequence, 0x0001_000D);

        // Duplicates make the interval's loss negative: fraction 0, cumulative negative.
        for _ in 0..5 {
            stats.handle_packet(13, 0, 0);
        }
        stats.handle_packet(14, 0, 0);
        let third = stats.report_block(11_000).unwrap();
        assert_eq!(third.fraction_lost, 0);
        assert_eq!(third.cumulative_lost, -4);

        // 3 of the next 8 (15..=22) lost: 3 × 256 / 8 = 96; cumulative 29 expected − 30.
        for seq in [15u16, 17, 19, 21, 22] {
            stats.handle_packet(seq, 0, 0);
        }
        let fourth = stats.report_block(16_000).unwrap();
        assert_eq!((fourth.fraction_lost, fourth.cumulative_lost), (96, -1));
    }

    #[test]
    fn large_sequence_jump_resynchronises_after_two_packets() {
        let mut stats = ReceiverStats::new(7, 8000);
        for seq in 100..110u16 {
            stats.handle_packet(seq, 0, 0);
        }
        // One stray packet far away is ignored...
        stats.handle_packet(30_000, 0, 0);
        assert_eq!(stats.packets_received(), 10);
        assert_eq!(stats.extended_highest_sequence(), 109);
        // ...the stream goes on...
        stats.handle_packet(110, 0, 0);
        assert_eq!(stats.packets_received(), 11);
        // ...and a real restart (two sequential packets) resynchronises, counting from the
        // second one as A.1 does.
        stats.handle_packet(40_000, 0, 0);
        assert_eq!(stats.extended_highest_sequence(), 110);
        stats.handle_packet(40_001, 0, 0);
        assert_eq!(stats.extended_highest_sequence(), 40_001);
        assert_eq!(stats.packets_expected(), 1);
        assert_eq!(stats.packets_received(), 1);
        assert_eq!(stats.cumulative_lost(), 0);
        // Misordered by up to 100 is reordering, not a jump; 3000 ahead is loss.
        stats.handle_packet(39_950, 0, 0);
        assert_eq!(stats.extended_highest_sequence(), 40_001);
        stats.handle_packet(42_000, 0, 0);
        assert_eq!(stats.extended_highest_sequence(), 42_000);
    }

    #[test]
    fn report_timer_is_randomised_around_five_seconds() {
        let mut timer = ReportTimer::new(1000, 7);
        let first = timer.poll_timeout();
        assert!((1000 + 1250..=1000 + 3750).contains(&first), "{first}");
        assert!(!timer.handle_timeout(first - 1));
        assert_eq!(timer.poll_timeout(), first);
        let mut now = first;
        let mut intervals = Vec::new();
        for _ in 0..200 {
            assert!(timer.handle_timeout(now));
            let next = timer.poll_timeout();
            intervals.push(next - now);
            now = next;
        }
        assert!(intervals.iter().all(|i| (2500..=7500).contains(i)));
        let mean = intervals.iter().sum::<u64>() / 200;
        assert!((4500..=5500).contains(&mean), "{mean}");
        assert!(intervals.windows(2).any(|w| w[0] != w[1]));
        // Deterministic for a seed, different across seeds.
        assert_eq!(ReportTimer::new(0, 7), ReportTimer::new(0, 7));
        assert_ne!(
            ReportTimer::new(0, 7).poll_timeout(),
            ReportTimer::new(0, 8).poll_timeout()
        );
        // A late call reschedules from now.
        let mut timer = ReportTimer::new(0, 1);
        assert!(timer.handle_timeout(1_000_000));
        assert!(timer.poll_timeout() >= 1_002_500);
    }
}
