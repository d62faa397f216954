//! Answering-machine detection (AMD): from the first seconds of audio received on an answered
//! outbound call, decide whether a person or a machine (voicemail, answering machine) answered.
//!
//! # The idea
//!
//! People and machines greet differently. A person picks up, says something short ("Hello?",
//! "Hello, this is Anna.", 0.3–1.5 s of speech) and then *waits* for the caller to speak. A
//! machine plays a recorded greeting: either several seconds of fluent speech with many words
//! ("Hi, you've reached John, I can't take your call right now, please leave a message after the
//! tone"), or nothing at all for a long time. The detector only looks at the energy of the signal
//! over time (when there is speech and when there is silence), never at what is said.
//!
//! # The algorithm
//!
//! The samples (8 kHz mono linear PCM, frames of any length) are cut into *blocks* of 10 ms (80
//! samples; a partial block is carried over to the next frame). For each block:
//!
//! 1. **Energy**: the mean square of its samples (integer arithmetic).
//! 2. **Voice activity**: the block is *voiced* when its energy is above the *speech threshold*,
//!    the larger of a fixed minimum ([`AmdConfig::min_speech_rms`]) and the *noise floor* raised
//!    by [`AmdConfig::speech_over_noise_db`]. The noise floor is the lowest block energy of the
//!    last 1 to 1.25 s (minimum statistics, kept as the minima of 250 ms sub-windows): it
//!    drops at once when the line gets quieter, and a steady noise becomes the floor within a
//!    window. Speech must not become its own floor, so a voiced block enters the window as at
//!    most twice (+3 dB) the current floor: under continuous speech the floor rises by at most
//!    3 dB per window, and the next pause pulls it back down. The very first block only learns
//!    the floor (it is voiced if above the fixed minimum).
//! 3. **Words**: voiced blocks separated by gaps shorter than
//!    [`AmdConfig::between_words_silence_ms`] belong to one *word* (this is the hangover: a stop
//!    consonant or a dip inside a word does not split it). A word counts once it has lasted
//!    [`AmdConfig::min_word_ms`] from its first voiced block; shorter bursts (clicks, a breath)
//!    are ignored. The *greeting* is the words heard so far; its *length* is the sum of their
//!    durations (the pauses between words not included).
//! 4. **Decision**, checked in this order after each block:
//!    - more than [`AmdConfig::max_words`] words → [`AmdResult::Machine`], [`AmdCause::MaxWords`];
//!    - greeting length reaches [`AmdConfig::greeting_ms`] → machine, [`AmdCause::LongGreeting`];
//!    - after at least one word, [`AmdConfig::after_greeting_silence_ms`] without a word since the
//!      end of the last one → [`AmdResult::Human`], [`AmdCause::SilenceAfterGreeting`];
//!    - no word at all in the first [`AmdConfig::initial_silence_ms`] → machine,
//!      [`AmdCause::InitialSilence`];
//!    - [`AmdConfig::total_analysis_ms`] elapsed → [`AmdResult::NotSure`], [`AmdCause::Timeout`].
//!
//!    While a burst that may still become a word is under way, the two silence rules wait for it
//!    to be accepted or dismissed (at most `min_word_ms` + `between_words_silence_ms` later).
//!
//! # Driving it
//!
//! Create one [`AmdDetector`] when the call is answered and feed it every decoded frame of the
//! callee's audio, in order, with nothing left out (time is counted in samples: lost packets
//! should be fed as silence). [`AmdDetector::process`] returns the decision exactly once, on the
//! frame where it is made; afterwards it returns `None` and ignores its input, while
//! [`AmdDetector::decision`] keeps returning the decision. The detector never allocates and
//! does a few integer operations per sample: it can run on the media thread for every call.
//!
//! ```
//! # use voxflow_media as media;
//! use media::amd::{AmdConfig, AmdDetector, AmdResult};
//! let mut detector = AmdDetector::new(AmdConfig::default());
//! let silence = [0i16; 160];
//! let decision = (0..500).find_map(|_| detector.process(&silence)).unwrap();
//! assert_eq!(decision.result, AmdResult::Machine);
//! assert_eq!(decision.cause.as_str(), "initial_silence");
//! assert_eq!(decision.after_ms, 2500);
//! ```
//!
//! # Limits
//!
//! - It is a heuristic with the usual errors of energy-based AMD: a person who answers with a
//!   long sentence ("Good morning, Acme Corporation, Anna speaking, how can I help you?") or
//!   speaks very slowly is taken for a machine; a machine with a very short greeting ("Leave a
//!   message.") followed by a long silence is taken for a person; a person who picks up and says
//!   nothing is taken for a machine. Tune the limits per campaign.
//! - Voice activity is energy only. Speech less than `speech_over_noise_db` above steady
//!   background noise is missed; noise that is not steady (babble, music, traffic) or that grows
//!   faster than about 6 dB per second counts as speech; a loud noise that starts suddenly is
//!   speech until the floor has climbed to it, 3 dB per window (it usually ends as
//!   [`AmdCause::LongGreeting`]).
//! - It does not detect the beep at the end of a greeting (so it cannot tell when to start
//!   leaving a message), nor fax or special information tones.
//! - The first 10 ms are taken as line noise (RTP starts at answer, before anyone talks): if
//!   the audio starts in the middle of a loud syllable, the first second of speech may be
//!   partly missed.
//! - The defaults were tuned on `espeak-ng` speech (tests/amd_speech.rs: five voices, three
//!   speeds, clean, µ-law, quiet and noisy), not on recordings of real calls.

