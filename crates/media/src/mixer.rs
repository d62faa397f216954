//! The N-party audio mixer of conferences and two-party bridges.
//!
//! A [`Mixer`] holds participants and, once per 20 ms tick, turns the decoded frame each of
//! them sent into the frame each of them hears. Who hears whom is plain data:
//!
//! - a global `speak` switch per participant ([`Mixer::set_speak`]; `false` is "mute": nobody
//!   hears them),
//! - a global `hear` switch per participant ([`Mixer::set_hear`]; `false` is "deaf": they hear
//!   nobody),
//! - directional pair relations ([`Mixer::set_hears`]): whether one listener hears one speaker.
//!
//! A listener hears a speaker when all three allow it ([`Mixer::hears`]), and never hears its
//! own voice. Pair relations can only take hearing away; they cannot override a global mute or
//! deafness. Kazoo's conference `relate` maps onto them directly:
//!
//! | `relate A B …` | call |
//! |---|---|
//! | `deaf` (A stops hearing B) | `set_hears(A, B, false)` |
//! | `mute` (B stops hearing A) | `set_hears(B, A, false)` |
//! | `clear` | `set_hears(A, B, true)` and `set_hears(B, A, true)` |
//!
//! A whisper (a coach heard by the agent only) is `set_hears(customer, coach, false)`.
//!
//! # How to drive it
//!
//! The conference or bridge owner ticks the mixer every 20 ms: it hands in the frame each
//! participant sent this tick, mixes, reads out what each one hears, and drains the events.
//!
//! ```
//! use voxflow_media::mixer::{Mixer, MixerEvent};
//! let mut mixer = Mixer::new();
//! let alice = mixer.add()?;
//! let bob = mixer.add()?;
//! // every 20 ms:
//! mixer.put_frame(alice, &[1000; 160]); // bob sent nothing this tick: he is silent
//! mixer.mix();
//! assert_eq!(mixer.frame_for(bob), Some(&[1000; 160]));
//! assert!(!mixer.hears_audio(alice)); // alice hears nothing: send comfort silence
//! while let Some(event) = mixer.poll_event() {
//!     match event {
//!         MixerEvent::TalkingStarted { id } | MixerEvent::TalkingStopped { id } => { let _ = id; }
//!     }
//! }
//! # Ok::<(), voxflow_media::mixer::MixerError>(())
//! ```
//!
//! # Cost
//!
//! A tick sums the frames of all speakers once into 32-bit accumulators; each listener then
//! gets that total minus its own voice and minus the few speakers it does not hear (or, when it
//! hears fewer speakers than it excludes, the direct sum of those it hears). Listeners who
//! speak no audio this tick, exclude no one and have unity output gain share one frame. Absent,
//! all-zero, muted and zero-gain speakers cost nothing. In the steady state nothing is
//! allocated: buffers live in a slab of participants reused across ticks and removals.
//!
//! Sums are hard-clipped (saturated) to the `i16` range, not soft-limited.

use std::collections::VecDeque;
use std::fmt;

/// Samples in one mixer frame: 20 ms at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// One 20 ms frame of 16-bit linear PCM at 8 kHz.
pub type Frame = [i16; FRAME_SAMPLES];

/// The most participants one [`Mixer`] holds.
///
/// The bound keeps every listener's sum exact in 32-bit arithmetic even at [`Gain::MAX`].
pub const MAX_PARTICIPANTS: usize = 16_384;

/// The default talking threshold: a frame whose mean absolute sample value is above this
/// (about -44 dBFS) counts as speech. See [`Mixer::set_talk_threshold`].
pub const DEFAULT_TALK_THRESHOLD: u16 = 200;

/// How many consecutive quiet ticks (200 ms) end a participant's talking, so that short pauses
/// between words do not flap the talking state.
pub const TALK_HANGOVER_TICKS: u32 = 10;

/// A participant of one [`Mixer`].
///
/// Ids are generation-checked: once a participant is removed its id is stale, and every method
/// given a stale id does nothing (or answers `None`/`false`), even after its slot is reused.
/// Ids are only meaningful to the mixer that issued them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId {
    index: u32,
    generation: u32,
}

/// A linear gain in Q12 fixed point, from 0 (silent) to [`Gain::MAX`] (×4, about +12 dB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gain(u16);

/// What a [`Mixer`] reports, from [`Mixer::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MixerEvent {
    /// The participant's frames rose above its talking threshold.
    TalkingStarted {
        /// Who started talking.
        id: ParticipantId,
    },
    /// The participant has been quiet for [`TALK_HANGOVER_TICKS`] ticks. Not reported for a
    /// participant removed while talking.
    TalkingStopped {
        /// Who stopped talking.
        id: ParticipantId,
    },
}

/// Why a [`Mixer`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MixerError {
    /// The mixer already holds [`MAX_PARTICIPANTS`] participants.
    #[error("the mixer already holds the maximum of {MAX_PARTICIPANTS} participants")]
    Full,
}

/// An N-party mixer with per-participant mute, deafness, gain and talking detection, and
/// directional per-pair hearing relations. See the [module docs](self).
pub struct Mixer {
    /// Participants, indexed by `ParticipantId::index`; removed ones stay as free slots.
    slots: Vec<Slot>,
    /// What each slot's participant hears after the last [`mix`](Self::mix); parallel to
    /// `slots`.
    outputs: Vec<Output>,
    /// Indices of free slots, reused last-in first-out.
    free: Vec<u32>,
    /// Number of live participants.
    live: usize,
    /// Sum of all contributing speakers of the last tick (wrapping; see `mix`).
    total: [i32; FRAME_SAMPLES],
    /// Per-listener accumulator.
    scratch: [i32; FRAME_SAMPLES],
    /// `total` clipped: the frame of listeners who exclude nobody.
    shared: Frame,
    /// Slot indices of the speakers contributing audio in the last tick.
    contributors: Vec<u32>,
    events: VecDeque<MixerEvent>,
}

