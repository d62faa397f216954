//! In-band DTMF detection (ITU-T Q.24 style) for calls whose peer negotiated no
//! telephone-event: decoded 8 kHz PCM in, one digit per key press out.
//!
//! # How it works
//!
//! Samples are analysed in windows of 102 samples (12.75 ms) every 51 samples (windows overlap
//! by half). For each window a Goertzel filter measures the power at the eight
//! Q.23 frequencies, exactly on frequency (not on the nearest DFT bin). A window is a *hit* for a
//! key when all of these hold:
//!
//! - **level**: the row and column tones together are above about -30 dBm0;
//! - **dominance**: the strongest row is 6 dB above every other row, and likewise the column;
//! - **twist**: the column tone is at most 8 dB below (normal twist) and at most 4 dB above
//!   (reverse twist) the row tone;
//! - **purity**: the two tones carry at least 70 % of the window's total power; speech and music
//!   spread their power over many harmonics and formants, DTMF does not;
//! - **no second harmonics**: the power at twice each detected frequency is low (a voice or an
//!   instrument whose harmonics fall on a row and a column also has the octaves above them).
//!   For `2`, `3`, `6`, `B` and `C` the column tone lies within 100 Hz of twice the row
//!   frequency, too close to tell apart in a window, so only the column's harmonic is checked.
//!
//! A key is *confirmed* after four consecutive hits for it (they span 255 samples, about 32 ms:
//! every tone of 40 ms or more contains that many whole windows, and a 20 ms tone never fills
//! enough of them to pass the purity test). It is reported once. While it is held, a window
//! that fails the tests but still carries both of its tones within 10 dB of their level keeps it
//! held (loud speech over a key press does not split it in two); the same key is reported again
//! only after four consecutive windows without it (about 32 ms of pause, so a 10 ms drop-out
//! inside one press does not split it either). One key held for two seconds is one digit.
//!
//! # How to drive it
//!
//! Feed every decoded frame, of any length, to [`InbandDtmfDetector::process`]; it returns a
//! digit when one is confirmed. If one call confirms several digits (only possible with frames
//! longer than 25 ms), the first is returned and the rest are drained with
//! [`InbandDtmfDetector::poll_digit`]; up to 16 wait, further ones are dropped. Nothing is
//! allocated; the detector is about 330 bytes.

use crate::tone::{DTMF_COLUMN_HZ, DTMF_KEYPAD, DTMF_ROW_HZ};

/// In-band DTMF detector for one call's received audio (8 kHz mono PCM).
///
/// ```
/// # use voxflow_media as media;
/// use media::dtmf_detect::InbandDtmfDetector;
/// let mut detector = InbandDtmfDetector::new();
/// let mut audio = media::tone::dtmf('7', 100, 7000).unwrap();
/// audio.extend(media::tone::silence(100));
/// let digits: Vec<char> = audio.chunks(160).filter_map(|frame| detector.process(frame)).collect();
/// assert_eq!(digits, ['7']);
/// ```
#[derive(Debug, Clone)]
pub struct InbandDtmfDetector {
    /// The last [`WINDOW`] samples, as a ring whose oldest sample is at `next`.
    window: [i16; WINDOW],
    /// Where the next sample goes in `window`.
    next: usize,
    /// Samples stored since the last analysis (or since the start, until the window is full).
    fresh: usize,
    /// Whether `window` has been filled once.
    primed: bool,
    /// The key of the latest run of consecutive hits, and its length.
    candidate: Option<Key>,
    hits: u8,
    /// The key reported last and not yet released, and the windows without it since.
    held: Option<Held>,
    misses: u8,
    /// Digits confirmed but not yet returned: a ring of `pending_len` from `pending_head`.
    pending: [char; PENDING],
    pending_head: usize,
    pending_len: usize,
}

impl InbandDtmfDetector {
    /// A detector that has heard nothing yet.
    #[must_use]
    pub fn new() -> Self {
        InbandDtmfDetector {
            window: [0; WINDOW],
            next: 0,
            fresh: 0,
            primed: false,
            candidate: None,
            hits: 0,
            held: None,
            misses: 0,
            pending: ['\0'; PENDING],
            pending_head: 0,
            pending_len: 0,
        }
    }

    /// Feeds the next received samples (8 kHz, any number). Returns a digit (`0`-`9`, `*`, `#`,
    /// `A`-`D`) once per key press, when it is confirmed; further digits confirmed by the same
    /// call wait for [`poll_digit`](Self::poll_digit) (or the next `process`); at most 16 wait,
    /// further ones are dropped.
    #[must_use = "a returned digit is not reported again"]
    pub fn process(&mut self, samples: &[i16]) -> Option<char> {
        self.process_with(samples, &LIMITS);
        self.poll_digit()
    }