use std::fmt;

/// Samples per second of the audio the detector takes.
const SAMPLE_RATE_HZ: u32 = 8000;
/// Duration of one analysis block.
const BLOCK_MS: u32 = 10;
/// Samples per analysis block.
const BLOCK_SAMPLES: u32 = SAMPLE_RATE_HZ / 1000 * BLOCK_MS;
/// Blocks per noise-floor sub-window (250 ms).
const FLOOR_SUB_WINDOW_BLOCKS: u32 = 25;
/// Complete sub-windows the noise floor remembers (with the one being filled: 1 to 1.25 s).
const FLOOR_SUB_WINDOWS: usize = 4;

/// Tuning of an [`AmdDetector`]. Durations are in milliseconds and are counted in 10 ms blocks
/// (a limit that is not a multiple of 10 ms is rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdConfig {
    /// No word at all within this time from the start → machine
    /// ([`AmdCause::InitialSilence`]): a person says something when they pick up, a voicemail
    /// system may take a while to start its greeting. Default 2500 ms.
    pub initial_silence_ms: u32,
    /// The greeting's speech (the sum of its words' durations) reaches this → machine
    /// ([`AmdCause::LongGreeting`]): people greet briefly. Default 1800 ms: a slow "Hello,
    /// this is Anna." is 1.4–1.6 s of speech (a limit of 1500 ms would call slow talkers
    /// machines), while fluent greetings reach 1.8 s of speech or four words within 3 s.
    pub greeting_ms: u32,
    /// After at least one word, this much silence since the end of the last word → human
    /// ([`AmdCause::SilenceAfterGreeting`]): a person waits for the caller to answer. Default
    /// 800 ms.
    pub after_greeting_silence_ms: u32,
    /// Nothing decided within this time from the start → not sure ([`AmdCause::Timeout`]).
    /// Default 5000 ms.
    pub total_analysis_ms: u32,
    /// A burst of voice must last this long (from its first to its last voiced block, short
    /// gaps included) to count as a word; shorter ones (clicks, breaths, a cough) are ignored.
    /// Default 100 ms.
    pub min_word_ms: u32,
    /// A gap without voice of at least this length separates two words; a shorter gap is
    /// bridged (the hangover that keeps a word with a stop consonant in one piece). Default
    /// 80 ms: with 50 ms the closures of slow speech ("it's Tom") split words.
    pub between_words_silence_ms: u32,
    /// A greeting with more words than this → machine ([`AmdCause::MaxWords`]). Default 3.
    pub max_words: u32,
    /// The minimum speech level: a block whose RMS amplitude is at or below this is never voice,
    /// however quiet the line. Default 120 (about -49 dBFS, -43 dBm0: the louder parts of quiet
    /// speech at -33 dBm0 are above it, the idle noise of a telephone line is below it).
    pub min_speech_rms: u16,
    /// How far above the noise floor a block must be to be voice, in dB. Default 9 dB (a
    /// power ratio of 8).
    pub speech_over_noise_db: u8,
}