impl Gain {
    /// ×1: the signal unchanged.
    pub const UNITY: Gain = Gain(Q12_ONE);
    /// ×0: nothing.
    pub const SILENT: Gain = Gain(0);
    /// ×4 (about +12 dB), the largest gain.
    pub const MAX: Gain = Gain(4 * Q12_ONE);

    /// A gain from its Q12 fixed-point value (4096 is ×1), clamped to [`Gain::MAX`].
    #[must_use]
    pub fn from_q12(raw: u16) -> Gain {
        Gain(raw.min(Self::MAX.0))
    }

    /// A gain from a linear factor, clamped to `0.0..=4.0`; NaN gives [`Gain::UNITY`].
    #[must_use]
    pub fn from_ratio(ratio: f32) -> Gain {
        if ratio.is_nan() {
            return Gain::UNITY;
        }
        let raw = (ratio.clamp(0.0, 4.0) * f32::from(Q12_ONE)).round();
        // In 0.0..=16384.0 after the clamp, so the cast is exact.
        Gain(raw as u16)
    }

    /// A gain from decibels (0 dB is ×1, -6 dB about ×0.5), clamped to [`Gain::MAX`];
    /// `-inf` gives [`Gain::SILENT`] and NaN gives [`Gain::UNITY`].
    #[must_use]
    pub fn from_db(db: f32) -> Gain {
        if db.is_nan() {
            return Gain::UNITY;
        }
        Gain::from_ratio(10f32.powf(db.min(20.0) / 20.0))
    }

    /// The Q12 fixed-point value (4096 is ×1).
    #[must_use]
    pub fn q12(self) -> u16 {
        self.0
    }
}

impl Default for Gain {
    fn default() -> Self {
        Gain::UNITY
    }
}

impl Mixer {
    /// An empty mixer.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty mixer with room for `participants` before it allocates again.
    #[must_use]
    pub fn with_capacity(participants: usize) -> Self {
        let participants = participants.min(MAX_PARTICIPANTS);
        Mixer {
            slots: Vec::with_capacity(participants),
            outputs: Vec::with_capacity(participants),
            free: Vec::new(),
            live: 0,
            total: [0; FRAME_SAMPLES],
            scratch: [0; FRAME_SAMPLES],
            shared: [0; FRAME_SAMPLES],
            contributors: Vec::with_capacity(participants),
            events: VecDeque::new(),
        }
    }

    /// Number of participants.
    #[must_use]
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the mixer has no participants.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Whether `id` is a current participant (not removed, issued by this mixer's slab).
    #[must_use]
    pub fn contains(&self, id: ParticipantId) -> bool {
        self.slot(id).is_some()
    }

    /// The current participants, in slot order.
    pub fn participants(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        (0u32..)
            .zip(&self.slots)
            .filter(|(_, slot)| slot.live)
            .map(|(index, slot)| slot.id(index))
    }

    /// Whether `id` speaks into the mix (`false` is muted); `None` for a stale id.
    #[must_use]
    pub fn speak(&self, id: ParticipantId) -> Option<bool> {
        self.slot(id).map(|slot| slot.speak)
    }

    /// Whether `id` hears the mix (`false` is deaf); `None` for a stale id.
    #[must_use]
    pub fn hear(&self, id: ParticipantId) -> Option<bool> {
        self.slot(id).map(|slot| slot.hear)
    }

    /// The gain applied to `id`'s voice; `None` for a stale id.
    #[must_use]
    pub fn gain(&self, id: ParticipantId) -> Option<Gain> {
        self.slot(id).map(|slot| slot.gain)
    }

    /// The gain applied to what `id` hears; `None` for a stale id.
    #[must_use]
    pub fn output_gain(&self, id: ParticipantId) -> Option<Gain> {
        self.slot(id).map(|slot| slot.output_gain)
    }

    /// Whether `listener` hears `speaker`: both are participants, they differ, `speaker` is
    /// not muted, `listener` is not deaf, and no pair relation forbids it.
    ///
    /// This is the relation only; whether any audio flows also needs a non-silent frame from
    /// `speaker` in the tick (and a non-zero gain).
    #[must_use]
    pub fn hears(&self, listener: ParticipantId, speaker: ParticipantId) -> bool {
        let (Some(l), Some(s)) = (self.slot(listener), self.slot(speaker)) else {
            return false;
        };
        listener != speaker && s.speak && l.hear && l.blocked.binary_search(&speaker.index).is_err()
    }

    /// The speakers `listener` is set not to hear by pair relations ([`set_hears`]
    /// `false`), whatever the global switches say; empty for a stale id.
    ///
    /// [`set_hears`]: Self::set_hears
    pub fn unheard_speakers(
        &self,
        listener: ParticipantId,
    ) -> impl Iterator<Item = ParticipantId> + '_ {
        self.slot(listener)
            .map(|slot| slot.blocked.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|&index| {
                let slot = self.slots.get(index as usize)?;
                slot.live.then(|| slot.id(index))
            })
    }

    /// Whether `id` is talking: one of its frames rose above its threshold, and fewer than
    /// [`TALK_HANGOVER_TICKS`] quiet ticks have followed. Muted participants are detected too.
    #[must_use]
    pub fn is_talking(&self, id: ParticipantId) -> bool {
        self.slot(id).is_some_and(|slot| slot.talking)
    }

    /// After [`mix`](Self::mix): what `id` hears this tick, never its own voice; silence when
    /// it hears nobody. `None` for a stale id.
    #[must_use]
    pub fn frame_for(&self, id: ParticipantId) -> Option<&Frame> {
        self.slot(id)?;
        let output = self.outputs.get(id.index as usize)?;
        Some(match output.kind {
            OutputKind::Silent => &SILENCE,
            OutputKind::Shared => &self.shared,
            OutputKind::Own => &output.samples,
        })
    }

    /// After [`mix`](Self::mix): whether `id` hears any audio this tick, i.e. at least one
    /// speaker it hears sent a non-silent frame. When `false`, [`frame_for`](Self::frame_for)
    /// is digital silence and the caller may send comfort noise or skip encoding.
    #[must_use]
    pub fn hears_audio(&self, id: ParticipantId) -> bool {
        self.slot(id).is_some()
            && self
                .outputs
                .get(id.index as usize)
                .is_some_and(|output| output.kind != OutputKind::Silent)
    }