    /// The oldest confirmed digit not yet returned by [`process`](Self::process) or by this.
    #[must_use]
    pub fn poll_digit(&mut self) -> Option<char> {
        if self.pending_len == 0 {
            return None;
        }
        let digit = self.pending.get(self.pending_head).copied();
        self.pending_head = (self.pending_head + 1) % PENDING;
        self.pending_len -= 1;
        digit
    }

    /// Forgets everything heard so far (e.g. after a media change), keeping no pending digit.
    pub fn reset(&mut self) {
        *self = InbandDtmfDetector::new();
    }
}

impl Default for InbandDtmfDetector {
    fn default() -> Self {
        InbandDtmfDetector::new()
    }
}

/// Samples per analysis window: 12.75 ms at 8 kHz, long enough to tell adjacent rows (73 Hz
/// apart) from each other.
const WINDOW: usize = 102;
/// Samples between the starts of two windows (half a window).
const HOP: usize = WINDOW / 2;
/// Consecutive windows that must hit the same key before it is reported.
const CONFIRM_WINDOWS: u8 = 4;
/// Consecutive windows without the reported key before it can be reported again.
const RELEASE_WINDOWS: u8 = 4;

/// A key of the keypad: `row * 4 + column`.
type Key = u8;

/// Digits held for `poll_digit`; more than this confirmed in one `process` call are dropped.
const PENDING: usize = 16;

/// Mean power (in squared 16-bit sample units) of a 0 dBm0 sine: the G.711 digital milliwatt
/// has a peak of about 22 750.
const ZERO_DBM0_POWER: f32 = 22_750.0 * 22_750.0 / 2.0;

/// The thresholds a window must pass to be a hit (powers are ratios, not dB).
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Minimum power of the row and column tones together.
    min_pair_power: f32,
    /// How far the strongest tone of a group must be above each other tone of its group.
    min_relative_peak: f32,
    /// How much weaker than the row tone the column tone may be (normal twist).
    max_normal_twist: f32,
    /// How much stronger than the row tone the column tone may be (reverse twist).
    max_reverse_twist: f32,
    /// The share of the window's power the two tones must carry.
    min_pair_share: f32,
    /// Maximum power at twice the row frequency, relative to the row tone.
    max_row_harmonic: f32,
    /// Maximum power at twice the column frequency, relative to the column tone.
    max_column_harmonic: f32,
}

const LIMITS: Limits = Limits {
    // -30 dBm0.
    min_pair_power: ZERO_DBM0_POWER * 0.001,
    // 6 dB.
    min_relative_peak: 4.0,
    // 8 dB, plus 1 dB because a tone's power measured in 102 samples ripples by about ±1 dB
    // with the phase of the other tone's leakage.
    max_normal_twist: 7.94,
    // 4 dB, plus the same 1 dB.
    max_reverse_twist: 3.16,
    min_pair_share: 0.7,
    // -10 dB (checked only where no column tone is near it, see `row_harmonic_measurable`).
    max_row_harmonic: 0.1,
    // -15 dB.
    max_column_harmonic: 0.032,
};

/// `2 cos(2π f / 8000)` for the row frequencies (697, 770, 852, 941 Hz), then the column
/// frequencies (1209, 1336, 1477, 1633 Hz).
const COEFF: [f32; 8] = [
    1.707_737_8,
    1.645_281_1,
    1.568_687,
    1.478_204_6,
    1.164_104,
    0.996_370_2,
    0.798_618_4,
    0.568_532_7,
];
/// `2 cos(2π 2f / 8000)` for the second harmonics of the rows.
const ROW_HARMONIC_COEFF: [f32; 4] = [0.916_368_4, 0.706_949_7, 0.460_778_85, 0.185_088_75];
/// `2 cos(2π 2f / 8000)` for the second harmonics of the columns.
const COLUMN_HARMONIC_COEFF: [f32; 4] = [-0.644_861_8, -1.007_246_4, -1.362_208_7, -1.676_770_6];

impl InbandDtmfDetector {
    /// Stores `samples` and analyses every window they complete against `limits`.
    fn process_with(&mut self, samples: &[i16], limits: &Limits) {
        for sample in samples {
            if let Some(slot) = self.window.get_mut(self.next) {
                *slot = *sample;
            }
            self.next = (self.next + 1) % WINDOW;
            self.fresh += 1;
            let due = if self.primed { HOP } else { WINDOW };
            if self.fresh >= due {
                self.primed = true;
                self.fresh = 0;
                let window = self.analyse(limits);
                self.handle_window(&window);
            }
        }
    }

