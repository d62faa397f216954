//! Receive-side play-out: a jitter buffer that turns arriving G.711 RTP into exactly one 20 ms
//! frame of PCM per tick, with packet-loss concealment (PLC).
//!
//! # Model
//!
//! Play-out is by RTP timestamp, sample by sample, so 10, 20, 30 ms (or odd-sized) packets all
//! map onto 20 ms frames. The buffer is a fixed ring of G.711 codes (one byte per sample,
//! decoded when played) with one presence bit per sample, allocated once in
//! [`JitterBuffer::new`] and sized `max_delay_ms + 120 ms`. The play-out point is the RTP
//! timestamp (extended to 64 bits relative to itself, so 32-bit wrap-around needs no special
//! case) of the next sample to play; every [`pop_frame`](JitterBuffer::pop_frame) plays 160
//! samples from it and moves it on.
//!
//! # Delay
//!
//! Each packet's *arrival offset* is its timestamp minus `now_tick × 160`. Over a sliding window
//! of 2–4 s the largest offset is the reference (the packet that came earliest relative to the
//! sender's clock), and the spread between the largest and the smallest offset is the jitter
//! seen. The target delay is that spread plus 10 ms, clamped to
//! [`min_delay_ms`, `max_delay_ms`](JitterConfig); the desired play-out point is
//! `now_tick × 160 + reference − target`. When the play-out point is ahead of the desired one
//! (a late packet widened the spread, or the sender's clock is slower) one frame is *stretched*:
//! concealment is played and the play-out point stays, at most every other tick unless audio is
//! missing anyway. When it is behind by 30 ms or more for a whole second, one frame is
//! *skipped* with a short cross-fade. While nothing audible is playing the point simply snaps
//! to the desired one. Sender clock drift is absorbed the same way.
//!
//! # Streams
//!
//! The first packet, a new SSRC, a new codec, or a timestamp that jumps outside the ring
//! (forward by more than the ring holds, or backward by more than the ring holds while the
//! sequence number moves forward) *resynchronises*: the ring is emptied and play-out restarts
//! `min_delay_ms` before the new packet, while PLC bridges the gap from the old audio. Packets
//! of the SSRC that was just replaced are dropped as late. Duplicates are recognised by
//! sequence number (a 128-packet window, 16-bit wrap-around handled) and dropped.
//!
//! # Concealment
//!
//! Missing samples are synthesised in the spirit of ITU-T G.711 Appendix I: at the start of an
//! erasure the pitch period (5–15 ms) is estimated by normalised cross-correlation over the
//! last 20 ms of output, and the last pitch period is repeated, its loop point smoothed by an
//! overlap-add over a quarter period; after 10 ms the repeated span grows to two periods and
//! after 20 ms to three (less buzzy). The level falls linearly by 20 % per 10 ms from 10 ms on,
//! reaching silence at 60 ms. When audio comes back it is cross-faded in over 4 ms plus 4 ms
//! per 10 ms of erasure (at most 10 ms).
//!
//! Per-call memory is a few KiB (about 4.5 KiB with the default 200 ms maximum), and nothing
//! is allocated after [`JitterBuffer::new`].
//!
//! ```
//! use voxflow_media::Codec;
//! use voxflow_media::jitter::{FrameKind, JitterBuffer, JitterConfig};
//! let mut jitter = JitterBuffer::new(JitterConfig::default());
//! let mut frame = [0i16; 160];
//! for tick in 0..5u64 {
//!     let payload = [0x55u8; 160]; // from RtpPacket::parse
//!     let sequence = tick as u16;
//!     jitter.push(0xABCD, sequence, 160 * tick as u32, Codec::Pcmu, &payload, tick);
//!     let kind = jitter.pop_frame(tick, &mut frame);
//!     // 40 ms of initial delay: two frames of silence, then the first packet's audio.
//!     assert_eq!(kind, if tick < 2 { FrameKind::Silence } else { FrameKind::Audio });
//! }
//! ```

use crate::Codec;
use crate::g711;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// Delay bounds of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JitterConfig {
    /// The delay play-out starts with and never goes below, in ms.
    pub min_delay_ms: u32,
    /// The delay adaptation never goes above, in ms (at most 1000; at least `min_delay_ms`).
    pub max_delay_ms: u32,
}

impl Default for JitterConfig {
    /// 40 ms minimum, 200 ms maximum.
    fn default() -> Self {
        JitterConfig {
            min_delay_ms: 40,
            max_delay_ms: 200,
        }
    }
}

/// What a frame from [`JitterBuffer::pop_frame`] contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Every sample was received (the first few may be cross-faded out of concealment).
    Audio,
    /// Some or all samples were synthesised by packet-loss concealment.
    Concealed,
    /// Nothing received yet, or a loss long enough for concealment to have faded out: zeros.
    Silence,
}

/// Counters and the delay of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets stored (at least in part).
    pub packets: u64,
    /// Packets dropped because all their samples were behind the play-out point (or they came
    /// from the SSRC just replaced).
    pub late: u64,
    /// Packets dropped as duplicates of one already received.
    pub duplicate: u64,
    /// Packets stored that arrived after a packet with a higher sequence number.
    pub reordered: u64,
    /// Packets ignored because their payload was empty.
    pub empty: u64,
    /// Times play-out restarted on a new stream (first packet, SSRC or codec change, jump).
    pub resyncs: u64,
    /// Frames returned as [`FrameKind::Audio`].
    pub audio_frames: u64,
    /// Frames returned as [`FrameKind::Concealed`].
    pub concealed_frames: u64,
    /// Frames returned as [`FrameKind::Silence`].
    pub silence_frames: u64,
    /// Frames played without moving the play-out point, to grow the delay.
    pub stretched_frames: u64,
    /// Frames dropped to shrink the delay.
    pub skipped_frames: u64,
    /// The delay adaptation aims at, in ms.
    pub target_delay_ms: u32,
    /// The delay between a packet arriving on time and its play-out, in ms, at the last frame.
    pub delay_ms: u32,
}

/// A jitter buffer with G.711 packet-loss concealment for one received RTP stream.
///
/// Inputs: [`push`](Self::push) for every audio RTP packet, then [`pop_frame`](Self::pop_frame)
/// once per 20 ms tick. Both take the session's tick counter (one per 20 ms), its only clock.
#[derive(Debug)]
pub struct JitterBuffer {
    /// Minimum delay in samples.
    min_delay: i64,
    /// Maximum delay in samples.
    max_delay: i64,
    /// Ring length in samples (a multiple of 64).
    capacity: usize,
    /// G.711 codes by extended timestamp modulo `capacity`.
    codes: Box<[u8]>,
    /// One bit per ring slot: the code there is for a sample in `[playout, playout + capacity)`.
    present: Box<[u64]>,
    /// Number of bits set in `present`.
    buffered: usize,
    stream: Option<Stream>,
    /// The SSRC replaced by the current stream; its stragglers are dropped.
    previous_ssrc: Option<u32>,
    window: ArrivalWindow,
    plc: Box<Concealment>,
    last_was_stretch: bool,
    /// Consecutive ticks with the play-out point too far behind the desired one.
    shrink_ticks: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Creates a buffer; its ring is allocated here, once.
    #[must_use]
    pub fn new(config: JitterConfig) -> Self {
        let max_ms = config.max_delay_ms.clamp(FRAME_MS, MAX_DELAY_LIMIT_MS);
        let min_ms = config.min_delay_ms.min(max_ms);
        let samples = ((max_ms + RING_HEADROOM_MS) * SAMPLES_PER_MS) as usize;
        let capacity = samples.div_ceil(64) * 64;
        JitterBuffer {
            min_delay: i64::from(min_ms * SAMPLES_PER_MS),
            max_delay: i64::from(max_ms * SAMPLES_PER_MS),
            capacity,
            codes: vec![0; capacity].into_boxed_slice(),
            present: vec![0; capacity / 64].into_boxed_slice(),
            buffered: 0,
            stream: None,
            previous_ssrc: None,
            window: ArrivalWindow::default(),
            plc: Box::new(Concealment::new()),
            last_was_stretch: false,
            shrink_ticks: 0,
            stats: JitterStats {
                target_delay_ms: min_ms,
                ..JitterStats::default()
            },
        }
    }