    /// The next event, oldest first. Drain after every [`mix`](Self::mix).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<MixerEvent> {
        self.events.pop_front()
    }

    /// Adds a participant who hears and is heard by everyone, at unity gain, not talking, and
    /// silent until its first frame.
    ///
    /// # Errors
    ///
    /// [`MixerError::Full`] when the mixer already holds [`MAX_PARTICIPANTS`].
    pub fn add(&mut self) -> Result<ParticipantId, MixerError> {
        if self.live >= MAX_PARTICIPANTS {
            return Err(MixerError::Full);
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).map_err(|_| MixerError::Full)?;
                self.slots.push(Slot::new());
                self.outputs.push(Output::new());
                index
            }
        };
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(MixerError::Full);
        };
        slot.reset();
        slot.live = true;
        if let Some(output) = self.outputs.get_mut(index as usize) {
            output.kind = OutputKind::Silent;
        }
        self.live += 1;
        // Room for every participant in the per-tick lists, so that ticks never allocate
        // (events: at most one per participant per tick, drained between ticks).
        self.contributors
            .reserve(self.live.saturating_sub(self.contributors.len()));
        self.events
            .reserve(self.live.saturating_sub(self.events.len()));
        Ok(slot.id(index))
    }

    /// Removes a participant and every relation naming it; its id becomes stale. Does nothing
    /// for a stale id.
    pub fn remove(&mut self, id: ParticipantId) {
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        slot.live = false;
        slot.generation = slot.generation.wrapping_add(1);
        slot.reset();
        if let Some(output) = self.outputs.get_mut(id.index as usize) {
            output.kind = OutputKind::Silent;
        }
        for other in self.slots.iter_mut().filter(|slot| slot.live) {
            if let Ok(position) = other.blocked.binary_search(&id.index) {
                other.blocked.remove(position);
            }
        }
        self.free.push(id.index);
        self.live -= 1;
    }

    /// Sets whether `id` is heard at all: `false` is "mute" (nobody hears `id`). Pair
    /// relations are kept and apply again when unmuted.
    pub fn set_speak(&mut self, id: ParticipantId, on: bool) {
        if let Some(slot) = self.slot_mut(id) {
            slot.speak = on;
        }
    }

    /// Sets whether `id` hears anything: `false` is "deaf" (`id` hears nobody). Pair relations
    /// are kept and apply again when undeafened.
    pub fn set_hear(&mut self, id: ParticipantId, on: bool) {
        if let Some(slot) = self.slot_mut(id) {
            slot.hear = on;
        }
    }

    /// Sets the directional pair relation: whether `listener` hears `speaker` (as far as the
    /// global switches allow). `false` takes `speaker` away from `listener` only; `true` clears
    /// that. Does nothing when either id is stale or they are the same participant.
    pub fn set_hears(&mut self, listener: ParticipantId, speaker: ParticipantId, on: bool) {
        if listener == speaker || self.slot(speaker).is_none() {
            return;
        }
        let Some(slot) = self.slot_mut(listener) else {
            return;
        };
        match (slot.blocked.binary_search(&speaker.index), on) {
            (Err(position), false) => slot.blocked.insert(position, speaker.index),
            (Ok(position), true) => {
                slot.blocked.remove(position);
            }
            _ => {}
        }
    }

    /// Sets the gain applied to `id`'s voice for everyone who hears it, from its next
    /// [`put_frame`](Self::put_frame) on.
    pub fn set_gain(&mut self, id: ParticipantId, gain: Gain) {
        if let Some(slot) = self.slot_mut(id) {
            slot.gain = gain;
        }
    }

    /// Sets the gain applied to what `id` hears (its listening volume), applied before
    /// clipping, from the next [`mix`](Self::mix) on.
    pub fn set_output_gain(&mut self, id: ParticipantId, gain: Gain) {
        if let Some(slot) = self.slot_mut(id) {
            slot.output_gain = gain;
        }
    }

    /// Sets `id`'s talking threshold: its frames count as speech when their mean absolute
    /// sample value (before gain) is above `level`. Default [`DEFAULT_TALK_THRESHOLD`].
    pub fn set_talk_threshold(&mut self, id: ParticipantId, level: u16) {
        if let Some(slot) = self.slot_mut(id) {
            slot.talk_threshold = level;
        }
    }

    /// Sets `id`'s noise gate: when on, its voice is mixed only while it
    /// [is talking](Self::is_talking), so idle lines add no background noise. Default off.
    pub fn set_gate(&mut self, id: ParticipantId, on: bool) {
        if let Some(slot) = self.slot_mut(id) {
            slot.gate = on;
        }
    }

    /// Hands in the frame `id` sent this tick (decoded 8 kHz PCM). A participant without a frame
    /// in a tick is silent in it; a second frame in the same tick replaces the first. Does
    /// nothing for a stale id.
    pub fn put_frame(&mut self, id: ParticipantId, frame: &Frame) {
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        let gain = i32::from(slot.gain.0);
        let mut magnitude: u32 = 0;
        let mut any: i32 = 0;
        for (out, &sample) in slot.contrib.iter_mut().zip(frame) {
            let sample = i32::from(sample);
            magnitude += sample.unsigned_abs();
            // |sample * gain| <= 2^15 * 2^14: no overflow.
            let scaled = (sample * gain) >> Q12_SHIFT;
            any |= scaled;
            *out = scaled;
        }
        // The mean of |sample| <= 32768 fits.
        slot.frame_level = u16::try_from(magnitude / FRAME_SAMPLES as u32).unwrap_or(u16::MAX);
        slot.frame_nonzero = any != 0;
        slot.has_frame = true;
    }

    /// Mixes the tick: call after all of the tick's [`put_frame`](Self::put_frame) calls. Then
    /// [`frame_for`](Self::frame_for) gives each participant the sum of the frames of every
    /// speaker it [hears](Self::hears), never its own voice, scaled by its output gain and
    /// clipped to the `i16` range. Updates talking detection and queues its events. Frames
    /// handed in are consumed: the next tick starts with everyone silent.
    pub fn mix(&mut self) {
        let Mixer {
            slots,
            outputs,
            total,
            scratch,
            shared,
            contributors,
            events,
            ..
        } = self;

        // Pass 1: talking detection, and the total of everyone who contributes audio.
        // Each contribution is within ±2^17 (Gain::MAX), so MAX_PARTICIPANTS of them sum
        // within i32 and no accumulator overflows; the wrapping operations are only there so
        // that no configuration can ever make arithmetic panic.
        total.fill(0);
        contributors.clear();
        for (index, slot) in (0u32..).zip(slots.iter_mut()) {
            if !slot.live {
                continue;
            }
            let level = if slot.has_frame { slot.frame_level } else { 0 };
            if let Some(event) = slot.detect_talking(level, index) {
                events.push_back(event);
            }
            slot.contributes =
                slot.has_frame && slot.frame_nonzero && slot.speak && (!slot.gate || slot.talking);
            slot.has_frame = false;
            if slot.contributes {
                add_into(total, &slot.contrib);
                contributors.push(index);
            }
        }

        // Pass 2: what each listener hears.
        let slots = &*slots;
        let mut shared_ready = false;
        for (index, (listener, output)) in (0u32..).zip(slots.iter().zip(outputs.iter_mut())) {
            output.kind = OutputKind::Silent;
            if !listener.live || !listener.hear || contributors.is_empty() {
                continue;
            }
            let blocked_contributing = listener
                .blocked
                .iter()
                .filter(|&&b| slots.get(b as usize).is_some_and(|s| s.contributes))
                .count();
            let excluded = usize::from(listener.contributes) + blocked_contributing;
            let heard = contributors.len().saturating_sub(excluded);
            if heard == 0 {
                continue;
            }
            if excluded == 0 && listener.output_gain == Gain::UNITY {
                if !shared_ready {
                    clip_into(shared, total, Gain::UNITY);
                    shared_ready = true;
                }
                output.kind = OutputKind::Shared;
                continue;
            }
            if heard < excluded {
                // Fewer to add than to take away: sum the heard speakers directly.
                scratch.fill(0);
                for &speaker in contributors.iter() {
                    if speaker != index
                        && listener.blocked.binary_search(&speaker).is_err()
                        && let Some(s) = slots.get(speaker as usize)
                    {
                        add_into(scratch, &s.contrib);
                    }
                }
            } else {
                *scratch = *total;
                if listener.contributes {
                    sub_from(scratch, &listener.contrib);
                }
                for &speaker in &listener.blocked {
                    if let Some(s) = slots.get(speaker as usize)
                        && s.contributes
                    {
                        sub_from(scratch, &s.contrib);
                    }
                }
            }
            clip_into(&mut output.samples, scratch, listener.output_gain);
            output.kind = OutputKind::Own;
        }
    }
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Mixer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mixer")
            .field("participants", &self.live)
            .field("slots", &self.slots.len())
            .field("pending_events", &self.events.len())
            .finish_non_exhaustive()
    }
}