    /// The window, oldest sample first.
    fn samples(&self) -> impl Iterator<Item = f32> + Clone + '_ {
        let (newer, older) = self.window.split_at(self.next.min(WINDOW));
        older.iter().chain(newer).map(|s| f32::from(*s))
    }

    /// Measures the current window: its tone powers and the key it is a hit for, if any.
    fn analyse(&self, limits: &Limits) -> Window {
        let mut window = Window {
            hit: None,
            power: [0.0; 8],
        };
        let total: f32 = self.samples().map(|s| s * s).sum::<f32>() / WINDOW as f32;
        if total < limits.min_pair_power {
            return window; // silence: skip the filters
        }
        let mut s1 = [0.0f32; 8];
        let mut s2 = [0.0f32; 8];
        for x in self.samples() {
            for ((a, b), k) in s1.iter_mut().zip(s2.iter_mut()).zip(COEFF) {
                let s = x + k * *a - *b;
                *b = *a;
                *a = s;
            }
        }
        for ((p, (a, b)), k) in window.power.iter_mut().zip(s1.iter().zip(&s2)).zip(COEFF) {
            *p = tone_power(*a, *b, k);
        }
        window.hit = self.classify(&window.power, total, limits);
        window
    }

    /// The key whose tones `power` shows, if the window passes every test of `limits`.
    fn classify(&self, power: &[f32; 8], total: f32, limits: &Limits) -> Option<Key> {
        let (rows, columns) = power.split_at(4);
        let (row, row_power) = dominant(rows, limits.min_relative_peak)?;
        let (column, column_power) = dominant(columns, limits.min_relative_peak)?;
        let pair = row_power + column_power;
        if pair < limits.min_pair_power
            || column_power * limits.max_normal_twist < row_power
            || column_power > row_power * limits.max_reverse_twist
            || pair < total * limits.min_pair_share
        {
            return None;
        }
        let column_harmonic = goertzel(self.samples(), *COLUMN_HARMONIC_COEFF.get(column)?);
        if column_harmonic > column_power * limits.max_column_harmonic {
            return None;
        }
        if row_harmonic_measurable(row, column) {
            let row_harmonic = goertzel(self.samples(), *ROW_HARMONIC_COEFF.get(row)?);
            if row_harmonic > row_power * limits.max_row_harmonic {
                return None;
            }
        }
        Some((row * 4 + column) as Key)
    }

    /// Advances the confirm/release state machine by one analysed window.
    fn handle_window(&mut self, window: &Window) {
        let hit = window.hit;
        match hit {
            Some(key) if self.candidate == Some(key) => self.hits = self.hits.saturating_add(1),
            _ => {
                self.candidate = hit;
                self.hits = u8::from(hit.is_some());
            }
        }
        if let Some(held) = &self.held {
            if hit == Some(held.key) || held.sustained_by(&window.power) {
                self.misses = 0;
            } else {
                self.misses = self.misses.saturating_add(1);
                if self.misses >= RELEASE_WINDOWS {
                    self.held = None;
                }
            }
        }
        if let Some(key) = self.candidate
            && self.hits >= CONFIRM_WINDOWS
            && self.held.as_ref().is_none_or(|held| held.key != key)
        {
            self.held = Held::new(key, &window.power);
            self.misses = 0;
            if let Some(digit) = key_digit(key) {
                self.push_pending(digit);
            }
        }
    }

    fn push_pending(&mut self, digit: char) {
        if self.pending_len >= PENDING {
            return;
        }
        if let Some(slot) = self
            .pending
            .get_mut((self.pending_head + self.pending_len) % PENDING)
        {
            *slot = digit;
            self.pending_len += 1;
        }
    }
}

/// What one window showed.
#[derive(Debug)]
struct Window {
    /// The key the window is a hit for.
    hit: Option<Key>,
    /// The power of each row tone, then of each column tone (0 in silence).
    power: [f32; 8],
}

/// A key that was reported and is still pressed, with its tone powers when it was confirmed.
#[derive(Debug, Clone, Copy)]
struct Held {
    key: Key,
    row_power: f32,
    column_power: f32,
}

impl Held {
    fn new(key: Key, power: &[f32; 8]) -> Option<Held> {
        Some(Held {
            key,
            row_power: *power.get(usize::from(key / 4))?,
            column_power: *power.get(4 + usize::from(key % 4))?,
        })
    }