    /// The buffer's counters and delay.
    #[must_use]
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The SSRC being played, once a packet has arrived.
    #[must_use]
    pub fn ssrc(&self) -> Option<u32> {
        self.stream.as_ref().map(|s| s.ssrc)
    }

    /// A valid audio RTP packet arrived during tick `now_tick` (20 ms each). `payload` is the
    /// G.711 payload in `codec`. Never panics: empty, odd-sized, duplicate, late or wild
    /// packets are counted and dropped or trigger a resynchronisation.
    pub fn push(
        &mut self,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        codec: Codec,
        payload: &[u8],
        now_tick: u64,
    ) {
        if payload.is_empty() {
            self.stats.empty += 1;
            return;
        }
        self.window.rotate(now_tick);
        let capacity = self.capacity as i64;
        let len = payload.len() as i64;
        let Some(stream) = &mut self.stream else {
            self.resync(ssrc, sequence, timestamp, codec, payload, now_tick);
            return;
        };
        if stream.ssrc != ssrc {
            if self.previous_ssrc == Some(ssrc) {
                self.stats.late += 1;
            } else {
                self.resync(ssrc, sequence, timestamp, codec, payload, now_tick);
            }
            return;
        }
        if stream.codec != codec {
            self.resync(ssrc, sequence, timestamp, codec, payload, now_tick);
            return;
        }

        let playout = stream.playout;
        let extended = playout + i64::from(timestamp.wrapping_sub(playout as u32) as i32);
        if extended + len > playout + capacity {
            // Further ahead than the ring holds: the sender's timeline jumped.
            self.resync(ssrc, sequence, timestamp, codec, payload, now_tick);
            return;
        }
        let seq_delta = sequence.wrapping_sub(stream.highest_seq) as i16;
        if stream.is_duplicate(seq_delta) {
            self.stats.duplicate += 1;
            return;
        }
        if extended + len <= playout {
            if seq_delta > 0 && playout - extended > capacity {
                // Newer by sequence number but far in the past: the timeline jumped back.
                self.resync(ssrc, sequence, timestamp, codec, payload, now_tick);
                return;
            }
            stream.mark_received(sequence, seq_delta);
            self.window.record(arrival_offset(extended, now_tick));
            self.stats.late += 1;
            return;
        }
        if seq_delta < 0 {
            self.stats.reordered += 1;
        }
        stream.mark_received(sequence, seq_delta);
        self.window.record(arrival_offset(extended, now_tick));
        self.store(extended, payload);
    }

    /// Writes the next 20 ms frame into `out` (all 160 samples) and says what it is. Call once
    /// per tick, after that tick's [`push`](Self::push)es, with the same tick counter.
    pub fn pop_frame(&mut self, now_tick: u64, out: &mut [i16; FRAME_SAMPLES]) -> FrameKind {
        self.window.rotate(now_tick);
        let Some(stream) = &self.stream else {
            out.fill(0);
            return self.count(FrameKind::Silence);
        };
        let codec = stream.codec;
        let stretch = self.adapt(now_tick);

        let silent_before = self.plc.is_silent();
        let mut received = 0usize;
        if stretch {
            for i in 0..FRAME_SAMPLES {
                out[i] = self.plc.missing(&out[..i]);
            }
        } else if self.plc.is_passing_through()
            && self.all_present(self.playout(), self.playout() + FRAME_SAMPLES as i64)
        {
            // The common case: the whole frame arrived and nothing is being concealed.
            let decode = match codec {
                Codec::Pcmu => g711::ulaw_decode,
                Codec::Pcma => g711::alaw_decode,
            };
            let playout = self.playout();
            let start = self.slot(playout);
            let mut slot = start;
            for sample in out.iter_mut() {
                *sample = decode(self.codes.get(slot).copied().unwrap_or(0xFF));
                slot += 1;
                if slot == self.capacity {
                    slot = 0;
                }
            }
            received = FRAME_SAMPLES;
            self.plc.passed_through();
            self.advance_to(playout + FRAME_SAMPLES as i64);
        } else {
            let decode = match codec {
                Codec::Pcmu => g711::ulaw_decode,
                Codec::Pcma => g711::alaw_decode,
            };
            let playout = self.playout();
            for i in 0..FRAME_SAMPLES {
                out[i] = match self.code_at(playout + i as i64) {
                    Some(code) => {
                        received += 1;
                        self.plc.real(decode(code))
                    }
                    None => self.plc.missing(&out[..i]),
                };
            }
            self.advance_to(playout + FRAME_SAMPLES as i64);
        }
        self.last_was_stretch = stretch;
        self.plc.end_frame(out);

        let kind = if received == FRAME_SAMPLES {
            FrameKind::Audio
        } else if received == 0 && silent_before {
            FrameKind::Silence
        } else {
            FrameKind::Concealed
        };
        self.count(kind)
    }

    /// Decides how this tick moves the play-out point; returns whether to stretch (play
    /// concealment without moving it).
    fn adapt(&mut self, now_tick: u64) -> bool {
        let Some((earliest, latest)) = self.window.range() else {
            self.shrink_ticks = 0;
            return false;
        };
        let target = (latest - earliest + JITTER_MARGIN).clamp(self.min_delay, self.max_delay);
        let desired = tick_position(now_tick) + latest - target;
        let playout = self.playout();
        let error = desired - playout;
        self.stats.target_delay_ms = samples_to_ms(target);
        self.stats.delay_ms = samples_to_ms(target + error);

        let capacity = self.capacity as i64;
        if error.abs() > capacity {
            // The ticks and the stream drifted apart (e.g. pops were skipped): jump.
            self.shrink_ticks = 0;
            self.advance_to(desired);
            self.plc.splice();
            return false;
        }
        let outside = !(0..SHRINK_THRESHOLD).contains(&error);
        if outside && self.plc.is_silent() && !self.any_present(playout, desired.max(playout)) {
            // Nothing audible is lost by moving now.
            self.shrink_ticks = 0;
            self.advance_to(desired);
            return false;
        }
        if error < 0 {
            self.shrink_ticks = 0;
            let missing = !self.any_present(playout, playout + FRAME_SAMPLES as i64);
            if !self.last_was_stretch || missing {
                self.stats.stretched_frames += 1;
                return true;
            }
            return false;
        }
        if error >= SHRINK_THRESHOLD {
            self.shrink_ticks += 1;
            if self.shrink_ticks >= SHRINK_STABLE_TICKS {
                self.shrink_ticks = 0;
                self.stats.skipped_frames += 1;
                self.advance_to(playout + FRAME_SAMPLES as i64);
                self.plc.splice();
            }
        } else {
            self.shrink_ticks = 0;
        }
        false
    }