/// Q12 fixed point: 1.0 is 4096.
const Q12_SHIFT: u32 = 12;
const Q12_ONE: u16 = 1 << Q12_SHIFT;

static SILENCE: Frame = [0; FRAME_SAMPLES];

/// One participant's state, kept in its slot (and its buffers reused) after removal.
struct Slot {
    generation: u32,
    live: bool,
    speak: bool,
    hear: bool,
    gate: bool,
    gain: Gain,
    output_gain: Gain,
    talk_threshold: u16,
    talking: bool,
    quiet_ticks: u32,
    /// A frame was handed in this tick.
    has_frame: bool,
    /// Mean absolute sample value of this tick's frame.
    frame_level: u16,
    /// This tick's frame is not all zero after gain.
    frame_nonzero: bool,
    /// In the last mix, this participant's voice was in the total.
    contributes: bool,
    /// Slot indices of live speakers this listener does not hear, sorted.
    blocked: Vec<u32>,
    /// This tick's frame with gain applied.
    contrib: [i32; FRAME_SAMPLES],
}

impl Slot {
    fn new() -> Self {
        Slot {
            generation: 0,
            live: false,
            speak: true,
            hear: true,
            gate: false,
            gain: Gain::UNITY,
            output_gain: Gain::UNITY,
            talk_threshold: DEFAULT_TALK_THRESHOLD,
            talking: false,
            quiet_ticks: 0,
            has_frame: false,
            frame_level: 0,
            frame_nonzero: false,
            contributes: false,
            blocked: Vec::new(),
            contrib: [0; FRAME_SAMPLES],
        }
    }

    /// Back to a fresh participant's settings, keeping the generation and buffers.
    fn reset(&mut self) {
        self.speak = true;
        self.hear = true;
        self.gate = false;
        self.gain = Gain::UNITY;
        self.output_gain = Gain::UNITY;
        self.talk_threshold = DEFAULT_TALK_THRESHOLD;
        self.talking = false;
        self.quiet_ticks = 0;
        self.has_frame = false;
        self.frame_level = 0;
        self.frame_nonzero = false;
        self.contributes = false;
        self.blocked.clear();
    }

    fn id(&self, index: u32) -> ParticipantId {
        ParticipantId {
            index,
            generation: self.generation,
        }
    }