impl Default for AmdConfig {
    fn default() -> Self {
        AmdConfig {
            initial_silence_ms: 2500,
            greeting_ms: 1800,
            after_greeting_silence_ms: 800,
            total_analysis_ms: 5000,
            min_word_ms: 100,
            between_words_silence_ms: 80,
            max_words: 3,
            min_speech_rms: 120,
            speech_over_noise_db: 9,
        }
    }
}

/// Who answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmdResult {
    /// A person.
    Human,
    /// An answering machine or voicemail.
    Machine,
    /// Nothing conclusive within the analysis time.
    NotSure,
}

impl AmdResult {
    /// The name Asterisk's `AMDSTATUS` and VoIPBIN use: `HUMAN`, `MACHINE` or `NOTSURE`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AmdResult::Human => "HUMAN",
            AmdResult::Machine => "MACHINE",
            AmdResult::NotSure => "NOTSURE",
        }
    }
}

impl fmt::Display for AmdResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule made the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmdCause {
    /// Machine: no word within [`AmdConfig::initial_silence_ms`].
    InitialSilence,
    /// Machine: the greeting's speech reached [`AmdConfig::greeting_ms`].
    LongGreeting,
    /// Machine: the greeting had more than [`AmdConfig::max_words`] words.
    MaxWords,
    /// Human: a short greeting followed by [`AmdConfig::after_greeting_silence_ms`] of silence.
    SilenceAfterGreeting,
    /// Not sure: [`AmdConfig::total_analysis_ms`] elapsed without a decision.
    Timeout,
}

impl AmdCause {
    /// The cause in snake case: `initial_silence`, `long_greeting`, `max_words`,
    /// `silence_after_greeting` or `timeout`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AmdCause::InitialSilence => "initial_silence",
            AmdCause::LongGreeting => "long_greeting",
            AmdCause::MaxWords => "max_words",
            AmdCause::SilenceAfterGreeting => "silence_after_greeting",
            AmdCause::Timeout => "timeout",
        }
    }
}

impl fmt::Display for AmdCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of answering-machine detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AmdDecision {
    /// Who answered.
    pub result: AmdResult,
    /// Why the detector decided so.
    pub cause: AmdCause,
    /// How much audio (from the first sample fed) the decision took, in milliseconds.
    pub after_ms: u32,
}

/// The limits of an [`AmdConfig`] converted to 10 ms blocks, and its thresholds to energies.
#[derive(Debug, Clone, Copy)]
struct Limits {
    initial_silence: u32,
    greeting: u32,
    after_greeting_silence: u32,
    total: u32,
    min_word: u32,
    between_words: u32,
    max_words: u32,
    /// Minimum speech energy (mean square).
    min_energy: u64,
    /// Power ratio of speech over the noise floor, in 1/256.
    over_noise_q8: u64,
}

impl Limits {
    fn new(config: &AmdConfig) -> Self {
        let blocks = |ms: u32| ms.div_ceil(BLOCK_MS);
        let ratio = 10f64.powf(f64::from(config.speech_over_noise_db) / 10.0);
        Limits {
            initial_silence: blocks(config.initial_silence_ms),
            greeting: blocks(config.greeting_ms),
            after_greeting_silence: blocks(config.after_greeting_silence_ms),
            total: blocks(config.total_analysis_ms),
            // A word and a gap are at least one block.
            min_word: blocks(config.min_word_ms).max(1),
            between_words: blocks(config.between_words_silence_ms).max(1),
            max_words: config.max_words,
            min_energy: u64::from(config.min_speech_rms).pow(2),
            // Saturates for absurd margins (then nothing is voice); the products with it
            // saturate too.
            over_noise_q8: (ratio * 256.0).round() as u64,
        }
    }
}