    /// Whether a window that is not a hit still shows this key's tones, each within 10 dB of
    /// its level when the key was confirmed: speech as loud as the tones breaks the other
    /// tests for a while without splitting the press in two.
    fn sustained_by(&self, power: &[f32; 8]) -> bool {
        let (rows, columns) = power.split_at(4);
        let present = |group: &[f32], index: usize, confirmed: f32| {
            group
                .get(index)
                .is_some_and(|p| *p * SUSTAIN_DROP >= confirmed)
        };
        present(rows, usize::from(self.key / 4), self.row_power)
            && present(columns, usize::from(self.key % 4), self.column_power)
    }
}

/// How far (10 dB) a held key's tones may drop below their confirmed level and still sustain it.
const SUSTAIN_DROP: f32 = 10.0;

/// Whether the second harmonic of `row` can be measured next to the tone of `column`: not when
/// the column tone is within 100 Hz of it (keys `2`, `3`, `6`, `B`, `C`), where it leaks into
/// the harmonic's filter as much as a real harmonic would.
fn row_harmonic_measurable(row: usize, column: usize) -> bool {
    match (DTMF_ROW_HZ.get(row), DTMF_COLUMN_HZ.get(column)) {
        (Some(row_hz), Some(column_hz)) => (2.0 * row_hz - column_hz).abs() >= 100.0,
        _ => false,
    }
}

/// The digit of a key.
fn key_digit(key: Key) -> Option<char> {
    let key = usize::from(key);
    DTMF_KEYPAD.get(key / 4)?.get(key % 4).copied()
}

/// The strongest of a group of four tone powers, if it is `min_relative_peak` times stronger
/// than each of the three others.
fn dominant(group: &[f32], min_relative_peak: f32) -> Option<(usize, f32)> {
    let (best, power) = group
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let dominates = group
        .iter()
        .enumerate()
        .all(|(i, p)| i == best || *p * min_relative_peak <= power);
    dominates.then_some((best, power))
}

/// Mean power of the sine at the filter's frequency in the window, from the Goertzel filter's
/// two last states: `2 |X|² / N²` (a sine of peak `A` gives `A² / 2`).
fn tone_power(s1: f32, s2: f32, coeff: f32) -> f32 {
    let magnitude_squared = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * magnitude_squared.max(0.0) / (WINDOW * WINDOW) as f32
}