    /// Starts playing a new stream with this packet.
    fn resync(
        &mut self,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        codec: Codec,
        payload: &[u8],
        now_tick: u64,
    ) {
        self.stats.resyncs += 1;
        if let Some(old) = &self.stream
            && old.ssrc != ssrc
        {
            self.previous_ssrc = Some(old.ssrc);
        }
        self.clear_all();
        let extended = i64::from(timestamp);
        self.stream = Some(Stream {
            ssrc,
            codec,
            playout: extended - self.min_delay,
            highest_seq: sequence,
            seen: 1,
        });
        self.window
            .reset(now_tick, arrival_offset(extended, now_tick));
        self.shrink_ticks = 0;
        self.store(extended, payload);
    }

    /// Writes a packet's codes into the ring (the part inside the window, first copy wins).
    fn store(&mut self, extended: i64, payload: &[u8]) {
        self.stats.packets += 1;
        let playout = self.playout();
        let end = playout + self.capacity as i64;
        let to = extended + payload.len() as i64;
        if extended >= playout && to <= end && self.none_present(extended, to) {
            // The common case: a new packet wholly inside the window, copied in one go.
            let mut start = self.slot(extended);
            let mut rest = payload;
            while !rest.is_empty() {
                let n = rest.len().min(self.capacity - start);
                let (head, tail) = rest.split_at(n);
                if let Some(dst) = self.codes.get_mut(start..start + n) {
                    dst.copy_from_slice(head);
                }
                rest = tail;
                start = 0;
            }
            for (word, mask) in WordMasks::new(self.slot(extended), self.capacity, to - extended) {
                if let Some(w) = self.present.get_mut(word) {
                    *w |= mask;
                }
            }
            self.buffered += payload.len();
            return;
        }
        for (position, &code) in (extended..).zip(payload) {
            if position >= end {
                break;
            }
            if position < playout {
                continue;
            }
            let slot = self.slot(position);
            let (word, bit) = (slot / 64, 1u64 << (slot % 64));
            if let (Some(w), Some(c)) = (self.present.get_mut(word), self.codes.get_mut(slot))
                && *w & bit == 0
            {
                *w |= bit;
                *c = code;
                self.buffered += 1;
            }
        }
    }

    /// The code stored for `position`, if received.
    fn code_at(&self, position: i64) -> Option<u8> {
        let slot = self.slot(position);
        let word = self.present.get(slot / 64)?;
        if word & (1u64 << (slot % 64)) == 0 {
            return None;
        }
        self.codes.get(slot).copied()
    }

    /// Whether any sample in `[from, to)` is present.
    fn any_present(&self, from: i64, to: i64) -> bool {
        if self.buffered == 0 {
            return false;
        }
        let to = to.min(from + self.capacity as i64);
        to > from && !self.none_present(from, to)
    }

    /// Whether no sample in `[from, to)` is present (`to - from` at most the capacity).
    fn none_present(&self, from: i64, to: i64) -> bool {
        if to <= from || self.buffered == 0 {
            return true;
        }
        WordMasks::new(self.slot(from), self.capacity, to - from)
            .all(|(word, mask)| self.present.get(word).is_none_or(|w| w & mask == 0))
    }

    /// Whether every sample in `[from, to)` is present (`to - from` at most the capacity).
    fn all_present(&self, from: i64, to: i64) -> bool {
        WordMasks::new(self.slot(from), self.capacity, to - from)
            .all(|(word, mask)| self.present.get(word).is_some_and(|w| w & mask == mask))
    }

    /// Moves the play-out point to `target` (either way), dropping what leaves the window.
    fn advance_to(&mut self, target: i64) {
        let Some(playout) = self.stream.as_ref().map(|s| s.playout) else {
            return;
        };
        let capacity = self.capacity as i64;
        // Forward: [playout, target) leaves. Backward: [target + capacity, playout + capacity)
        // leaves, as those slots now hold the positions [target, playout).
        let (from, to) = if target >= playout {
            (playout, target)
        } else {
            ((target + capacity).max(playout), playout + capacity)
        };
        if to - from >= capacity {
            self.clear_all();
        } else {
            for (word, mask) in WordMasks::new(self.slot(from), self.capacity, to - from) {
                if let Some(w) = self.present.get_mut(word) {
                    self.buffered -= (*w & mask).count_ones() as usize;
                    *w &= !mask;
                }
            }
        }
        if let Some(stream) = &mut self.stream {
            stream.playout = target;
        }
    }

    fn clear_all(&mut self) {
        self.present.fill(0);
        self.buffered = 0;
    }

    fn playout(&self) -> i64 {
        self.stream.as_ref().map_or(0, |s| s.playout)
    }

    fn slot(&self, position: i64) -> usize {
        position.rem_euclid(self.capacity as i64) as usize
    }

    fn count(&mut self, kind: FrameKind) -> FrameKind {
        match kind {
            FrameKind::Audio => self.stats.audio_frames += 1,
            FrameKind::Concealed => self.stats.concealed_frames += 1,
            FrameKind::Silence => self.stats.silence_frames += 1,
        }
        kind
    }
}

/// The bitmap words and bit masks covering `len` ring slots from `start`, wrapping at
/// `capacity` (a multiple of 64, so no word straddles the wrap).
struct WordMasks {
    slot: usize,
    capacity: usize,
    remaining: i64,
}

impl WordMasks {
    fn new(start: usize, capacity: usize, len: i64) -> Self {
        WordMasks {
            slot: start,
            capacity,
            remaining: len.clamp(0, capacity as i64),
        }
    }
}

impl Iterator for WordMasks {
    type Item = (usize, u64);

    fn next(&mut self) -> Option<(usize, u64)> {
        if self.remaining <= 0 {
            return None;
        }
        let bit = self.slot % 64;
        let take = (64 - bit).min(self.remaining as usize);
        let mask = if take == 64 {
            u64::MAX
        } else {
            ((1u64 << take) - 1) << bit
        };
        let word = self.slot / 64;
        self.slot += take;
        if self.slot >= self.capacity {
            self.slot = 0;
        }
        self.remaining -= take as i64;
        Some((word, mask))
    }
}

const FRAME_MS: u32 = 20;
const SAMPLES_PER_MS: u32 = 8;
const MAX_DELAY_LIMIT_MS: u32 = 1000;
/// Ring space beyond the maximum delay, for early packets and long packetisation.
const RING_HEADROOM_MS: u32 = 120;
/// Added to the measured jitter spread for the target delay (10 ms).
const JITTER_MARGIN: i64 = 80;
/// The play-out point may lag the desired one by up to this much (30 ms) without shrinking.
const SHRINK_THRESHOLD: i64 = 240;
/// Ticks the lag must last before one frame is skipped (1 s).
const SHRINK_STABLE_TICKS: u32 = 50;
/// Ticks per arrival-window bucket (2 s); the window covers the current and previous bucket.
const BUCKET_TICKS: u64 = 100;
/// Ticks beyond this are treated as this (see [`tick_position`]).
const MAX_TICK: u64 = 1 << 40;

/// The stream being played.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    codec: Codec,
    /// Extended RTP timestamp of the next sample to play.
    playout: i64,
    highest_seq: u16,
    /// Bit `i`: sequence number `highest_seq - i` was received.
    seen: u128,
}

impl Stream {
    fn is_duplicate(&self, seq_delta: i16) -> bool {
        let back = -i32::from(seq_delta);
        (0..128).contains(&back) && self.seen & (1u128 << back) != 0
    }