/// The word being heard: its first and latest voiced blocks and whether it already counts.
#[derive(Debug, Clone, Copy)]
struct Word {
    start: u32,
    last_voiced: u32,
    counted: bool,
}

impl Word {
    /// Its length in blocks, from its first to its latest voiced block.
    fn blocks(self) -> u32 {
        self.last_voiced - self.start + 1
    }
}

/// The noise floor: the lowest block energy of the last 1 to 1.25 s (minimum statistics). The
/// window is kept as the minima of its 250 ms sub-windows, so that old blocks leave it without
/// storing each one.
#[derive(Debug, Clone)]
struct NoiseFloor {
    /// Minima of the latest complete sub-windows, as a ring (`None` until filled once).
    minima: [Option<u64>; FLOOR_SUB_WINDOWS],
    /// Where the next complete sub-window's minimum goes in `minima`.
    next: usize,
    /// Minimum and number of blocks of the sub-window being filled.
    current: Option<u64>,
    current_blocks: u32,
}

impl NoiseFloor {
    fn new() -> Self {
        NoiseFloor {
            minima: [None; FLOOR_SUB_WINDOWS],
            next: 0,
            current: None,
            current_blocks: 0,
        }
    }

    /// The floor (mean square), `None` before the first block.
    fn floor(&self) -> Option<u64> {
        self.minima
            .iter()
            .chain([&self.current])
            .flatten()
            .copied()
            .min()
    }

    /// Adds the energy of the latest block.
    fn push(&mut self, energy: u64) {
        self.current = Some(self.current.map_or(energy, |min| min.min(energy)));
        self.current_blocks += 1;
        if self.current_blocks == FLOOR_SUB_WINDOW_BLOCKS {
            self.minima[self.next] = self.current.take();
            self.next = (self.next + 1) % FLOOR_SUB_WINDOWS;
            self.current_blocks = 0;
        }
    }
}

/// Answering-machine detector for one call's received audio (8 kHz mono PCM); see the
/// [module documentation](self) for the algorithm.
#[derive(Debug, Clone)]
pub struct AmdDetector {
    limits: Limits,
    /// Sum of squares and count of the samples of the block being filled.
    block_sum: u64,
    block_len: u32,
    /// Complete blocks analysed so far.
    blocks: u32,
    /// The noise floor: the quietest recent block.
    floor: NoiseFloor,
    /// Unvoiced blocks since the latest voiced one.
    gap: u32,
    /// The word under way, if any (it ends after `between_words` unvoiced blocks).
    word: Option<Word>,
    /// Words counted, and the summed length in blocks of those already ended.
    words: u32,
    ended_words_blocks: u32,
    /// The latest voiced block of the latest counted word that has ended.
    last_word_end: Option<u32>,
    decision: Option<AmdDecision>,
}

impl AmdDetector {
    /// A detector that has heard nothing yet.
    #[must_use]
    pub fn new(config: AmdConfig) -> Self {
        AmdDetector {
            limits: Limits::new(&config),
            block_sum: 0,
            block_len: 0,
            blocks: 0,
            floor: NoiseFloor::new(),
            gap: 0,
            word: None,
            words: 0,
            ended_words_blocks: 0,
            last_word_end: None,
            decision: None,
        }
    }

    /// Analyses the next `frame` of audio (any length; 160 samples for 20 ms is usual). Returns
    /// the decision on the call that makes it, `None` before and after (the samples after the
    /// decision are ignored).
    pub fn process(&mut self, frame: &[i16]) -> Option<AmdDecision> {
        if self.decision.is_some() {
            return None;
        }
        for sample in frame {
            let value = i64::from(*sample);
            self.block_sum += value.unsigned_abs().pow(2);
            self.block_len += 1;
            if self.block_len == BLOCK_SAMPLES {
                let energy = self.block_sum / u64::from(BLOCK_SAMPLES);
                self.block_sum = 0;
                self.block_len = 0;
                if let Some(decision) = self.analyse_block(energy) {
                    self.decision = Some(decision);
                    return Some(decision);
                }
            }
        }
        None
    }