    /// One tick of the talking detector with this tick's frame level.
    fn detect_talking(&mut self, level: u16, index: u32) -> Option<MixerEvent> {
        if level > self.talk_threshold {
            self.quiet_ticks = 0;
            if !self.talking {
                self.talking = true;
                return Some(MixerEvent::TalkingStarted { id: self.id(index) });
            }
        } else if self.talking {
            self.quiet_ticks += 1;
            if self.quiet_ticks >= TALK_HANGOVER_TICKS {
                self.talking = false;
                self.quiet_ticks = 0;
                return Some(MixerEvent::TalkingStopped { id: self.id(index) });
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputKind {
    /// Hears nothing: the frame is [`SILENCE`].
    Silent,
    /// Hears everyone who spoke: the frame is `Mixer::shared`.
    Shared,
    /// The frame is `Output::samples`.
    Own,
}

struct Output {
    kind: OutputKind,
    samples: Frame,
}

impl Output {
    fn new() -> Self {
        Output {
            kind: OutputKind::Silent,
            samples: [0; FRAME_SAMPLES],
        }
    }
}

impl Mixer {
    fn slot(&self, id: ParticipantId) -> Option<&Slot> {
        self.slots
            .get(id.index as usize)
            .filter(|slot| slot.live && slot.generation == id.generation)
    }

    fn slot_mut(&mut self, id: ParticipantId) -> Option<&mut Slot> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|slot| slot.live && slot.generation == id.generation)
    }
}

fn add_into(acc: &mut [i32; FRAME_SAMPLES], frame: &[i32; FRAME_SAMPLES]) {
    for (a, &s) in acc.iter_mut().zip(frame) {
        *a = a.wrapping_add(s);
    }
}

fn sub_from(acc: &mut [i32; FRAME_SAMPLES], frame: &[i32; FRAME_SAMPLES]) {
    for (a, &s) in acc.iter_mut().zip(frame) {
        *a = a.wrapping_sub(s);
    }
}

/// Scales `acc` by `gain` and saturates it into `out`.
fn clip_into(out: &mut Frame, acc: &[i32; FRAME_SAMPLES], gain: Gain) {
    const MIN: i64 = i16::MIN as i64;
    const MAX: i64 = i16::MAX as i64;
    if gain == Gain::UNITY {
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = i64::from(a).clamp(MIN, MAX) as i16;
        }
    } else {
        let gain = i64::from(gain.0);
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = ((i64::from(a) * gain) >> Q12_SHIFT).clamp(MIN, MAX) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(f: impl Fn(usize) -> i16) -> Frame {
        std::array::from_fn(f)
    }

    /// Mixer with `n` participants.
    fn mixer_with(n: usize) -> (Mixer, Vec<ParticipantId>) {
        let mut mixer = Mixer::new();
        let ids = (0..n).map(|_| mixer.add().unwrap()).collect();
        (mixer, ids)
    }

    fn drain(mixer: &mut Mixer) -> Vec<MixerEvent> {
        std::iter::from_fn(|| mixer.poll_event()).collect()
    }

    #[test]
    fn two_party_each_hears_the_other() {
        let (mut m, ids) = mixer_with(2);
        let (a, b) = (ids[0], ids[1]);
        let fa = frame_of(|i| i as i16 * 10);
        let fb = frame_of(|i| -(i as i16) * 3 + 7);
        m.put_frame(a, &fa);
        m.put_frame(b, &fb);
        m.mix();
        assert_eq!(m.frame_for(a), Some(&fb));
        assert_eq!(m.frame_for(b), Some(&fa));
        assert!(m.hears_audio(a) && m.hears_audio(b));
    }

    #[test]
    fn three_party_sample_by_sample() {
        let (mut m, ids) = mixer_with(3);
        let frames: Vec<Frame> = (0..3)
            .map(|p| frame_of(|i| ((i as i32 * (p + 1) * 37) % 2000 - 1000) as i16))
            .collect();
        for (id, f) in ids.iter().zip(&frames) {
            m.put_frame(*id, f);
        }
        m.mix();
        for (me, id) in ids.iter().enumerate() {
            let heard = m.frame_for(*id).unwrap();
            for i in 0..FRAME_SAMPLES {
                let expected: i32 = (0..3)
                    .filter(|&p| p != me)
                    .map(|p| i32::from(frames[p][i]))
                    .sum();
                assert_eq!(i32::from(heard[i]), expected, "listener {me} sample {i}");
            }
        }
    }

    #[test]
    fn own_voice_never_heard() {
        let (mut m, ids) = mixer_with(1);
        let a = ids[0];
        m.put_frame(a, &[5000; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(a), Some(&SILENCE));
        assert!(!m.hears_audio(a));
        assert!(!m.hears(a, a));
        m.set_hears(a, a, true);
        assert!(!m.hears(a, a));

        let b = m.add().unwrap();
        m.put_frame(a, &[5000; FRAME_SAMPLES]);
        m.put_frame(b, &[-3; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(a), Some(&[-3; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(b), Some(&[5000; FRAME_SAMPLES]));
    }

    #[test]
    fn mute_stops_everyone_hearing_the_participant() {
        let (mut m, ids) = mixer_with(3);
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        m.set_speak(a, false);
        assert_eq!(m.speak(a), Some(false));
        assert!(!m.hears(b, a) && !m.hears(c, a));
        assert!(m.hears(a, b));
        m.put_frame(a, &[100; FRAME_SAMPLES]);
        m.put_frame(b, &[10; FRAME_SAMPLES]);
        m.put_frame(c, &[1; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(a), Some(&[11; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(b), Some(&[1; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(c), Some(&[10; FRAME_SAMPLES]));
        // A muted participant is still detected as talking (Kazoo's mute_detect).
        m.set_talk_threshold(a, 50);
        m.put_frame(a, &[100; FRAME_SAMPLES]);
        m.mix();
        assert!(m.is_talking(a));

        m.set_speak(a, true);
        m.put_frame(a, &[100; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(b), Some(&[100; FRAME_SAMPLES]));
    }

    #[test]
    fn deaf_hears_nobody_but_is_heard() {
        let (mut m, ids) = mixer_with(3);
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        m.set_hear(a, false);
        assert_eq!(m.hear(a), Some(false));
        assert!(!m.hears(a, b) && m.hears(b, a));
        m.put_frame(a, &[100; FRAME_SAMPLES]);
        m.put_frame(b, &[10; FRAME_SAMPLES]);
        m.put_frame(c, &[1; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(a), Some(&SILENCE));
        assert!(!m.hears_audio(a));
        assert_eq!(m.frame_for(b), Some(&[101; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(c), Some(&[110; FRAME_SAMPLES]));
    }

    #[test]
    fn directional_relation_is_one_way() {
        let (mut m, ids) = mixer_with(3);
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        // Kazoo `relate a b deaf`: a stops hearing b; b still hears a.
        m.set_hears(a, b, false);
        assert!(!m.hears(a, b));
        assert!(m.hears(b, a));
        assert_eq!(m.unheard_speakers(a).collect::<Vec<_>>(), vec![b]);
        assert_eq!(m.unheard_speakers(b).count(), 0);
        m.put_frame(a, &[100; FRAME_SAMPLES]);
        m.put_frame(b, &[10; FRAME_SAMPLES]);
        m.put_frame(c, &[1; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(a), Some(&[1; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(b), Some(&[101; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(c), Some(&[110; FRAME_SAMPLES]));

        // Relations survive a global mute/deaf round trip and do not override them.
        m.set_hear(a, false);
        m.set_hear(a, true);
        assert!(!m.hears(a, b));
        m.set_speak(c, false);
        m.set_hears(a, c, true);
        assert!(!m.hears(a, c));
    }

    #[test]
    fn clearing_relations_restores_hearing() {
        let (mut m, ids) = mixer_with(2);
        let (a, b) = (ids[0], ids[1]);
        // `relate a b deaf` then `relate a b mute`, then `clear`.
        m.set_hears(a, b, false);
        m.set_hears(b, a, false);
        m.set_hears(b, a, false); // idempotent
        m.put_frame(a, &[7; FRAME_SAMPLES]);
        m.put_frame(b, &[9; FRAME_SAMPLES]);
        m.mix();
        assert!(!m.hears_audio(a) && !m.hears_audio(b));
        m.set_hears(a, b, true);
        m.set_hears(b, a, true);
        assert!(m.hears(a, b) && m.hears(b, a));
        assert_eq!(m.unheard_speakers(a).count(), 0);
        m.put_frame(a, &[7; FRAME_SAMPLES]);
        m.put_frame(b, &[9; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(a), Some(&[9; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(b), Some(&[7; FRAME_SAMPLES]));
    }

    #[test]
    fn removing_a_participant_keeps_the_others_mixing() {
        let (mut m, ids) = mixer_with(3);
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        m.set_hears(a, b, false);
        m.remove(b);
        assert_eq!(m.len(), 2);
        assert!(!m.contains(b));
        assert_eq!(m.participants().collect::<Vec<_>>(), vec![a, c]);
        assert_eq!(m.unheard_speakers(a).count(), 0);
        m.put_frame(a, &[3; FRAME_SAMPLES]);
        m.put_frame(b, &[1000; FRAME_SAMPLES]);
        m.put_frame(c, &[4; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(a), Some(&[4; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(c), Some(&[3; FRAME_SAMPLES]));

        // The slot is reused by a newcomer, who inherits none of b's relations.
        let d = m.add().unwrap();
        assert_ne!(d, b);
        assert!(m.hears(a, d) && m.hears(d, a));
        m.put_frame(d, &[20; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(a), Some(&[20; FRAME_SAMPLES]));
    }

    #[test]
    fn stale_ids_are_ignored() {
        let (mut m, ids) = mixer_with(2);
        let (a, b) = (ids[0], ids[1]);
        m.put_frame(b, &[50; FRAME_SAMPLES]);
        m.mix();
        m.remove(b);
        m.remove(b);
        assert_eq!(m.len(), 1);
        assert_eq!(m.frame_for(b), None);
        assert!(!m.hears_audio(b));
        let c = m.add().unwrap(); // reuses b's slot
        m.put_frame(b, &[999; FRAME_SAMPLES]);
        m.set_speak(b, false);
        m.set_hear(b, false);
        m.set_gain(b, Gain::SILENT);
        m.set_hears(a, b, false);
        m.set_hears(b, a, false);
        assert_eq!(m.speak(b), None);
        assert!(!m.hears(a, b) && !m.hears(b, a));
        assert!(!m.is_talking(b));
        assert_eq!(m.speak(c), Some(true));
        assert!(m.hears(a, c) && m.hears(c, a));
        m.put_frame(c, &[1; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(a), Some(&[1; FRAME_SAMPLES]));
        // An id from a slot that never existed.
        let bogus = ParticipantId {
            index: 77,
            generation: 0,
        };
        m.put_frame(bogus, &[1; FRAME_SAMPLES]);
        m.remove(bogus);
        assert_eq!(m.frame_for(bogus), None);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn sums_saturate_at_i16_limits() {
        let (mut m, ids) = mixer_with(4);
        m.put_frame(ids[0], &[i16::MAX; FRAME_SAMPLES]);
        m.put_frame(ids[1], &[i16::MAX; FRAME_SAMPLES]);
        m.put_frame(ids[2], &[20_000; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(ids[3]), Some(&[i16::MAX; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(ids[2]), Some(&[i16::MAX; FRAME_SAMPLES]));

        for id in &ids[..3] {
            m.put_frame(*id, &[i16::MIN; FRAME_SAMPLES]);
        }
        m.mix();
        assert_eq!(m.frame_for(ids[3]), Some(&[i16::MIN; FRAME_SAMPLES]));
        // Opposite signs cancel before clipping.
        m.put_frame(ids[0], &[i16::MAX; FRAME_SAMPLES]);
        m.put_frame(ids[1], &[i16::MAX; FRAME_SAMPLES]);
        m.put_frame(ids[2], &[i16::MIN; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(ids[3]), Some(&[32_766; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(ids[2]), Some(&[i16::MAX; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(ids[0]), Some(&[-1; FRAME_SAMPLES]));
    }

    #[test]
    fn a_participant_without_a_frame_is_silent() {
        let (mut m, ids) = mixer_with(3);
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        m.put_frame(a, &[30; FRAME_SAMPLES]);
        m.put_frame(b, &[40; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(c), Some(&[70; FRAME_SAMPLES]));
        // Next tick: only b sends; a's old frame is not reused.
        m.put_frame(b, &[40; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(c), Some(&[40; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(a), Some(&[40; FRAME_SAMPLES]));
        assert!(!m.hears_audio(b));
        // A tick with no frames at all.
        m.mix();
        for id in ids {
            assert_eq!(m.frame_for(id), Some(&SILENCE));
            assert!(!m.hears_audio(id));
        }
    }

    #[test]
    fn a_second_frame_in_a_tick_replaces_the_first() {
        let (mut m, ids) = mixer_with(2);
        m.put_frame(ids[0], &[5; FRAME_SAMPLES]);
        m.put_frame(ids[0], &[6; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(ids[1]), Some(&[6; FRAME_SAMPLES]));
    }

    #[test]
    fn gains_scale_voice_and_listening_volume() {
        let (mut m, ids) = mixer_with(3);
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        m.set_gain(a, Gain::from_ratio(0.5));
        m.set_gain(b, Gain::SILENT);
        m.set_output_gain(c, Gain::from_ratio(2.0));
        assert_eq!(m.gain(a), Some(Gain::from_q12(2048)));
        assert_eq!(m.output_gain(c), Some(Gain::from_q12(8192)));
        m.put_frame(a, &[1000; FRAME_SAMPLES]);
        m.put_frame(b, &[1000; FRAME_SAMPLES]);
        m.put_frame(c, &[-1001; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(b), Some(&[500 - 1001; FRAME_SAMPLES]));
        assert_eq!(m.frame_for(c), Some(&[1000; FRAME_SAMPLES]));
        // A zero-gain speaker contributes nothing: a hears only c.
        assert_eq!(m.frame_for(a), Some(&[-1001; FRAME_SAMPLES]));
        // Output gain is applied before clipping.
        m.set_output_gain(c, Gain::from_ratio(0.25));
        m.put_frame(a, &[30_000; FRAME_SAMPLES]);
        m.set_gain(a, Gain::MAX);
        m.put_frame(a, &[30_000; FRAME_SAMPLES]);
        m.mix();
        assert_eq!(m.frame_for(c), Some(&[30_000; FRAME_SAMPLES]));
        assert!(!m.hears_audio(a));
    }

    #[test]
    fn gain_conversions_clamp() {
        assert_eq!(Gain::from_db(0.0), Gain::UNITY);
        assert_eq!(Gain::from_db(f32::NEG_INFINITY), Gain::SILENT);
        assert_eq!(Gain::from_db(f32::NAN), Gain::UNITY);
        assert_eq!(Gain::from_db(100.0), Gain::MAX);
        assert_eq!(Gain::from_db(-6.0206).q12(), 2048);
        assert_eq!(Gain::from_ratio(-1.0), Gain::SILENT);
        assert_eq!(Gain::from_ratio(f32::INFINITY), Gain::MAX);
        assert_eq!(Gain::from_q12(u16::MAX), Gain::MAX);
        assert_eq!(Gain::default(), Gain::UNITY);
    }

    #[test]
    fn talking_detector_has_a_hangover() {
        let (mut m, ids) = mixer_with(2);
        let a = ids[0];
        m.put_frame(a, &[DEFAULT_TALK_THRESHOLD as i16; FRAME_SAMPLES]);
        m.mix();
        assert!(!m.is_talking(a), "at the threshold is not above it");
        assert!(drain(&mut m).is_empty());

        m.put_frame(a, &[-1000; FRAME_SAMPLES]);
        m.mix();
        assert!(m.is_talking(a));
        assert_eq!(drain(&mut m), vec![MixerEvent::TalkingStarted { id: a }]);
        for _ in 0..TALK_HANGOVER_TICKS - 1 {
            m.mix();
            assert!(m.is_talking(a));
        }
        // A word within the hangover keeps it talking and restarts the hangover.
        m.put_frame(a, &[1000; FRAME_SAMPLES]);
        m.mix();
        for _ in 0..TALK_HANGOVER_TICKS - 1 {
            m.put_frame(a, &[3; FRAME_SAMPLES]);
            m.mix();
        }
        assert!(m.is_talking(a));
        assert!(drain(&mut m).is_empty());
        m.mix();
        assert!(!m.is_talking(a));
        assert_eq!(drain(&mut m), vec![MixerEvent::TalkingStopped { id: a }]);
    }

    #[test]
    fn gate_mixes_only_while_talking() {
        let (mut m, ids) = mixer_with(2);
        let (a, b) = (ids[0], ids[1]);
        m.set_gate(a, true);
        m.put_frame(a, &[50; FRAME_SAMPLES]); // background noise
        m.mix();
        assert!(!m.hears_audio(b));
        m.put_frame(a, &[900; FRAME_SAMPLES]); // speech, mixed from its first frame
        m.mix();
        assert_eq!(m.frame_for(b), Some(&[900; FRAME_SAMPLES]));
        m.put_frame(a, &[50; FRAME_SAMPLES]); // the hangover keeps the tail
        m.mix();
        assert_eq!(m.frame_for(b), Some(&[50; FRAME_SAMPLES]));
    }

    #[test]
    fn mixer_refuses_more_than_max_participants() {
        let mut m = Mixer::new();
        for _ in 0..MAX_PARTICIPANTS {
            m.add().unwrap();
        }
        assert_eq!(m.add(), Err(MixerError::Full));
        let first = m.participants().next().unwrap();
        m.remove(first);
        assert!(m.add().is_ok());
    }

    #[test]
    fn full_scale_max_gain_at_capacity_stays_exact() {
        // Everyone at +12 dB full scale: the sums reach the edges of i32 and must clip to
        // the i16 limits, never wrap.
        let mut m = Mixer::with_capacity(MAX_PARTICIPANTS);
        let ids: Vec<_> = (0..MAX_PARTICIPANTS).map(|_| m.add().unwrap()).collect();
        for id in &ids {
            m.set_gain(*id, Gain::MAX);
            m.put_frame(*id, &[i16::MAX; FRAME_SAMPLES]);
        }
        m.set_hear(ids[0], false);
        m.mix();
        assert_eq!(m.frame_for(ids[1]), Some(&[i16::MAX; FRAME_SAMPLES]));
        m.set_hears(ids[1], ids[2], false);
        for id in &ids {
            m.put_frame(*id, &[i16::MIN; FRAME_SAMPLES]);
        }
        m.mix();
        assert_eq!(m.frame_for(ids[1]), Some(&[i16::MIN; FRAME_SAMPLES]));
    }

    #[test]
    fn steady_state_does_not_grow_buffers() {
        let (mut m, ids) = mixer_with(20);
        m.set_hears(ids[0], ids[1], false);
        let tick = |m: &mut Mixer, t: usize| {
            for (k, id) in ids.iter().enumerate() {
                m.put_frame(*id, &[((t * 7 + k) % 400) as i16; FRAME_SAMPLES]);
            }
            m.mix();
            drain(m);
        };
        let capacities = (m.contributors.capacity(), m.events.capacity());
        for t in 0..100 {
            tick(&mut m, t);
        }
        assert_eq!((m.contributors.capacity(), m.events.capacity()), capacities);
    }

    /// xorshift64*: a tiny deterministic PRNG for the reference test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// The test's own model of one participant.
    #[derive(Clone)]
    struct Model {
        id: ParticipantId,
        speak: bool,
        hear: bool,
        gain: u16,
        output_gain: u16,
        frame: Option<Frame>,
    }

    /// Naive O(N²) mix straight from the definition.
    fn reference_mix(
        models: &[Model],
        blocked: &std::collections::HashSet<(ParticipantId, ParticipantId)>,
        listener: &Model,
    ) -> Frame {
        let heard: Vec<(&Frame, i32)> = models
            .iter()
            .filter(|speaker| {
                listener.hear
                    && speaker.id != listener.id
                    && speaker.speak
                    && !blocked.contains(&(listener.id, speaker.id))
            })
            .filter_map(|speaker| Some((speaker.frame.as_ref()?, i32::from(speaker.gain))))
            .collect();
        frame_of(|i| {
            let sum: i64 = heard
                .iter()
                .map(|(frame, gain)| i64::from((i32::from(frame[i]) * gain) >> 12))
                .sum();
            ((sum * i64::from(listener.output_gain)) >> 12).clamp(-32768, 32767) as i16
        })
    }

    #[test]
    fn hundred_party_mix_matches_naive_reference() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut m = Mixer::new();
        let mut models: Vec<Model> = Vec::new();
        let mut blocked = std::collections::HashSet::new();
        let fresh = |id| Model {
            id,
            speak: true,
            hear: true,
            gain: 4096,
            output_gain: 4096,
            frame: None,
        };
        for _ in 0..100 {
            models.push(fresh(m.add().unwrap()));
        }
        for round in 0..60 {
            // Relation density varies by round so both the subtract and the direct-sum paths
            // are taken, including listeners who exclude almost everyone.
            let block_percent = [0, 2, 10, 60, 97][round % 5];
            for l in 0..models.len() {
                for s in 0..models.len() {
                    if l == s || !rng.chance(if round % 5 == 0 { 1 } else { 30 }) {
                        continue;
                    }
                    let (lid, sid) = (models[l].id, models[s].id);
                    let on = !rng.chance(block_percent);
                    m.set_hears(lid, sid, on);
                    if on {
                        blocked.remove(&(lid, sid));
                    } else {
                        blocked.insert((lid, sid));
                    }
                }
            }
            for model in &mut models {
                if rng.chance(10) {
                    model.speak = !rng.chance(20);
                    m.set_speak(model.id, model.speak);
                }
                if rng.chance(10) {
                    model.hear = !rng.chance(20);
                    m.set_hear(model.id, model.hear);
                }
                if rng.chance(5) {
                    model.gain = rng.below(16_385) as u16;
                    m.set_gain(model.id, Gain::from_q12(model.gain));
                }
                if rng.chance(5) {
                    model.output_gain = [0, 2048, 4096, 4096, 12_000][rng.below(5) as usize];
                    m.set_output_gain(model.id, Gain::from_q12(model.output_gain));
                }
            }
            // Churn: remove a few, add a few (their slots get reused).
            for _ in 0..rng.below(4) {
                let k = rng.below(models.len() as u64) as usize;
                let gone = models.swap_remove(k).id;
                m.remove(gone);
                blocked.retain(|&(l, s)| l != gone && s != gone);
            }
            while models.len() < 100 {
                models.push(fresh(m.add().unwrap()));
            }
            // Frames: some absent, some all zero, some loud enough to clip.
            let amplitude = if round % 7 == 3 { 32_767 } else { 1_500 };
            for model in &mut models {
                model.frame = match rng.below(10) {
                    0..=2 => None,
                    3 => Some([0; FRAME_SAMPLES]),
                    _ => {
                        let mut f = [0i16; FRAME_SAMPLES];
                        for s in &mut f {
                            *s = (rng.below(2 * amplitude + 1) as i64 - amplitude as i64) as i16;
                        }
                        Some(f)
                    }
                };
                if let Some(f) = &model.frame {
                    m.put_frame(model.id, f);
                }
            }
            m.mix();
            drain(&mut m);
            assert_eq!(m.len(), models.len());
            for listener in &models {
                let expected = reference_mix(&models, &blocked, listener);
                assert_eq!(
                    m.frame_for(listener.id),
                    Some(&expected),
                    "round {round} listener {:?}",
                    listener.id
                );
                let audible = listener.hear
                    && models.iter().any(|s| {
                        s.id != listener.id
                            && s.speak
                            && s.gain > 0
                            && !blocked.contains(&(listener.id, s.id))
                            && s.frame.is_some_and(|f| {
                                f.iter()
                                    .any(|&x| (i32::from(x) * i32::from(s.gain)) >> 12 != 0)
                            })
                    });
                assert_eq!(m.hears_audio(listener.id), audible, "round {round}");
                for speaker in models.iter().step_by(7) {
                    let model_hears = listener.id != speaker.id
                        && speaker.speak
                        && listener.hear
                        && !blocked.contains(&(listener.id, speaker.id));
                    assert_eq!(m.hears(listener.id, speaker.id), model_hears);
                }
            }
        }
    }
}