    fn mark_received(&mut self, sequence: u16, seq_delta: i16) {
        if seq_delta > 0 {
            let shift = u32::from(seq_delta.unsigned_abs());
            self.seen = self.seen.checked_shl(shift).unwrap_or(0) | 1;
            self.highest_seq = sequence;
        } else {
            let back = -i32::from(seq_delta);
            if back < 128 {
                self.seen |= 1u128 << back;
            }
        }
    }
}

/// The smallest and largest arrival offsets over the last 2–4 s, in two buckets.
#[derive(Debug, Default, Clone, Copy)]
struct ArrivalWindow {
    bucket: u64,
    current: Option<(i64, i64)>,
    previous: Option<(i64, i64)>,
}

impl ArrivalWindow {
    fn rotate(&mut self, now_tick: u64) {
        let bucket = now_tick / BUCKET_TICKS;
        if bucket > self.bucket {
            self.previous = if bucket == self.bucket + 1 {
                self.current
            } else {
                None
            };
            self.current = None;
            self.bucket = bucket;
        }
    }

    fn record(&mut self, offset: i64) {
        self.current = Some(widen(self.current, offset));
    }

    fn reset(&mut self, now_tick: u64, offset: i64) {
        self.bucket = now_tick / BUCKET_TICKS;
        self.previous = None;
        self.current = Some((offset, offset));
    }

    fn range(&self) -> Option<(i64, i64)> {
        match (self.current, self.previous) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (one, None) | (None, one) => one,
        }
    }
}

fn widen(range: Option<(i64, i64)>, value: i64) -> (i64, i64) {
    range.map_or((value, value), |(lo, hi)| (lo.min(value), hi.max(value)))
}

/// The stream position the tick's clock stands at, in samples. Ticks are capped at 2^40
/// (700 years) so that no sum of positions can overflow.
fn tick_position(now_tick: u64) -> i64 {
    let ticks = now_tick.min(MAX_TICK) as i64;
    ticks * FRAME_SAMPLES as i64
}

fn arrival_offset(extended: i64, now_tick: u64) -> i64 {
    extended.saturating_sub(tick_position(now_tick))
}

fn samples_to_ms(samples: i64) -> u32 {
    u32::try_from(samples.max(0) / i64::from(SAMPLES_PER_MS)).unwrap_or(u32::MAX)
}

/// Output history kept for concealment: three longest pitch periods plus a quarter.
const HISTORY_LEN: usize = 3 * PITCH_MAX + PITCH_MAX / 4;
/// Shortest pitch period searched (200 Hz).
const PITCH_MIN: usize = 40;
/// Longest pitch period searched (66.7 Hz).
const PITCH_MAX: usize = 120;
/// Samples correlated in the pitch search (20 ms).
const CORRELATION_LEN: usize = 160;
/// Concealment plays at full level for 10 ms.
const FADE_START: u32 = 80;
/// Then falls 20 % per 10 ms, reaching silence at 60 ms.
const FADE_END: u32 = 480;
/// Cross-fade back into audio: 4 ms, plus 4 ms per 10 ms of erasure, at most 10 ms.
const RECOVERY_STEP: u32 = 32;
const RECOVERY_MAX: u32 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlcState {
    /// No audio yet: nothing to conceal from.
    Fresh,
    /// Playing received audio.
    Idle,
    /// Synthesising.
    Concealing,
    /// Cross-fading from synthesis back into received audio.
    Recovering { done: u32, len: u32 },
}

/// G.711 Appendix I style packet-loss concealment, sample by sample.
#[derive(Debug)]
struct Concealment {
    /// The last output samples, oldest first, as of the start of the current frame.
    history: [i16; HISTORY_LEN],
    /// `history` (plus the current frame's prefix) frozen at the start of the erasure.
    source: [i16; HISTORY_LEN],
    state: PlcState,
    pitch: usize,
    /// Pitch periods being repeated (1..=3).
    periods: usize,
    /// Position in the repeated span.
    cycle_pos: usize,
    /// Samples synthesised in this erasure.
    erased: u32,
}

impl Concealment {
    fn new() -> Self {
        Concealment {
            history: [0; HISTORY_LEN],
            source: [0; HISTORY_LEN],
            state: PlcState::Fresh,
            pitch: PITCH_MAX,
            periods: 1,
            cycle_pos: 0,
            erased: 0,
        }
    }

    /// Whether synthesis is producing nothing audible (no audio yet, or faded out).
    /// Whether received samples pass unchanged (no erasure or recovery in progress).
    fn is_passing_through(&self) -> bool {
        matches!(self.state, PlcState::Fresh | PlcState::Idle)
    }

    /// A whole frame of received samples passed through (what `real` does per sample then).
    fn passed_through(&mut self) {
        self.state = PlcState::Idle;
    }

    fn is_silent(&self) -> bool {
        match self.state {
            PlcState::Fresh => true,
            PlcState::Concealing => self.erased >= FADE_END,
            PlcState::Idle | PlcState::Recovering { .. } => false,
        }
    }

    /// A received sample: returned as is, or cross-faded in after an erasure.
    fn real(&mut self, sample: i16) -> i16 {
        let (done, len) = match self.state {
            PlcState::Fresh | PlcState::Idle => {
                self.state = PlcState::Idle;
                return sample;
            }
            PlcState::Concealing => (
                0,
                (RECOVERY_STEP + RECOVERY_STEP * (self.erased / FADE_START)).min(RECOVERY_MAX),
            ),
            PlcState::Recovering { done, len } => (done, len),
        };
        let synthetic = self.synthesize();
        let weight = (done + 1) as f32 / (len + 1) as f32;
        self.state = if done + 1 >= len {
            PlcState::Idle
        } else {
            PlcState::Recovering {
                done: done + 1,
                len,
            }
        };
        to_sample(synthetic * (1.0 - weight) + f32::from(sample) * weight)
    }

    /// A missing sample; `frame_prefix` is what this frame has output so far.
    fn missing(&mut self, frame_prefix: &[i16]) -> i16 {
        match self.state {
            PlcState::Fresh => return 0,
            PlcState::Idle => {
                self.begin(frame_prefix);
                self.state = PlcState::Concealing;
            }
            PlcState::Recovering { .. } => self.state = PlcState::Concealing,
            PlcState::Concealing => {}
        }
        to_sample(self.synthesize())
    }

    /// The play-out point jumped between two received samples: cross-fade over the seam.
    fn splice(&mut self) {
        if self.state == PlcState::Idle {
            self.begin(&[]);
            self.state = PlcState::Recovering {
                done: 0,
                len: RECOVERY_STEP,
            };
        }
    }

    /// Appends a finished frame to the history.
    fn end_frame(&mut self, frame: &[i16; FRAME_SAMPLES]) {
        self.history.copy_within(FRAME_SAMPLES.., 0);
        if let Some(tail) = self.history.get_mut(HISTORY_LEN - FRAME_SAMPLES..) {
            tail.copy_from_slice(frame);
        }
    }

    /// Starts an erasure: freezes the history and estimates its pitch.
    fn begin(&mut self, frame_prefix: &[i16]) {
        let prefix = frame_prefix.get(..FRAME_SAMPLES).unwrap_or(frame_prefix);
        let keep = HISTORY_LEN - prefix.len();
        let (old, new) = self.source.split_at_mut(keep);
        old.copy_from_slice(self.history.get(prefix.len()..).unwrap_or(&[]));
        new.copy_from_slice(prefix);
        self.pitch = estimate_pitch(&self.source);
        self.periods = 1;
        self.cycle_pos = 0;
        self.erased = 0;
    }