    /// The decision, once made (it does not change afterwards).
    #[must_use]
    pub fn decision(&self) -> Option<AmdDecision> {
        self.decision
    }

    /// The audio analysed so far, in milliseconds (complete 10 ms blocks).
    #[must_use]
    pub fn elapsed_ms(&self) -> u32 {
        self.blocks.saturating_mul(BLOCK_MS)
    }

    /// Words counted so far.
    #[must_use]
    pub fn words(&self) -> u32 {
        self.words
    }

    /// The greeting's length so far in milliseconds: the summed durations of the words counted
    /// (what [`AmdConfig::greeting_ms`] limits).
    #[must_use]
    pub fn speech_ms(&self) -> u32 {
        self.greeting_blocks().saturating_mul(BLOCK_MS)
    }

    /// One block of `energy`: voice activity, words, then the rules.
    fn analyse_block(&mut self, energy: u64) -> Option<AmdDecision> {
        let block = self.blocks;
        self.blocks += 1;
        let voiced = self.classify(energy);
        if voiced {
            self.voice(block);
        } else {
            self.silence();
        }
        self.decide()
    }

    /// Whether a block of `energy` is voice, updating the noise floor.
    fn classify(&mut self, energy: u64) -> bool {
        let Some(floor) = self.floor.floor() else {
            // The first block: the floor is learnt from it, whatever it is.
            self.floor.push(energy);
            return energy > self.limits.min_energy;
        };
        let threshold = self
            .limits
            .min_energy
            .max(floor.saturating_mul(self.limits.over_noise_q8) >> 8);
        let voiced = energy > threshold;
        if voiced {
            // Speech may raise the floor by 3 dB per window at most (from the level just below
            // the minimum threshold when the line was digitally silent).
            let below_min = (self.limits.min_energy << 8) / self.limits.over_noise_q8.max(1);
            self.floor
                .push(energy.min(floor.saturating_mul(2).max(below_min)));
        } else {
            self.floor.push(energy);
        }
        voiced
    }

    /// A voiced `block`: starts or extends the word under way, counting it once long enough.
    fn voice(&mut self, block: u32) {
        self.gap = 0;
        let word = self.word.get_or_insert(Word {
            start: block,
            last_voiced: block,
            counted: false,
        });
        word.last_voiced = block;
        if !word.counted && word.blocks() >= self.limits.min_word {
            word.counted = true;
            self.words += 1;
        }
    }

    /// An unvoiced block: ends the word under way after a long enough gap.
    fn silence(&mut self) {
        self.gap = self.gap.saturating_add(1);
        if self.gap < self.limits.between_words {
            return;
        }
        if let Some(word) = self.word.take()
            && word.counted
        {
            self.ended_words_blocks += word.blocks();
            self.last_word_end = Some(word.last_voiced);
        }
    }

    /// The decision the rules make after the latest block, if any.
    fn decide(&self) -> Option<AmdDecision> {
        let limits = &self.limits;
        let pending = self.word.is_some_and(|word| !word.counted);
        let cause = if self.words > limits.max_words {
            Some(AmdCause::MaxWords)
        } else if self.greeting_blocks() >= limits.greeting && self.words > 0 {
            Some(AmdCause::LongGreeting)
        } else if self.silent_after_word() >= Some(limits.after_greeting_silence) && !pending {
            Some(AmdCause::SilenceAfterGreeting)
        } else if self.words == 0 && self.blocks >= limits.initial_silence && !pending {
            Some(AmdCause::InitialSilence)
        } else if self.blocks >= limits.total {
            Some(AmdCause::Timeout)
        } else {
            None
        };
        cause.map(|cause| AmdDecision {
            result: match cause {
                AmdCause::SilenceAfterGreeting => AmdResult::Human,
                AmdCause::Timeout => AmdResult::NotSure,
                AmdCause::InitialSilence | AmdCause::LongGreeting | AmdCause::MaxWords => {
                    AmdResult::Machine
                }
            },
            cause,
            after_ms: self.elapsed_ms(),
        })
    }