/// One Goertzel filter over `samples`: the mean power of the sine at its frequency.
fn goertzel(samples: impl Iterator<Item = f32>, coeff: f32) -> f32 {
    let (s1, s2) = samples.fold((0.0f32, 0.0f32), |(s1, s2), x| (x + coeff * s1 - s2, s1));
    tone_power(s1, s2, coeff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711;
    use crate::tone;

    const DIGITS: &str = "123A456B789C*0#D";

    /// Peak amplitude of a sine at `dbm0`.
    fn amplitude(dbm0: f64) -> i16 {
        (22_750.0 * 10f64.powf(dbm0 / 20.0)).round() as i16
    }

    /// A DTMF pair with separate row and column levels (in dBm0 per tone).
    fn pair(digit: char, ms: u32, row_dbm0: f64, column_dbm0: f64) -> Vec<i16> {
        let (r, c) = (0..16)
            .find(|k| key_digit(*k as Key) == Some(digit))
            .map(|k| (k / 4, k % 4))
            .unwrap();
        mix(&[
            &tone::sine(DTMF_ROW_HZ[r], ms, amplitude(row_dbm0)),
            &tone::sine(DTMF_COLUMN_HZ[c], ms, amplitude(column_dbm0)),
        ])
    }

    /// Sample-wise sum of signals (the longest sets the length), saturating.
    fn mix(signals: &[&[i16]]) -> Vec<i16> {
        let len = signals.iter().map(|s| s.len()).max().unwrap_or(0);
        (0..len)
            .map(|i| {
                let sum: i32 = signals
                    .iter()
                    .map(|s| i32::from(s.get(i).copied().unwrap_or(0)))
                    .sum();
                sum.clamp(-32768, 32767) as i16
            })
            .collect()
    }

    /// Everything the detector reports for `signal` fed in `frame`-sample frames.
    fn detect_in_frames(signal: &[i16], frame: usize) -> String {
        let mut detector = InbandDtmfDetector::new();
        let mut digits = String::new();
        for chunk in signal.chunks(frame) {
            digits.extend(detector.process(chunk));
            assert_eq!(
                detector.poll_digit(),
                None,
                "one digit per 20 ms frame at most"
            );
        }
        digits
    }

    fn detect(signal: &[i16]) -> String {
        detect_in_frames(signal, 160)
    }

    /// Deterministic white noise (xorshift; sum of four uniforms, roughly Gaussian) with RMS
    /// `rms`.
    fn noise(samples: usize, rms: f64, seed: u64) -> Vec<i16> {
        let mut state = seed | 1;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        // Four uniforms of variance 1/12 each.
        let scale = rms / (4.0f64 / 12.0).sqrt();
        (0..samples)
            .map(|_| {
                let v = (uniform() + uniform() + uniform() + uniform()) * scale;
                v.round().clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    fn rms(signal: &[i16]) -> f64 {
        let energy: f64 = signal.iter().map(|s| f64::from(*s).powi(2)).sum();
        (energy / signal.len().max(1) as f64).sqrt()
    }

    /// Scales `signal` to an RMS of `dbm0`.
    fn normalise(signal: &[f64], dbm0: f64) -> Vec<i16> {
        let energy: f64 = signal.iter().map(|s| s * s).sum();
        let current = (energy / signal.len().max(1) as f64).sqrt();
        let target = f64::from(amplitude(dbm0)) / 2f64.sqrt();
        signal
            .iter()
            .map(|s| (s * target / current).round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    /// A second-order resonator (a formant) at `hz` with bandwidth `bandwidth_hz`.
    fn resonate(input: &[f64], hz: f64, bandwidth_hz: f64) -> Vec<f64> {
        let r = (-std::f64::consts::PI * bandwidth_hz / 8000.0).exp();
        let a1 = 2.0 * r * (std::f64::consts::TAU * hz / 8000.0).cos();
        let a2 = -r * r;
        let gain = 1.0 - r;
        let (mut y1, mut y2) = (0.0, 0.0);
        input
            .iter()
            .map(|x| {
                let y = gain * x + a1 * y1 + a2 * y2;
                y2 = y1;
                y1 = y;
                y
            })
            .collect()
    }

    /// A synthetic vowel: a glottal pulse train whose fundamental glides from `f0_start` to
    /// `f0_end` Hz, shaped by a glottal roll-off and three formant resonators.
    fn vowel(ms: u32, f0_start: f64, f0_end: f64, formants: [f64; 3]) -> Vec<i16> {
        let n = ms as usize * 8;
        let mut phase = 0.0f64;
        let mut excitation = Vec::with_capacity(n);
        let mut lowpass = 0.0;
        for i in 0..n {
            let f0 = f0_start + (f0_end - f0_start) * i as f64 / n as f64;
            phase += f0 / 8000.0;
            // A Rosenberg-like pulse: raised-cosine opening, quicker closing, then closed.
            let p = phase.fract();
            let pulse = if p < 0.4 {
                0.5 * (1.0 - (std::f64::consts::PI * p / 0.4).cos())
            } else if p < 0.56 {
                (std::f64::consts::PI * (p - 0.4) / 0.32).cos()
            } else {
                0.0
            };
            // Differentiated (lip radiation) and gently low-passed.
            lowpass = 0.7 * lowpass + 0.3 * pulse;
            excitation.push(lowpass);
        }
        let radiated: Vec<f64> = std::iter::once(0.0)
            .chain(excitation.windows(2).map(|w| w[1] - w[0]))
            .collect();
        let mut out = radiated;
        for (formant, bandwidth) in formants.into_iter().zip([80.0, 100.0, 120.0]) {
            out = resonate(&out, formant, bandwidth);
        }
        normalise(&out, -12.0)
    }

    /// A note with eight harmonics falling as 1/k (a bright, string-like timbre).
    fn note(hz: f64, ms: u32, dbm0: f64) -> Vec<f64> {
        (0..ms as usize * 8)
            .map(|i| {
                let t = i as f64 / 8000.0;
                (1..=8)
                    .map(|k| (std::f64::consts::TAU * hz * k as f64 * t).sin() / k as f64)
                    .sum::<f64>()
                    * f64::from(amplitude(dbm0))
                    / 2.0
            })
            .collect()
    }

    #[test]
    fn every_digit_at_several_levels() {
        for dbm0 in [-3.0, -10.0, -20.0, -25.0] {
            for digit in DIGITS.chars() {
                let mut signal = tone::silence(30);
                signal.extend(pair(digit, 100, dbm0, dbm0));
                signal.extend(tone::silence(100));
                assert_eq!(detect(&signal), digit.to_string(), "{digit} at {dbm0} dBm0");
            }
        }
    }

    #[test]
    fn every_digit_with_twist_within_limits() {
        // Normal twist (the column below the row) of 6 and 7.5 dB, reverse twist of 4 dB.
        for (row, column) in [
            (-10.0, -16.0),
            (-16.0, -12.0),
            (-4.0, -11.5),
            (-20.0, -16.0),
        ] {
            for digit in DIGITS.chars() {
                let signal = [pair(digit, 80, row, column), tone::silence(80)].concat();
                assert_eq!(detect(&signal), digit.to_string(), "{digit} {row}/{column}");
            }
        }
    }

    #[test]
    fn twist_beyond_limits_is_rejected() {
        // Normal twist 10 dB, reverse twist 6 dB.
        for (row, column) in [(-6.0, -16.0), (-16.0, -10.0)] {
            for digit in DIGITS.chars() {
                let signal = [pair(digit, 200, row, column), tone::silence(80)].concat();
                assert_eq!(detect(&signal), "", "{digit} {row}/{column}");
            }
        }
    }

    #[test]
    fn frequencies_off_by_one_and_a_half_percent_are_accepted() {
        for (r, keys) in DTMF_KEYPAD.iter().enumerate() {
            for (c, digit) in keys.iter().enumerate() {
                for (row_off, column_off) in [(1.015, 1.015), (0.985, 0.985), (1.015, 0.985)] {
                    let signal = mix(&[
                        &tone::sine(DTMF_ROW_HZ[r] * row_off, 80, amplitude(-10.0)),
                        &tone::sine(DTMF_COLUMN_HZ[c] * column_off, 80, amplitude(-10.0)),
                    ]);
                    let signal = [signal, tone::silence(80)].concat();
                    assert_eq!(detect(&signal), digit.to_string(), "{row_off} {column_off}");
                }
            }
        }
    }

    #[test]
    fn a_pair_with_second_harmonics_is_rejected() {
        for (r, keys) in DTMF_KEYPAD.iter().enumerate() {
            for (c, digit) in keys.iter().enumerate() {
                let (row_hz, column_hz) = (DTMF_ROW_HZ[r], DTMF_COLUMN_HZ[c]);
                let with_harmonics = |harmonic_dbm0: f64| {
                    let signal = mix(&[
                        &tone::sine(row_hz, 300, amplitude(-10.0)),
                        &tone::sine(column_hz, 300, amplitude(-10.0)),
                        &tone::sine(2.0 * row_hz, 300, amplitude(harmonic_dbm0)),
                        &tone::sine(2.0 * column_hz, 300, amplitude(harmonic_dbm0)),
                    ]);
                    detect(&[signal, tone::silence(80)].concat())
                };
                // Harmonics 8 dB down: the pair still carries 86 % of the power.
                assert_eq!(with_harmonics(-18.0), "", "{digit}");
                assert_eq!(with_harmonics(-30.0), digit.to_string());
            }
        }
    }

    #[test]
    fn too_weak_tones_are_rejected() {
        for digit in DIGITS.chars() {
            let signal = pair(digit, 500, -36.0, -36.0);
            assert_eq!(detect(&signal), "", "{digit}");
        }
    }

    /// `digits` as `tone_ms` tones separated by `gap_ms` of silence, after `lead` samples of
    /// silence.
    fn sequence(digits: &str, tone_ms: u32, gap_ms: u32, lead: usize, dbm0: f64) -> Vec<i16> {
        let mut signal = vec![0; lead];
        for digit in digits.chars() {
            signal.extend(pair(digit, tone_ms, dbm0, dbm0));
            signal.extend(tone::silence(gap_ms));
        }
        signal.extend(tone::silence(100));
        signal
    }

    #[test]
    fn forty_ms_tones_and_gaps_at_every_alignment() {
        let digits = "1234567890*#ABCD";
        for lead in 0..WINDOW {
            let signal = sequence(digits, 40, 40, lead, -10.0);
            assert_eq!(detect(&signal), digits, "lead {lead}");
        }
    }

    #[test]
    fn frame_size_does_not_matter() {
        let digits = "1234567890*#";
        let signal = sequence(digits, 50, 50, 7, -12.0);
        for frame in [1, 80, 160, 240, 1000] {
            let mut detector = InbandDtmfDetector::new();
            let mut got = String::new();
            for chunk in signal.chunks(frame) {
                got.extend(detector.process(chunk));
                while let Some(digit) = detector.poll_digit() {
                    got.push(digit);
                }
            }
            assert_eq!(got, digits, "frame {frame}");
        }
    }

    #[test]
    fn one_call_with_many_digits_keeps_them_pending() {
        let digits = "0123456789";
        let signal = sequence(digits, 60, 60, 0, -10.0);
        let mut detector = InbandDtmfDetector::new();
        let mut got: String = detector.process(&signal).into_iter().collect();
        while let Some(digit) = detector.poll_digit() {
            got.push(digit);
        }
        assert_eq!(got, digits);
        assert_eq!(detector.process(&tone::silence(100)), None);
    }

    #[test]
    fn a_key_held_two_seconds_is_one_digit() {
        for digit in DIGITS.chars() {
            let signal = [pair(digit, 2000, -10.0, -10.0), tone::silence(100)].concat();
            assert_eq!(detect(&signal), digit.to_string());
        }
    }

    #[test]
    fn a_ten_ms_break_does_not_split_a_press() {
        for lead in (0..WINDOW).step_by(5) {
            let mut signal = vec![0; lead];
            signal.extend(pair('5', 100, -10.0, -10.0));
            signal.extend(tone::silence(10));
            signal.extend(pair('5', 100, -10.0, -10.0));
            signal.extend(tone::silence(100));
            assert_eq!(detect(&signal), "5", "lead {lead}");
        }
    }

    #[test]
    fn the_same_key_twice_is_two_digits() {
        for gap_ms in [40, 60, 100] {
            for lead in (0..WINDOW).step_by(3) {
                let signal = sequence("99", 80, gap_ms, lead, -10.0);
                assert_eq!(detect(&signal), "99", "gap {gap_ms} lead {lead}");
            }
        }
    }

    #[test]
    fn twenty_ms_tones_are_rejected_at_every_alignment() {
        for lead in 0..WINDOW {
            let signal = sequence(DIGITS, 20, 60, lead, -6.0);
            assert_eq!(detect(&signal), "", "lead {lead}");
        }
    }

    #[test]
    fn tones_in_white_noise_at_15_db_snr() {
        let digits = "1234567890*#ABCD";
        let tones = sequence(digits, 60, 60, 0, -10.0);
        // Signal power: two tones at -10 dBm0 while on.
        let tone_rms = f64::from(amplitude(-10.0));
        let noise_rms = tone_rms / 10f64.powf(15.0 / 20.0);
        for seed in 1..=5 {
            let noisy = mix(&[&tones, &noise(tones.len(), noise_rms, seed)]);
            assert_eq!(detect(&noisy), digits, "seed {seed}");
        }
    }

    #[test]
    fn ulaw_round_trip_keeps_digits() {
        let digits = "1234567890*#ABCD";
        for dbm0 in [-3.0, -10.0, -25.0] {
            let signal: Vec<i16> = sequence(digits, 50, 50, 11, dbm0)
                .into_iter()
                .map(|s| g711::ulaw_decode(g711::ulaw_encode(s)))
                .collect();
            assert_eq!(detect(&signal), digits, "{dbm0} dBm0");
            let alaw: Vec<i16> = sequence(digits, 50, 50, 11, dbm0)
                .into_iter()
                .map(|s| g711::alaw_decode(g711::alaw_encode(s)))
                .collect();
            assert_eq!(detect(&alaw), digits, "A-law {dbm0} dBm0");
        }
    }

    #[test]
    fn silence_and_noise_give_nothing() {
        assert_eq!(detect(&tone::silence(5000)), "");
        for (dbm0, seed) in [(-3.0, 1), (-10.0, 2), (-20.0, 3), (-30.0, 4)] {
            let rms = f64::from(amplitude(dbm0)) / 2f64.sqrt();
            assert_eq!(detect(&noise(80_000, rms, seed)), "", "{dbm0} dBm0");
        }
    }

    #[test]
    fn single_tones_give_nothing() {
        for hz in DTMF_ROW_HZ.iter().chain(&DTMF_COLUMN_HZ) {
            for dbm0 in [-3.0, -20.0] {
                let signal = tone::sine(*hz, 1000, amplitude(dbm0));
                assert_eq!(detect(&signal), "", "{hz} Hz");
            }
        }
    }

    #[test]
    fn call_progress_tones_and_beeps_give_nothing() {
        // Dial tone (350 + 440 Hz), ring-back (440 + 480), busy (480 + 620), the prompt beep.
        for (a, b) in [(350.0, 440.0), (440.0, 480.0), (480.0, 620.0)] {
            let signal = mix(&[
                &tone::sine(a, 2000, amplitude(-13.0)),
                &tone::sine(b, 2000, amplitude(-13.0)),
            ]);
            assert_eq!(detect(&signal), "", "{a}+{b}");
        }
        assert_eq!(detect(&tone::beep()), "");
        assert_eq!(detect(&tone::sine(1000.0, 2000, amplitude(-3.0))), "");
    }

    #[test]
    fn chords_of_three_sines_give_nothing() {
        let chords: [[f32; 3]; 10] = [
            [523.3, 659.3, 784.0],   // C major
            [440.0, 554.4, 659.3],   // A major
            [698.5, 880.0, 1046.5],  // F major, root near a row
            [932.3, 1174.7, 1396.9], // B flat major
            [697.0, 770.0, 1209.0],  // two rows and a column
            [697.0, 1209.0, 1336.0], // a row and two columns
            [852.0, 1477.0, 1633.0], // a row and two columns
            [770.0, 941.0, 1477.0],  // two rows and a column
            [697.0, 1209.0, 500.0],  // a pair drowned by a third tone
            [941.0, 1633.0, 2200.0], // a pair drowned by a third tone
        ];
        for chord in chords {
            let parts: Vec<Vec<i16>> = chord
                .iter()
                .map(|hz| tone::sine(*hz, 1000, amplitude(-12.0)))
                .collect();
            let parts: Vec<&[i16]> = parts.iter().map(Vec::as_slice).collect();
            assert_eq!(detect(&mix(&parts)), "", "{chord:?}");
        }
    }

    #[test]
    fn synthetic_vowels_give_nothing() {
        // Formants of /a/, /i/, /u/, /e/, /o/, /ae/ (F1, F2, F3 in Hz).
        let vowels = [
            [730.0, 1090.0, 2440.0],
            [270.0, 2290.0, 3010.0],
            [300.0, 870.0, 2240.0],
            [530.0, 1840.0, 2480.0],
            [570.0, 840.0, 2410.0],
            [660.0, 1720.0, 2410.0],
            // Formants sitting on a row and a column.
            [770.0, 1336.0, 2500.0],
            [697.0, 1209.0, 2600.0],
        ];
        let mut count = 0;
        for formants in vowels {
            // Gliding pitch through the whole male-to-female range, both ways, and steady.
            for (start, end) in [
                (100.0, 250.0),
                (250.0, 100.0),
                (120.0, 130.0),
                (210.0, 190.0),
            ] {
                let signal = vowel(1500, start, end, formants);
                assert!(rms(&signal) > 1000.0);
                assert_eq!(detect(&signal), "", "{formants:?} {start}->{end} Hz");
                count += 1;
            }
        }
        assert_eq!(count, 32);
    }

    #[test]
    fn music_gives_nothing() {
        // A chromatic scale over two octaves from A4, single notes and with a fifth above.
        let mut melody = Vec::new();
        let mut dyads = Vec::new();
        for semitone in 0..24 {
            let hz = 440.0 * 2f64.powf(f64::from(semitone) / 12.0);
            melody.extend(note(hz, 120, -10.0));
            let fifth = 440.0 * 2f64.powf(f64::from(semitone + 7) / 12.0);
            let both: Vec<f64> = note(hz, 120, -13.0)
                .iter()
                .zip(note(fifth, 120, -13.0))
                .map(|(a, b)| a + b)
                .collect();
            dyads.extend(both);
        }
        let melody: Vec<i16> = melody.iter().map(|s| s.round() as i16).collect();
        let dyads: Vec<i16> = dyads.iter().map(|s| s.round() as i16).collect();
        assert_eq!(detect(&melody), "");
        assert_eq!(detect(&dyads), "");
    }

    #[test]
    fn the_detector_is_small() {
        assert!(std::mem::size_of::<InbandDtmfDetector>() < 1024);
        assert!(std::mem::size_of::<InbandDtmfDetector>() < 400);
    }

    #[test]
    fn reset_forgets_a_pending_press() {
        let mut detector = InbandDtmfDetector::default();
        assert_eq!(detector.process(&pair('3', 20, -10.0, -10.0)), None);
        detector.reset();
        assert_eq!(detector.process(&pair('3', 25, -10.0, -10.0)), None);
        assert_eq!(detector.process(&tone::silence(50)), None);
    }

    #[test]
    fn coefficients_match_the_frequencies() {
        let coeff = |hz: f32| (2.0 * (std::f64::consts::TAU * f64::from(hz) / 8000.0).cos()) as f32;
        for (i, hz) in DTMF_ROW_HZ.iter().chain(&DTMF_COLUMN_HZ).enumerate() {
            assert!((COEFF[i] - coeff(*hz)).abs() < 1e-6);
        }
        for (i, hz) in DTMF_ROW_HZ.iter().enumerate() {
            assert!((ROW_HARMONIC_COEFF[i] - coeff(2.0 * hz)).abs() < 1e-6);
        }
        for (i, hz) in DTMF_COLUMN_HZ.iter().enumerate() {
            assert!((COLUMN_HARMONIC_COEFF[i] - coeff(2.0 * hz)).abs() < 1e-6);
        }
    }
}