    /// The next synthetic sample (before rounding).
    fn synthesize(&mut self) -> f32 {
        if self.erased >= FADE_END {
            return 0.0;
        }
        let pitch = self.pitch;
        let quarter = pitch / 4;
        let wanted = if self.erased < FADE_START {
            1
        } else if self.erased < 2 * FADE_START {
            2
        } else {
            3
        };
        // Widen the repeated span outside its overlap-add tail, where the samples agree.
        if wanted > self.periods && self.cycle_pos + quarter < self.periods * pitch {
            self.cycle_pos += pitch;
            self.periods += 1;
        }
        let span = self.periods * pitch;
        let value = self.cycle_sample(span, self.cycle_pos);
        let gain = if self.erased < FADE_START {
            1.0
        } else {
            (FADE_END - self.erased) as f32 / (FADE_END - FADE_START) as f32
        };
        self.cycle_pos = (self.cycle_pos + 1) % span;
        self.erased += 1;
        value * gain
    }

    /// Sample `j` of the last `span` samples of the source, looped: the last quarter period
    /// is overlap-added with the quarter period before the span, so that the loop point runs
    /// into the span's start as the real signal did.
    fn cycle_sample(&self, span: usize, j: usize) -> f32 {
        let quarter = self.pitch / 4;
        let start = HISTORY_LEN - span;
        let base = f32::from(self.source.get(start + j).copied().unwrap_or(0));
        if j + quarter < span {
            return base;
        }
        let k = j + quarter - span;
        let before = f32::from(
            self.source
                .get((start + k).wrapping_sub(quarter))
                .copied()
                .unwrap_or(0),
        );
        let weight = (k + 1) as f32 / (quarter + 1) as f32;
        base * (1.0 - weight) + before * weight
    }
}

/// The lag in `PITCH_MIN..=PITCH_MAX` with the highest normalised correlation between the
/// last 20 ms of `signal` and the same span that many samples earlier.
fn estimate_pitch(signal: &[i16; HISTORY_LEN]) -> usize {
    let recent = signal
        .get(HISTORY_LEN - CORRELATION_LEN..)
        .unwrap_or_default();
    let mut best = PITCH_MAX;
    // Compare c²/e without dividing: c_a² · e_b > c_b² · e_a.
    let (mut best_correlation, mut best_energy) = (0i128, 1i128);
    for lag in PITCH_MIN..=PITCH_MAX {
        let start = HISTORY_LEN - CORRELATION_LEN - lag;
        let earlier = signal
            .get(start..start + CORRELATION_LEN)
            .unwrap_or_default();
        let (correlation, energy) =
            recent
                .iter()
                .zip(earlier)
                .fold((0i64, 0i64), |(c, e), (&now, &then)| {
                    let (now, then) = (i64::from(now), i64::from(then));
                    (c + now * then, e + then * then)
                });
        let (correlation, energy) = (i128::from(correlation), i128::from(energy));
        if correlation > 0
            && energy > 0
            && correlation * correlation * best_energy
                > best_correlation * best_correlation * energy
        {
            best = lag;
            best_correlation = correlation;
            best_energy = energy;
        }
    }
    best
}