    /// The greeting's length so far in blocks: the ended words and the counted word under way.
    fn greeting_blocks(&self) -> u32 {
        let current = self
            .word
            .filter(|word| word.counted)
            .map_or(0, |word| word.blocks());
        self.ended_words_blocks + current
    }

    /// Blocks since the end of the latest counted word, if one has ended and no counted word
    /// is under way.
    fn silent_after_word(&self) -> Option<u32> {
        if self.word.is_some_and(|word| word.counted) {
            return None;
        }
        self.last_word_end.map(|end| self.blocks - 1 - end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    /// `ms` of digital silence.
    fn silence(ms: u32) -> Vec<i16> {
        vec![0; ms as usize * 8]
    }

    /// `ms` of a speech-like signal: a 300 Hz tone (with a weaker 900 Hz harmonic) whose
    /// amplitude swings between 30 % and 100 % of `peak` (10 dB) four times a second, like
    /// syllables.
    fn speechlike(ms: u32, peak: i16) -> Vec<i16> {
        (0..ms as usize * 8)
            .map(|i| {
                let t = i as f64 / 8000.0;
                let envelope = 0.65 - 0.35 * (TAU * 4.0 * t).cos();
                let tone = 0.8 * (TAU * 300.0 * t).sin() + 0.2 * (TAU * 900.0 * t).sin();
                (f64::from(peak) * envelope * tone).round() as i16
            })
            .collect()
    }

    /// `ms` of white noise with RMS amplitude `rms` (deterministic).
    fn noise(ms: u32, rms: f64, seed: u32) -> Vec<i16> {
        let mut state = seed;
        (0..ms as usize * 8)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let uniform = f64::from(state >> 8) / f64::from(1u32 << 24) * 2.0 - 1.0;
                (uniform * rms * 3f64.sqrt()).round() as i16
            })
            .collect()
    }