fn to_sample(value: f32) -> i16 {
    // Float-to-int `as` saturates.
    value.round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 0x1122_3344;

    /// A deterministic speech-like test signal: two harmonics of 200 Hz plus a slow wobble.
    fn signal(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / 8000.0;
                let v = 6000.0 * (2.0 * std::f64::consts::PI * 200.0 * t).sin()
                    + 3000.0 * (2.0 * std::f64::consts::PI * 400.0 * t + 0.3).sin()
                    + 1000.0 * (2.0 * std::f64::consts::PI * 600.0 * t + 1.1).sin();
                v as i16
            })
            .collect()
    }

    fn encode(pcm: &[i16]) -> Vec<u8> {
        pcm.iter().map(|&s| g711::ulaw_encode(s)).collect()
    }

    /// µ-law round trip of the signal: what the buffer should play exactly.
    fn decoded(pcm: &[i16]) -> Vec<i16> {
        pcm.iter()
            .map(|&s| g711::ulaw_decode(g711::ulaw_encode(s)))
            .collect()
    }

    /// Drives a buffer: `packets[tick]` are pushed in tick `tick`, then one frame is popped.
    struct Run {
        jitter: JitterBuffer,
        frames: Vec<[i16; 160]>,
        kinds: Vec<FrameKind>,
    }

    impl Run {
        fn new() -> Self {
            Run {
                jitter: JitterBuffer::new(JitterConfig::default()),
                frames: Vec::new(),
                kinds: Vec::new(),
            }
        }

        fn tick(&mut self, packets: &[(u32, u16, u32, &[u8])]) {
            let now = self.frames.len() as u64;
            for &(ssrc, seq, ts, payload) in packets {
                self.jitter.push(ssrc, seq, ts, Codec::Pcmu, payload, now);
            }
            let mut frame = [0i16; 160];
            let kind = self.jitter.pop_frame(now, &mut frame);
            self.frames.push(frame);
            self.kinds.push(kind);
        }

        fn pcm(&self) -> Vec<i16> {
            self.frames.iter().flatten().copied().collect()
        }
    }

    /// Sends `pcm` as packets of `packet_samples`, each pushed in the tick during which its last
    /// sample was captured (sender tick `i` covers samples `[160 i, 160 (i + 1))`).
    fn run_packetised(
        pcm: &[i16],
        packet_samples: usize,
        seq0: u16,
        ts0: u32,
        ticks: usize,
    ) -> Run {
        let codes = encode(pcm);
        let mut run = Run::new();
        let chunks: Vec<(usize, &[u8])> = codes
            .chunks(packet_samples)
            .enumerate()
            .map(|(i, c)| ((i * packet_samples + c.len() - 1) / 160, c))
            .collect();
        for tick in 0..ticks {
            let packets: Vec<(u32, u16, u32, &[u8])> = chunks
                .iter()
                .enumerate()
                .filter(|(_, (t, _))| *t == tick)
                .map(|(i, (_, c))| {
                    (
                        SSRC,
                        seq0.wrapping_add(i as u16),
                        ts0.wrapping_add((i * packet_samples) as u32),
                        *c,
                    )
                })
                .collect();
            run.tick(&packets);
        }
        run
    }

    #[test]
    fn in_order_stream_plays_exactly_after_the_initial_delay() {
        let pcm = signal(160 * 20);
        let run = run_packetised(&pcm, 160, 1000, 90_000, 24);
        let out = run.pcm();
        // 40 ms (two frames) of silence, then every sample exactly.
        assert_eq!(&run.kinds[..2], [FrameKind::Silence; 2]);
        assert_eq!(&run.kinds[2..22], [FrameKind::Audio; 20]);
        assert!(out[..320].iter().all(|&s| s == 0));
        assert_pcm(&out[320..320 + pcm.len()], &decoded(&pcm)[..]);
        let stats = run.jitter.stats();
        assert_eq!(stats.packets, 20);
        assert_eq!(stats.target_delay_ms, 40);
        assert_eq!(stats.delay_ms, 40);
        assert_eq!(
            (stats.late, stats.duplicate, stats.reordered, stats.resyncs),
            (0, 0, 0, 1)
        );
        // The stream then stops: concealment, then silence.
        assert_eq!(run.kinds[22], FrameKind::Concealed);
    }

    #[test]
    fn configured_delay_is_honoured() {
        let pcm = signal(160 * 10);
        let codes = encode(&pcm);
        let mut run = Run {
            jitter: JitterBuffer::new(JitterConfig {
                min_delay_ms: 100,
                max_delay_ms: 300,
            }),
            frames: Vec::new(),
            kinds: Vec::new(),
        };
        for i in 0..10usize {
            let c = &codes[i * 160..(i + 1) * 160];
            run.tick(&[(SSRC, i as u16, (i * 160) as u32, c)]);
        }
        for _ in 0..5 {
            run.tick(&[]);
        }
        assert_eq!(&run.kinds[..5], [FrameKind::Silence; 5]);
        assert_eq!(&run.kinds[5..15], [FrameKind::Audio; 10]);
        assert_pcm(&run.pcm()[800..800 + 1600], &decoded(&pcm)[..]);
    }

    #[test]
    fn ten_and_thirty_ms_packets_play_the_same_pcm_as_twenty() {
        let pcm = signal(160 * 30);
        let expected = decoded(&pcm);
        for packet_samples in [80, 160, 240, 480] {
            let run = run_packetised(&pcm, packet_samples, 7, 1234, 36);
            // The first packet arrives in the tick its last sample was sent; play-out starts
            // 40 ms after that, and from then on every sample plays exactly, in 20 ms frames.
            let first = (packet_samples - 1) / 160 + 2;
            let out = run.pcm();
            assert!(out[..first * 160].iter().all(|&s| s == 0));
            assert_pcm(&out[first * 160..first * 160 + pcm.len()], &expected[..]);
            let stats = run.jitter.stats();
            assert_eq!(
                (stats.late, stats.stretched_frames, stats.skipped_frames),
                (0, 0, 0)
            );
            assert!(
                run.kinds[first..first + 30]
                    .iter()
                    .all(|&k| k == FrameKind::Audio)
            );
        }
    }

    #[test]
    fn reordering_within_the_delay_is_repaired_exactly() {
        let pcm = signal(160 * 20);
        let codes = encode(&pcm);
        let packet = |i: usize| {
            (
                SSRC,
                i as u16,
                (i * 160) as u32,
                &codes[i * 160..(i + 1) * 160],
            )
        };
        let mut run = Run::new();
        // Sent one per tick; 3 and 4 swapped, 8 and 9 swapped, 14 a tick late after 15.
        let order: [&[usize]; 22] = [
            &[0],
            &[1],
            &[2],
            &[4],
            &[3],
            &[5],
            &[6],
            &[7],
            &[9],
            &[8],
            &[10],
            &[11],
            &[12],
            &[13],
            &[],
            &[15, 14],
            &[16],
            &[17],
            &[18],
            &[19],
            &[],
            &[],
        ];
        for tick in order {
            let packets: Vec<_> = tick.iter().map(|&i| packet(i)).collect();
            run.tick(&packets);
        }
        assert_pcm(&run.pcm()[320..320 + pcm.len()], &decoded(&pcm)[..]);
        let stats = run.jitter.stats();
        assert_eq!(stats.reordered, 3);
        assert_eq!((stats.late, stats.concealed_frames), (0, 0));
    }

    #[test]
    fn duplicate_is_counted_and_ignored() {
        let pcm = signal(160 * 6);
        let codes = encode(&pcm);
        let garbage = vec![0x00u8; 160];
        let mut run = Run::new();
        run.tick(&[(SSRC, 0, 0, &codes[..160])]);
        // The duplicate carries different bytes: it must not overwrite anything.
        run.tick(&[(SSRC, 1, 160, &codes[160..320]), (SSRC, 1, 160, &garbage)]);
        run.tick(&[(SSRC, 0, 0, &garbage), (SSRC, 2, 320, &codes[320..480])]);
        for i in 3..6 {
            run.tick(&[(
                SSRC,
                i as u16,
                (i * 160) as u32,
                &codes[i * 160..(i + 1) * 160],
            )]);
        }
        run.tick(&[]);
        run.tick(&[]);
        assert_eq!(run.jitter.stats().duplicate, 2);
        assert_eq!(run.jitter.stats().packets, 6);
        assert_pcm(&run.pcm()[320..320 + pcm.len()], &decoded(&pcm)[..]);
    }

    /// Asserts two PCM runs are equal, reporting the first difference (not 10 000 samples).
    #[track_caller]
    fn assert_pcm(actual: &[i16], expected: &[i16]) {
        assert_eq!(actual.len(), expected.len(), "lengths");
        if let Some(i) = actual.iter().zip(expected).position(|(a, e)| a != e) {
            panic!(
                "first difference at sample {i}: {} vs {}",
                actual[i], expected[i]
            );
        }
    }

    fn energy(samples: &[i16]) -> f64 {
        samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64
    }

    #[test]
    fn one_lost_packet_is_concealed_smoothly() {
        let pcm = signal(160 * 20);
        let codes = encode(&pcm);
        let mut run = Run::new();
        for i in 0..22usize {
            if i < 20 && i != 10 {
                run.tick(&[(
                    SSRC,
                    i as u16,
                    (i * 160) as u32,
                    &codes[i * 160..(i + 1) * 160],
                )]);
            } else {
                run.tick(&[]);
            }
        }
        let out = run.pcm();
        let expected = decoded(&pcm);
        // Packet 10 plays in frame 12.
        assert_eq!(run.kinds[11], FrameKind::Audio);
        assert_eq!(run.kinds[12], FrameKind::Concealed);
        assert_eq!(run.kinds[13], FrameKind::Audio);
        let lost = &out[12 * 160..13 * 160];
        let original = &expected[10 * 160..11 * 160];
        let ratio = energy(lost) / energy(original);
        assert!((0.5..1.3).contains(&ratio), "energy ratio {ratio}");
        // The signal is periodic (5 ms): the first 10 ms of concealment continue it closely.
        for (i, (&c, &o)) in lost[..80].iter().zip(&original[..80]).enumerate() {
            assert!(
                (i32::from(c) - i32::from(o)).abs() < 1200,
                "sample {i}: {c} vs {o}"
            );
        }
        // Continuous at both boundaries: no step bigger than the signal's own steps.
        let max_step = expected
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap();
        for boundary in [12 * 160, 13 * 160] {
            let step = (i32::from(out[boundary]) - i32::from(out[boundary - 1])).abs();
            assert!(step <= max_step + 500, "step {step} at {boundary}");
        }
        // After the cross-fade (10 ms) the audio is exact again.
        assert_pcm(
            &out[13 * 160 + 80..14 * 160],
            &expected[11 * 160 + 80..12 * 160],
        );
        assert_pcm(&out[14 * 160..22 * 160], &expected[12 * 160..20 * 160]);
        assert_eq!(run.jitter.stats().concealed_frames, 1);
    }

    #[test]
    fn long_loss_fades_to_silence() {
        let pcm = signal(160 * 5);
        let codes = encode(&pcm);
        let mut run = Run::new();
        for i in 0..12usize {
            if i < 5 {
                run.tick(&[(
                    SSRC,
                    i as u16,
                    (i * 160) as u32,
                    &codes[i * 160..(i + 1) * 160],
                )]);
            } else {
                run.tick(&[]);
            }
        }
        // Frames 2..7 audio, 7..10 concealed (60 ms), then silence.
        assert_eq!(&run.kinds[2..7], [FrameKind::Audio; 5]);
        assert_eq!(&run.kinds[7..10], [FrameKind::Concealed; 3]);
        assert_eq!(&run.kinds[10..], [FrameKind::Silence; 2]);
        let energies: Vec<f64> = (7..10).map(|f| energy(&run.frames[f])).collect();
        assert!(energies[0] > energies[1] && energies[1] > energies[2]);
        assert!(energies[2] > 0.0);
        assert!(run.frames[10].iter().all(|&s| s == 0));
    }

    #[test]
    fn late_packet_is_dropped_and_counted() {
        let pcm = signal(160 * 30);
        let codes = encode(&pcm);
        let packet = |i: usize| {
            (
                SSRC,
                i as u16,
                (i * 160) as u32,
                &codes[i * 160..(i + 1) * 160],
            )
        };
        let mut run = Run::new();
        for i in 0..30usize {
            match i {
                5 => run.tick(&[]),
                // Packet 5 arrives four ticks late: frame 7 has already been played.
                9 => run.tick(&[packet(9), packet(5)]),
                _ => run.tick(&[packet(i)]),
            }
        }
        let stats = run.jitter.stats();
        assert_eq!(stats.late, 1);
        assert_eq!(run.kinds[7], FrameKind::Concealed);
        // The late arrival widened the spread to 80 ms (+10 ms margin): the delay grows by
        // stretching three frames (ticks 9, 11, 13: never two in a row while audio is there).
        assert_eq!(stats.target_delay_ms, 90, "{stats:?}");
        assert_eq!(stats.stretched_frames, 3, "{stats:?}");
        assert_eq!(stats.delay_ms, 100, "{stats:?}");
        assert_eq!(&run.kinds[8..15], {
            use FrameKind::{Audio as A, Concealed as C};
            [A, C, A, C, A, C, A]
        });
        // Still every packet but the late one is played, in order.
        let expected = decoded(&pcm);
        assert_pcm(
            &run.pcm()[14 * 160 + 80..30 * 160],
            &expected[9 * 160 + 80..25 * 160],
        );
    }

    #[test]
    fn jittery_arrivals_grow_the_delay_until_nothing_is_late() {
        let pcm = signal(160 * 400);
        let codes = encode(&pcm);
        let mut run = Run::new();
        // Every fourth packet is delayed by three ticks (60 ms).
        let mut arrivals: Vec<Vec<usize>> = vec![Vec::new(); 410];
        for i in 0..400usize {
            let delay = if i % 4 == 3 { 3 } else { 0 };
            arrivals[i + delay].push(i);
        }
        let mut late_after_settling = 0;
        for (tick, packets) in arrivals.iter().enumerate() {
            let packets: Vec<_> = packets
                .iter()
                .map(|&i| {
                    (
                        SSRC,
                        i as u16,
                        (i * 160) as u32,
                        &codes[i * 160..(i + 1) * 160],
                    )
                })
                .collect();
            run.tick(&packets);
            if tick == 50 {
                late_after_settling = run.jitter.stats().late;
            }
        }
        let stats = run.jitter.stats();
        assert!(stats.late <= 2, "{stats:?}");
        assert_eq!(stats.late, late_after_settling, "{stats:?}");
        assert!((70..=200).contains(&stats.target_delay_ms), "{stats:?}");
        // Steady state is all audio.
        assert!(run.kinds[100..400].iter().all(|&k| k == FrameKind::Audio));
    }

    #[test]
    fn sequence_and_timestamp_wrap_around() {
        let pcm = signal(160 * 20);
        // Sequence wraps at packet 5, timestamp wraps inside packet 8.
        let ts0 = u32::MAX - (160 * 8 + 40) + 1;
        let run = run_packetised(&pcm, 160, 65531, ts0, 24);
        assert_pcm(&run.pcm()[320..320 + pcm.len()], &decoded(&pcm)[..]);
        let stats = run.jitter.stats();
        assert_eq!((stats.resyncs, stats.late, stats.duplicate), (1, 0, 0));
        // Reordering and duplicates across the wrap are recognised too.
        let codes = encode(&pcm);
        let packet = |i: usize| {
            (
                SSRC,
                65534u16.wrapping_add(i as u16),
                ts0.wrapping_add((i * 160) as u32),
                &codes[i * 160..(i + 1) * 160],
            )
        };
        let mut run = Run::new();
        run.tick(&[packet(0)]);
        run.tick(&[packet(1)]);
        run.tick(&[packet(3)]);
        run.tick(&[packet(2), packet(1)]);
        for i in 4..10 {
            run.tick(&[packet(i)]);
        }
        run.tick(&[]);
        run.tick(&[]);
        let stats = run.jitter.stats();
        assert_eq!((stats.reordered, stats.duplicate, stats.late), (1, 1, 0));
        assert_pcm(&run.pcm()[320..320 + 1600], &decoded(&pcm)[..1600]);
    }

    #[test]
    fn ssrc_change_resynchronises_within_a_few_frames() {
        let pcm = signal(160 * 40);
        let codes = encode(&pcm);
        let mut run = Run::new();
        for i in 0..10usize {
            run.tick(&[(
                SSRC,
                i as u16,
                (i * 160) as u32,
                &codes[i * 160..(i + 1) * 160],
            )]);
        }
        // A transfer: new SSRC, unrelated sequence and timestamp.
        let other = 0xCAFE_0001;
        for j in 0..10usize {
            let i = 10 + j;
            let mut packets = vec![(
                other,
                40_000 + j as u16,
                3_000_000_000u32 + (j * 160) as u32,
                &codes[i * 160..(i + 1) * 160],
            )];
            if j == 1 {
                // A straggler of the old stream is ignored.
                packets.push((SSRC, 10, 1600, &codes[..160]));
            }
            run.tick(&packets);
        }
        for _ in 0..2 {
            run.tick(&[]);
        }
        let stats = run.jitter.stats();
        assert_eq!((stats.resyncs, stats.late), (2, 1));
        assert_eq!(run.jitter.ssrc(), Some(other));
        // Frames 10 and 11 bridge the gap (the old stream's tail was dropped), frame 12 fades
        // the new stream in, frame 13 onwards is exactly the new stream.
        assert_eq!(&run.kinds[10..12], [FrameKind::Concealed; 2]);
        assert_eq!(&run.kinds[12..22], [FrameKind::Audio; 10]);
        let expected = decoded(&pcm);
        assert_pcm(
            &run.pcm()[13 * 160..22 * 160],
            &expected[11 * 160..20 * 160],
        );
    }

    #[test]
    fn stopped_stream_goes_silent_and_restarts() {
        let pcm = signal(160 * 200);
        let codes = encode(&pcm);
        let packet = |i: usize| {
            (
                SSRC,
                i as u16,
                (i * 160) as u32,
                &codes[i * 160..(i + 1) * 160],
            )
        };
        let mut run = Run::new();
        for i in 0..10 {
            run.tick(&[packet(i)]);
        }
        // Silent for 5 s (sender stopped; its timestamps keep pace with time).
        for _ in 10..260 {
            run.tick(&[]);
        }
        assert!(run.kinds[16..260].iter().all(|&k| k == FrameKind::Silence));
        for i in 260..270usize {
            let j = i - 250; // samples from the signal, timestamps on the sender's clock
            run.tick(&[(
                SSRC,
                j as u16,
                (i * 160) as u32,
                &codes[j * 160..(j + 1) * 160],
            )]);
        }
        run.tick(&[]);
        run.tick(&[]);
        assert_eq!(&run.kinds[260..262], [FrameKind::Silence; 2]);
        assert_eq!(&run.kinds[262..272], [FrameKind::Audio; 10]);
        let expected = decoded(&pcm);
        // Faded in over the first 10 ms, exact afterwards.
        assert_pcm(
            &run.pcm()[262 * 160 + 80..272 * 160],
            &expected[10 * 160 + 80..20 * 160],
        );
        assert_eq!(run.jitter.stats().resyncs, 1);

        // Restarting with a timeline that did not advance (e.g. after hold) resyncs.
        for k in 0..6usize {
            let j = 20 + k;
            run.tick(&[(
                SSRC,
                j as u16,
                (j * 160) as u32,
                &codes[j * 160..(j + 1) * 160],
            )]);
        }
        assert_eq!(run.jitter.stats().resyncs, 2);
        assert_eq!(run.kinds.last(), Some(&FrameKind::Audio));
    }

    #[test]
    fn timestamp_jump_resynchronises() {
        let pcm = signal(160 * 30);
        let codes = encode(&pcm);
        let mut run = Run::new();
        for i in 0..10usize {
            run.tick(&[(
                SSRC,
                i as u16,
                (i * 160) as u32,
                &codes[i * 160..(i + 1) * 160],
            )]);
        }
        // Same SSRC, consecutive sequence numbers, timestamps jump by 10 s.
        for i in 10..20usize {
            let ts = (80_000 + i * 160) as u32;
            run.tick(&[(SSRC, i as u16, ts, &codes[i * 160..(i + 1) * 160])]);
        }
        assert_eq!(run.jitter.stats().resyncs, 2);
        assert_eq!(run.jitter.stats().late, 0);
        assert_eq!(&run.kinds[12..20], [FrameKind::Audio; 8]);
        let expected = decoded(&pcm);
        assert_pcm(
            &run.pcm()[13 * 160..20 * 160],
            &expected[11 * 160..18 * 160],
        );
    }

    #[test]
    fn codec_change_resynchronises_and_decodes_alaw() {
        let pcm = signal(160 * 10);
        let alaw: Vec<u8> = pcm.iter().map(|&s| g711::alaw_encode(s)).collect();
        let mut jitter = JitterBuffer::new(JitterConfig::default());
        let mut frame = [0; 160];
        jitter.push(SSRC, 0, 0, Codec::Pcmu, &[0xFF; 160], 0);
        jitter.pop_frame(0, &mut frame);
        for i in 0..6u64 {
            let c = &alaw[i as usize * 160..(i as usize + 1) * 160];
            jitter.push(
                SSRC,
                1 + i as u16,
                160 * (1 + i as u32),
                Codec::Pcma,
                c,
                1 + i,
            );
            jitter.pop_frame(1 + i, &mut frame);
        }
        assert_eq!(jitter.stats().resyncs, 2);
        let expected: Vec<i16> = alaw[480..640]
            .iter()
            .map(|&b| g711::alaw_decode(b))
            .collect();
        assert_pcm(&frame, &expected);
    }

    /// A sender whose clock runs at `rate_hz` (nominally 8000) sends 10 ms packets for
    /// `ticks` ticks of our clock.
    fn run_drifting(rate_hz: usize, ticks: usize) -> Run {
        let pcm = signal(ticks * 170);
        let codes = encode(&pcm);
        let mut arrivals: Vec<Vec<usize>> = vec![Vec::new(); ticks];
        for i in 0.. {
            // Its last sample is sent at (i + 1) * 80 sender samples, in our samples:
            let tick = ((i + 1) * 80 * 8000 / rate_hz).saturating_sub(1) / 160;
            if tick >= ticks {
                break;
            }
            arrivals[tick].push(i);
        }
        let mut run = Run::new();
        for packets in &arrivals {
            let packets: Vec<_> = packets
                .iter()
                .map(|&i| {
                    (
                        SSRC,
                        i as u16,
                        (i * 80) as u32,
                        &codes[i * 80..(i + 1) * 80],
                    )
                })
                .collect();
            run.tick(&packets);
        }
        run
    }

    #[test]
    fn faster_sender_clock_is_absorbed_by_skipping() {
        // 0.25 % fast: 1200 samples (7.5 frames) too many in 60 s.
        let run = run_drifting(8020, 3000);
        let stats = run.jitter.stats();
        assert_eq!((stats.late, stats.stretched_frames), (0, 0), "{stats:?}");
        assert!((6..=8).contains(&stats.skipped_frames), "{stats:?}");
        assert!((40..=75).contains(&stats.delay_ms), "{stats:?}");
        assert!(run.kinds[2..].iter().all(|&k| k == FrameKind::Audio));
    }

    #[test]
    fn slower_sender_clock_is_absorbed_by_stretching() {
        // 0.25 % slow: 7.5 frames too few in 60 s.
        let run = run_drifting(7980, 3000);
        let stats = run.jitter.stats();
        assert_eq!((stats.late, stats.skipped_frames), (0, 0), "{stats:?}");
        assert!((6..=8).contains(&stats.stretched_frames), "{stats:?}");
        assert!((40..=75).contains(&stats.delay_ms), "{stats:?}");
        let concealed = run
            .kinds
            .iter()
            .filter(|&&k| k == FrameKind::Concealed)
            .count();
        assert_eq!(concealed as u64, stats.stretched_frames);
    }

    #[test]
    fn garbage_inputs_never_panic() {
        let mut jitter = JitterBuffer::new(JitterConfig {
            min_delay_ms: 5000,
            max_delay_ms: u32::MAX,
        });
        let mut frame = [0i16; 160];
        let big = vec![0x12u8; 9000];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for tick in 0..3000u64 {
            for _ in 0..(next() % 4) {
                let r = next();
                let len = (r >> 40) as usize % 700;
                let payload = if r % 17 == 0 { &big[..] } else { &big[..len] };
                let ssrc = if r % 13 == 0 { r as u32 } else { 7 };
                let seq = (r >> 16) as u16;
                let ts = if r % 3 == 0 {
                    (r >> 8) as u32
                } else {
                    (tick * 160) as u32
                };
                let codec = if r % 11 == 0 {
                    Codec::Pcma
                } else {
                    Codec::Pcmu
                };
                jitter.push(ssrc, seq, ts, codec, payload, tick);
            }
            jitter.push(7, 0, 0, Codec::Pcmu, &[], tick);
            // Ticks that jump around (a confused caller) must not panic either.
            let now = if tick % 500 == 499 { tick * 1000 } else { tick };
            jitter.pop_frame(now, &mut frame);
        }
        jitter.push(7, 0, u32::MAX, Codec::Pcmu, &big, u64::MAX);
        jitter.pop_frame(u64::MAX, &mut frame);
        jitter.pop_frame(0, &mut frame);
        assert!(jitter.stats().empty >= 3000);
    }

    #[test]
    fn memory_per_call_is_small() {
        let jitter = JitterBuffer::new(JitterConfig::default());
        let total = size_of::<JitterBuffer>()
            + jitter.codes.len()
            + jitter.present.len() * 8
            + size_of::<Concealment>();
        assert!(total < 6 * 1024, "{total} bytes");
    }

    #[test]
    fn pitch_estimate_finds_the_period() {
        for period in [40usize, 57, 80, 113] {
            let mut signal = [0i16; HISTORY_LEN];
            for (i, s) in signal.iter_mut().enumerate() {
                let phase = (i % period) as f64 / period as f64;
                *s = (8000.0 * (2.0 * std::f64::consts::PI * phase).sin()
                    + 3000.0 * (6.0 * std::f64::consts::PI * phase).cos())
                    as i16;
            }
            assert_eq!(estimate_pitch(&signal), period);
        }
        assert_eq!(estimate_pitch(&[0; HISTORY_LEN]), PITCH_MAX);
    }
}