    /// `a` and `b` added sample by sample (the longer one's tail kept).
    fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
        let len = a.len().max(b.len());
        (0..len)
            .map(|i| {
                let x = a.get(i).copied().unwrap_or(0);
                let y = b.get(i).copied().unwrap_or(0);
                x.saturating_add(y)
            })
            .collect()
    }

    fn concat(parts: &[Vec<i16>]) -> Vec<i16> {
        parts.concat()
    }

    /// The decision for `pcm` fed in `frame`-sample frames, with `config`.
    fn detect_with(config: AmdConfig, pcm: &[i16], frame: usize) -> Option<AmdDecision> {
        let mut detector = AmdDetector::new(config);
        let decision = pcm.chunks(frame).find_map(|f| detector.process(f));
        assert_eq!(detector.decision(), decision);
        decision
    }

    fn detect(pcm: &[i16]) -> Option<AmdDecision> {
        detect_with(AmdConfig::default(), pcm, 160)
    }

    fn decided(pcm: &[i16]) -> (AmdResult, AmdCause, u32) {
        let decision = detect(pcm).expect("a decision");
        (decision.result, decision.cause, decision.after_ms)
    }

    #[test]
    fn silence_is_a_machine_by_initial_silence() {
        assert_eq!(
            decided(&silence(6000)),
            (AmdResult::Machine, AmdCause::InitialSilence, 2500)
        );
    }

    #[test]
    fn nothing_is_decided_before_its_time() {
        assert_eq!(detect(&silence(2490)), None);
        assert_eq!(
            detect(&concat(&[silence(200), speechlike(1200, 8000)])),
            None
        );
    }

    #[test]
    fn short_burst_then_silence_is_a_human() {
        let pcm = concat(&[silence(300), speechlike(600, 8000), silence(2000)]);
        let (result, cause, after_ms) = decided(&pcm);
        assert_eq!(
            (result, cause),
            (AmdResult::Human, AmdCause::SilenceAfterGreeting)
        );
        // 800 ms after the burst's last voiced block (its tail is below the threshold).
        assert!((1600..=1700).contains(&after_ms), "{after_ms}");
    }

    #[test]
    fn gaps_shorter_than_the_word_gap_do_not_split_a_word() {
        let mut pcm = silence(200);
        for _ in 0..4 {
            pcm.extend(speechlike(150, 8000));
            pcm.extend(silence(30));
        }
        pcm.extend(silence(1500));
        let mut detector = AmdDetector::new(AmdConfig::default());
        let decision = pcm.chunks(160).find_map(|f| detector.process(f)).unwrap();
        assert_eq!(decision.result, AmdResult::Human);
        assert_eq!(detector.words(), 1);
    }

    #[test]
    fn on_off_bursts_are_a_machine_by_words() {
        let mut pcm = silence(200);
        for _ in 0..10 {
            pcm.extend(speechlike(250, 8000));
            pcm.extend(silence(150));
        }
        // The fourth word counts 100 ms after its onset at 200 + 1200 ms.
        assert_eq!(
            decided(&pcm),
            (AmdResult::Machine, AmdCause::MaxWords, 1500)
        );
    }

    #[test]
    fn continuous_speech_is_a_machine_by_long_greeting() {
        let pcm = concat(&[silence(500), speechlike(4000, 8000)]);
        let (result, cause, after_ms) = decided(&pcm);
        assert_eq!(
            (result, cause),
            (AmdResult::Machine, AmdCause::LongGreeting)
        );
        assert!((2300..=2400).contains(&after_ms), "{after_ms}");
    }

    #[test]
    fn clicks_are_not_words() {
        let mut pcm = Vec::new();
        for _ in 0..10 {
            pcm.extend(speechlike(40, 8000));
            pcm.extend(silence(460));
        }
        let mut detector = AmdDetector::new(AmdConfig::default());
        let decision = pcm.chunks(160).find_map(|f| detector.process(f)).unwrap();
        assert_eq!(decision.cause, AmdCause::InitialSilence);
        assert_eq!(detector.words(), 0);
    }

    #[test]
    fn undecided_audio_times_out() {
        // Words of 200 ms every 700 ms: too few words, too short, too little silence for the
        // rules once they are relaxed.
        let config = AmdConfig {
            max_words: 100,
            greeting_ms: 10_000,
            ..AmdConfig::default()
        };
        let mut pcm = Vec::new();
        for _ in 0..10 {
            pcm.extend(speechlike(200, 8000));
            pcm.extend(silence(500));
        }
        let decision = detect_with(config, &pcm, 160).unwrap();
        assert_eq!(
            (decision.result, decision.cause, decision.after_ms),
            (AmdResult::NotSure, AmdCause::Timeout, 5000)
        );
    }

    #[test]
    fn the_decision_is_returned_once_and_kept() {
        let mut detector = AmdDetector::new(AmdConfig::default());
        let frame = [0i16; 160];
        let decisions: Vec<AmdDecision> =
            (0..300).filter_map(|_| detector.process(&frame)).collect();
        assert_eq!(decisions.len(), 1);
        assert_eq!(detector.decision(), Some(decisions[0]));
        assert_eq!(detector.elapsed_ms(), 2500);
    }

    #[test]
    fn any_frame_length_gives_the_same_decision() {
        let human = concat(&[silence(300), speechlike(600, 8000), silence(2000)]);
        let expected = detect(&human).unwrap();
        for frame in [1, 37, 80, 159, 160, 240, 1000, human.len()] {
            assert_eq!(
                detect_with(AmdConfig::default(), &human, frame),
                Some(expected),
                "{frame}"
            );
        }
    }

    #[test]
    fn steady_noise_is_learnt_as_the_floor() {
        // Noise at RMS 1000 (-30 dBFS), well above the minimum speech level: it is the floor,
        // not speech, so the line is silent...
        let line = noise(6000, 1000.0, 7);
        assert_eq!(
            decided(&line),
            (AmdResult::Machine, AmdCause::InitialSilence, 2500)
        );
        // ... and a greeting 18 dB above it is heard.
        let hello = concat(&[silence(400), speechlike(600, 11_000)]);
        assert_eq!(
            decided(&mix(&line, &hello)).1,
            AmdCause::SilenceAfterGreeting
        );
        let mut bursts = silence(400);
        for _ in 0..8 {
            bursts.extend(speechlike(250, 11_000));
            bursts.extend(silence(150));
        }
        assert_eq!(decided(&mix(&line, &bursts)).1, AmdCause::MaxWords);
    }

    #[test]
    fn noise_that_grows_slowly_is_followed() {
        // Noise rising by 4 dB per second from RMS 300 (-41 dBFS).
        let mut pcm = noise(3000, 1.0, 11);
        for (i, s) in pcm.iter_mut().enumerate() {
            let rms = 300.0 * 10f64.powf(0.2 * i as f64 / 8000.0);
            *s = (f64::from(*s) * rms).round() as i16;
        }
        assert_eq!(decided(&pcm).1, AmdCause::InitialSilence);
    }

    #[test]
    fn the_floor_comes_back_down_after_speech() {
        // Long speech raises the floor a little; the pause after it must bring it back so that
        // a quieter word is still heard.
        let config = AmdConfig {
            greeting_ms: 10_000,
            max_words: 100,
            ..AmdConfig::default()
        };
        let mut detector = AmdDetector::new(config);
        let pcm = concat(&[
            noise(300, 300.0, 3),
            mix(&speechlike(3000, 16_000), &noise(3000, 300.0, 4)),
            noise(300, 300.0, 5),
            mix(&speechlike(200, 4000), &noise(200, 300.0, 6)),
        ]);
        assert!(pcm.chunks(160).all(|f| detector.process(f).is_none()));
        assert_eq!(detector.words(), 2);
    }

    #[test]
    fn quiet_line_noise_below_the_minimum_is_silence() {
        let pcm = noise(3000, 100.0, 9);
        assert_eq!(decided(&pcm).1, AmdCause::InitialSilence);
    }

    #[test]
    fn the_detector_is_small_and_any_config_is_safe() {
        assert!(std::mem::size_of::<AmdDetector>() <= 256);
        let extremes = [
            AmdConfig {
                initial_silence_ms: 0,
                greeting_ms: 0,
                after_greeting_silence_ms: 0,
                total_analysis_ms: 0,
                min_word_ms: 0,
                between_words_silence_ms: 0,
                max_words: 0,
                min_speech_rms: 0,
                speech_over_noise_db: 0,
            },
            AmdConfig {
                initial_silence_ms: u32::MAX,
                greeting_ms: u32::MAX,
                after_greeting_silence_ms: u32::MAX,
                total_analysis_ms: u32::MAX,
                min_word_ms: u32::MAX,
                between_words_silence_ms: u32::MAX,
                max_words: u32::MAX,
                min_speech_rms: u16::MAX,
                speech_over_noise_db: u8::MAX,
            },
        ];
        let pcm = concat(&[
            speechlike(500, i16::MAX),
            silence(500),
            noise(500, 20_000.0, 1),
        ]);
        for config in extremes {
            let mut detector = AmdDetector::new(config);
            for frame in pcm.chunks(160) {
                let _ = detector.process(frame);
            }
        }
        // Everything zero: the first block decides (the analysis time is over).
        assert_eq!(
            detect_with(extremes[0], &silence(100), 160).map(|d| d.after_ms),
            Some(10)
        );
        assert_eq!(detect_with(extremes[1], &pcm, 160), None);
    }

    #[test]
    fn names_are_the_ones_users_know() {
        assert_eq!(AmdResult::Human.as_str(), "HUMAN");
        assert_eq!(AmdResult::Machine.to_string(), "MACHINE");
        assert_eq!(AmdResult::NotSure.as_str(), "NOTSURE");
        let causes = [
            (AmdCause::InitialSilence, "initial_silence"),
            (AmdCause::LongGreeting, "long_greeting"),
            (AmdCause::MaxWords, "max_words"),
            (AmdCause::SilenceAfterGreeting, "silence_after_greeting"),
            (AmdCause::Timeout, "timeout"),
        ];
        for (cause, name) in causes {
            assert_eq!(cause.as_str(), name);
            assert_eq!(cause.to_string(), name);
        }
    }
}
